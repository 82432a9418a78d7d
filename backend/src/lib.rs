//! fhec backend: lowers a quantised integer graph to a circuit program ([`lower`]), chooses
//! TFHE parameters for it ([`optimizer`]) and packs both into the [`Circuit`] that
//! `fhec-runtime` executes.

pub mod lower;
pub mod optimizer;

pub use fhec_runtime::{Circuit, FORMAT_VERSION};
pub use lower::{lower, lower_variants, LowerError, MaxPoolConflicts};
pub use optimizer::{
    choose_param_sets, choose_params, OptimizerError, PErrorTarget, Remedy, SetOptions,
};

/// What the backend needs besides the graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompileOptions {
    /// Failure probability budget (per bootstrap or per inference).
    pub target: PErrorTarget,
    /// Threads the latency prediction assumes.
    pub threads: usize,
    /// One parameter set per class of lookups or one for all, and the server key limit.
    pub sets: SetOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("lowering to a circuit failed")]
    Lower(#[from] LowerError),
    #[error("no TFHE parameters")]
    Optimize(#[from] OptimizerError),
}

/// Lowers `graph` (the quantised integer graph from the pass pipeline) and chooses its
/// parameters.
///
/// Where the lowering has a choice (max-poolings whose consumers need another delta:
/// [`lower::MaxPoolConflicts`]), every variant is priced and the fastest predicted circuit
/// wins; if none has parameters, the last variant's error is returned (re-encoded
/// max-poolings keep noise factors small, so its error names the precision at fault).
pub fn compile(graph: &fhec_ir::Graph, options: &CompileOptions) -> Result<Circuit, BackendError> {
    compile_timed(graph, options).map(|(circuit, _)| circuit)
}

/// Where [`compile`] spent its time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackendTimings {
    pub lowering: std::time::Duration,
    pub parameter_search: std::time::Duration,
}

/// [`compile`], plus its time per phase (compile-time profiles).
pub fn compile_timed(
    graph: &fhec_ir::Graph,
    options: &CompileOptions,
) -> Result<(Circuit, BackendTimings), BackendError> {
    let mut timings = BackendTimings::default();
    let start = std::time::Instant::now();
    let variants = lower::lower_variants(graph)?;
    timings.lowering = start.elapsed();
    let start = std::time::Instant::now();
    let mut best: Option<Circuit> = None;
    let mut last_error = None;
    for mut program in variants {
        match choose_param_sets(&mut program, options.target, options.threads, options.sets) {
            Ok((params, prediction)) => {
                let faster = best
                    .as_ref()
                    .is_none_or(|b| prediction.latency_s < b.prediction.latency_s);
                if faster {
                    best = Some(Circuit {
                        program,
                        params,
                        prediction,
                        postprocessing: vec![],
                    });
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    timings.parameter_search = start.elapsed();
    match (best, last_error) {
        (Some(circuit), _) => Ok((circuit, timings)),
        (None, Some(e)) => Err(e.into()),
        (None, None) => unreachable!("lower_variants returns at least one program"),
    }
}
