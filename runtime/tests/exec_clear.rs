//! The executor on the clear engine: every instruction against hand-computed values, the
//! lookup batching the FHE engine relies on, validation of broken programs, client-side
//! quantisation, the text listing, and Dense/Conv against a naive reference (proptest).

use std::sync::Mutex;

use fhec_runtime::circuit::{
    InputSpec, Instruction, IntTensor, Lut, OutputSpec, QParams, Rounding, RoundingMode, ValueInfo,
    Window,
};
use fhec_runtime::clear::{run_clear, run_clear_integers, PlainEngine, PlainLookups};
use fhec_runtime::exec::{dequantize_outputs, quantize_inputs};
use fhec_runtime::{execute, ClearEngine, Engine, Program, RuntimeError};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// Builds small programs instruction by instruction.
struct Builder {
    p: Program,
}

impl Builder {
    fn new() -> Self {
        Builder {
            p: Program {
                inputs: vec![],
                outputs: vec![],
                values: vec![],
                instructions: vec![],
            },
        }
    }

    fn input(&mut self, shape: &[usize], delta: u32) -> usize {
        let index = self.p.inputs.len();
        self.p.inputs.push(InputSpec {
            name: format!("x{index}"),
            shape: shape.to_vec(),
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 16,
                signed: true,
            },
        });
        self.push(Instruction::Input { index }, shape, delta)
    }

    fn push(&mut self, ins: Instruction, shape: &[usize], delta: u32) -> usize {
        self.p.instructions.push(ins);
        self.p.values.push(ValueInfo {
            shape: shape.to_vec(),
            min: -1000,
            max: 1000,
            delta_log2: delta,
            noise_factor: 1.0,
        });
        self.p.values.len() - 1
    }

    fn output(&mut self, value: usize) {
        self.p.outputs.push(OutputSpec {
            name: format!("y{}", self.p.outputs.len()),
            value,
            scale: 1.0,
            zero_point: 0,
            channel_scales: vec![],
        });
    }

    fn build(self) -> Program {
        self.p
    }
}

fn arr(shape: &[usize], data: Vec<i64>) -> ArrayD<i64> {
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

fn window(kernel: &[usize], strides: &[usize], pads: &[(usize, usize)]) -> Window {
    Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
    }
}

/// A single-instruction program on one input; returns its only output.
fn run1(
    x_shape: &[usize],
    x: Vec<i64>,
    delta: u32,
    make: impl FnOnce(usize) -> Instruction,
    out_shape: &[usize],
    out_delta: u32,
) -> Result<ArrayD<i64>, RuntimeError> {
    let mut b = Builder::new();
    let i = b.input(x_shape, delta);
    let o = b.push(make(i), out_shape, out_delta);
    b.output(o);
    let p = b.build();
    Ok(execute(&p, &ClearEngine, vec![arr(x_shape, x)])?.remove(0))
}

/// Relu table on `b - a` for max pooling: 2^precision entries centred on 0.
fn relu_lut(precision: u32) -> Lut {
    let half = 1i64 << (precision - 1);
    Lut {
        input_min: -half,
        precision,
        rounding: None,
        tables: vec![(0..2 * half).map(|i| (i - half).max(0)).collect()],
        axis: None,
        sets: Default::default(),
    }
}

/// Records every lookup batch (size, noise factor of the input, table indices).
struct Recorder {
    calls: Mutex<Vec<(usize, f64, Vec<usize>)>>,
}

impl PlainLookups for Recorder {
    fn read_tables(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        out_delta: u32,
        inputs: &[&i64],
        tables: &[usize],
    ) -> Result<Vec<i64>, RuntimeError> {
        assert_eq!(input.delta_log2, lut.input_delta_log2());
        self.calls
            .lock()
            .unwrap()
            .push((inputs.len(), input.noise_factor, tables.to_vec()));
        ClearEngine.lookup(lut, input, out_delta, inputs, tables)
    }
}

/// A clear engine recording its lookup batches.
fn recorder() -> PlainEngine<Recorder> {
    PlainEngine {
        lookups: Recorder {
            calls: Mutex::new(vec![]),
        },
        kernels: true,
    }
}

#[test]
fn dense_over_last_axis() {
    // y[r, o] = b[o] + sum_i w[o, i] x[r, i]
    let y = run1(
        &[2, 3],
        vec![1, 2, 3, 4, 5, 6],
        0,
        |input| Instruction::Dense {
            input,
            weights: vec![1, 0, -1, 2, 3, 4],
            in_features: 3,
            out_features: 2,
            bias: vec![10, -5],
        },
        &[2, 2],
        0,
    )
    .unwrap();
    assert_eq!(y, arr(&[2, 2], vec![8, 15, 8, 42]));
}

#[test]
fn conv_with_padding_stride_and_groups() {
    let x: Vec<i64> = (1..=18).collect();
    let y = run1(
        &[1, 2, 3, 3],
        x,
        0,
        |input| Instruction::Conv {
            input,
            // group 0: [[1, 0], [0, -1]], group 1: all ones
            weights: vec![1, 0, 0, -1, 1, 1, 1, 1],
            weight_shape: vec![2, 1, 2, 2],
            bias: vec![100, 0],
            window: window(&[2, 2], &[2, 2], &[(1, 1), (1, 1)]),
            group: 2,
        },
        &[1, 2, 2, 2],
        0,
    )
    .unwrap();
    assert_eq!(y, arr(&[1, 2, 2, 2], vec![99, 97, 93, 96, 10, 23, 29, 64]));
}

