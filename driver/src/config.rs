//! What to compile: the quantisation options ([`QuantConfig`]) and the failure-probability
//! target ([`CryptoConfig`]), with their defaults and their one-line descriptions. A command
//! line fills these from its flags; a Python caller from keyword arguments.

use std::path::PathBuf;

use fhec_backend::{CompileOptions, PErrorTarget, SetOptions};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{PassOptions, RoundingOptions, TableRanges};
use serde::{Deserialize, Serialize};

/// Widest quantisation (TFHE table lookups beyond 8 bits are impractically slow).
pub const MAX_BITS: u32 = 8;
/// Narrowest quantisation.
pub const MIN_BITS: u32 = 2;

/// The rounding width used when none is given: 7 at every bit width, so no table reads more
/// than 7 bits. Measured on the fixtures at 2..=8 bits (README "Defaults"): rounding to 7
/// keeps the clear accuracy within a point of no rounding on all but two of the (model,
/// bits) pairs (at most 2.6 points), where 6 misses by up to 8.8 points and bits + 1 by up
/// to 50 at low widths (a table's steps are coarse there).
pub const DEFAULT_ROUNDING_BITS: u32 = 7;

/// Margin of observed table ranges when none is given.
pub const DEFAULT_MARGIN: f32 = 0.1;

/// Table domains when none are given.
pub const DEFAULT_RANGES: TableRanges = TableRanges::WorstCase;

/// Calibration samples used when no limit is given.
pub const DEFAULT_CALIB_LIMIT: usize = 500;

/// Default failure probability of one bootstrap: 2^-40.
pub const DEFAULT_P_ERROR: f64 = 9.094947017729282e-13;

/// How accumulators are rounded before a table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RoundingMode {
    /// Round exactly (extra bootstraps in FHE).
    Exact,
    /// Read the top bits directly (cheaper; off by one near a rounding boundary in FHE).
    #[default]
    Approximate,
}

impl RoundingMode {
    pub fn ir(self) -> fhec_ir::RoundingMode {
        match self {
            RoundingMode::Exact => fhec_ir::RoundingMode::Exact,
            RoundingMode::Approximate => fhec_ir::RoundingMode::Approximate,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RoundingMode::Exact => "exact",
            RoundingMode::Approximate => "approximate",
        }
    }
}

/// Which neurons pruning by rate removes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum PruneMethod {
    /// Most zero weights first (ties: smallest incoming L1 norm); weights only.
    Zeros,
    /// Smallest estimated damage first: output variance on the calibration data times the
    /// squared norm of the weights reading it.
    Impact,
    /// One at a time, the neuron the others predict best; the next layer is refitted
    /// (least squares on the calibration data) instead of receiving its mean.
    #[default]
    Refit,
}

impl PruneMethod {
    pub fn ranking(self) -> fhec_passes::PruneMethod {
        match self {
            PruneMethod::Zeros => fhec_passes::PruneMethod::ZeroWeights,
            PruneMethod::Impact => fhec_passes::PruneMethod::Impact,
            PruneMethod::Refit => fhec_passes::PruneMethod::Refit,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PruneMethod::Zeros => "zeros",
            PruneMethod::Impact => "impact",
            PruneMethod::Refit => "refit",
        }
    }
}

/// The rounding width: a width, none, or chosen on labelled data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundingBits {
    /// No rounding: every table reads its whole accumulator.
    None,
    /// Keep the top R bits of accumulators wider than R.
    Keep(u32),
    /// The cheapest width within TOL accuracy points (hundredths here) of the float model on
    /// a validation slice, chosen before anything compiles ([`crate::tune::resolve_auto_rounding`]);
    /// never reaches the pipeline.
    Auto { tolerance_centipoints: u32 },
}

impl RoundingBits {
    /// The width kept; `None` without rounding (and for an unresolved `Auto`, which
    /// compiling refuses).
    pub fn bits(self) -> Option<u32> {
        match self {
            RoundingBits::None | RoundingBits::Auto { .. } => None,
            RoundingBits::Keep(b) => Some(b),
        }
    }
}

/// `worst-case` / `observed:0.1`.
pub fn ranges_text(r: TableRanges) -> String {
    match r {
        TableRanges::WorstCase => "worst-case".into(),
        TableRanges::Observed { margin } => format!("observed:{margin}"),
    }
}

