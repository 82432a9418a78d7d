//! Quantisation options shared by `predict --mode clear`, `eval`, `inspect` (and later
//! `compile`), calibration data loading, fitting dataset samples to a model input, and the
//! compile step itself (the pass pipeline with quantisation on).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use fhec_ir::{Graph, RoundingMode, Tensor, TensorFact};
use fhec_passes::bitwidth::{max_accumulator_bits, tlu_count, LayerBits};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{
    run_pass, run_passes, PassContext, PassOptions, PipelineReport, RoundingOptions, TableRanges,
};
use ndarray::{Axis, IxDyn};
use serde::Serialize;

use super::{ir_dtype_name, shape_text};
use crate::data::{load_dataset, DataError, DataKeys, Dataset, Split};

/// Widest quantisation accepted on the command line (TFHE table lookups beyond 8 bits are
/// impractically slow).
pub const MAX_BITS: u32 = 8;
/// Narrowest quantisation accepted.
pub const MIN_BITS: u32 = 2;

/// `--rounding-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoundingModeArg {
    /// Round exactly (extra bootstraps in FHE).
    Exact,
    /// Read the top bits directly (cheaper; off by one near a rounding boundary in FHE).
    Approximate,
}

impl RoundingModeArg {
    pub fn mode(self) -> RoundingMode {
        match self {
            RoundingModeArg::Exact => RoundingMode::Exact,
            RoundingModeArg::Approximate => RoundingMode::Approximate,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RoundingModeArg::Exact => "exact",
            RoundingModeArg::Approximate => "approximate",
        }
    }
}

/// `--prune-method`: which neurons pruning by rate removes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneMethodArg {
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

impl PruneMethodArg {
    pub fn ranking(self) -> fhec_passes::PruneMethod {
        match self {
            PruneMethodArg::Zeros => fhec_passes::PruneMethod::ZeroWeights,
            PruneMethodArg::Impact => fhec_passes::PruneMethod::Impact,
            PruneMethodArg::Refit => fhec_passes::PruneMethod::Refit,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PruneMethodArg::Zeros => "zeros",
            PruneMethodArg::Impact => "impact",
            PruneMethodArg::Refit => "refit",
        }
    }
}

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

/// `--rounding-bits`: a width, `none` to read whole accumulators, or `auto[:TOL]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundingBits {
    /// No rounding: every table reads its whole accumulator.
    None,
    /// Keep the top R bits of accumulators wider than R.
    Keep(u32),
    /// The cheapest width within TOL accuracy points (hundredths here) of the float model on
    /// a validation slice, chosen by `eval`/`compile` before anything compiles (see
    /// `tune::resolve_auto_rounding`); never reaches the pipeline.
    Auto { tolerance_centipoints: u32 },
}

