//! The quantisation flags shared by every command that quantises (`eval`, `compile`,
//! `predict --mode clear`, `inspect`, `sweep`), their parsers, and their translation into
//! the driver's [`QuantConfig`].

use std::path::PathBuf;

use clap::Args;
pub use fhec_driver::config::{
    PruneMethod, RoundingBits, RoundingMode, DEFAULT_MARGIN, MAX_BITS, MIN_BITS,
};
use fhec_driver::config::{QuantConfig, DEFAULT_CALIB_LIMIT};
use fhec_passes::TableRanges;

pub(crate) fn parse_bits(s: &str) -> Result<u32, String> {
    let b: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a bit width (an integer {MIN_BITS}..={MAX_BITS})"))?;
    if !(MIN_BITS..=MAX_BITS).contains(&b) {
        return Err(format!(
            "{b} bits is out of range: quantisation widths must be within {MIN_BITS}..={MAX_BITS}"
        ));
    }
    Ok(b)
}

/// `--rounding-bits` of `eval`/`compile`: [`parse_rounding_bits`] or `auto[:TOL]` (TOL
/// accuracy points, default 1).
pub(crate) fn parse_rounding_choice(s: &str) -> Result<RoundingBits, String> {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("auto") else {
        return parse_rounding_bits(t);
    };
    let tol = match rest.strip_prefix(':') {
        None if rest.is_empty() => 1.0,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(p) if (0.0..100.0).contains(&p) => p,
            _ => {
                return Err(format!(
                    "'{v}' is not a tolerance in accuracy points, e.g. auto:1"
                ))
            }
        },
        None => return Err(format!("'{s}' is not `auto` or `auto:TOL`")),
    };
    Ok(RoundingBits::Auto {
        tolerance_centipoints: (tol * 100.0).round() as u32,
    })
}

pub(crate) fn parse_rounding_bits(s: &str) -> Result<RoundingBits, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(RoundingBits::None);
    }
    let b: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not `none` or a bit count (an integer >= 1)"))?;
    if b == 0 {
        return Err(
            "must be at least 1: it is the number of top accumulator bits kept before each \
             table lookup (`none` disables rounding)"
                .into(),
        );
    }
    if b > 16 {
        return Err(format!(
            "{b} is more than 16; table lookups wider than 16 bits are not supported"
        ));
    }
    Ok(RoundingBits::Keep(b))
}

/// `--ranges worst-case | observed[:MARGIN]`.
pub(crate) fn parse_ranges(s: &str) -> Result<TableRanges, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("worst-case") {
        return Ok(TableRanges::WorstCase);
    }
    let margin = match s.split_once(':') {
        Some((kind, m)) if kind.eq_ignore_ascii_case("observed") => m
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|m| m.is_finite() && (0.0..=10.0).contains(m))
            .ok_or_else(|| {
                format!(
                    "'{m}' is not a margin: a fraction of the observed range added on each side, \
                     0..=10 (e.g. observed:0.1)"
                )
            })?,
        None if s.eq_ignore_ascii_case("observed") => DEFAULT_MARGIN,
        _ => {
            return Err(format!(
                "'{s}' is not `worst-case`, `observed` or `observed:MARGIN`"
            ))
        }
    };
    Ok(TableRanges::Observed { margin })
}

pub(crate) fn parse_threshold(s: &str) -> Result<f32, String> {
    let t: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !t.is_finite() || t < 0.0 {
        return Err(format!("{s} is not a finite number >= 0"));
    }
    Ok(t)
}

/// `--prune-rate`: one rate, or one per prunable layer (`R1:R2:...`), each in [0, 1).
#[derive(Clone, Debug, PartialEq)]
pub struct PruneRates(pub Vec<f32>);

