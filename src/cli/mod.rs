//! One module per `fhec` command, plus the options and helpers they share. The work itself
//! is the driver's ([`fhec_driver`]); here are the flags, the rendering, and [`advise`], which
//! turns a driver error into a report that names the flags to change.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use fhec_driver::error::{DriverError, FileFix, OptionNames};
use fhec_frontend::{ImportOptions, ImportedModel, InputShape};

pub mod compile;
pub mod eval;
pub mod fhe;
pub mod inspect;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod prune;
pub mod prune_stats;
pub mod quant_args;
pub mod sweep;
pub mod text;
pub mod tune;

pub use fhec_driver::error::shape_text;
pub use fhec_driver::report::json_text;
pub use fhec_driver::samples::dtype_name as ir_dtype_name;

/// How a model is imported; shared by every command that reads an ONNX model.
#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// Static shape of a graph input whose dimensions the model leaves symbolic:
    /// NAME=D0,D1,... or D0,D1,... (unnamed ones apply to the graph inputs in order);
    /// repeat for several inputs. The batch dimension must be 1.
    #[arg(long = "input-shape", value_name = "[NAME=]D0,D1,...")]
    pub input_shapes: Vec<InputShape>,
}

impl ImportArgs {
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            input_shapes: self.input_shapes.clone(),
            ..Default::default()
        }
    }
}

/// Reads and imports a model.
pub fn import_model(path: &Path, args: &ImportArgs) -> Result<ImportedModel> {
    fhec_driver::model::import_model(path, &args.options()).map_err(|e| advise(e, CALIB_HINT))
}

/// How a command that compiles without a dataset takes calibration data.
pub const CALIB_HINT: &str =
    "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy)";

/// How a command that evaluates on a dataset takes calibration data.
pub const DATA_CALIB_HINT: &str =
    "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy), \
     or a --data file that has a train split";

/// A driver error as the command line reports it: the driver's message (and its causes),
/// with the flags that change what went wrong. `calib_hint` says how this command takes
/// calibration data.
pub fn advise(e: DriverError, calib_hint: &str) -> anyhow::Error {
    use fhec_driver::data::DataError;
    let text = e.to_string();
    match e {
        DriverError::NeedsCalibration { source, .. } => {
            anyhow::Error::new(source).context(format!("{text}: {calib_hint}"))
        }
        DriverError::Circuit { source, .. } => compile::backend_error(source).context(text),
        DriverError::NotQuantised => {
            anyhow!("FHE needs a quantised model: pass --bits N (2..=8)")
        }
        DriverError::AutoRoundingUnresolved => anyhow!(
            "--rounding-bits auto is chosen on labelled data by `fhec eval` and `fhec compile` \
             (with a labelled --calib); give a width here, e.g. --rounding-bits 6"
        ),
        DriverError::AutoRounding(p) => anyhow!(p.text(&FLAGS)),
        DriverError::UnknownShapeInput {
            model,
            name,
            inputs,
        } => anyhow!(
            "--input-shape {name}=...: model '{}' has no graph input '{name}'; its inputs are \
             {inputs:?}",
            model.display()
        ),
        DriverError::TooManyInputShapes {
            model,
            given,
            inputs,
        } => anyhow!(
            "{given} unnamed --input-shape values given but model '{}' has {} graph input(s) \
             {inputs:?}",
            model.display(),
            inputs.len()
        ),
        DriverError::ForeignFile { path, problem, fix } => anyhow!(
            "'{}' {problem}; {}",
            path.display(),
            match fix {
                FileFix::MoveAway => "move it away or choose another --out",
                FileFix::StartAgain => "use --overwrite to start again",
                FileFix::Rerun => "rerun it with this fhec",
            }
        ),
        DriverError::SetupChanged { dir, why } => anyhow!(
            "'{}' holds a search with another setup ({why}); use the same options, or \
             --overwrite",
            dir.display()
        ),
        DriverError::MergeInputNotDir { path } => anyhow!(
            "--merge '{}': not a directory (give the --out directories of the shards)",
            path.display()
        ),
        DriverError::MergeIntoInput { path } => anyhow!(
            "--merge '{}' is also --out: merge into a directory of its own",
            path.display()
        ),
        DriverError::ResultsExist { dir, what } => anyhow!(
            "'{}' already holds {what}; pass --resume to continue it or --overwrite to start \
             again",
            dir.display()
        ),
        DriverError::Data {
            source:
                source @ (DataError::MissingKey { .. }
                | DataError::UnknownLayout { .. }
                | DataError::LengthMismatch { .. }
                | DataError::KeyNotApplicable { .. }),
            ..
        } => anyhow::Error::new(source).context(format!("{text} (x_key/y_key: --x-key/--y-key)")),
        e @ DriverError::SampleShape { .. } => anyhow::Error::new(e)
            .context("the data does not fit the model (choose the arrays with --x-key/--y-key)"),
        e => anyhow::Error::new(e),
    }
}

