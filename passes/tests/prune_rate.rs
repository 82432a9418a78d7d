//! `--prune-rate --prune-method zeros`: lossy neuron pruning by the zero-weight rule. On a
//! hand-built Gemm -> Relu -> Gemm model the
//! removed neurons are the ones with the most zero weights (ties: smallest incoming L1 norm),
//! and the pruned graph computes exactly the original model with each removed neuron
//! replaced by its mean on the calibration data, computed here by hand.

use fhec_ir::{interp, Graph, Op, Tensor, TensorFact, UnaryOp};
use fhec_passes::{run_pipeline, PassContext, PassOptions, PruneMethod, PrunedLayer};
use fhec_testkit::GEMM_TRANS_B;
use ndarray::{arr1, arr2, Array1, Array2, IxDyn};

/// 3 inputs -> 4 hidden (Relu) -> 2 outputs; torch layout (`[out, in]`).
fn weights() -> (Array2<f32>, Array1<f32>, Array2<f32>, Array1<f32>) {
    let w1 = arr2(&[
        [0.5, -1.0, 0.25], // unit 0: no zero, L1 1.75
        [0.0, 0.0, 2.0],   // unit 1: 2 of 3 incoming zero
        [0.0, 0.3, -0.2],  // unit 2: 1 of 3 incoming zero, L1 0.5
        [0.1, 0.1, -0.1],  // unit 3: no zero, L1 0.3
    ]);
    let b1 = arr1(&[0.1, 0.2, 0.3, 0.4]);
    let w2 = arr2(&[[1.0, 2.0, -1.0, 0.5], [-0.5, 0.0, 1.5, 1.0]]);
    let b2 = arr1(&[0.05, -0.05]);
    (w1, b1, w2, b2)
}

fn model() -> Graph {
    let (w1, b1, w2, b2) = weights();
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

fn sample(v: [f32; 3]) -> Vec<Tensor> {
    vec![Tensor::from_shape_vec(IxDyn(&[1, 3]), v.to_vec()).unwrap()]
}

fn calibration() -> Vec<Vec<Tensor>> {
    [
        [1.0, 0.0, -1.0],
        [0.5, 2.0, 1.0],
        [-1.0, -0.5, 0.25],
        [0.0, 1.0, 2.0],
    ]
    .into_iter()
    .map(sample)
    .collect()
}

fn prune(rates: Vec<f32>, calibration: Vec<Vec<Tensor>>) -> Result<(Graph, PassContext), String> {
    let mut g = model();
    let mut ctx = PassContext::new(PassOptions {
        prune_rates: rates,
        prune_method: PruneMethod::ZeroWeights,
        ..Default::default()
    });
    ctx.calibration_inputs = calibration;
    run_pipeline(&mut g, &mut ctx).map_err(|e| format!("{e:#}"))?;
    Ok((g, ctx))
}

fn relu_hidden(x: &[f32; 3]) -> [f32; 4] {
    let (w1, b1, _, _) = weights();
    let mut h = [0f32; 4];
    for j in 0..4 {
        let a: f32 = (0..3).map(|i| w1[[j, i]] * x[i]).sum::<f32>() + b1[j];
        h[j] = a.max(0.0);
    }
    h
}

#[test]
fn half_the_neurons_go_and_become_their_calibration_means() {
    let (g, ctx) = prune(vec![0.5], calibration()).unwrap();
    // Ranking: unit 1 (2/3 incoming zero, 1/2 outgoing zero: 3 of 5) first, then unit 2
    // (1 of 5); units 0 and 3 have no zero.
    assert_eq!(
        ctx.report.pruned,
        [PrunedLayer {
            layer: "fc1".into(),
            before: 4,
            after: 2,
            constant: 0,
            dead: 0,
            by_rate: 2,
            removed: vec![1, 2],
        }]
    );
    let removed = [1usize, 2];
    // The calibration means of the removed neurons' Relu outputs, by hand.
    let calib: Vec<[f32; 3]> = vec![
        [1.0, 0.0, -1.0],
        [0.5, 2.0, 1.0],
        [-1.0, -0.5, 0.25],
        [0.0, 1.0, 2.0],
    ];
    let mut mean = [0f32; 4];
    for x in &calib {
        let h = relu_hidden(x);
        for j in 0..4 {
            mean[j] += h[j] / calib.len() as f32;
        }
    }
    let (_, _, w2, b2) = weights();
    for x in [[0.3f32, -0.7, 1.1], [2.0, 0.0, 0.0], [-1.5, 1.5, -0.5]] {
        let mut h = relu_hidden(&x);
        for &j in &removed {
            h[j] = mean[j];
        }
        let want: Vec<f32> = (0..2)
            .map(|o| (0..4).map(|j| w2[[o, j]] * h[j]).sum::<f32>() + b2[o])
            .collect();
        let got = interp::run(&g, &sample(x)).unwrap();
        for (a, b) in got[0].iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "x {x:?}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn ties_go_to_the_smallest_incoming_norm_and_rates_stay_below_all() {
    // Rate 0.75 removes 3 of 4: units 1, 2, then of units 0 and 3 (no zeros) the smaller
    // incoming L1 norm, unit 3 (0.3 < 1.75).
    let (g, ctx) = prune(vec![0.75], calibration()).unwrap();
    assert_eq!(ctx.report.pruned[0].after, 1);
    let fc1 = g.node_ids().find(|&id| g.node(id).name == "fc1").unwrap();
    let w = g.const_value(g.node_inputs(fc1)[1]).unwrap();
    assert_eq!(w.iter().copied().collect::<Vec<_>>(), [0.5, -1.0, 0.25]);
    // A rate that would remove every neuron keeps one.
    let (_, ctx) = prune(vec![0.99], calibration()).unwrap();
    assert_eq!(ctx.report.pruned[0].after, 1);
    // Rate 0 changes nothing.
    let (_, ctx) = prune(vec![0.0], calibration()).unwrap();
    assert!(ctx.report.pruned.is_empty());
}

#[test]
fn rates_need_calibration_data_and_one_rate_per_layer() {
    let e = prune(vec![0.5], vec![]).unwrap_err();
    assert!(e.contains("'fc1'") && e.contains("calibration"), "{e}");
    let e = prune(vec![0.5, 0.5], calibration()).unwrap_err();
    assert!(
        e.contains("2 pruning rates for 1 prunable layers (fc1)"),
        "{e}"
    );
}