pub fn parse_prune_rates(s: &str) -> Result<PruneRates, String> {
    let rates = s
        .split(':')
        .map(|r| match r.trim().parse::<f32>() {
            Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
            _ => Err(format!("'{r}' is not a rate in [0, 1)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PruneRates(rates))
}

fn parse_limit(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a positive integer")),
    }
}

/// Quantisation and compilation options (flattened into every command that compiles).
#[derive(Args, Debug, Clone, Default)]
pub struct QuantArgs {
    /// Quantise weights, activations and inputs to N bits (2..=8); required to quantise.
    #[arg(long, value_name = "N", value_parser = parse_bits, help_heading = "Quantisation")]
    pub bits: Option<u32>,
    /// Weight width (default: --bits).
    #[arg(long, value_name = "N", value_parser = parse_bits, requires = "bits", help_heading = "Quantisation")]
    pub weight_bits: Option<u32>,
    /// Activation (table output) width (default: --bits).
    #[arg(long, value_name = "N", value_parser = parse_bits, requires = "bits", help_heading = "Quantisation")]
    pub activation_bits: Option<u32>,
    /// Model input width (default: --bits).
    #[arg(long, value_name = "N", value_parser = parse_bits, requires = "bits", help_heading = "Quantisation")]
    pub input_bits: Option<u32>,
    /// Requantise graph outputs to N bits with a table lookup (default: dequantise the final
    /// accumulator on the client, no table).
    #[arg(long, value_name = "N", value_parser = parse_bits, requires = "bits", help_heading = "Quantisation")]
    pub output_bits: Option<u32>,
    /// Keep only the top R bits of accumulators wider than R before each table lookup, or
    /// `none` (tables then read whole accumulators, often 12-16 bits), or `auto[:TOL]`
    /// (`eval`, `compile`: the cheapest width whose simulated accuracy on a validation slice
    /// is within TOL points of float, default 1; see `fhec tune`) [default: 7].
    #[arg(long, value_name = "R|none|auto[:TOL]", value_parser = parse_rounding_choice, requires = "bits", help_heading = "Quantisation")]
    pub rounding_bits: Option<RoundingBits>,
    /// How rounding rounds [default: approximate].
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        requires = "bits",
        help_heading = "Quantisation"
    )]
    pub rounding_mode: Option<RoundingMode>,
    /// Input domain of each table: `worst-case` (what interval arithmetic guarantees) or
    /// `observed[:MARGIN]` (the calibration range plus MARGIN times its width on each side,
    /// default 0.1; a value outside it reads a wrong, negacyclic entry in FHE)
    /// [default: worst-case].
    #[arg(long, value_name = "RANGES", value_parser = parse_ranges, requires = "bits", help_heading = "Quantisation")]
    pub ranges: Option<TableRanges>,
    /// Prune neurons whose weights are all within T of zero (0 = exact zeros only, which
    /// keeps the outputs exact).
    #[arg(long, value_name = "T", value_parser = parse_threshold, default_value = "0", help_heading = "Quantisation")]
    pub prune_threshold: f32,
    /// Lossy pruning: remove the fraction R (0 <= R < 1) of the neurons of every prunable
    /// layer, those with the most zero weights (see `inspect --prune-stats`), each replaced
    /// by its mean on the calibration data; `R1:R2:...` gives one rate per layer
    /// [default: none].
    #[arg(long, value_name = "R|R1:R2:...", value_parser = parse_prune_rates, requires = "bits", help_heading = "Quantisation")]
    pub prune_rate: Option<PruneRates>,
    /// Which neurons --prune-rate removes first.
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = "refit",
        help_heading = "Quantisation"
    )]
    pub prune_method: PruneMethod,
    /// Calibration data (.npz train split, .csv, .npy; see `fhec eval --help`). `eval`
    /// defaults to the train split of --data; elsewhere it is required unless the model is
    /// fully quantisation-aware (QAT).
    #[arg(long, value_name = "FILE", help_heading = "Quantisation")]
    pub calib: Option<PathBuf>,
    /// Use at most K calibration samples (the first K).
    #[arg(long, value_name = "K", value_parser = parse_limit, default_value = "500", help_heading = "Quantisation")]
    pub calib_limit: usize,
}

impl QuantArgs {
    /// The options as the driver takes them.
    pub fn config(&self) -> QuantConfig {
        QuantConfig {
            bits: self.bits,
            weight_bits: self.weight_bits,
            activation_bits: self.activation_bits,
            input_bits: self.input_bits,
            output_bits: self.output_bits,
            rounding_bits: self.rounding_bits,
            rounding_mode: self.rounding_mode,
            ranges: self.ranges,
            prune_threshold: self.prune_threshold,
            prune_rate: self.prune_rate.clone().map(|r| r.0),
            prune_method: self.prune_method,
            calib: self.calib.clone(),
            calib_limit: self.calib_limit,
        }
    }

    /// Whether any option other than the defaults was given (for commands where they do
    /// not apply).
    pub fn any_given(&self) -> bool {
        self.bits.is_some()
            || self.rounding_bits.is_some()
            || self.rounding_mode.is_some()
            || self.ranges.is_some()
            || self.calib.is_some()
            || self.prune_threshold != 0.0
            || self.prune_rate.is_some()
            || self.prune_method != PruneMethod::Refit
            || self.calib_limit != DEFAULT_CALIB_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_parsers() {
        assert_eq!(parse_bits("6"), Ok(6));
        assert!(parse_bits("1").unwrap_err().contains("2..=8"));
        assert!(parse_bits("9").unwrap_err().contains("2..=8"));
        assert!(parse_bits("x").is_err());
        assert!(parse_rounding_bits("0").unwrap_err().contains("at least 1"));
        assert_eq!(parse_rounding_bits("6"), Ok(RoundingBits::Keep(6)));
        assert_eq!(parse_rounding_bits("None"), Ok(RoundingBits::None));
        assert_eq!(parse_ranges("worst-case"), Ok(TableRanges::WorstCase));
        assert_eq!(
            parse_ranges("observed"),
            Ok(TableRanges::Observed {
                margin: DEFAULT_MARGIN
            })
        );
        assert_eq!(
            parse_ranges("observed:0.25"),
            Ok(TableRanges::Observed { margin: 0.25 })
        );
        assert!(parse_ranges("observed:-1").unwrap_err().contains("margin"));
        assert!(parse_ranges("wide").unwrap_err().contains("worst-case"));
        assert!(parse_threshold("-1").is_err());
        assert!(parse_threshold("nan").is_err());
        assert!(parse_limit("0").is_err());
    }
}
