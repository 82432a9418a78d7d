//! Graphs the lowering must refuse, with an error naming the node and op at fault (and one
//! it must accept: a table narrower than its input's range).

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

/// A table narrower than its input's range (as `--ranges observed` builds them) lowers; the
/// clear engine then reads outside the domain what the bootstrap reads (the negacyclic wrap),
/// and agrees with the integer interpreter on every input value.
#[test]
fn table_narrower_than_its_input_lowers_and_wraps() {
    for rounding in [
        None,
        Some(fhec_ir::Rounding {
            shift: 1,
            mode: fhec_ir::RoundingMode::Exact,
        }),
    ] {
        let mut g = Graph::new();
        let x = quantised_input(&mut g, &[1, 16]);
        // Covers [2, 6] of the input range [0, 15] (3 bits: 8 boxes, 16 with the padding).
        let t = Tlu {
            input_min: 2,
            rounding,
            tables: vec![vec![1, 2, 3, 4, 5]],
            axis: None,
        };
        let y = g.add_node("/act/Relu", Op::Tlu(t), &[x]).unwrap();
        let g = finish(&mut g, y);
        let program = lower(&g).unwrap();
        // Every quantised input 0..=15 once (scale 0.5).
        let input =
            ArrayD::from_shape_vec(IxDyn(&[1, 16]), (0..16).map(|v| v as f32 * 0.5).collect())
                .unwrap();
        let clear = fhec_runtime::clear::run_clear_integers(&program, std::slice::from_ref(&input))
            .unwrap();
        let (interp, outside) = fhec_ir::int_interp::run_counting(&g, &[input]).unwrap();
        let interp: Vec<i64> = interp[0]
            .iter()
            .map(|&v| (v / 0.5).round() as i64)
            .collect();
        let clear: Vec<i64> = clear[0].iter().copied().collect();
        let expected: Vec<i64> = match rounding {
            // Offsets -2..=13: -2, -1 read the padding half (box 14, 15: past the table, 0);
            // 0..=4 the entries; 5..=7 past the end (0); 8..=12 the negated entries; 13 = -0.
            None => vec![0, 0, 1, 2, 3, 4, 5, 0, 0, 0, -1, -2, -3, -4, -5, 0],
            // Rounded offsets floor((o + 1) / 2): -2 -> -1 (box 15: -entry 7, past the end),
            // -1 -> 0, ..., 13 -> 7 (past the end).
            Some(_) => vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0, 0, 0, 0],
        };
        assert_eq!(clear, expected, "clear engine, rounding {rounding:?}");
        assert_eq!(
            interp, expected,
            "integer interpreter, rounding {rounding:?}"
        );
        // Inside the domain: inputs 2..=6 without rounding, 1..=10 rounded by one bit.
        let inside = match rounding {
            None => 5,
            Some(_) => 10,
        };
        assert_eq!(outside, 16 - inside);
    }
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
