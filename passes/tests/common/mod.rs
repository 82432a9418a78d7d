//! Helpers of the pass tests: output comparison and running the pipeline pass by pass (with
//! the workspace's shared test helpers re-exported: fixtures, random tensors, builders).
#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses its own subset
pub use fhec_testkit::{
    data_samples, fixture_graph, fixture_models, fixtures, gemm_trans_b, npz_array, random,
    random_inputs, reference_inputs, samples, tensor, Lcg, GEMM_TRANS_B,
};

use fhec_ir::{interp, Graph, Op, Tensor};
use fhec_passes::{run_pass, PassContext, PassOptions, PipelineReport, PIPELINE};

/// Outputs before and after a pass may differ by this much, relative or absolute.
pub const TOL: f32 = 1e-4;

/// `Err` describing the first element where `got` and `want` differ by more than
/// `TOL * max(1, |want|)`.
pub fn close(got: &[Tensor], want: &[Tensor]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape() != w.shape() {
            return Err(format!(
                "output {k}: shape {:?}, expected {:?}",
                g.shape(),
                w.shape()
            ));
        }
        for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
            let ok = (a - b).abs() <= TOL * b.abs().max(1.0);
            if !ok {
                return Err(format!("output {k} element {i}: {a} vs {b}"));
            }
        }
    }
    Ok(())
}

/// The graph after one pass, with the report so far.
pub struct Stage {
    pub pass: &'static str,
    pub graph: Graph,
    pub report: PipelineReport,
}

/// Runs the pipeline pass by pass, keeping the graph after each (verified by `run_pass`).
pub fn stages(graph: &Graph, options: PassOptions) -> Vec<Stage> {
    let mut g = graph.clone();
    g.verify().expect("input graph verifies");
    let mut ctx = PassContext::new(options);
    PIPELINE
        .iter()
        .map(|pass| {
            run_pass(&mut g, &mut ctx, pass).unwrap_or_else(|e| panic!("{e}"));
            Stage {
                pass: pass.name,
                graph: g.clone(),
                report: ctx.report.clone(),
            }
        })
        .collect()
}

/// Checks that every stage computes what `original` does on `inputs` (each stage's outputs
/// with the post-processing split off so far applied).
pub fn check_stages(original: &Graph, stages: &[Stage], inputs: &[Tensor]) -> Result<(), String> {
    let want = interp::run(original, inputs).map_err(|e| format!("original: {e}"))?;
    for s in stages {
        let got = interp::run(&s.graph, inputs).map_err(|e| format!("after {}: {e}", s.pass))?;
        let got = s.report.apply_postprocessing(got)?;
        close(&got, &want).map_err(|e| format!("after {}: {e}", s.pass))?;
    }
    Ok(())
}

/// How many nodes of the op with this name the graph has.
pub fn count(g: &Graph, op: &str) -> usize {
    g.node_ids().filter(|&n| g.node(n).op.name() == op).count()
}

/// The value of the `Const` feeding input `slot` of the first node of op `op` in topological
/// order (`nth` picks a later one).
pub fn const_of(g: &Graph, op: &str, nth: usize, slot: usize) -> Tensor {
    let id = g
        .topo_order()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == op)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {op} #{nth}"));
    let input = g.node_inputs(id)[slot];
    match &g.node(input).op {
        Op::Const(t) => t.clone(),
        other => panic!("{op} input {slot} is {}", other.name()),
    }
}

/// The single pass of the pipeline with this name.
pub fn pass(name: &str) -> &'static fhec_passes::Pass {
    PIPELINE
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pass {name}"))
}
