//! Helpers of the lowering tests: fixture models and data, compiling with the pipeline,
//! running a lowered program on the clear engine next to the integer interpreter, random
//! graphs (with the workspace's shared test helpers re-exported: the generator, fixture data).
#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses its own subset
pub use fhec_testkit::{data_samples, fixture_graph, Lcg, GEMM_TRANS_B};

use fhec_ir::{int_interp, Graph, Op, RoundingMode, Tensor};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{PassOptions, RoundingOptions};
use fhec_runtime::circuit::{Instruction, OutputSpec, Program};
use fhec_runtime::clear::{ClearEngine, PlainEngine};
use fhec_runtime::exec::{decoded_outputs, quantize_inputs};
use fhec_runtime::execute;
use ndarray::ArrayD;

/// The data file of a fixture model and whether the model takes NHWC images.
pub fn data_of(stem: &str) -> (&'static str, bool) {
    match stem {
        s if s.starts_with("mlp") => ("breast_cancer.npz", false),
        s if s.starts_with("cnn_keras") => ("digits_28.npz", true),
        "cnn_torch_8" => ("digits_8.npz", false),
        _ => ("digits_28.npz", false),
    }
}

/// Compiles a float graph to an integer graph with the pipeline.
pub fn compile(
    graph: &Graph,
    bits: u32,
    rounding: Option<(u32, RoundingMode)>,
    calibration: &[Tensor],
) -> Graph {
    let options = PassOptions {
        prune_threshold: 0.0,
        quantization: Some(QuantOptions::uniform(bits)),
        rounding: rounding.map(|(bits, mode)| RoundingOptions { bits, mode }),
        ..Default::default()
    };
    let calibration = calibration.iter().map(|x| vec![x.clone()]).collect();
    fhec_passes::compile(graph, options, calibration)
        .unwrap_or_else(|e| panic!("pipeline: {e}"))
        .0
}

/// Compiles a fixture model.
pub fn compile_fixture(
    stem: &str,
    bits: u32,
    rounding: Option<(u32, RoundingMode)>,
    calib: usize,
) -> Graph {
    let (file, nhwc) = data_of(stem);
    compile(
        &fixture_graph(stem),
        bits,
        rounding,
        &data_samples(file, "x_train", nhwc, calib),
    )
}

/// The integers the graph's outputs dequantise (the inputs of its `Dequantize` nodes).
pub fn reference_integers(graph: &Graph, inputs: &[Tensor]) -> Vec<ArrayD<i64>> {
    let trace = int_interp::run_trace(graph, inputs).unwrap_or_else(|e| panic!("int_interp: {e}"));
    graph
        .outputs()
        .iter()
        .map(|&o| {
            assert!(matches!(graph.node(o).op, Op::Dequantize(_)));
            let src = graph.node_inputs(o)[0];
            trace[&src].as_int().expect("integer").clone()
        })
        .collect()
}

/// Runs `program` on the clear engine from real inputs; returns the output integers and
/// the dequantised outputs.
pub fn run_program(program: &Program, inputs: &[Tensor]) -> (Vec<ArrayD<i64>>, Vec<Tensor>) {
    let ints = fhec_runtime::clear::run_clear_integers(program, inputs)
        .unwrap_or_else(|e| panic!("clear execution: {e}"));
    let reals = fhec_runtime::clear::run_clear(program, inputs)
        .unwrap_or_else(|e| panic!("clear execution: {e}"));
    (ints, reals)
}

/// The program's output integers computed element by element (the clear engine without its
/// exact kernels).
pub fn elementwise_integers(program: &Program, inputs: &[Tensor]) -> Vec<ArrayD<i64>> {
    let quantized = quantize_inputs(program, inputs).unwrap_or_else(|e| panic!("inputs: {e}"));
    let elementwise = PlainEngine {
        lookups: ClearEngine,
        kernels: false,
    };
    let outputs = execute(program, &elementwise, quantized)
        .unwrap_or_else(|e| panic!("element-by-element execution: {e}"));
    decoded_outputs(program, outputs)
}