/// Quantisation, rounding, table-range and pruning options, and the calibration data.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantConfig {
    /// Quantise weights, activations and inputs to this many bits; `None`: stay float.
    pub bits: Option<u32>,
    /// Weight width (default: `bits`).
    pub weight_bits: Option<u32>,
    /// Activation (table output) width (default: `bits`).
    pub activation_bits: Option<u32>,
    /// Model input width (default: `bits`).
    pub input_bits: Option<u32>,
    /// Requantise graph outputs with a table lookup (default: dequantise the final
    /// accumulator on the client).
    pub output_bits: Option<u32>,
    /// `None`: [`DEFAULT_ROUNDING_BITS`] when quantised.
    pub rounding_bits: Option<RoundingBits>,
    /// `None`: approximate.
    pub rounding_mode: Option<RoundingMode>,
    /// `None`: [`DEFAULT_RANGES`].
    pub ranges: Option<TableRanges>,
    /// Prune neurons whose weights are all within this of zero.
    pub prune_threshold: f32,
    /// Lossy pruning: one rate, or one per prunable layer.
    pub prune_rate: Option<Vec<f32>>,
    pub prune_method: PruneMethod,
    /// Calibration data file.
    pub calib: Option<PathBuf>,
    /// Use at most this many calibration samples (the first ones).
    pub calib_limit: usize,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            bits: None,
            weight_bits: None,
            activation_bits: None,
            input_bits: None,
            output_bits: None,
            rounding_bits: None,
            rounding_mode: None,
            ranges: None,
            prune_threshold: 0.0,
            prune_rate: None,
            prune_method: PruneMethod::default(),
            calib: None,
            calib_limit: DEFAULT_CALIB_LIMIT,
        }
    }
}

impl QuantConfig {
    /// `bits` everywhere, the other options at their defaults.
    pub fn bits(bits: u32) -> Self {
        QuantConfig {
            bits: Some(bits),
            ..Default::default()
        }
    }

    /// The quantisation widths, `None` when not quantised.
    pub fn quant_options(&self) -> Option<QuantOptions> {
        let b = self.bits?;
        Some(QuantOptions {
            weight_bits: self.weight_bits.unwrap_or(b),
            activation_bits: self.activation_bits.unwrap_or(b),
            input_bits: self.input_bits.unwrap_or(b),
            output_bits: self.output_bits,
        })
    }

    pub fn rounding_mode(&self) -> RoundingMode {
        self.rounding_mode.unwrap_or_default()
    }

    /// The rounding width in effect: the one given, else [`DEFAULT_ROUNDING_BITS`] when
    /// quantised; `None` without rounding (or without quantisation).
    pub fn effective_rounding_bits(&self) -> Option<u32> {
        match self.rounding_bits {
            Some(r) => r.bits(),
            None => self.bits.map(|_| DEFAULT_ROUNDING_BITS),
        }
    }

    pub fn rounding(&self) -> Option<RoundingOptions> {
        self.effective_rounding_bits().map(|bits| RoundingOptions {
            bits,
            mode: self.rounding_mode().ir(),
        })
    }

    /// The table domains in effect.
    pub fn table_ranges(&self) -> TableRanges {
        self.ranges.unwrap_or(DEFAULT_RANGES)
    }

    pub fn pass_options(&self) -> PassOptions {
        PassOptions {
            prune_threshold: self.prune_threshold,
            prune_rates: self.prune_rate.clone().unwrap_or_default(),
            prune_method: self.prune_method.ranking(),
            quantization: self.quant_options(),
            rounding: self.rounding(),
            table_ranges: self.table_ranges(),
        }
    }

    /// The effective options, for JSON reports.
    pub fn summary(&self) -> QuantSummary {
        let q = self.quant_options();
        QuantSummary {
            bits: self.bits,
            weight_bits: q.as_ref().map(|q| q.weight_bits),
            activation_bits: q.as_ref().map(|q| q.activation_bits),
            input_bits: q.as_ref().map(|q| q.input_bits),
            output_bits: q.as_ref().and_then(|q| q.output_bits),
            rounding_bits: self.effective_rounding_bits(),
            rounding_mode: self
                .effective_rounding_bits()
                .map(|_| self.rounding_mode().name()),
            ranges: self.bits.map(|_| ranges_text(self.table_ranges())),
            prune_threshold: self.prune_threshold,
            prune_rate: self.prune_rate.clone(),
            prune_method: self.prune_rate.as_ref().map(|_| self.prune_method),
            calib_limit: self.calib_limit,
        }
    }

