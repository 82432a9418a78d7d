//! How close each neuron of each prunable layer is to removable: the fraction of its weights
//! that are zero (what pruning by rate works from), and what pruning a share of the neurons
//! would save in bootstraps.

use std::path::Path;

use fhec_ir::Graph;
use fhec_passes::prune::{zero_weight_stats, LayerZeroStats};
use fhec_passes::{run_passes, PassContext, PassOptions, PIPELINE};
use serde::Serialize;

use crate::error::{DriverError, Result};

/// The rates whose savings are reported.
pub const RATES: [f64; 3] = [0.25, 0.5, 0.75];

/// One prunable layer (`fhec inspect --json`'s `prune_stats`).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LayerJson {
    pub layer: String,
    pub kind: &'static str,
    pub units: usize,
    pub lookups_per_unit: usize,
    /// Units the `prune` pass removes without changing the outputs (constant or dead).
    pub removable_exactly: usize,
    /// Per unit, the fraction of its incoming weights with `|w| <= threshold`.
    pub zero_incoming_fraction: Vec<f64>,
    /// Per unit, the fraction of the next layer's weights reading it with `|w| <= threshold`.
    pub zero_outgoing_fraction: Vec<f64>,
    pub saved_at_rate: Vec<RateSaving>,
}

/// What removing the fraction `rate` of a layer's units saves per inference.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RateSaving {
    pub rate: f64,
    pub units: usize,
    pub bootstraps: usize,
}

/// The statistics of `imported` (the float graph as imported) at `threshold`.
pub fn compute(imported: &Graph, threshold: f32, model: &Path) -> Result<Vec<LayerJson>> {
    // The canonicalising passes fold BatchNorm and MatMul+Add into the layers first.
    let prune_at = PIPELINE
        .iter()
        .position(|p| p.name == "prune")
        .expect("the pipeline has a prune pass");
    let mut g = imported.clone();
    let mut ctx = PassContext::new(PassOptions::default());
    run_passes(&mut g, &mut ctx, &PIPELINE[..prune_at]).map_err(|source| {
        DriverError::Pipeline {
            model: model.to_path_buf(),
            config: Some("canonicalising for the prune statistics".into()),
            source,
        }
    })?;
    let stats = zero_weight_stats(&g, threshold)
        .map_err(|e| DriverError::Invalid(format!("zero-weight statistics: {e}")))?;
    Ok(stats.iter().map(layer_json).collect())
}

fn layer_json(s: &LayerZeroStats) -> LayerJson {
    LayerJson {
        layer: s.layer.clone(),
        kind: s.kind,
        units: s.units,
        lookups_per_unit: s.lookups_per_unit,
        removable_exactly: s.removable_exactly,
        zero_incoming_fraction: s.zero_incoming.clone(),
        zero_outgoing_fraction: s.zero_outgoing.clone(),
        saved_at_rate: RATES
            .iter()
            .map(|&rate| {
                let (units, bootstraps) = s.saved_at_rate(rate);
                RateSaving {
                    rate,
                    units,
                    bootstraps,
                }
            })
            .collect(),
    }
}