/// Asserts that the lowered program computes exactly what the integer interpreter does, on
/// the clear engine's exact kernels and element by element alike.
pub fn assert_same(graph: &Graph, program: &Program, inputs: &[Tensor], what: &str) {
    let want_ints = reference_integers(graph, inputs);
    let want = int_interp::run(graph, inputs).unwrap_or_else(|e| panic!("int_interp: {e}"));
    let (ints, reals) = run_program(program, inputs);
    assert_eq!(ints, want_ints, "{what}: output integers differ");
    assert_eq!(
        elementwise_integers(program, inputs),
        want_ints,
        "{what}: output integers differ element by element"
    );
    assert_eq!(reals, want, "{what}: dequantised outputs differ");
    check_ranges(program, inputs, what);
}

/// Runs the program with every value as an output and checks each element against the
/// range the lowering guaranteed for it.
pub fn check_ranges(program: &Program, inputs: &[Tensor], what: &str) {
    let mut all = program.clone();
    all.outputs = (0..program.values.len())
        .map(|value| OutputSpec {
            name: format!("%{value}"),
            value,
            scale: 1.0,
            zero_point: 0,
            channel_scales: vec![],
        })
        .collect();
    let values = fhec_runtime::clear::run_clear_integers(&all, inputs)
        .unwrap_or_else(|e| panic!("{what}: clear execution: {e}"));
    for (v, (a, info)) in values.iter().zip(&program.values).enumerate() {
        if let Some(x) = a.iter().find(|&&x| x < info.min || x > info.max) {
            panic!(
                "{what}: value %{v} ({}) holds {x}, outside its range [{}, {}]",
                program.instructions[v].name(),
                info.min,
                info.max
            );
        }
    }
}

/// Number of instructions of each kind, e.g. `[("Tlu", 2), ...]` in first-seen order.
pub fn instruction_counts(p: &Program) -> Vec<(&'static str, usize)> {
    let mut out: Vec<(&'static str, usize)> = vec![];
    for i in &p.instructions {
        match out.iter_mut().find(|(n, _)| *n == i.name()) {
            Some((_, c)) => *c += 1,
            None => out.push((i.name(), 1)),
        }
    }
    out
}

/// Checks the encoding facts every lowered program must satisfy (independently of the
/// runtime's own validation): operands of linear instructions at the result's delta, lookup
/// inputs at the table's delta, ranges inside the bits below the padding bit.
pub fn check_encoding(p: &Program) {
    for (i, instr) in p.instructions.iter().enumerate() {
        let d = p.values[i].delta_log2;
        for v in instr.operands() {
            assert!(v < i, "instruction {i} reads later value {v}");
            let dv = p.values[v].delta_log2;
            match instr {
                Instruction::Tlu { lut, .. } => assert_eq!(dv, lut.input_delta_log2(), "Tlu {i}"),
                Instruction::MaxPool { relu, .. } => {
                    assert_eq!(dv, relu.input_delta_log2(), "MaxPool {i} input");
                    assert_eq!(d, relu.input_delta_log2(), "MaxPool {i} output");
                }
                Instruction::Rescale { shift, .. } => assert_eq!(dv + shift, d, "Rescale {i}"),
                _ => assert_eq!(dv, d, "{} {i} operand {v}", instr.name()),
            }
            if matches!(instr, Instruction::Tlu { .. }) {
                let span = (p.values[v].max - p.values[v].min) as i128;
                assert!(span < 1i128 << (63 - dv), "Tlu {i} input range too wide");
            }
        }
        assert!(p.values[i].min <= p.values[i].max);
        assert!(p.values[i].noise_factor >= 1.0 || p.values[i].noise_factor == 0.0);
    }
    for o in &p.outputs {
        let v = &p.values[o.value];
        assert!(((v.max - v.min) as i128) < 1i128 << (63 - v.delta_log2));
        assert!(v.delta_log2 >= 1);
    }
}

/// Table lookups of one execution: every `Tlu` element, `k - 1` comparisons per `MaxPool`
/// output over a `k`-element window (what `fhec_passes::bitwidth::tlu_count` counts on the
/// graph; exact rounding's extra bootstraps are not lookups).
pub fn lookups(p: &Program) -> u64 {
    p.instructions
        .iter()
        .enumerate()
        .map(|(v, i)| match i {
            Instruction::Tlu { .. } => p.values[v].len() as u64,
            Instruction::MaxPool { window, .. } => {
                let k: usize = window.kernel.iter().product();
                (p.values[v].len() * (k - 1)) as u64
            }
            _ => 0,
        })
        .sum()
}
