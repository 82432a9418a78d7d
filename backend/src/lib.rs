//! fhec backend: lowers a quantised integer graph to a circuit program ([`lower`]), chooses
//! TFHE parameters for it ([`optimizer`]) and packs both into the [`Circuit`] that
//! `fhec-runtime` executes.

pub mod lower;
pub mod optimizer;

pub use fhec_runtime::{Circuit, FORMAT_VERSION};
pub use lower::{lower, LowerError};
pub use optimizer::{choose_params, OptimizerError, PErrorTarget};

/// What the backend needs besides the graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompileOptions {
    /// Failure probability budget (per bootstrap or per inference).
    pub target: PErrorTarget,
    /// Threads the latency prediction assumes.
    pub threads: usize,
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
pub fn compile(graph: &fhec_ir::Graph, options: &CompileOptions) -> Result<Circuit, BackendError> {
    let program = lower(graph)?;
    let (params, prediction) = choose_params(&program, options.target, options.threads)?;
    Ok(Circuit {
        program,
        params,
        prediction,
        postprocessing: vec![],
    })
}