#[test]
fn conv_with_dilation_and_mixed_channels() {
    // 1-D, two input channels summed into one output: y[o] = x0[o] + 10 x0[o+2] - x1[o+1].
    let y = run1(
        &[1, 2, 5],
        vec![1, 2, 3, 4, 5, 10, 20, 30, 40, 50],
        0,
        |input| Instruction::Conv {
            input,
            weights: vec![1, 10, 0, 0],
            weight_shape: vec![1, 2, 2],
            bias: vec![0],
            window: Window {
                kernel: vec![2],
                strides: vec![1],
                dilations: vec![2],
                pads: vec![(0, 0)],
            },
            group: 1,
        },
        &[1, 1, 3],
        0,
    )
    .unwrap();
    assert_eq!(y, arr(&[1, 1, 3], vec![31, 42, 53]));
}

#[test]
fn sum_pool_with_and_without_padding() {
    let x: Vec<i64> = (1..=9).collect();
    let plain = run1(
        &[1, 1, 3, 3],
        x.clone(),
        0,
        |input| Instruction::SumPool {
            input,
            window: window(&[2, 2], &[1, 1], &[(0, 0), (0, 0)]),
        },
        &[1, 1, 2, 2],
        0,
    )
    .unwrap();
    assert_eq!(plain, arr(&[1, 1, 2, 2], vec![12, 16, 24, 28]));
    let padded = run1(
        &[1, 1, 3, 3],
        x,
        0,
        |input| Instruction::SumPool {
            input,
            window: window(&[2, 2], &[2, 2], &[(1, 1), (1, 1)]),
        },
        &[1, 1, 2, 2],
        0,
    )
    .unwrap();
    assert_eq!(padded, arr(&[1, 1, 2, 2], vec![1, 5, 11, 28]));
}

#[test]
fn ceil_mode_pool_shape_is_accepted() {
    // Length 4, kernel 2, stride 3: floor gives 1 window, ceil 2 (the last one partial).
    let y = run1(
        &[1, 1, 4],
        vec![1, 2, 3, 4],
        0,
        |input| Instruction::SumPool {
            input,
            window: window(&[2], &[3], &[(0, 0)]),
        },
        &[1, 1, 2],
        0,
    )
    .unwrap();
    assert_eq!(y, arr(&[1, 1, 2], vec![3, 4]));
}

#[test]
fn max_pool_tree_with_padding_and_odd_windows() {
    // 1-D, kernel 3, stride 2, pads 1: windows hold 2, 3 and 2 real elements.
    let mut b = Builder::new();
    let relu = relu_lut(5);
    let delta = relu.input_delta_log2();
    let i = b.input(&[1, 1, 5], delta);
    b.p.values[i].noise_factor = 3.0;
    let o = b.push(
        Instruction::MaxPool {
            input: i,
            window: window(&[3], &[2], &[(1, 1)]),
            relu,
        },
        &[1, 1, 3],
        delta,
    );
    b.output(o);
    let p = b.build();
    let rec = recorder();
    let y = execute(&p, &rec, vec![arr(&[1, 1, 5], vec![3, -7, 5, 7, -2])]).unwrap();
    assert_eq!(y[0], arr(&[1, 1, 3], vec![3, 7, 7]));
    // Level 0 pairs every window once (3 comparisons), level 1 finishes the 3-element window;
    // 4 comparisons = sum of (elements - 1); noise factor 2 (alpha + level).
    let calls = rec.lookups.calls.into_inner().unwrap();
    let summary: Vec<(usize, f64)> = calls.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(summary, vec![(3, 6.0), (1, 8.0)]);
    assert!(calls.iter().all(|c| c.2.iter().all(|&t| t == 0)));
}

#[test]
fn max_pool_nine_element_window_takes_four_levels() {
    let mut b = Builder::new();
    let relu = relu_lut(6);
    let delta = relu.input_delta_log2();
    let i = b.input(&[1, 2, 3, 3], delta);
    let o = b.push(
        Instruction::MaxPool {
            input: i,
            window: window(&[3, 3], &[1, 1], &[(0, 0), (0, 0)]),
            relu,
        },
        &[1, 2, 1, 1],
        delta,
    );
    b.output(o);
    let p = b.build();
    let rec = recorder();
    let x = vec![
        4, -9, 0, 11, -3, 7, 2, 10, -1, // max 11
        -5, -6, -2, -7, -8, -9, -4, -3, -10, // max -2
    ];
    let y = execute(&p, &rec, vec![arr(&[1, 2, 3, 3], x)]).unwrap();
    assert_eq!(y[0], arr(&[1, 2, 1, 1], vec![11, -2]));
    let sizes: Vec<usize> = rec
        .lookups
        .calls
        .into_inner()
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    // 9 -> 5 -> 3 -> 2 -> 1 per window, two windows.
    assert_eq!(sizes, vec![8, 4, 2, 2]);
    assert_eq!(sizes.iter().sum::<usize>(), 2 * (9 - 1));
}

