//! Quantisation of Add/Sub of two runtime tensors (residual connections) and of Concat of
//! differently quantised inputs: the rule that puts both operands on one grid (which branch
//! pays a lookup) and the integer results against the float graph.

mod common;

use common::{gemm_trans_b, Lcg};
use fhec_ir::{int_interp, interp, BinaryOp, Graph, NodeId, Op, Tensor, TensorFact};
use fhec_passes::quantize::{calibrate, quantize, QuantError, QuantOptions};
use ndarray::{ArrayD, IxDyn};

const WIDTH: usize = 8;
const BITS: u32 = 6;

/// `x @ w.T + b` with seeded weights in [-scale, scale].
fn gemm(g: &mut Graph, name: &str, x: NodeId, seed: u64, scale: f32) -> NodeId {
    let mut rng = Lcg::new(seed);
    let w = rng.tensor(&[WIDTH, WIDTH], -scale, scale);
    let b = rng.tensor(&[WIDTH], -scale, scale);
    let w = g.add_node(format!("{name}.w"), Op::Const(w), &[]).unwrap();
    let b = g.add_node(format!("{name}.b"), Op::Const(b), &[]).unwrap();
    gemm_trans_b(g, name, x, w, b)
}

fn relu(g: &mut Graph, name: &str, x: NodeId) -> NodeId {
    g.add_node(name, Op::Unary(fhec_ir::UnaryOp::Relu), &[x])
        .unwrap()
}

fn binary(g: &mut Graph, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
    g.add_node("residual", Op::Binary(op), &[a, b]).unwrap()
}

fn input(g: &mut Graph) -> NodeId {
    g.add_input("x", TensorFact::f32([1, WIDTH]))
}

fn inputs(n: usize, seed: u64, range: f32) -> Vec<Tensor> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|_| rng.tensor(&[1, WIDTH], -range, range))
        .collect()
}

/// Quantises `g` (inputs uniform in ±`range`, 6 bits) and returns its table count, after
/// checking every output of the integer graph against the float graph on calibration
/// samples (values outside the calibrated range are clipped, by design):
/// the largest error within 10 % and the mean error within 3 % of the output's largest
/// float magnitude (a wrong scale or zero point is off by about the whole span).
fn quantise_and_check(g: &Graph, range: f32) -> usize {
    let cal: Vec<Vec<Tensor>> = inputs(200, 1, range).into_iter().map(|x| vec![x]).collect();
    let calibration = calibrate(g, &cal).unwrap();
    let q = quantize(g, &calibration, &QuantOptions::uniform(BITS))
        .unwrap_or_else(|e| panic!("quantise: {e}"));
    let samples = inputs(50, 1, range);
    for o in 0..g.outputs().len() {
        let (mut span, mut max_err, mut sum_err, mut n) = (1e-3f32, 0f32, 0f32, 0usize);
        for x in &samples {
            let want = interp::run(g, std::slice::from_ref(x)).unwrap();
            let got = int_interp::run(&q.graph, std::slice::from_ref(x)).unwrap();
            for (a, b) in want[o].iter().zip(got[o].iter()) {
                span = span.max(a.abs());
                max_err = max_err.max((a - b).abs());
                sum_err += (a - b).abs();
                n += 1;
            }
        }
        let mean_err = sum_err / n as f32;
        assert!(
            max_err <= 0.1 * span && mean_err <= 0.03 * span,
            "output {o}: max error {max_err}, mean {mean_err}, span {span}\n{}",
            fhec_ir::print::print_graph(&q.graph)
        );
    }
    tables(&q.graph)
}

fn tables(g: &Graph) -> usize {
    g.node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::Tlu(_)))
        .count()
}

#[test]
fn a_pending_branch_writes_on_the_skip_grid_without_an_extra_lookup() {
    // x ± relu(Gemm(x)) and back: the branch's lookup writes at the input's scale: one
    // table. (x's zero point is not 0: a wrong sign of the combined zero point shows.)
    for op in [BinaryOp::Add, BinaryOp::Sub] {
        for skip_first in [true, false] {
            let mut g = Graph::new();
            let x = input(&mut g);
            let h = gemm(&mut g, "fc", x, 3, 0.5);
            let r = relu(&mut g, "relu", h);
            let y = if skip_first {
                binary(&mut g, op, x, r)
            } else {
                binary(&mut g, op, r, x)
            };
            g.set_outputs(vec![y]);
            assert_eq!(quantise_and_check(&g, 1.0), 1, "{op:?}");
        }
    }
}

