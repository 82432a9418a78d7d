//! `--prune-method refit`: the removed neuron is the one the others predict best, and the
//! next layer is refitted on the rest. On a hand-built MLP where one hidden neuron is the sum
//! of two others, removing it loses nothing (the outputs stay equal on new inputs), while
//! replacing it by its mean (the other methods) does not; an independent neuron is never the
//! one removed.

use fhec_ir::{interp, Graph, Op, Tensor, TensorFact, UnaryOp};
use fhec_passes::{run_pipeline, PassContext, PassOptions, PruneMethod};
use fhec_testkit::{Lcg, GEMM_TRANS_B};
use ndarray::{arr1, arr2, IxDyn};

/// 3 inputs in [0, 1] -> 4 hidden (Relu, always positive here) -> 2 outputs:
/// h0 = x0 + 1, h1 = x1 + 1, h2 = h0 + h1 (x0 + x1 + 2), h3 = 2 x2 + 0.5 (independent).
fn model() -> Graph {
    let w1 = arr2(&[
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 0.0],
        [0.0, 0.0, 2.0],
    ]);
    let b1 = arr1(&[1.0, 1.0, 2.0, 0.5]);
    let w2 = arr2(&[[0.5, -1.0, 0.3, 1.0], [1.5, 0.25, -0.2, -2.0]]);
    let b2 = arr1(&[0.1, -0.1]);
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, 3]));
    let mut konst = |name: &str, t: Tensor| g.add_node(name, Op::Const(t), &[]).unwrap();
    let (w1, b1) = (konst("w1", w1.into_dyn()), konst("b1", b1.into_dyn()));
    let (w2, b2) = (konst("w2", w2.into_dyn()), konst("b2", b2.into_dyn()));
    let h = g
        .add_node("fc1", Op::Gemm(GEMM_TRANS_B), &[x, w1, b1])
        .unwrap();
    let h = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[h]).unwrap();
    let y = g
        .add_node("fc2", Op::Gemm(GEMM_TRANS_B), &[h, w2, b2])
        .unwrap();
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    g
}

/// `n` inputs in [0, 1) from the raw LCG started at `seed`.
fn inputs(n: usize, seed: u64) -> Vec<Vec<Tensor>> {
    let mut rng = Lcg::with_state(seed);
    let mut next = || rng.uniform(0.0, 1.0);
    (0..n)
        .map(|_| {
            let v = vec![next(), next(), next()];
            vec![Tensor::from_shape_vec(IxDyn(&[1, 3]), v).unwrap()]
        })
        .collect()
}

fn prune(method: PruneMethod, rate: f32) -> Graph {
    let mut g = model();
    let mut ctx = PassContext::new(PassOptions {
        prune_rates: vec![rate],
        prune_method: method,
        ..Default::default()
    });
    ctx.calibration_inputs = inputs(40, 1);
    run_pipeline(&mut g, &mut ctx).unwrap();
    g
}

/// Largest output difference from the original model over fresh inputs.
fn worst_difference(g: &Graph) -> f32 {
    let original = model();
    inputs(50, 99)
        .iter()
        .map(|x| {
            let a = interp::run(&original, x).unwrap();
            let b = interp::run(g, x).unwrap();
            a[0].iter()
                .zip(b[0].iter())
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max)
}

fn hidden_units(g: &Graph) -> usize {
    let fc1 = g.node_ids().find(|&id| g.node(id).name == "fc1").unwrap();
    g.node(fc1).fact.shape[1]
}

#[test]
fn refit_removes_a_redundant_neuron_without_changing_the_outputs() {
    let g = prune(PruneMethod::Refit, 0.25);
    assert_eq!(hidden_units(&g), 3);
    let d = worst_difference(&g);
    assert!(d < 1e-3, "refit changed the outputs by {d}");
    for method in [PruneMethod::ZeroWeights, PruneMethod::Impact] {
        let d = worst_difference(&prune(method, 0.25));
        assert!(
            d > 0.05,
            "{method:?}: mean replacement should lose something, lost {d}"
        );
    }
}

#[test]
fn refit_keeps_the_independent_neuron_longest() {
    // Two of four go: h0, h1, h2 span two dimensions, so one of them and then another goes;
    // h3 (independent, heavily weighted) stays.
    let g = prune(PruneMethod::Refit, 0.5);
    assert_eq!(hidden_units(&g), 2);
    let fc1 = g.node_ids().find(|&id| g.node(id).name == "fc1").unwrap();
    let w1 = g.const_value(g.node_inputs(fc1)[1]).unwrap();
    // The kept rows: one of the dependent ones and h3 = [0, 0, 2].
    let rows: Vec<Vec<f32>> = w1
        .outer_iter()
        .map(|r| r.iter().copied().collect())
        .collect();
    assert!(rows.contains(&vec![0.0, 0.0, 2.0]), "{rows:?}");
    // With x2 independent of x0 + x1, one dependent neuron can only carry their sum's
    // variance: the outputs change, but far less than with means.
    let refit = worst_difference(&g);
    let mean = worst_difference(&prune(PruneMethod::Impact, 0.5));
    assert!(refit < mean, "refit {refit} vs mean {mean}");
}