impl RoundingBits {
    /// The width kept; `None` without rounding (and for an unresolved `Auto`, which
    /// [`compile`] refuses).
    pub fn bits(self) -> Option<u32> {
        match self {
            RoundingBits::None | RoundingBits::Auto { .. } => None,
            RoundingBits::Keep(b) => Some(b),
        }
    }
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

/// The rounding width used when `--rounding-bits` is not given: 7 at every `--bits`, so no
/// table reads more than 7 bits. Measured on the fixtures at 2..=8 bits (README "Defaults"):
/// rounding to 7 keeps the clear accuracy within a point of no rounding on all but two of
/// the (model, bits) pairs (at most 2.6 points), where 6 misses by up to 8.8 points and
/// `--bits + 1` by up to 50 at low widths (a table's steps are coarse there).
pub const DEFAULT_ROUNDING_BITS: u32 = 7;

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

/// Margin of `--ranges observed` without one.
pub const DEFAULT_MARGIN: f32 = 0.1;

/// Table domains without `--ranges`.
pub const DEFAULT_RANGES: TableRanges = TableRanges::WorstCase;

/// `worst-case` / `observed:0.1`, as the CLI writes it.
pub fn ranges_text(r: TableRanges) -> String {
    match r {
        TableRanges::WorstCase => "worst-case".into(),
        TableRanges::Observed { margin } => format!("observed:{margin}"),
    }
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
    pub rounding_mode: Option<RoundingModeArg>,
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
    pub prune_method: PruneMethodArg,
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
    /// The quantisation widths, `None` without `--bits`.
    pub fn quant_options(&self) -> Option<QuantOptions> {
        let b = self.bits?;
        Some(QuantOptions {
            weight_bits: self.weight_bits.unwrap_or(b),
            activation_bits: self.activation_bits.unwrap_or(b),
            input_bits: self.input_bits.unwrap_or(b),
            output_bits: self.output_bits,
        })
    }

    pub fn rounding_mode(&self) -> RoundingModeArg {
        self.rounding_mode.unwrap_or(RoundingModeArg::Approximate)
    }

    /// The rounding width in effect: `--rounding-bits`, else [`DEFAULT_ROUNDING_BITS`] with
    /// `--bits`; `None` without rounding (or without quantisation).
    pub fn effective_rounding_bits(&self) -> Option<u32> {
        match self.rounding_bits {
            Some(r) => r.bits(),
            None => self.bits.map(|_| DEFAULT_ROUNDING_BITS),
        }
    }

    pub fn rounding(&self) -> Option<RoundingOptions> {
        self.effective_rounding_bits().map(|bits| RoundingOptions {
            bits,
            mode: self.rounding_mode().mode(),
        })
    }

    /// The table domains in effect.
    pub fn table_ranges(&self) -> TableRanges {
        self.ranges.unwrap_or(DEFAULT_RANGES)
    }

    pub fn pass_options(&self) -> PassOptions {
        PassOptions {
            prune_threshold: self.prune_threshold,
            prune_rates: self.prune_rate.clone().map(|r| r.0).unwrap_or_default(),
            prune_method: self.prune_method.ranking(),
            quantization: self.quant_options(),
            rounding: self.rounding(),
            table_ranges: self.table_ranges(),
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
            || self.prune_method != PruneMethodArg::Refit
            || self.calib_limit != 500
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
            prune_rate: self.prune_rate.clone().map(|r| r.0),
            prune_method: self.prune_rate.as_ref().map(|_| self.prune_method),
            calib_limit: self.calib_limit,
        }
    }

    /// One line: `6-bit weights, 6-bit activations, ...`.
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
            let rates: Vec<String> = r.0.iter().map(|v| v.to_string()).collect();
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
    /// `--prune-rate` (absent when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_rate: Option<Vec<f32>>,
    /// `--prune-method` (absent without --prune-rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_method: Option<PruneMethodArg>,
    pub calib_limit: usize,
}

// ---------------------------------------------------------------------------------------------
// fitting dataset samples to a model input

/// How the samples of a dataset are turned into tensors of the model input's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// The sample shape is the input shape (batch axis included).
    AsIs,
    /// The sample shape is the input shape without its leading batch 1.
    AddBatch,
    /// The data is NCHW `[C,H,W]` and the model takes NHWC `[1,H,W,C]`.
    NchwToNhwc,
}

/// How samples of shape `sample` fit a model input of shape `input`; `None` if they do not.
pub fn fit(sample: &[usize], input: &[usize]) -> Option<Fit> {
    if sample == input {
        Some(Fit::AsIs)
    } else if input.first() == Some(&1) && sample == &input[1..] {
        Some(Fit::AddBatch)
    } else if input.len() == 4
        && input[0] == 1
        && sample.len() == 3
        && sample == [input[3], input[1], input[2]]
    {
        Some(Fit::NchwToNhwc)
    } else {
        None
    }
}

