//! Graph passes of fhec, run in one ordered pipeline between the frontend and the backend.
//!
//! Every pass rewrites the float [`Graph`] in place, keeps its semantics (up to float rounding;
//! pruning with a non-zero threshold is the one deliberate approximation) and leaves a graph
//! that passes [`Graph::verify`]. What the graph cannot hold goes into the [`PassContext`]:
//! options in, a [`PipelineReport`] out (per pass: what changed; the client-side
//! post-processing split off the outputs; the neurons pruned per layer).
//!
//! The pipeline ([`PIPELINE`]; add a pass there and here), in order:
//!
//! 1. [`canonicalize::drop_identity`]: drop `Identity` (and inference `Dropout`).
//! 2. [`canonicalize::fold_constants`]: evaluate ops whose inputs are all constants.
//! 3. [`canonicalize::split_postprocessing`]: move a final `Softmax` chain to the client.
//! 4. [`canonicalize::matmul_to_gemm`]: `MatMul(x, W) (+ bias)` becomes one `Gemm`.
//! 5. [`canonicalize::fold_batchnorm`]: fold `BatchNorm` and per-channel `Mul`/`Add`/`Sub`/`Div`
//!    into the weights of the `Conv`/`Gemm` before them.
//! 6. [`canonicalize::simplify_layout`]: cancel, merge and drop `Transpose`/`Reshape`, and fold a
//!    transpose before a flatten into the next `Gemm`'s weights.
//! 7. [`prune`]: remove constant and dead neurons between two linear layers (and, with
//!    `prune_rates`, a share of the neurons chosen by `prune_method`, lossy).
//! 8. [`quantize::CALIBRATE`]: run the float graph on calibration data (tensor ranges).
//! 9. [`quantize::QUANTIZE`]: PTQ (or the model's QAT scales) and lowering to an integer
//!    graph with one table lookup per chain of univariate ops.
//! 10. [`table_ranges`]: with [`TableRanges::Observed`], shrink table domains to the
//!     calibration-observed range plus a margin.
//! 11. [`rounding`]: keep the top `--rounding-bits` of wide accumulators before tables.
//! 12. [`tlu_rewrite`]: egg rewrites of table lookups (merge, fold, share, drop).
//! 13. [`bitwidth`]: worst-case and observed accumulator widths per layer.
//!
//! Passes 8-13 do nothing unless [`PassOptions::quantization`] is set.

pub mod bitwidth;
pub mod canonicalize;
mod context;
pub mod int_values;
pub mod prune;
pub mod quantize;
pub mod rounding;
pub mod table_ranges;
pub mod tlu_rewrite;
mod util;

pub use context::{
    NarrowedTable, PassContext, PassOptions, PassReport, PipelineReport, PostOp, PruneMethod,
    PrunedLayer, RoundingOptions, TableRanges,
};

use fhec_ir::{Graph, IrError};

/// A transformation of the graph; the verifier runs after each one.
pub struct Pass {
    pub name: &'static str,
    /// One line on what the pass does.
    pub summary: &'static str,
    /// Rewrites the graph; records what it changed through [`PassContext::note`].
    pub run: fn(&mut Graph, &mut PassContext) -> Result<(), IrError>,
}

/// A pass that failed or left a graph the verifier rejects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pass '{pass}': {source}")]
pub struct PassError {
    pub pass: &'static str,
    #[source]
    pub source: IrError,
}

/// The passes, in the order they run.
pub const PIPELINE: &[Pass] = &[
    canonicalize::drop_identity::PASS,
    canonicalize::fold_constants::PASS,
    canonicalize::split_postprocessing::PASS,
    canonicalize::matmul_to_gemm::PASS,
    canonicalize::fold_batchnorm::PASS,
    canonicalize::simplify_layout::PASS,
    prune::PASS,
    quantize::CALIBRATE,
    quantize::QUANTIZE,
    table_ranges::PASS,
    rounding::PASS,
    tlu_rewrite::PASS,
    bitwidth::PASS,
];

/// Runs one pass: records its entry in the report, runs it and verifies the result.
pub fn run_pass(graph: &mut Graph, ctx: &mut PassContext, pass: &Pass) -> Result<(), PassError> {
    let fail = |source| PassError {
        pass: pass.name,
        source,
    };
    let start = std::time::Instant::now();
    ctx.report.passes.push(PassReport {
        pass: pass.name,
        nodes_before: graph.node_count(),
        nodes_after: graph.node_count(),
        changes: vec![],
        elapsed: Default::default(),
    });
    (pass.run)(graph, ctx).map_err(fail)?;
    let verified = graph.verify().map_err(fail);
    if let Some(r) = ctx.report.passes.last_mut() {
        r.nodes_after = graph.node_count();
        r.elapsed = start.elapsed();
    }
    verified
}

/// Runs the given passes in order, verifying the graph before the first and after each.
pub fn run_passes(
    graph: &mut Graph,
    ctx: &mut PassContext,
    passes: &[Pass],
) -> Result<(), PassError> {
    graph.verify().map_err(|source| PassError {
        pass: "(input)",
        source,
    })?;
    for pass in passes {
        run_pass(graph, ctx, pass)?;
    }
    Ok(())
}

/// [`PIPELINE`] split after calibration. The first part (canonicalisation, pruning,
/// calibration of the float graph) reads only the pruning options and the calibration data,
/// not the quantisation, rounding or range options: a sweep runs it once and clones its
/// result for each configuration, which then runs the second part.
pub fn pipeline_split() -> (&'static [Pass], &'static [Pass]) {
    let at = PIPELINE
        .iter()
        .position(|p| p.name == quantize::CALIBRATE.name)
        .map_or(0, |i| i + 1);
    PIPELINE.split_at(at)
}

/// Runs every pass of [`PIPELINE`], verifying the graph after each.
pub fn run_pipeline(graph: &mut Graph, ctx: &mut PassContext) -> Result<(), PassError> {
    run_passes(graph, ctx, PIPELINE)
}

/// The whole pipeline on a copy of `graph` with `options`, calibrated on `calibration` (one
/// list of graph inputs per sample): the compiled graph and what the passes did.
pub fn compile(
    graph: &Graph,
    options: PassOptions,
    calibration: Vec<Vec<fhec_ir::Tensor>>,
) -> Result<(Graph, PipelineReport), PassError> {
    let mut graph = graph.clone();
    let mut ctx = PassContext::new(options);
    ctx.calibration_inputs = calibration;
    run_pipeline(&mut graph, &mut ctx)?;
    Ok((graph, ctx.report))
}