#[test]
fn tlu_per_channel_along_axis_1() {
    let lut = Lut {
        input_min: -4,
        precision: 3,
        rounding: None,
        tables: vec![
            (0..8).map(|i| 2 * (i - 4)).collect(), // 2x
            (0..8).map(|i| -(i - 4)).collect(),    // -x
        ],
        axis: Some(1),
        sets: Default::default(),
    };
    let delta = lut.input_delta_log2();
    let mut b = Builder::new();
    let i = b.input(&[1, 2, 3], delta);
    let o = b.push(Instruction::Tlu { input: i, lut }, &[1, 2, 3], 20);
    b.output(o);
    let p = b.build();
    let rec = recorder();
    let y = execute(&p, &rec, vec![arr(&[1, 2, 3], vec![-4, 0, 3, -1, 2, 3])]).unwrap();
    assert_eq!(y[0], arr(&[1, 2, 3], vec![-8, 0, 6, 1, -2, -3]));
    let calls = rec.lookups.calls.into_inner().unwrap();
    assert_eq!(calls.len(), 1, "one lookup batch for the whole tensor");
    assert_eq!(calls[0].2, vec![0, 0, 0, 1, 1, 1]);
}

fn rounding_program(exact: bool, input_min: i64) -> Program {
    let lut = Lut {
        input_min,
        precision: 2,
        rounding: Some(Rounding {
            shift: 2,
            mode: if exact {
                RoundingMode::Exact
            } else {
                RoundingMode::Approximate
            },
        }),
        tables: vec![vec![10, 20, 30, 40]],
        axis: None,
        sets: Default::default(),
    };
    let mut b = Builder::new();
    let i = b.input(&[15], lut.input_delta_log2());
    let o = b.push(Instruction::Tlu { input: i, lut }, &[15], 30);
    b.output(o);
    b.build()
}

#[test]
fn rounding_index_rule_with_ties_upward() {
    // index = floor((acc - min + 2) / 4): offsets 2, 6, 10 are ties and round up.
    let acc: Vec<i64> = (0..14).chain([-1]).collect();
    for exact in [true, false] {
        let p = rounding_program(exact, 0);
        let x = arr(&[15], acc.iter().map(|&a| a.max(0)).collect());
        let y = execute(&p, &ClearEngine, vec![x]).unwrap();
        let expected = vec![10, 10, 20, 20, 20, 20, 30, 30, 30, 30, 40, 40, 40, 40, 10];
        assert_eq!(y[0], arr(&[15], expected), "exact = {exact}");
    }
    // With a negative input_min the offset, not the value, is rounded.
    let p = rounding_program(true, -8);
    let offsets: Vec<i64> = (0..14).chain([0]).collect();
    let x = arr(&[15], offsets.iter().map(|o| o - 8).collect());
    let y = execute(&p, &ClearEngine, vec![x]).unwrap();
    let table = [10, 20, 30, 40];
    let expected: Vec<i64> = offsets
        .iter()
        .map(|&o| table[(o as usize + 2) / 4])
        .collect();
    assert_eq!(y[0], arr(&[15], expected));
}

/// Outside its domain a lookup reads what the bootstrap reads: the rounded offset modulo
/// 2^(precision+1), the upper half negated (the padding bit's negacyclic wrap).
#[test]
fn out_of_table_reads_the_negacyclic_wrap() {
    let p = rounding_program(false, 0);
    // (14 + 2) / 4 = 4: box 4 = -table[0]; (-3 + 2) / 4 = -1: box 7 = -table[3];
    // (18 + 2) / 4 = 5: -table[1]; (32 + 2) / 4 = 8: box 0 again.
    for (bad, expected) in [(14, -10), (-3, -40), (18, -20), (32, 10)] {
        let mut x = vec![0; 15];
        x[7] = bad;
        let y = execute(&p, &ClearEngine, vec![arr(&[15], x)]).unwrap();
        assert_eq!(y[0][[7]], expected, "input {bad}");
        assert_eq!(y[0][[0]], 10);
    }
}

#[test]
fn layout_instructions() {
    let mut b = Builder::new();
    let x = b.input(&[2, 3], 5);
    let t = b.push(
        Instruction::Transpose {
            input: x,
            perm: vec![1, 0],
        },
        &[3, 2],
        5,
    );
    let pad = b.push(
        Instruction::Pad {
            input: x,
            pads: vec![(1, 0), (0, 2)],
            value: 7,
        },
        &[3, 5],
        5,
    );
    let c0 = b.push(
        Instruction::Concat {
            inputs: vec![x, x],
            axis: 0,
        },
        &[4, 3],
        5,
    );
    let r = b.push(Instruction::Reshape { input: t }, &[2, 3], 5);
    let c1 = b.push(
        Instruction::Concat {
            inputs: vec![x, r],
            axis: 1,
        },
        &[2, 6],
        5,
    );
    for v in [t, pad, c0, r, c1] {
        b.output(v);
    }
    let p = b.build();
    let y = execute(&p, &ClearEngine, vec![arr(&[2, 3], vec![1, 2, 3, 4, 5, 6])]).unwrap();
    assert_eq!(y[0], arr(&[3, 2], vec![1, 4, 2, 5, 3, 6]));
    assert_eq!(
        y[1],
        arr(&[3, 5], vec![7, 7, 7, 7, 7, 1, 2, 3, 7, 7, 4, 5, 6, 7, 7])
    );
    assert_eq!(y[2], arr(&[4, 3], vec![1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]));
    assert_eq!(y[3], arr(&[2, 3], vec![1, 4, 2, 5, 3, 6]));
    assert_eq!(y[4], arr(&[2, 6], vec![1, 2, 3, 1, 4, 2, 4, 5, 6, 5, 3, 6]));
}