/// Dataset features as one model-input-shaped tensor per sample, with a note when they were
/// transposed. `what` names the data's role ("data", "calibration data").
pub fn model_samples(
    ds: &Dataset,
    input: &str,
    fact: &TensorFact,
    file: &Path,
    what: &str,
) -> Result<(Vec<Tensor>, Option<String>)> {
    let sample = ds.sample_shape();
    let gs = fact.shape.as_slice();
    let Some(how) = fit(sample, gs) else {
        let hint = if gs.len() == 4 && gs[0] == 1 {
            "; (NCHW [C,H,W] samples are transposed automatically for a model taking NHWC \
             [1,H,W,C] input)"
        } else {
            ""
        };
        bail!(
            "{what} '{}' has samples of shape {} (the file's array is {}) but model input \
             '{input}' is {} {}, so it takes samples of shape {}{hint}; pass the right file \
             or choose its arrays with --x-key/--y-key",
            file.display(),
            shape_text(sample),
            shape_text(ds.x.shape()),
            ir_dtype_name(fact.dtype),
            shape_text(gs),
            shape_text(if gs.first() == Some(&1) { &gs[1..] } else { gs }),
        );
    };
    if let Some((lo, hi)) = fact.dtype.exact_range() {
        if let Some((i, v)) =
            ds.x.iter().enumerate().find(|(_, &v)| {
                v.fract() != 0.0 || (v as f64) < lo as f64 || (v as f64) > hi as f64
            })
        {
            let per = sample.iter().product::<usize>().max(1);
            bail!(
                "{what} '{}': sample {} holds {v}, but model input '{input}' is {} \
                 (integers in [{lo}, {hi}])",
                file.display(),
                i / per,
                ir_dtype_name(fact.dtype)
            );
        }
    }
    let note = (how == Fit::NchwToNhwc).then(|| {
        format!(
            "{what} '{}' is NCHW {} per sample but model input '{input}' is NHWC {}: \
             transposing the samples (0,2,3,1)",
            file.display(),
            shape_text(sample),
            shape_text(gs)
        )
    });
    let samples =
        ds.x.axis_iter(Axis(0))
            .map(|s| {
                let t = match how {
                    Fit::AsIs => s.to_owned(),
                    Fit::AddBatch => s.insert_axis(Axis(0)).to_owned(),
                    Fit::NchwToNhwc => s
                        .permuted_axes(IxDyn(&[1, 2, 0]))
                        .insert_axis(Axis(0))
                        .as_standard_layout()
                        .into_owned(),
                };
                debug_assert_eq!(t.shape(), gs);
                t
            })
            .collect();
    Ok((samples, note))
}

