//! `fhec inspect MODEL --prune-stats`: how close each neuron of each prunable layer is to
//! removable, from the fraction of its weights that are zero (the statistics pruning by rate
//! works from), and what pruning 25/50/75 % of the neurons would save in bootstraps.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use fhec_ir::Graph;
use fhec_passes::prune::{zero_weight_stats, LayerZeroStats};
use fhec_passes::{run_passes, PassContext, PassOptions, PIPELINE};
use serde::Serialize;

/// The rates whose savings are reported.
pub const RATES: [f64; 3] = [0.25, 0.5, 0.75];

/// One prunable layer in `inspect --json` (`prune_stats`).
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
pub fn compute(imported: &Graph, threshold: f32) -> Result<Vec<LayerJson>> {
    // The canonicalising passes fold BatchNorm and MatMul+Add into the layers first.
    let prune_at = PIPELINE
        .iter()
        .position(|p| p.name == "prune")
        .expect("the pipeline has a prune pass");
    let mut g = imported.clone();
    let mut ctx = PassContext::new(PassOptions::default());
    run_passes(&mut g, &mut ctx, &PIPELINE[..prune_at])
        .context("canonicalising the model for --prune-stats")?;
    let stats = zero_weight_stats(&g, threshold).context("zero-weight statistics")?;
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

/// Histogram bins of zero fractions: exactly 0, then quarters, then exactly 1.
const BINS: [&str; 6] = [
    "0%",
    "(0, 25%)",
    "[25, 50%)",
    "[50, 75%)",
    "[75, 100%)",
    "100%",
];

fn bin(f: f64) -> usize {
    match f {
        f if f <= 0.0 => 0,
        f if f >= 1.0 => 5,
        f => 1 + (f * 4.0).floor() as usize,
    }
}

fn histogram(fractions: &[f64]) -> [usize; 6] {
    let mut h = [0; 6];
    for &f in fractions {
        h[bin(f)] += 1;
    }
    h
}

/// The text report.
pub fn render(layers: &[LayerJson], threshold: f32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nprune statistics (a weight counts as zero when |w| <= {threshold}):"
    );
    if layers.is_empty() {
        let _ = writeln!(
            out,
            "  no prunable layer (a Gemm or group-1 Conv feeding another through per-channel ops)"
        );
        return out;
    }
    for l in layers {
        let _ = writeln!(
            out,
            "  {} ({}): {} units, {} lookup(s) each, {} removable exactly",
            l.layer, l.kind, l.units, l.lookups_per_unit, l.removable_exactly
        );
        let (inc, outg) = (
            histogram(&l.zero_incoming_fraction),
            histogram(&l.zero_outgoing_fraction),
        );
        let _ = writeln!(
            out,
            "    {:<12} {:>9} {:>9}",
            "zero weights", "incoming", "outgoing"
        );
        for (k, name) in BINS.iter().enumerate() {
            let _ = writeln!(out, "    {name:<12} {:>9} {:>9}", inc[k], outg[k]);
        }
        let savings: Vec<String> = l
            .saved_at_rate
            .iter()
            .map(|s| format!("{}: {} units, {} bootstraps", s.rate, s.units, s.bootstraps))
            .collect();
        let _ = writeln!(out, "    pruning by rate saves {}", savings.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_separate_exact_zero_and_one() {
        assert_eq!(
            histogram(&[0.0, 0.1, 0.25, 0.5, 0.74, 0.99, 1.0]),
            [1, 1, 1, 2, 1, 1]
        );
    }
}
