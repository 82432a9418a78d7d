//! Helpers on fhec graphs: fixture import, inputs for a graph, small builders.

use fhec_ir::{GemmAttrs, Graph, NodeId, Op, Tensor};

use crate::{fixtures, random};

/// Imports fixture model `stem` (`tests/fixtures/<stem>.onnx`) with the default options.
pub fn import_fixture(stem: &str) -> fhec_frontend::ImportedModel {
    let path = fixtures().join(format!("{stem}.onnx"));
    fhec_frontend::import_file(&path, &Default::default())
        .unwrap_or_else(|e| panic!("importing {stem}: {e}"))
}

/// The graph of fixture model `stem` ([`import_fixture`]).
pub fn fixture_graph(stem: &str) -> Graph {
    import_fixture(stem).graph
}

/// [`random`] inputs for every graph input (values in `[lo, hi)`, input `i` seeded with
/// `seed + i`).
pub fn random_inputs(g: &Graph, seed: u64, lo: f32, hi: f32) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random(&g.node(id).fact.shape, seed.wrapping_add(i as u64), lo, hi))
        .collect()
}

/// ONNX Gemm as PyTorch exports Linear: `x @ w.T + b` (alpha = beta = 1, transB).
pub const GEMM_TRANS_B: GemmAttrs = GemmAttrs {
    alpha: 1.0,
    beta: 1.0,
    trans_a: false,
    trans_b: true,
};

/// Adds `x @ w.T + b` ([`GEMM_TRANS_B`]) named `name`.
pub fn gemm_trans_b(g: &mut Graph, name: &str, x: NodeId, w: NodeId, b: NodeId) -> NodeId {
    g.add_node(name, Op::Gemm(GEMM_TRANS_B), &[x, w, b])
        .unwrap()
}