/// The single graph input of a model (eval and calibration handle one-input models only).
pub fn single_input<'g>(graph: &'g Graph, model: &Path) -> Result<(&'g str, &'g TensorFact)> {
    match graph.inputs() {
        [id] => {
            let n = graph.node(*id);
            Ok((n.name.as_str(), &n.fact))
        }
        ids => bail!(
            "model '{}' has {} graph inputs; dataset evaluation and calibration support \
             models with exactly one input",
            model.display(),
            ids.len()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// calibration

/// Calibration samples and where they came from.
#[derive(Debug, Default)]
pub struct Calibration {
    pub samples: Vec<Vec<Tensor>>,
    /// Description of the file and arrays used; `None` when there is no calibration data.
    pub source: Option<String>,
    /// Samples the file held before `--calib-limit`.
    pub available: usize,
}

/// Loads calibration samples from `path`: its train split, or (for a file with no train
/// split, only when `fallback_to_test`) its test split. Info lines go to `info`.
pub fn load_calibration(
    path: &Path,
    keys: &DataKeys,
    graph: &Graph,
    model: &Path,
    limit: usize,
    fallback_to_test: bool,
    info: &mut dyn FnMut(String),
) -> Result<Calibration> {
    let (input, fact) = single_input(graph, model)?;
    let ds = match load_dataset(path, Split::Train, keys) {
        Ok(ds) => ds,
        Err(DataError::UnknownLayout { .. }) if fallback_to_test => {
            let ds = load_dataset(path, Split::Test, keys)
                .with_context(|| format!("cannot load calibration data '{}'", path.display()))?;
            info(format!(
                "note: '{}' has no train split; calibrating on its test split",
                path.display()
            ));
            ds
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot load calibration data '{}'", path.display())))
        }
    };
    let available = ds.len();
    let ds = ds.head(limit);
    let (tensors, note) = model_samples(&ds, input, fact, path, "calibration data")?;
    if let Some(n) = note {
        info(format!("note: {n}"));
    }
    Ok(Calibration {
        samples: tensors.into_iter().map(|t| vec![t]).collect(),
        source: Some(ds.source.clone()),
        available,
    })
}

// ---------------------------------------------------------------------------------------------
// compiling

/// The result of the pass pipeline.
pub struct Compiled {
    /// The final graph (integer when quantised).
    pub graph: Graph,
    pub report: PipelineReport,
    pub quantized: bool,
    pub elapsed: Duration,
}

impl Compiled {
    /// Runs the compiled graph on one sample: the integer interpreter when quantised, the
    /// float one otherwise, then the client-side post-processing. Returns every output.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self.run_counting(inputs)?.0)
    }

    /// [`Compiled::run`], plus the number of table lookups whose input fell outside its
    /// table's domain (each read the negacyclic wrap, as the circuit does).
    pub fn run_counting(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, u64)> {
        let (outs, outside) = if self.quantized {
            fhec_ir::int_interp::run_counting(&self.graph, inputs)
        } else {
            fhec_ir::interp::run(&self.graph, inputs).map(|o| (o, 0))
        }
        .map_err(|e| anyhow!("{e}"))?;
        let outs = self
            .report
            .apply_postprocessing(outs)
            .map_err(|e| anyhow!("client post-processing failed: {e}"))?;
        Ok((outs, outside))
    }

    pub fn tlu_count(&self) -> Option<usize> {
        self.quantized.then(|| tlu_count(&self.graph))
    }

    pub fn max_accumulator_bits(&self) -> Option<u32> {
        self.quantized
            .then(|| max_accumulator_bits(&self.report.bit_widths))
    }

    /// Tables whose input the rounding pass narrowed.
    pub fn rounded_tables(&self) -> usize {
        self.report.changes("round_accumulators").len()
    }

    /// The pipeline's effect, for JSON reports.
    pub fn summary(&self) -> PipelineSummary {
        PipelineSummary {
            passes: self
                .report
                .passes
                .iter()
                .map(|p| PassJson {
                    pass: p.pass,
                    nodes_before: p.nodes_before,
                    nodes_after: p.nodes_after,
                    changes: p.changes.clone(),
                })
                .collect(),
            tlu_count: self.tlu_count(),
            max_accumulator_bits: self.max_accumulator_bits(),
            layers: layers_json(&self.report.bit_widths),
            pruned: pruned_json(&self.report),
            postprocessing: postprocessing_json(&self.report),
            ops_after: op_histogram(&self.graph),
            nodes_after: self.graph.node_count(),
        }
    }
}

/// Compiles `graph` (a copy) through the whole pipeline. `calib_hint` says how to give
/// calibration data on this command (for the "no calibration range" failure).
pub fn compile(
    graph: &Graph,
    args: &QuantArgs,
    calibration: Vec<Vec<Tensor>>,
    model: &Path,
    calib_hint: &str,
) -> Result<Compiled> {
    if let Some(RoundingBits::Auto { .. }) = args.rounding_bits {
        bail!(
            "--rounding-bits auto is chosen on labelled data by `fhec eval` and `fhec compile` \
             (with a labelled --calib); give a width here, e.g. --rounding-bits 6"
        );
    }
    let calibrated = calibrate(graph, args, calibration, model, calib_hint)?;
    compile_calibrated(calibrated, args, model, calib_hint)
}

/// The graph after the first half of the pipeline ([`fhec_passes::pipeline_split`]:
/// canonicalisation, pruning, calibration), which every configuration with the same pruning
/// options and calibration data shares: a sweep computes it once per dataset and clones it.
#[derive(Clone)]
pub struct Calibrated {
    graph: Graph,
    ctx: PassContext,
    elapsed: Duration,
}

impl Calibrated {
    /// Whether a compile with `args` may continue from this.
    pub fn serves(&self, args: &QuantArgs) -> bool {
        let (mine, theirs) = (&self.ctx.options, args.pass_options());
        mine.prune_threshold == theirs.prune_threshold
            && mine.prune_rates == theirs.prune_rates
            && mine.prune_method == theirs.prune_method
            && mine.quantization.is_some() == theirs.quantization.is_some()
    }
}

/// Runs the first half of the pipeline on a copy of `graph`.
pub fn calibrate(
    graph: &Graph,
    args: &QuantArgs,
    calibration: Vec<Vec<Tensor>>,
    model: &Path,
    calib_hint: &str,
) -> Result<Calibrated> {
    let start = Instant::now();
    let mut graph = graph.clone();
    let mut ctx = PassContext::new(args.pass_options());
    ctx.calibration_inputs = calibration;
    let (first, _) = fhec_passes::pipeline_split();
    run_passes(&mut graph, &mut ctx, first)
        .map_err(|e| pipeline_error(e, args, model, &ctx, calib_hint))?;
    Ok(Calibrated {
        graph,
        ctx,
        elapsed: start.elapsed(),
    })
}

/// Runs the second half of the pipeline with `args`' quantisation, rounding and range
/// options on a [`Calibrated`] graph (whose pruning options must match: [`Calibrated::serves`]).
pub fn compile_calibrated(
    calibrated: Calibrated,
    args: &QuantArgs,
    model: &Path,
    calib_hint: &str,
) -> Result<Compiled> {
    let start = Instant::now();
    let Calibrated {
        mut graph,
        mut ctx,
        elapsed,
    } = calibrated;
    ctx.options = args.pass_options();
    let quantized = ctx.options.quantization.is_some();
    let (_, second) = fhec_passes::pipeline_split();
    for pass in second {
        run_pass(&mut graph, &mut ctx, pass)
            .map_err(|e| pipeline_error(e, args, model, &ctx, calib_hint))?;
    }
    Ok(Compiled {
        graph,
        report: ctx.report,
        quantized,
        elapsed: elapsed + start.elapsed(),
    })
}

/// A pipeline failure in the user's terms.
fn pipeline_error(
    e: fhec_passes::PassError,
    args: &QuantArgs,
    model: &Path,
    ctx: &PassContext,
    calib_hint: &str,
) -> anyhow::Error {
    let text = e.to_string();
    let what = match args.bits {
        Some(_) => format!("cannot compile '{}' ({})", model.display(), args.describe()),
        None => format!("cannot compile '{}'", model.display()),
    };
    if ctx.calibration_inputs.is_empty()
        && matches!(e.source, fhec_ir::IrError::NeedsCalibration { .. })
    {
        return anyhow!(
            "{what}: the model is not fully quantisation-aware, so quantising it needs \
             calibration data: {calib_hint}\n  caused by: {text}"
        );
    }
    anyhow!("{text}").context(what)
}

// ---------------------------------------------------------------------------------------------
// JSON / text pieces shared by the reports

#[derive(Serialize, Debug, Clone)]
pub struct PassJson {
    pub pass: &'static str,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub changes: Vec<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct LayerJson {
    pub layer: String,
    pub op: &'static str,
    pub worst_bits: u32,
    pub worst_range: [i64; 2],
    pub observed_bits: Option<u32>,
    pub observed_range: Option<[i64; 2]>,
    pub tlu_input_bits: Option<u32>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PrunedJson {
    pub layer: String,
    pub before: usize,
    pub after: usize,
    pub constant: usize,
    pub dead: usize,
    /// Removed by `--prune-rate` (lossy).
    pub by_rate: usize,
    /// The neurons removed, numbered as in the imported model's layer.
    pub removed: Vec<usize>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PostJson {
    pub output: usize,
    pub node: String,
    pub op: &'static str,
    /// The op's attributes as the IR printer writes them (e.g. `(axis=1)`).
    pub attrs: String,
}

/// What the pipeline did (`inspect --json`'s `pipeline`).
#[derive(Serialize, Debug, Clone)]
pub struct PipelineSummary {
    pub passes: Vec<PassJson>,
    pub tlu_count: Option<usize>,
    pub max_accumulator_bits: Option<u32>,
    pub layers: Vec<LayerJson>,
    pub pruned: Vec<PrunedJson>,
    pub postprocessing: Vec<PostJson>,
    pub ops_after: BTreeMap<String, usize>,
    pub nodes_after: usize,
}

pub fn layers_json(layers: &[LayerBits]) -> Vec<LayerJson> {
    layers
        .iter()
        .map(|l| LayerJson {
            layer: l.layer.clone(),
            op: l.op,
            worst_bits: l.worst_bits,
            worst_range: [l.worst.0, l.worst.1],
            observed_bits: l.observed_bits,
            observed_range: l.observed.map(|(a, b)| [a, b]),
            tlu_input_bits: l.tlu_input_bits,
        })
        .collect()
}

pub fn pruned_json(report: &PipelineReport) -> Vec<PrunedJson> {
    report
        .pruned
        .iter()
        .map(|p| PrunedJson {
            layer: p.layer.clone(),
            before: p.before,
            after: p.after,
            constant: p.constant,
            dead: p.dead,
            by_rate: p.by_rate,
            removed: p.removed.clone(),
        })
        .collect()
}

pub fn postprocessing_json(report: &PipelineReport) -> Vec<PostJson> {
    report
        .postprocessing
        .iter()
        .map(|p| PostJson {
            output: p.output,
            node: p.node.clone(),
            op: p.op.name(),
            attrs: fhec_ir::print::attrs(&p.op),
        })
        .collect()
}

/// IR op histogram of a graph.
pub fn op_histogram(g: &Graph) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for id in g.node_ids() {
        *h.entry(g.node(id).op.name().to_string()).or_default() += 1;
    }
    h
}

/// `Gemm×3, Relu×2`.
pub fn histogram_text(h: &BTreeMap<String, usize>) -> String {
    let v: Vec<String> = h
        .iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.clone()
            } else {
                format!("{k}\u{d7}{n}")
            }
        })
        .collect();
    v.join(", ")
}