/// The options an error can point to, by their flags.
const FLAGS: OptionNames = OptionNames {
    auto_rounding: "--rounding-bits auto",
    bits: "--bits",
    p_error: "--p-error",
    global_p_error: "--global-p-error",
    prune_rate: "--prune-rate",
    calib: "--calib",
};

/// Writes to stdout; a closed pipe (`fhec inspect ... | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// Numpy-style name of an ONNX element type code.
pub fn onnx_dtype_name(code: i32) -> String {
    use fhec_frontend::tensor::onnx_type;
    match code {
        onnx_type::FLOAT => "float32".into(),
        onnx_type::DOUBLE => "float64".into(),
        onnx_type::FLOAT16 => "float16".into(),
        onnx_type::UINT8 => "uint8".into(),
        onnx_type::INT8 => "int8".into(),
        onnx_type::UINT16 => "uint16".into(),
        onnx_type::INT16 => "int16".into(),
        onnx_type::INT32 => "int32".into(),
        onnx_type::INT64 => "int64".into(),
        onnx_type::UINT32 => "uint32".into(),
        onnx_type::BOOL => "bool".into(),
        13 => "uint64".into(),
        16 => "bfloat16".into(),
        other => onnx_type::name(other).to_lowercase(),
    }
}

/// The accepted data layouts, for `--help` (the README "Data files" section says the same).
pub fn layout_note() -> &'static str {
    "Data files: (1) .npz with 'x_test'/'y_test' (and 'x_train'/'y_train' for \
     calibration): features float32/float64/integer, used as-is, shape [N, ...] exactly \
     as the model takes it; labels integer (or float holding integers), shape [N] or \
     [N,1]. (2) MedMNIST .npz: 'test_images'/'test_labels' (and 'train_images'/\
     'train_labels'), uint8 [N,H,W] grey or [N,H,W,3] RGB, converted to float NCHW in \
     [0,1] (divided by 255; grey becomes [N,1,H,W]). (3) --x-key/--y-key name other \
     arrays, read verbatim (no scaling, no transposition); they select the test split, \
     and for the train split a key containing 'test' has it replaced by 'train' (other \
     keys fall back to the train layout above); without --y-key the labels are the \
     array paired with --x-key ('x_…'→'y_…', '…_images'→'…_labels') if present. \
     (4) .csv/.tsv: one sample per row, optional header row (detected when the first row \
     is not all numbers); the label column is --y-key, else the column named \
     'label'/'target'/'y', else the last column; every other column is a feature \
     ([N,F]); the whole file is used for every split. (5) .npy: features only [N, ...], \
     no labels. NaN/Inf features, empty files and feature/label count mismatches are \
     rejected."
}

#[cfg(test)]
mod tests {
    use super::layout_note;

    #[test]
    fn layout_note_mentions_every_format() {
        let note = layout_note();
        for k in [
            "x_test",
            "test_images",
            "255",
            "--x-key",
            ".csv",
            ".npy",
            "label",
        ] {
            assert!(note.contains(k), "{k}");
        }
        assert!(!note.contains('\n'));
    }
}