    /// One line: `6 bits (weights, activations, inputs), ..., rounding to 7 bits (...)`.
    pub fn describe(&self) -> String {
        let Some(q) = self.quant_options() else {
            return "float (not quantised)".into();
        };
        let mut s = if q.weight_bits == q.activation_bits && q.weight_bits == q.input_bits {
            format!("{} bits (weights, activations, inputs)", q.weight_bits)
        } else {
            format!(
                "{}-bit weights, {}-bit activations, {}-bit inputs",
                q.weight_bits, q.activation_bits, q.input_bits
            )
        };
        match q.output_bits {
            Some(o) => s.push_str(&format!(", {o}-bit outputs")),
            None => s.push_str(", outputs dequantised from the accumulator"),
        }
        match self.effective_rounding_bits() {
            Some(r) => s.push_str(&format!(
                ", rounding to {r} bits ({})",
                self.rounding_mode().name()
            )),
            None => s.push_str(", no rounding"),
        }
        if let TableRanges::Observed { margin } = self.table_ranges() {
            s.push_str(&format!(", tables on observed ranges (margin {margin})"));
        }
        if let Some(r) = &self.prune_rate {
            let rates: Vec<String> = r.iter().map(|v| v.to_string()).collect();
            s.push_str(&format!(
                ", prune rate {} (by {})",
                rates.join(":"),
                self.prune_method.name()
            ));
        }
        if self.prune_threshold != 0.0 {
            s.push_str(&format!(", prune threshold {}", self.prune_threshold));
        }
        s
    }
}

/// The effective quantisation options (JSON `quantization`).
#[derive(Serialize, Debug, Clone)]
pub struct QuantSummary {
    pub bits: Option<u32>,
    pub weight_bits: Option<u32>,
    pub activation_bits: Option<u32>,
    pub input_bits: Option<u32>,
    pub output_bits: Option<u32>,
    pub rounding_bits: Option<u32>,
    pub rounding_mode: Option<&'static str>,
    /// `worst-case` or `observed:MARGIN` (quantised runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<String>,
    pub prune_threshold: f32,
    /// The pruning rates (absent when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_rate: Option<Vec<f32>>,
    /// The pruning method (absent without rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_method: Option<PruneMethod>,
    pub calib_limit: usize,
}

/// The failure-probability target and the threads the latency prediction assumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CryptoConfig {
    /// Failure probability of one bootstrap (default [`DEFAULT_P_ERROR`]).
    pub p_error: Option<f64>,
    /// Failure probability of a whole inference, split evenly over its bootstraps; takes
    /// precedence over `p_error`.
    pub global_p_error: Option<f64>,
    /// Threads the latency prediction assumes (default: this machine's).
    pub threads: Option<u32>,
    /// Every bootstrap on one parameter set instead of one set per class of lookups.
    pub single_param_set: bool,
    /// Sets per class all on the circuit big key (no set with a big key of its own).
    pub shared_big_key: bool,
    /// Largest expanded server key accepted, MiB (default: no limit).
    pub max_server_key_mib: Option<f64>,
}

impl CryptoConfig {
    pub fn per_pbs(p_error: f64) -> Self {
        CryptoConfig {
            p_error: Some(p_error),
            ..Default::default()
        }
    }

    pub fn target(&self) -> PErrorTarget {
        match (self.p_error, self.global_p_error) {
            (_, Some(g)) => PErrorTarget::Global(g),
            (Some(p), None) => PErrorTarget::PerPbs(p),
            (None, None) => PErrorTarget::PerPbs(DEFAULT_P_ERROR),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
            .map(|t| t as usize)
            .unwrap_or_else(rayon::current_num_threads)
    }

    pub fn options(&self) -> CompileOptions {
        CompileOptions {
            target: self.target(),
            threads: self.threads(),
            sets: SetOptions {
                per_class: !self.single_param_set,
                own_keys: !self.shared_big_key,
                max_server_key_bytes: self.max_server_key_mib.map(|mib| (mib * 1048576.0) as u64),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self.target() {
            PErrorTarget::PerPbs(p) => format!("p_error {p:e} per bootstrap"),
            PErrorTarget::Global(p) => format!("global p_error {p:e} per inference"),
        }
    }
}