#[test]
fn transpose_of_rank_3() {
    let x: Vec<i64> = (0..24).collect();
    let y = run1(
        &[2, 3, 4],
        x.clone(),
        0,
        |input| Instruction::Transpose {
            input,
            perm: vec![2, 0, 1],
        },
        &[4, 2, 3],
        0,
    )
    .unwrap();
    let expected = arr(&[2, 3, 4], x)
        .permuted_axes(IxDyn(&[2, 0, 1]))
        .as_standard_layout()
        .into_owned();
    assert_eq!(y, expected);
}

#[test]
fn arithmetic_with_broadcast_constants_and_shared_operands() {
    let mut b = Builder::new();
    let x = b.input(&[2, 3], 8);
    let ac = b.push(
        Instruction::AddConst {
            input: x,
            constant: IntTensor {
                shape: vec![3],
                data: vec![10, 20, 30],
            },
        },
        &[2, 3],
        8,
    );
    let mc = b.push(
        Instruction::MulConst {
            input: ac,
            constant: IntTensor {
                shape: vec![2, 1],
                data: vec![2, -1],
            },
        },
        &[2, 3],
        8,
    );
    let dbl = b.push(Instruction::Add { a: x, b: x }, &[2, 3], 8);
    let sub = b.push(Instruction::Sub { a: mc, b: dbl }, &[2, 3], 8);
    let res = b.push(
        Instruction::Rescale {
            input: sub,
            shift: 3,
        },
        &[2, 3],
        11,
    );
    b.output(res);
    b.output(ac); // an output that is also consumed: must survive
    let p = b.build();
    let y = execute(&p, &ClearEngine, vec![arr(&[2, 3], vec![1, 2, 3, 4, 5, 6])]).unwrap();
    // ac = [[11,22,33],[14,25,36]]; mc = [[22,44,66],[-14,-25,-36]]; dbl = 2x.
    assert_eq!(y[0], arr(&[2, 3], vec![20, 40, 60, -22, -35, -48]));
    assert_eq!(y[1], arr(&[2, 3], vec![11, 22, 33, 14, 25, 36]));
}

#[test]
fn input_count_and_shape_are_checked() {
    let mut b = Builder::new();
    let x = b.input(&[2, 3], 0);
    b.output(x);
    let p = b.build();
    match execute(&p, &ClearEngine, vec![arr(&[3, 2], vec![0; 6])]) {
        Err(RuntimeError::Input { name, message }) => {
            assert_eq!(name, "x0");
            assert!(
                message.contains("[3, 2]") && message.contains("[2, 3]"),
                "{message}"
            );
        }
        other => panic!("expected an input error, got {other:?}"),
    }
    assert!(matches!(
        execute(&p, &ClearEngine, vec![]),
        Err(RuntimeError::Input { .. })
    ));
    assert!(matches!(
        execute(&p, &ClearEngine, vec![arr(&[2, 3], vec![0; 6]); 2]),
        Err(RuntimeError::Input { .. })
    ));
}

#[test]
fn quantize_inputs_rounds_clamps_and_rejects_bad_values() {
    let mut b = Builder::new();
    let x = b.input(&[4], 0);
    b.output(x);
    let mut p = b.build();
    p.inputs[0].quantization = QParams {
        scale: 0.5,
        zero_point: 3,
        bits: 4,
        signed: false,
    };
    let real = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.25f32, 0.75, -10.0, 100.0]).unwrap();
    // 0.5 -> 0 (ties to even) + 3; 1.5 -> 2 + 3; clamped to [0, 15].
    let q = quantize_inputs(&p, std::slice::from_ref(&real)).unwrap();
    assert_eq!(q[0], arr(&[4], vec![3, 5, 0, 15]));
    p.outputs[0].scale = 0.5;
    p.outputs[0].zero_point = 3;
    let back = dequantize_outputs(&p, &q);
    assert_eq!(back[0].as_slice().unwrap(), &[0.0, 1.0, -1.5, 6.0]);
    let ints = run_clear_integers(&p, std::slice::from_ref(&real)).unwrap();
    assert_eq!(ints[0], q[0]);
    assert_eq!(run_clear(&p, &[real]).unwrap(), back);

    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let v = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0, 1.0, bad, 2.0]).unwrap();
        match quantize_inputs(&p, &[v]) {
            Err(RuntimeError::Input { name, message }) => {
                assert_eq!(name, "x0");
                assert!(message.contains("[2]"), "{message}");
            }
            other => panic!("expected an input error for {bad}, got {other:?}"),
        }
    }
    let wrong = ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![0.0f32; 4]).unwrap();
    assert!(matches!(
        quantize_inputs(&p, &[wrong]),
        Err(RuntimeError::Input { .. })
    ));
    assert!(matches!(
        quantize_inputs(&p, &[]),
        Err(RuntimeError::Input { .. })
    ));
}

/// A valid program exercising most instructions; `validate` must accept it.
fn reference_program() -> Program {
    let mut b = Builder::new();
    let relu = relu_lut(4);
    let d = relu.input_delta_log2();
    let x = b.input(&[1, 2, 4, 4], d);
    let conv = b.push(
        Instruction::Conv {
            input: x,
            weights: vec![1; 2 * 2 * 3 * 3],
            weight_shape: vec![2, 2, 3, 3],
            bias: vec![0, 1],
            window: window(&[3, 3], &[1, 1], &[(1, 1), (1, 1)]),
            group: 1,
        },
        &[1, 2, 4, 4],
        d,
    );
    let mp = b.push(
        Instruction::MaxPool {
            input: conv,
            window: window(&[2, 2], &[2, 2], &[(0, 0), (0, 0)]),
            relu: relu.clone(),
        },
        &[1, 2, 2, 2],
        d,
    );
    let r = b.push(Instruction::Reshape { input: mp }, &[1, 8], d);
    let dense = b.push(
        Instruction::Dense {
            input: r,
            weights: vec![1; 8 * 3],
            in_features: 8,
            out_features: 3,
            bias: vec![0; 3],
        },
        &[1, 3],
        d,
    );
    let t = b.push(
        Instruction::Tlu {
            input: dense,
            lut: relu,
        },
        &[1, 3],
        d,
    );
    b.output(t);
    b.build()
}

