//! [`DriverError`]: every way the driver fails, with the data a caller needs to explain it
//! or to advise. Messages say what went wrong in the library's own terms (a field of
//! [`crate::QuantConfig`], a file, a node); they never name a command-line flag — the CLI
//! adds those, a Python binding would add keyword names.

use std::path::PathBuf;

use crate::data::DataError;

/// The role of a data file, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataRole {
    /// Labelled samples to evaluate on.
    Test,
    /// Representative inputs that set quantisation ranges.
    Calibration,
    /// The train split a search calibrates on.
    SearchTrain,
}

impl std::fmt::Display for DataRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataRole::Test => "test data",
            DataRole::Calibration => "calibration data",
            DataRole::SearchTrain => "the train split (the search calibrates on it) of",
        })
    }
}

/// Everything the driver refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot read {what} '{}'", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read '{}': {problem}", path.display())]
    BadNpy { path: PathBuf, problem: String },
    /// An input array that does not fit the model or circuit input it feeds.
    #[error("{problem}")]
    Input { path: PathBuf, problem: String },
    #[error("cannot write '{}'", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot import model '{}'{}", path.display(), looks_like.map(|k| format!(": it looks like {k}, not an ONNX model")).unwrap_or_default())]
    Import {
        path: PathBuf,
        /// What the file looks like when it is not ONNX at all.
        looks_like: Option<&'static str>,
        #[source]
        source: fhec_frontend::FrontendError,
    },
    #[error("input shape {name}=...: model '{}' has no graph input '{name}'; its inputs are {inputs:?}", model.display())]
    UnknownShapeInput {
        model: PathBuf,
        name: String,
        inputs: Vec<String>,
    },
    #[error("{given} unnamed input shapes given but model '{}' has {} graph input(s) {inputs:?}", model.display(), inputs.len())]
    TooManyInputShapes {
        model: PathBuf,
        given: usize,
        inputs: Vec<String>,
    },
    #[error("model '{}' has {count} graph inputs; dataset evaluation and calibration support models with exactly one input", model.display())]
    NotOneInput { model: PathBuf, count: usize },
    #[error("cannot load {role} '{}'", path.display())]
    Data {
        role: DataRole,
        path: PathBuf,
        #[source]
        source: DataError,
    },
    #[error("'{}' has no labels ({source_desc}); evaluation needs labels: y_test / test_labels in a .npz (or name the array with y_key), or a label column in a .csv", path.display())]
    NoLabels { path: PathBuf, source_desc: String },
    #[error("'{}': the {what} has no labels", path.display())]
    NoSplitLabels { path: PathBuf, what: &'static str },
    #[error("'{}' holds no {what} samples", path.display())]
    NoSamples { path: PathBuf, what: &'static str },
    #[error("'{}': label of test sample {sample} is {label}; labels must be class indices >= 0", path.display())]
    NegativeLabel {
        path: PathBuf,
        sample: usize,
        label: i64,
    },
    #[error(
        "{role} '{}' has samples of shape {} (the file's array is {}) but model input '{input}' is {dtype} {}, so it takes samples of shape {}{}; pass the right file or choose its arrays with x_key/y_key",
        path.display(), shape_text(sample), shape_text(array), shape_text(input_shape),
        shape_text(if input_shape.first() == Some(&1) { &input_shape[1..] } else { input_shape }),
        if input_shape.len() == 4 && input_shape[0] == 1 { "; (NCHW [C,H,W] samples are transposed automatically for a model taking NHWC [1,H,W,C] input)" } else { "" }
    )]
    SampleShape {
        role: &'static str,
        path: PathBuf,
        sample: Vec<usize>,
        array: Vec<usize>,
        input: String,
        dtype: &'static str,
        input_shape: Vec<usize>,
    },
    #[error("{role} '{}': sample {sample} holds {value}, but model input '{input}' is {dtype} (integers in [{lo}, {hi}])", path.display())]
    SampleValue {
        role: &'static str,
        path: PathBuf,
        sample: usize,
        value: f32,
        input: String,
        dtype: &'static str,
        lo: i64,
        hi: i64,
    },
    #[error("FHE needs a quantised model: set a bit width (2..=8)")]
    NotQuantised,
    #[error("an `auto` rounding width must be chosen on labelled data (tune::resolve_auto_rounding) before compiling; give a width here")]
    AutoRoundingUnresolved,
    #[error("{}", .0.text(&FIELD_NAMES))]
    AutoRounding(AutoRoundingProblem),
    #[error("cannot compile '{}' ({config}): the model is not fully quantisation-aware, so quantising it needs calibration data", model.display())]
    NeedsCalibration {
        model: PathBuf,
        config: String,
        #[source]
        source: fhec_passes::PassError,
    },
    #[error("cannot compile '{}'{}", model.display(), config.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Pipeline {
        model: PathBuf,
        config: Option<String>,
        #[source]
        source: fhec_passes::PassError,
    },
    #[error("cannot compile '{}' to a circuit ({config})", model.display())]
    Circuit {
        model: PathBuf,
        config: String,
        #[source]
        source: fhec_backend::BackendError,
    },
    #[error("client post-processing op {op} has no runtime equivalent")]
    PostProcessing { op: &'static str },
    #[error("{what} execution failed on test sample {sample}")]
    Sample {
        what: &'static str,
        sample: usize,
        #[source]
        source: Box<DriverError>,
    },
    #[error("{0}")]
    Interpreter(#[from] fhec_ir::interp::InterpError),
    #[error("client post-processing failed: {0}")]
    ClientPostProcessing(String),
    #[error(transparent)]
    Runtime(#[from] fhec_runtime::RuntimeError),
    #[error("the model has no output")]
    NoOutput,
    #[error("cancelled")]
    Cancelled,
    #[error("'{}' already holds {what}; resume it or start again (overwrite)", dir.display())]
    ResultsExist { dir: PathBuf, what: String },
    /// A file in an output directory that this version did not write (or cannot read).
    #[error("'{}' {problem}; {}", path.display(), fix.text())]
    ForeignFile {
        path: PathBuf,
        problem: String,
        fix: FileFix,
    },
    #[error("'{}' holds a search with another setup ({why}); use the same options, or start again (overwrite)", dir.display())]
    SetupChanged { dir: PathBuf, why: String },
    #[error("merge input '{}': not a directory (give the output directories of the shards)", path.display())]
    MergeInputNotDir { path: PathBuf },
    #[error("merge input '{}' is also the output: merge into a directory of its own", path.display())]
    MergeIntoInput { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

/// What to do about a file that is not what its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFix {
    /// Move it away, or write to another directory.
    MoveAway,
    /// Start the run again (overwriting the directory).
    StartAgain,
    /// Run it again with this version.
    Rerun,
}

impl FileFix {
    pub fn text(self) -> &'static str {
        match self {
            FileFix::MoveAway => "move it away or choose another output directory",
            FileFix::StartAgain => "start again (overwrite)",
            FileFix::Rerun => "rerun it with this version",
        }
    }
}

/// Why an `auto` rounding width could not be chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum AutoRoundingProblem {
    /// It chooses a width for a bit width, and none was given.
    NoBits,
    /// It works with a per-bootstrap failure probability only.
    GlobalPError,
    /// It works with one pruning rate for every layer.
    PerLayerPruneRates,
    /// No width came within the tolerance.
    NoWidth {
        tolerance: f64,
        bits: u32,
        float: f64,
        best: f64,
        validation: String,
    },
    /// There is no labelled data to choose on.
    NoData,
}

/// The names a front end gives the options an error can point to: the driver's own field
/// names ([`FIELD_NAMES`]), the command line's flags, a Python binding's keywords.
#[derive(Debug, Clone, Copy)]
pub struct OptionNames {
    /// Asking for an `auto` rounding width.
    pub auto_rounding: &'static str,
    pub bits: &'static str,
    pub p_error: &'static str,
    pub global_p_error: &'static str,
    pub prune_rate: &'static str,
    pub calib: &'static str,
}

/// The options by their [`crate::QuantConfig`] / [`crate::CryptoConfig`] field names.
pub const FIELD_NAMES: OptionNames = OptionNames {
    auto_rounding: "rounding_bits = auto",
    bits: "bits",
    p_error: "p_error",
    global_p_error: "global_p_error",
    prune_rate: "prune_rate",
    calib: "calib",
};

impl AutoRoundingProblem {
    /// The problem in a front end's option names.
    pub fn text(&self, n: &OptionNames) -> String {
        let auto = n.auto_rounding;
        match self {
            AutoRoundingProblem::NoBits => {
                format!(
                    "{auto} needs {}: it chooses a rounding width for them",
                    n.bits
                )
            }
            AutoRoundingProblem::GlobalPError => format!(
                "{auto} works with {} (per bootstrap), not {}",
                n.p_error, n.global_p_error
            ),
            AutoRoundingProblem::PerLayerPruneRates => {
                format!("{auto} works with one {}, not one per layer", n.prune_rate)
            }
            AutoRoundingProblem::NoWidth {
                tolerance,
                bits,
                float,
                best,
                validation,
            } => format!(
                "{auto}:{tolerance}: no rounding width keeps {bits}-bit accuracy within \
                 {tolerance} points of float ({float:.4}) on {validation} (best {best:.4}); \
                 raise the tolerance or {}, or give a width",
                n.bits
            ),
            AutoRoundingProblem::NoData => format!(
                "{auto} needs labelled data to choose on: give {} D.npz (with labels; its val \
                 split, or a part of its train split, scores the widths)",
                n.calib
            ),
        }
    }
}

/// `[1,3,28,28]`.
pub fn shape_text(shape: &[usize]) -> String {
    let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", s.join(","))
}

impl DriverError {
    /// The error and its causes on one line (a CSV `error` cell, a search record).
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// Any error and its causes on one line, whitespace collapsed.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;
