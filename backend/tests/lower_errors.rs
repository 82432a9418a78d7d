//! Graphs the lowering must refuse, with an error naming the node and op at fault.

use fhec_backend::lower::{lower, LowerError};
use fhec_ir::{BinaryOp, GemmAttrs, Graph, NodeId, Op, QParams, TensorFact, Tlu, UnaryOp};
use ndarray::{ArrayD, IxDyn};

fn q(bits: u32, signed: bool) -> QParams {
    QParams {
        scale: 0.5,
        zero_point: 0,
        bits,
        signed,
    }
}

/// `x` quantised to 4 unsigned bits (range [0, 15]).
fn quantised_input(g: &mut Graph, shape: &[usize]) -> NodeId {
    let x = g.add_input("x", TensorFact::f32(shape));
    g.add_node("x.q", Op::Quantize(q(4, false)), &[x]).unwrap()
}

fn finish(g: &mut Graph, y: NodeId) -> Graph {
    let out = g
        .add_node("y.dq", Op::Dequantize(q(16, true)), &[y])
        .unwrap();
    g.set_outputs(vec![out]);
    g.verify().unwrap();
    g.clone()
}

fn int_const(g: &mut Graph, name: &str, shape: &[usize], data: Vec<i64>) -> NodeId {
    let a = ArrayD::from_shape_vec(IxDyn(shape), data).unwrap();
    g.add_node(name, Op::IntConst(a), &[]).unwrap()
}

fn message(e: &LowerError) -> String {
    e.to_string()
}

#[test]
fn product_of_two_encrypted_tensors_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 4]);
    let y = g
        .add_node("/sq/Mul", Op::Binary(BinaryOp::Mul), &[x, x])
        .unwrap();
    let g = finish(&mut g, y);
    let e = lower(&g).unwrap_err();
    assert!(matches!(e, LowerError::Unsupported { .. }), "{e:?}");
    let m = message(&e);
    assert!(
        m.contains("node '/sq/Mul' (Mul)") && m.contains("two encrypted tensors"),
        "{m}"
    );
}

#[test]
fn broadcast_sum_of_encrypted_tensors_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 4]);
    let w = int_const(&mut g, "w", &[4, 1], vec![1, 2, 3, 4]);
    let gemm = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    };
    let s = g.add_node("/sum/Gemm", Op::Gemm(gemm), &[x, w]).unwrap();
    let y = g
        .add_node("/2/Add", Op::Binary(BinaryOp::Add), &[x, s])
        .unwrap();
    let g = finish(&mut g, y);
    let m = message(&lower(&g).unwrap_err());
    assert!(
        m.contains("node '/2/Add' (Add)") && m.contains("different shapes [1, 4] and [1, 1]"),
        "{m}"
    );
}

#[test]
fn table_that_misses_part_of_its_input_range_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 4]);
    // Covers [0, 7] of the input range [0, 15].
    let t = Tlu {
        input_min: 0,
        rounding: None,
        tables: vec![(0..8).collect()],
        axis: None,
    };
    let y = g.add_node("/act/Relu", Op::Tlu(t), &[x]).unwrap();
    let g = finish(&mut g, y);
    let e = lower(&g).unwrap_err();
    match &e {
        LowerError::TableDomain {
            node,
            min,
            max,
            len,
            ..
        } => {
            assert_eq!(node, "/act/Relu");
            assert_eq!((*min, *max, *len), (0, 15, 8));
        }
        other => panic!("expected a table domain error, got {other:?}"),
    }
    assert!(message(&e).contains("node '/act/Relu' (Tlu)"));
}

#[test]
fn rounded_table_that_starts_too_high_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 4]);
    // Rounding by 2 bits from input_min 3: the value 0 is 3 below, more than half a step.
    let t = Tlu {
        input_min: 3,
        rounding: Some(fhec_ir::Rounding {
            shift: 2,
            mode: fhec_ir::RoundingMode::Exact,
        }),
        tables: vec![vec![0; 8]],
        axis: None,
    };
    let y = g.add_node("/r/Tlu", Op::Tlu(t), &[x]).unwrap();
    let g = finish(&mut g, y);
    assert!(
        matches!(lower(&g).unwrap_err(), LowerError::TableDomain { ref node, .. } if node == "/r/Tlu")
    );
}

#[test]
fn real_op_between_integer_ops_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 4]);
    let r = g
        .add_node("x.dq", Op::Dequantize(q(4, false)), &[x])
        .unwrap();
    let s = g
        .add_node("/s/Sigmoid", Op::Unary(UnaryOp::Sigmoid), &[r])
        .unwrap();
    let y = g
        .add_node("/s/Quantize", Op::Quantize(q(4, false)), &[s])
        .unwrap();
    let g = finish(&mut g, y);
    let m = message(&lower(&g).unwrap_err());
    assert!(m.contains("/s/Sigmoid") && m.contains("real-valued"), "{m}");
}

#[test]
fn gemm_with_alpha_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 2]);
    let w = int_const(&mut g, "w", &[2, 2], vec![1, 0, 0, 1]);
    let gemm = GemmAttrs {
        alpha: 2.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    };
    let y = g.add_node("/fc/Gemm", Op::Gemm(gemm), &[x, w]).unwrap();
    let g = finish(&mut g, y);
    let m = message(&lower(&g).unwrap_err());
    assert!(
        m.contains("node '/fc/Gemm' (Gemm)") && m.contains("alpha"),
        "{m}"
    );
}

#[test]
fn input_quantised_twice_is_refused() {
    let mut g = Graph::new();
    let x = g.add_input("pixels", TensorFact::f32([1, 2]));
    let a = g.add_node("a", Op::Quantize(q(4, false)), &[x]).unwrap();
    let b = g.add_node("b", Op::Quantize(q(3, false)), &[x]).unwrap();
    let y = g.add_node("y", Op::Binary(BinaryOp::Add), &[a, b]).unwrap();
    let g = finish(&mut g, y);
    let e = lower(&g).unwrap_err();
    assert!(
        matches!(&e, LowerError::Input { name, .. } if name == "pixels"),
        "{e:?}"
    );
}

#[test]
fn integer_output_is_refused() {
    let mut g = Graph::new();
    let x = quantised_input(&mut g, &[1, 2]);
    let y = g
        .add_node("/out/Reshape", Op::Reshape { shape: vec![2] }, &[x])
        .unwrap();
    g.set_outputs(vec![y]);
    let e = lower(&g).unwrap_err();
    assert!(
        matches!(&e, LowerError::Output { name, op: "Reshape", .. } if name == "/out/Reshape"),
        "{e:?}"
    );
}