fn expect_invalid(p: &Program, instruction: usize, what: &str) {
    match p.validate() {
        Err(RuntimeError::InvalidCircuit {
            instruction: i,
            message,
            ..
        }) => assert_eq!(i, instruction, "{what}: {message}"),
        other => panic!("{what}: expected InvalidCircuit, got {other:?}"),
    }
    // Execution validates first, so it fails the same way instead of panicking.
    let shape = p.inputs.first().map_or(vec![0], |s| s.shape.clone());
    let n: usize = shape.iter().product();
    let res = execute(p, &ClearEngine, vec![arr(&shape, vec![0; n])]);
    assert!(
        matches!(res, Err(RuntimeError::InvalidCircuit { .. })),
        "{what}: {res:?}"
    );
}

#[test]
fn validate_accepts_a_good_program_and_rejects_broken_ones() {
    let good = reference_program();
    good.validate().unwrap();
    let y = execute(&good, &ClearEngine, vec![arr(&[1, 2, 4, 4], vec![0; 32])]).unwrap();
    assert_eq!(y[0].shape(), &[1, 3]);

    let mut cases: Vec<(usize, &str, Program)> = vec![];
    let mut case = |i: usize, what: &'static str, f: &dyn Fn(&mut Program)| {
        let mut p = reference_program();
        f(&mut p);
        cases.push((i, what, p));
    };
    case(1, "operand from the future", &|p| {
        if let Instruction::Conv { input, .. } = &mut p.instructions[1] {
            *input = 3;
        }
    });
    case(1, "operand out of range", &|p| {
        if let Instruction::Conv { input, .. } = &mut p.instructions[1] {
            *input = 99;
        }
    });
    case(1, "wrong conv output shape", &|p| {
        p.values[1].shape = vec![1, 2, 3, 3]
    });
    case(1, "conv weight count", &|p| {
        if let Instruction::Conv { weights, .. } = &mut p.instructions[1] {
            weights.pop();
        }
    });
    case(1, "conv bias count", &|p| {
        if let Instruction::Conv { bias, .. } = &mut p.instructions[1] {
            bias.push(0);
        }
    });
    case(1, "conv group", &|p| {
        if let Instruction::Conv { group, .. } = &mut p.instructions[1] {
            *group = 0;
        }
    });
    case(1, "zero stride", &|p| {
        if let Instruction::Conv { window, .. } = &mut p.instructions[1] {
            window.strides[0] = 0;
        }
    });
    case(1, "window rank", &|p| {
        if let Instruction::Conv { window, .. } = &mut p.instructions[1] {
            window.pads.pop();
        }
    });
    case(1, "huge padding", &|p| {
        if let Instruction::Conv { window, .. } = &mut p.instructions[1] {
            window.pads[0] = (usize::MAX, 1);
        }
    });
    case(2, "max pool window all padding", &|p| {
        if let Instruction::MaxPool { window, .. } = &mut p.instructions[2] {
            window.pads = vec![(2, 0), (0, 0)];
            window.kernel = vec![2, 2];
            window.strides = vec![1, 2];
        }
        p.values[2].shape = vec![1, 2, 5, 2];
    });
    case(2, "relu delta", &|p| {
        if let Instruction::MaxPool { relu, .. } = &mut p.instructions[2] {
            relu.precision = 5;
            relu.tables[0].push(0);
        }
    });
    case(3, "reshape element count", &|p| {
        p.values[3].shape = vec![1, 9]
    });
    case(4, "dense weights", &|p| {
        if let Instruction::Dense { weights, .. } = &mut p.instructions[4] {
            weights.push(1);
        }
    });
    case(4, "dense in_features", &|p| {
        if let Instruction::Dense { in_features, .. } = &mut p.instructions[4] {
            *in_features = 7;
        }
    });
    case(4, "operand delta", &|p| p.values[4].delta_log2 = 40);
    case(5, "oversized table", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.tables[0] = vec![0; 17];
        }
    });
    case(5, "empty table", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.tables[0].clear();
        }
    });
    case(5, "no tables", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.tables.clear();
        }
    });
    case(5, "lut delta", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.rounding = Some(Rounding {
                shift: 1,
                mode: RoundingMode::Exact,
            });
        }
    });
    case(5, "precision + shift > 62", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.rounding = Some(Rounding {
                shift: u32::MAX - 2,
                mode: RoundingMode::Approximate,
            });
        }
    });
    case(5, "lut axis beyond rank", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.axis = Some(2);
        }
    });
    case(5, "too few per-channel tables", &|p| {
        if let Instruction::Tlu { lut, .. } = &mut p.instructions[5] {
            lut.axis = Some(1);
        }
    });
    case(5, "delta beyond 63", &|p| p.values[5].delta_log2 = 64);
    case(5, "huge shape", &|p| {
        p.values[5].shape = vec![1 << 20, 1 << 20]
    });
    case(5, "overflowing shape", &|p| {
        p.values[5].shape = vec![usize::MAX, usize::MAX]
    });
    case(0, "input index", &|p| {
        p.instructions[0] = Instruction::Input { index: 1 }
    });
    case(0, "input shape", &|p| p.values[0].shape = vec![1, 2, 4, 5]);
    case(0, "output value", &|p| p.outputs[0].value = 6);
    case(0, "input bits", &|p| p.inputs[0].quantization.bits = 0);
    for (i, what, p) in &cases {
        expect_invalid(p, *i, what);
    }

    // Binary, constant, layout and concat mistakes.
    let mut b = Builder::new();
    let x = b.input(&[2, 3], 4);
    let y = b.input(&[3, 2], 4);
    let bad = [
        (Instruction::Add { a: x, b: y }, vec![2, 3], 4, "add shapes"),
        (Instruction::Sub { a: x, b: x }, vec![2, 3], 5, "sub delta"),
        (
            Instruction::AddConst {
                input: x,
                constant: IntTensor {
                    shape: vec![2],
                    data: vec![1, 2],
                },
            },
            vec![2, 3],
            4,
            "constant broadcast",
        ),
        (
            Instruction::MulConst {
                input: x,
                constant: IntTensor {
                    shape: vec![3],
                    data: vec![1, 2],
                },
            },
            vec![2, 3],
            4,
            "constant data length",
        ),
        (
            Instruction::Transpose {
                input: x,
                perm: vec![0, 0],
            },
            vec![2, 2],
            4,
            "perm",
        ),
        (
            Instruction::Pad {
                input: x,
                pads: vec![(1, 1)],
                value: 0,
            },
            vec![4, 3],
            4,
            "pad rank",
        ),
        (
            Instruction::Concat {
                inputs: vec![x, y],
                axis: 0,
            },
            vec![5, 3],
            4,
            "concat shapes",
        ),
        (
            Instruction::Concat {
                inputs: vec![x],
                axis: 2,
            },
            vec![2, 3],
            4,
            "concat axis",
        ),
        (
            Instruction::Concat {
                inputs: vec![],
                axis: 0,
            },
            vec![0],
            4,
            "concat of nothing",
        ),
        (
            Instruction::Rescale { input: x, shift: 2 },
            vec![2, 3],
            5,
            "rescale delta",
        ),
    ];
    for (ins, shape, delta, what) in bad {
        let mut p = Program {
            inputs: b.p.inputs.clone(),
            outputs: vec![],
            values: b.p.values.clone(),
            instructions: b.p.instructions.clone(),
        };
        p.instructions.push(ins);
        p.values.push(ValueInfo {
            shape,
            min: 0,
            max: 0,
            delta_log2: delta,
            noise_factor: 1.0,
        });
        match p.validate() {
            Err(RuntimeError::InvalidCircuit { instruction: 2, .. }) => {}
            other => panic!("{what}: expected InvalidCircuit at 2, got {other:?}"),
        }
    }
}