/// The per-layer accumulator table.
pub fn layers_table(layers: &[LayerBits]) -> String {
    let range = |(a, b): (i64, i64)| format!("[{a}, {b}]");
    let mut rows: Vec<[String; 7]> = vec![[
        "layer".into(),
        "op".into(),
        "worst".into(),
        "worst range".into(),
        "observed".into(),
        "observed range".into(),
        "table input".into(),
    ]];
    for l in layers {
        rows.push([
            l.layer.clone(),
            l.op.to_string(),
            format!("{} bits", l.worst_bits),
            range(l.worst),
            l.observed_bits.map_or("-".into(), |b| format!("{b} bits")),
            l.observed.map_or("-".into(), range),
            l.tlu_input_bits.map_or("-".into(), |b| format!("{b} bits")),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                // Names and ops left-aligned, numbers right-aligned.
                if i < 2 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits() {
        assert_eq!(fit(&[30], &[1, 30]), Some(Fit::AddBatch));
        assert_eq!(fit(&[1, 30], &[1, 30]), Some(Fit::AsIs));
        assert_eq!(fit(&[1, 28, 28], &[1, 1, 28, 28]), Some(Fit::AddBatch));
        assert_eq!(fit(&[1, 28, 28], &[1, 28, 28, 1]), Some(Fit::NchwToNhwc));
        assert_eq!(fit(&[3, 28, 28], &[1, 28, 28, 3]), Some(Fit::NchwToNhwc));
        assert_eq!(fit(&[28, 28, 1], &[1, 28, 28, 1]), Some(Fit::AddBatch));
        assert_eq!(fit(&[31], &[1, 30]), None);
        assert_eq!(fit(&[1, 28, 28], &[1, 3, 28, 28]), None);
    }

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

    #[test]
    fn nchw_samples_are_transposed() {
        let x = ndarray::ArrayD::from_shape_vec(
            IxDyn(&[2, 2, 1, 3]),
            (0..12).map(|v| v as f32).collect(),
        )
        .unwrap();
        let ds = Dataset {
            x,
            y: None,
            source: "t".into(),
        };
        let fact = TensorFact::f32(vec![1, 1, 3, 2]);
        let (s, note) = model_samples(&ds, "in", &fact, Path::new("d.npz"), "data").unwrap();
        assert!(note.unwrap().contains("NHWC"));
        assert_eq!(s[1].shape(), &[1, 1, 3, 2]);
        // sample 1 is channels [6,7,8] and [9,10,11]; NHWC interleaves them.
        assert_eq!(
            s[1].iter().copied().collect::<Vec<_>>(),
            vec![6., 9., 7., 10., 8., 11.]
        );
        let bad = TensorFact::f32(vec![1, 5]);
        let e = model_samples(&ds, "in", &bad, Path::new("d.npz"), "data").unwrap_err();
        assert!(
            e.to_string().contains("[2,1,3]") && e.to_string().contains("[1,5]"),
            "{e}"
        );
    }
}
