//! Integer-typed graph inputs through the pipeline with quantisation: an int32 input cast to
//! float is quantised like a real input and the compiled graph still checks that it is fed
//! integers; integer arithmetic (whose wrap-around and truncating division a table over
//! reals would not keep) and integer graph outputs are refused, naming the node and type.

use fhec_ir::interp::InterpError;
use fhec_ir::TensorFact;
use fhec_ir::{int_interp, interp, BinaryOp, DType, GemmAttrs, Graph, NodeId, Op, Tensor};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{run_pipeline, PassContext, PassOptions};
use fhec_testkit::tensor as t;

fn konst(g: &mut Graph, name: &str, v: Tensor) -> NodeId {
    g.add_node(name, Op::Const(v), &[]).unwrap()
}

/// `x [1,4] (integer) -> [Div by 3 ->] Cast to f32 -> Gemm [4,2] -> [Cast to i8]`.
fn model(dtype: DType, divide: bool, int_output: bool) -> Graph {
    let mut g = Graph::new();
    let mut x = g.add_input("x", TensorFact::new(dtype, [1, 4]));
    if divide {
        let three = konst(&mut g, "three", t(&[], &[3.0]));
        x = g
            .add_node("x_div_3", Op::Binary(BinaryOp::Div), &[x, three])
            .unwrap();
    }
    let xf = g
        .add_node("to_float", Op::Cast { to: DType::F32 }, &[x])
        .unwrap();
    let w = konst(
        &mut g,
        "w",
        t(&[4, 2], &[0.5, -0.25, 0.125, 1.0, -0.75, 0.5, 0.25, 0.0]),
    );
    let b = konst(&mut g, "b", t(&[2], &[1.0, -2.0]));
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    };
    let mut y = g.add_node("fc", Op::Gemm(attrs), &[xf, w, b]).unwrap();
    if int_output {
        y = g
            .add_node("to_int", Op::Cast { to: DType::I8 }, &[y])
            .unwrap();
    }
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    g
}

/// Integer samples in [-50, 50].
fn samples(n: usize) -> Vec<Vec<Tensor>> {
    (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..4)
                .map(|k| ((i * 37 + k * 11) % 101) as f32 - 50.0)
                .collect();
            vec![t(&[1, 4], &v)]
        })
        .collect()
}

fn compile(g: &mut Graph) -> Result<(), String> {
    let mut ctx = PassContext::new(PassOptions {
        prune_threshold: 0.0,
        quantization: Some(QuantOptions::uniform(8)),
        ..Default::default()
    });
    ctx.calibration_inputs = samples(64);
    run_pipeline(g, &mut ctx).map_err(|e| e.to_string())
}

#[test]
fn int32_input_cast_to_float_is_quantised_like_a_real_one() {
    let float = model(DType::I32, false, false);
    let mut q = float.clone();
    compile(&mut q).unwrap();
    assert_eq!(q.node(q.inputs()[0]).fact.dtype, DType::I32);
    for s in samples(20) {
        let want = interp::run(&float, &s).unwrap();
        let got = int_interp::run(&q, &s).unwrap();
        for (g, w) in got[0].iter().zip(want[0].iter()) {
            assert!((g - w).abs() < 0.5, "quantised {g} vs float {w}");
        }
    }
    // The compiled graph still takes integers only.
    let e = int_interp::run(&q, &[t(&[1, 4], &[1.0, 2.5, 3.0, 4.0])]).unwrap_err();
    assert!(matches!(e, InterpError::NotInteger { index: 1, .. }), "{e}");
}

#[test]
fn integer_arithmetic_is_refused_by_quantisation() {
    let mut g = model(DType::I8, true, false);
    // The float graph computes the truncating division...
    let y = interp::run(&g, &[t(&[1, 4], &[-7.0, 7.0, 2.0, -2.0])]).unwrap();
    let want = interp::run(
        &model(DType::I8, false, false),
        &[t(&[1, 4], &[-2.0, 2.0, 0.0, 0.0])],
    )
    .unwrap();
    assert_eq!(y, want);
    // ... which a table over reals would not: refused, naming the node and the type.
    let e = compile(&mut g).unwrap_err();
    assert!(
        e.contains("x_div_3") && e.contains("i8 arithmetic cannot be quantised"),
        "{e}"
    );
}

#[test]
fn integer_graph_outputs_are_refused_by_quantisation() {
    let mut g = model(DType::I32, false, true);
    let e = compile(&mut g).unwrap_err();
    assert!(
        e.contains("to_int") && e.contains("graph output of type i8"),
        "{e}"
    );
}