#[test]
fn listing_is_stable() {
    let p = reference_program();
    let text = p.to_string();
    let expected = "\
program {
  input #0 'x0' [1,2,4,4] scale=1e0 zp=0 bits=16s
  %0 = Input(#0) : [1,2,4,4] [-1000,1000] d=59 a=1
  %1 = Conv(%0) w[2,2,3,3]={len 36, min 1, max 1, fnv 6cc8bd39} b=[0, 1] k=[3,3] s=[1,1] dil=[1,1] pads=[1:1,1:1] group=1 : [1,2,4,4] [-1000,1000] d=59 a=1
  %2 = MaxPool(%1) k=[2,2] s=[2,2] dil=[1,1] pads=[0:0,0:0] relu=lut{min=-8 p=4 round=none axis=- tables=1x16 [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]} : [1,2,2,2] [-1000,1000] d=59 a=1
  %3 = Reshape(%2) : [1,8] [-1000,1000] d=59 a=1
  %4 = Dense(%3) in=8 out=3 w={len 24, min 1, max 1, fnv 07f3ee9d} b=[0, 0, 0] : [1,3] [-1000,1000] d=59 a=1
  %5 = Tlu(%4) lut{min=-8 p=4 round=none axis=- tables=1x16 [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]} : [1,3] [-1000,1000] d=59 a=1
  output 'y0' = %5 scale=1e0 zp=0
}";
    assert_eq!(text, expected);
}

/// Naive dense: y[r, o] = b[o] + sum_i w[o, i] x[r, i].
fn naive_dense(x: &[i64], w: &[i64], b: &[i64], nin: usize, nout: usize) -> Vec<i64> {
    let rows = x.len() / nin.max(1);
    let mut y = vec![];
    for r in 0..rows {
        for o in 0..nout {
            let mut acc = b[o];
            for i in 0..nin {
                acc += w[o * nin + i] * x[r * nin + i];
            }
            y.push(acc);
        }
    }
    y
}