#[test]
fn two_integer_operands_on_different_grids_requantise_the_finer_one() {
    // relu(fc1(x)) is an integer tensor before the Add (fc2 consumed it first) on a coarser
    // grid than x: x is requantised (one table) onto it.
    let mut g = Graph::new();
    let x = input(&mut g);
    let h = gemm(&mut g, "fc1", x, 4, 1.0);
    let r = relu(&mut g, "relu", h);
    let other = gemm(&mut g, "fc2", r, 5, 0.5);
    let y = binary(&mut g, BinaryOp::Add, r, x);
    g.set_outputs(vec![y, other]);
    assert_eq!(quantise_and_check(&g, 1.0), 2);
}

#[test]
fn two_pending_branches_write_on_the_sums_grid() {
    let mut g = Graph::new();
    let x = input(&mut g);
    let a = gemm(&mut g, "fc1", x, 6, 0.5);
    let a = relu(&mut g, "relu1", a);
    let b = gemm(&mut g, "fc2", x, 7, 0.5);
    let b = relu(&mut g, "relu2", b);
    let y = binary(&mut g, BinaryOp::Sub, a, b);
    g.set_outputs(vec![y]);
    assert_eq!(quantise_and_check(&g, 1.0), 2);
}

#[test]
fn a_branch_far_wider_than_the_skip_moves_both_to_the_sums_grid() {
    // Inputs within ±0.01, a branch reaching ~100: at the input's scale the sum would need
    // ~20 bits, so the branch writes at the Add's scale and x pays a requantising table.
    let mut g = Graph::new();
    let x = input(&mut g);
    let h = gemm(&mut g, "fc", x, 8, 1000.0);
    let r = relu(&mut g, "relu", h);
    let y = binary(&mut g, BinaryOp::Add, x, r);
    g.set_outputs(vec![y]);
    assert_eq!(quantise_and_check(&g, 0.01), 2);
}

#[test]
fn concat_of_differently_quantised_inputs_shares_one_grid() {
    // Concat(relu(fc1(x)) [an integer tensor already], x): x is requantised.
    let mut g = Graph::new();
    let x = input(&mut g);
    let h = gemm(&mut g, "fc1", x, 9, 1.0);
    let r = relu(&mut g, "relu", h);
    let other = gemm(&mut g, "fc2", r, 10, 0.5);
    let y = g.add_node("cat", Op::Concat { axis: 1 }, &[r, x]).unwrap();
    g.set_outputs(vec![y, other]);
    assert_eq!(quantise_and_check(&g, 1.0), 2);
    // Concat(x, relu(fc(x))) [pending]: the branch writes on x's grid, no extra table.
    let mut g = Graph::new();
    let x = input(&mut g);
    let h = gemm(&mut g, "fc", x, 11, 0.5);
    let r = relu(&mut g, "relu", h);
    let y = g.add_node("cat", Op::Concat { axis: 1 }, &[x, r]).unwrap();
    g.set_outputs(vec![y]);
    assert_eq!(quantise_and_check(&g, 1.0), 1);
}

#[test]
fn broadcasting_two_runtime_tensors_is_refused_naming_the_node() {
    let mut g = Graph::new();
    let x = input(&mut g);
    let h = gemm(&mut g, "fc", x, 12, 0.5);
    let one = g
        .add_node(
            "one",
            Op::Const(ArrayD::from_shape_vec(IxDyn(&[WIDTH, 1]), vec![0.1; WIDTH]).unwrap()),
            &[],
        )
        .unwrap();
    let col = g.add_node("col", Op::MatMul, &[h, one]).unwrap();
    let y = binary(&mut g, BinaryOp::Add, x, col);
    g.set_outputs(vec![y]);
    let cal: Vec<Vec<Tensor>> = inputs(20, 1, 1.0).into_iter().map(|x| vec![x]).collect();
    let calibration = calibrate(&g, &cal).unwrap();
    let err = quantize(&g, &calibration, &QuantOptions::uniform(BITS)).unwrap_err();
    match err {
        QuantError::Unsupported { node, message, .. } => {
            assert_eq!(node, "residual");
            assert!(message.contains("different shapes"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
}
