//! `mlp_torch_pruned`: half the hidden neurons of each hidden layer have all-zero incoming
//! weights and bias; pruning must remove exactly those and keep the outputs identical.

mod common;

use common::*;
use fhec_ir::{interp, Graph, Op, Tensor};
use fhec_passes::{run_pipeline, PassContext, PrunedLayer};
use ndarray::{ArrayD, Axis};

/// Output widths of the graph's Gemms, in topological order.
fn gemm_widths(g: &Graph) -> Vec<usize> {
    g.topo_order()
        .into_iter()
        .filter(|&n| matches!(g.node(n).op, Op::Gemm(_)))
        .map(|n| g.node(n).fact.shape[1])
        .collect()
}

fn pruned_indices(layer: &str) -> Vec<usize> {
    let path = fixtures().join("reference/mlp_torch_pruned.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("json")).expect("json");
    json["pruned_hidden_neurons"][layer]
        .as_array()
        .expect("indices")
        .iter()
        .map(|v| v.as_u64().expect("index") as usize)
        .collect()
}

#[test]
fn mlp_torch_pruned_halves_hidden_layers_with_identical_outputs() {
    let original = fixture_graph("mlp_torch_pruned");
    assert_eq!(gemm_widths(&original), [64, 32, 2]);
    let mut g = original.clone();
    let mut ctx = PassContext::default();
    run_pipeline(&mut g, &mut ctx).expect("pipeline");
    assert_eq!(gemm_widths(&g), [32, 16, 2]);
    assert_eq!(
        ctx.report.pruned,
        [
            PrunedLayer {
                layer: "/0/Gemm".into(),
                before: 64,
                after: 32,
                constant: 32,
                dead: 0,
                by_rate: 0,
                removed: pruned_indices("layer1"),
            },
            PrunedLayer {
                layer: "/2/Gemm".into(),
                before: 32,
                after: 16,
                constant: 16,
                dead: 0,
                by_rate: 0,
                removed: pruned_indices("layer2"),
            },
        ]
    );

    // The kept rows of the first layer are the ones the fixture did not zero.
    let zeroed = pruned_indices("layer1");
    let kept: Vec<usize> = (0..64).filter(|j| !zeroed.contains(j)).collect();
    let w0 = const_of(&original, "Gemm", 0, 1);
    let w1 = const_of(&g, "Gemm", 0, 1);
    assert_eq!(w1, w0.select(Axis(0), &kept));
    assert_eq!(pruned_indices("layer2").len(), 16);

    let x_test: ArrayD<f32> = npz_array("data/breast_cancer.npz", "x_test");
    assert_eq!(x_test.shape(), [114, 30]);
    for (i, x) in samples(&x_test).into_iter().enumerate() {
        let want: Vec<Tensor> = interp::run(&original, std::slice::from_ref(&x)).expect("original");
        let got = interp::run(&g, &[x]).expect("pruned");
        assert_eq!(got, want, "test sample {i}");
    }
}

#[test]
fn unpruned_fixtures_keep_their_neurons() {
    for stem in ["mlp_torch", "mlp_keras", "cnn_torch_28", "cnn_keras_28"] {
        let mut g = fixture_graph(stem);
        let mut ctx = PassContext::default();
        run_pipeline(&mut g, &mut ctx).expect("pipeline");
        assert!(
            ctx.report.pruned.is_empty(),
            "{stem}: {:?}",
            ctx.report.pruned
        );
    }
}

#[test]
fn threshold_prunes_small_weights() {
    // With a threshold above every weight of the first layer, all its neurons but one are
    // constant; the graph stays valid and small.
    let mut g = fixture_graph("mlp_torch");
    let mut ctx = PassContext::new(fhec_passes::PassOptions {
        prune_threshold: 10.0,
        ..Default::default()
    });
    run_pipeline(&mut g, &mut ctx).expect("pipeline");
    assert_eq!(gemm_widths(&g), [1, 1, 2]);
}