/// Naive 2-D convolution straight from the definition (int_interp's loop order).
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &ArrayD<i64>,
    w: &ArrayD<i64>,
    b: &[i64],
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [(usize, usize); 2],
    group: usize,
    out: &[usize],
) -> ArrayD<i64> {
    let (cin, cout) = (x.shape()[1], w.shape()[0]);
    let (cin_g, cout_g) = (cin / group, cout / group);
    let mut y = ArrayD::zeros(IxDyn(out));
    for n in 0..out[0] {
        for oc in 0..cout {
            let g = oc / cout_g;
            for oh in 0..out[2] {
                for ow in 0..out[3] {
                    let mut acc = b[oc];
                    for kh in 0..w.shape()[2] {
                        for kw in 0..w.shape()[3] {
                            let ih = (oh * stride[0] + kh * dil[0]) as i64 - pads[0].0 as i64;
                            let iw = (ow * stride[1] + kw * dil[1]) as i64 - pads[1].0 as i64;
                            if ih < 0
                                || iw < 0
                                || ih >= x.shape()[2] as i64
                                || iw >= x.shape()[3] as i64
                            {
                                continue;
                            }
                            for ic in 0..cin_g {
                                acc += w[[oc, ic, kh, kw]]
                                    * x[[n, g * cin_g + ic, ih as usize, iw as usize]];
                            }
                        }
                    }
                    y[[n, oc, oh, ow]] = acc;
                }
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_matches_naive_reference(
        rows in 1usize..4,
        nin in 1usize..6,
        nout in 1usize..5,
        seed in proptest::collection::vec(-20i64..20, 64),
    ) {
        let x: Vec<i64> = (0..rows * nin).map(|i| seed[i % 64] + i as i64 % 3).collect();
        let w: Vec<i64> = (0..nin * nout).map(|i| seed[(7 * i + 3) % 64]).collect();
        let bias: Vec<i64> = (0..nout).map(|i| seed[(5 * i + 1) % 64] * 10).collect();
        let y = run1(
            &[rows, nin],
            x.clone(),
            0,
            |input| Instruction::Dense {
                input,
                weights: w.clone(),
                in_features: nin,
                out_features: nout,
                bias: bias.clone(),
            },
            &[rows, nout],
            0,
        )
        .unwrap();
        prop_assert_eq!(y.into_raw_vec_and_offset().0, naive_dense(&x, &w, &bias, nin, nout));
    }

    #[test]
    fn conv_matches_naive_reference(
        n in 1usize..3,
        groups in 1usize..3,
        cin_g in 1usize..3,
        cout_g in 1usize..3,
        h in 1usize..7,
        wd in 1usize..7,
        kh in 1usize..4,
        kw in 1usize..4,
        sh in 1usize..3,
        sw in 1usize..3,
        dh in 1usize..3,
        dw in 1usize..3,
        pads in proptest::collection::vec(0usize..3, 4),
        seed in proptest::collection::vec(-9i64..10, 97),
    ) {
        let span_h = dh * (kh - 1) + 1;
        let span_w = dw * (kw - 1) + 1;
        let (ph, pw) = (h + pads[0] + pads[1], wd + pads[2] + pads[3]);
        prop_assume!(ph >= span_h && pw >= span_w);
        let out_h = (ph - span_h) / sh + 1;
        let out_w = (pw - span_w) / sw + 1;
        let (cin, cout) = (groups * cin_g, groups * cout_g);
        let xs = [n, cin, h, wd];
        let ws = [cout, cin_g, kh, kw];
        let xlen: usize = xs.iter().product();
        let wlen: usize = ws.iter().product();
        let x: Vec<i64> = (0..xlen).map(|i| seed[i % 97]).collect();
        let w: Vec<i64> = (0..wlen).map(|i| seed[(3 * i + 11) % 97]).collect();
        let bias: Vec<i64> = (0..cout).map(|i| seed[(i + 50) % 97]).collect();
        let out = [n, cout, out_h, out_w];
        let y = run1(
            &xs,
            x.clone(),
            0,
            |input| Instruction::Conv {
                input,
                weights: w.clone(),
                weight_shape: ws.to_vec(),
                bias: bias.clone(),
                window: Window {
                    kernel: vec![kh, kw],
                    strides: vec![sh, sw],
                    dilations: vec![dh, dw],
                    pads: vec![(pads[0], pads[1]), (pads[2], pads[3])],
                },
                group: groups,
            },
            &out,
            0,
        )
        .unwrap();
        let expected = naive_conv(
            &arr(&xs, x),
            &arr(&ws, w),
            &bias,
            [sh, sw],
            [dh, dw],
            [(pads[0], pads[1]), (pads[2], pads[3])],
            groups,
            &out,
        );
        prop_assert_eq!(y, expected);
    }
}

#[test]
fn non_standard_layout_inputs_are_read_in_logical_order() {
    let x = arr(&[3, 2], vec![1, 4, 2, 5, 3, 6]).reversed_axes(); // logically [[1,2,3],[4,5,6]]
    assert!(!x.is_standard_layout());
    let mut b = Builder::new();
    let i = b.input(&[2, 3], 0);
    let o = b.push(
        Instruction::Dense {
            input: i,
            weights: vec![1, 10, 100],
            in_features: 3,
            out_features: 1,
            bias: vec![0],
        },
        &[2, 1],
        0,
    );
    b.output(o);
    let y = execute(&b.build(), &ClearEngine, vec![x]).unwrap();
    assert_eq!(y[0], arr(&[2, 1], vec![321, 654]));
}

/// Applies mutation `which` with parameter `v` to the reference program.
fn mutate(p: &mut Program, which: usize, v: usize) {
    let n = p.instructions.len();
    let target = v % n;
    match which {
        0 => {
            let dims = p.values[target].shape.len();
            if dims > 0 {
                p.values[target].shape[v % dims] = v;
            }
        }
        1 => p.values[target].shape.push(v),
        2 => p.values[target].delta_log2 = v as u32,
        3 => match &mut p.instructions[target] {
            Instruction::Conv { input, .. }
            | Instruction::MaxPool { input, .. }
            | Instruction::Dense { input, .. }
            | Instruction::Reshape { input }
            | Instruction::Tlu { input, .. } => *input = v,
            Instruction::Input { index } => *index = v,
            _ => {}
        },
        4 => match &mut p.instructions[target] {
            Instruction::Conv { window, .. } | Instruction::MaxPool { window, .. } => match v % 4 {
                0 => window.kernel[0] = v,
                1 => window.strides[1] = v,
                2 => window.dilations[0] = v,
                _ => window.pads[1].1 = v,
            },
            Instruction::Dense { in_features, .. } => *in_features = v,
            _ => {}
        },
        5 => match &mut p.instructions[target] {
            Instruction::Conv {
                weight_shape,
                group,
                ..
            } => {
                weight_shape[v % 4] = v;
                *group = v % 3;
            }
            Instruction::Dense { out_features, .. } => *out_features = v,
            Instruction::Tlu { lut, .. } | Instruction::MaxPool { relu: lut, .. } => match v % 3 {
                0 => lut.precision = v as u32,
                1 => lut.axis = Some(v),
                _ => lut.input_min = i64::MIN + v as i64,
            },
            _ => {}
        },
        _ => p.outputs[0].value = v,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a hostile file changes, execution returns (an error or a result), never panics.
    #[test]
    fn corrupted_programs_never_panic(
        muts in proptest::collection::vec(
            (0usize..7, prop_oneof![
                0usize..10,
                Just(63usize),
                Just(64usize),
                Just(1usize << 31),
                Just(usize::MAX),
                Just(usize::MAX / 2),
            ]),
            1..4,
        ),
        x in proptest::collection::vec(-3i64..4, 32),
        zeros in any::<bool>(),
    ) {
        // Zeros pass every table, so the later instructions run too.
        let x = if zeros { vec![0; 32] } else { x };
        let mut p = reference_program();
        for (which, v) in muts {
            mutate(&mut p, which, v);
        }
        let _ = p.validate();
        let _ = execute(&p, &ClearEngine, vec![arr(&[1, 2, 4, 4], x)]);
        let _ = p.to_string();
    }
}

/// Live elements of the counting engine below.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An element that counts how many of its kind are alive.
struct Counted(i64);

impl Counted {
    fn new(v: i64) -> Self {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted(v)
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Plain integers in counted elements; records the live count when each lookup starts.
struct Counting {
    at_lookup: Mutex<Vec<usize>>,
}

impl Engine for Counting {
    type Ct = Counted;
    fn trivial(&self, value: i64, _: u32) -> Counted {
        Counted::new(value)
    }
    fn add_assign(&self, acc: &mut Counted, x: &Counted) {
        acc.0 += x.0
    }
    fn sub_assign(&self, acc: &mut Counted, x: &Counted) {
        acc.0 -= x.0
    }
    fn mul_add_assign(&self, acc: &mut Counted, x: &Counted, w: i64) {
        acc.0 += w * x.0
    }
    fn mul_assign(&self, x: &mut Counted, w: i64) {
        x.0 *= w
    }
    fn add_const_assign(&self, x: &mut Counted, c: i64, _: u32) {
        x.0 += c
    }
    fn rescale(&self, _: &mut Counted, _: u32) {}
    fn lookup(
        &self,
        lut: &Lut,
        _: &ValueInfo,
        _: u32,
        inputs: &[&Counted],
        tables: &[usize],
    ) -> Result<Vec<Counted>, RuntimeError> {
        self.at_lookup
            .lock()
            .unwrap()
            .push(LIVE.load(std::sync::atomic::Ordering::SeqCst));
        inputs
            .iter()
            .zip(tables)
            .map(|(x, &t)| {
                lut.read(t, x.0)
                    .map(Counted::new)
                    .ok_or(RuntimeError::NoSuchTable {
                        table: t,
                        count: lut.tables.len(),
                    })
            })
            .collect()
    }
}

#[test]
fn intermediate_tensors_are_freed_after_their_last_reader() {
    let lut = Lut {
        input_min: 0,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i + 1) % 16).collect()],
        axis: None,
        sets: Default::default(),
    };
    let d = lut.input_delta_log2();
    let mut b = Builder::new();
    let mut v = b.input(&[1000], d);
    // A value nobody reads, then a chain of four lookups.
    b.push(Instruction::Reshape { input: v }, &[10, 100], d);
    for _ in 0..4 {
        v = b.push(
            Instruction::Tlu {
                input: v,
                lut: lut.clone(),
            },
            &[1000],
            d,
        );
    }
    b.output(v);
    b.output(v);
    let p = b.build();
    let engine = Counting {
        at_lookup: Mutex::new(vec![]),
    };
    let x: Vec<Counted> = (0..1000).map(|i| Counted::new(i % 12)).collect();
    let y = execute(
        &p,
        &engine,
        vec![ArrayD::from_shape_vec(IxDyn(&[1000]), x).unwrap()],
    )
    .unwrap();
    let got: Vec<i64> = y[1].iter().map(|c| c.0).collect();
    let expected: Vec<i64> = (0..1000).map(|i| (i % 12 + 4) % 16).collect();
    assert_eq!(got, expected);
    // Only the operand of each lookup is alive when it starts: the input, the unread
    // reshape and every earlier link of the chain are gone.
    assert_eq!(engine.at_lookup.into_inner().unwrap(), vec![1000; 4]);
    drop(y);
}
