//! Graph passes of fhec, run in one ordered pipeline between the frontend and the backend.
//!
//! This crate is the home of canonicalisation, pruning, calibration, quantisation, TLU fusion,
//! accumulator bit-width analysis, rounding and egg rewrites. Only the pipeline scaffold exists
//! so far: [`PIPELINE`] lists the passes in the order they run.

use fhec_ir::{Graph, IrError};

/// A transformation of the graph; the verifier runs after each one.
pub struct Pass {
    pub name: &'static str,
    pub run: fn(&mut Graph) -> Result<(), IrError>,
}

/// The passes, in the order they run. Empty until the quantisation work lands.
pub const PIPELINE: &[Pass] = &[];

/// Runs every pass of [`PIPELINE`], verifying the graph after each.
pub fn run_pipeline(graph: &mut Graph) -> Result<(), IrError> {
    graph.verify()?;
    for pass in PIPELINE {
        (pass.run)(graph)?;
        graph.verify()?;
    }
    Ok(())
}
