//! Whole jobs, as a command runs them: an ONNX file to a circuit ([`compile_model`]). They sit
//! above the pieces they combine (import, auto rounding, calibration, pipeline, circuit
//! builder), which never call back up.

use std::path::Path;
use std::time::{Duration, Instant};

use fhec_runtime::Circuit;

use crate::compile::{build_circuit, quantise, Compiled};
use crate::config::{CryptoConfig, QuantConfig, RoundingBits};
use crate::data::DataKeys;
use crate::error::{AutoRoundingProblem, DriverError, Result};
use crate::hooks::Hooks;
use crate::samples::calibration_for;
use crate::tune::resolve_auto_rounding;

/// A model compiled from its file: what [`compile_model`] returns.
pub struct CompiledModel {
    pub model: fhec_frontend::ImportedModel,
    /// The options used (an `auto` rounding width resolved).
    pub quant: QuantConfig,
    pub compiled: Compiled,
    pub circuit: Circuit,
    /// Where the time went, in order: import, calibration data, each pass, lowering,
    /// parameter search.
    pub phases: Vec<(&'static str, Duration)>,
}

/// ONNX file → circuit, as `fhec compile` does: import, resolve an `auto` rounding width on
/// the (labelled) calibration file, load the calibration data, run the pipeline, build the
/// circuit.
pub fn compile_model(
    path: &Path,
    import: &fhec_frontend::ImportOptions,
    quant: &QuantConfig,
    crypto: &CryptoConfig,
    hooks: &Hooks,
) -> Result<CompiledModel> {
    let start = Instant::now();
    let model = crate::model::import_model(path, import)?;
    let imported = start.elapsed();
    let quant = match (&quant.rounding_bits, &quant.calib) {
        (Some(RoundingBits::Auto { .. }), None) => {
            return Err(DriverError::AutoRounding(AutoRoundingProblem::NoData))
        }
        (_, Some(calib)) => resolve_auto_rounding(
            &model.graph,
            path,
            quant,
            crypto,
            calib,
            &DataKeys::default(),
            hooks,
        )?,
        (_, None) => quant.clone(),
    };
    let calibration = calibration_for(&model.graph, &quant, path, hooks)?;
    let loaded = start.elapsed();
    let compiled = quantise(&model.graph, &quant, calibration.samples, path)?;
    let (circuit, timings) = build_circuit(&compiled, crypto, path, &model.output_names)?;
    let mut phases = vec![
        ("import", imported),
        ("load calibration data", loaded - imported),
    ];
    phases.extend(compiled.report.passes.iter().map(|p| (p.pass, p.elapsed)));
    phases.push(("lowering", timings.lowering));
    phases.push(("parameter search", timings.parameter_search));
    Ok(CompiledModel {
        model,
        quant,
        compiled,
        circuit,
        phases,
    })
}
