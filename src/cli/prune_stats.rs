//! `fhec inspect MODEL --prune-stats`, rendered: how close each neuron of each prunable layer
//! is to removable (the driver's [`fhec_driver::prune_stats`]), as histograms of zero-weight
//! fractions, and what pruning 25/50/75 % of the neurons would save in bootstraps.

use std::fmt::Write as _;

pub use fhec_driver::prune_stats::{compute, LayerJson};

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
