//! Compiling: the pass pipeline with a [`QuantConfig`] ([`quantise`], or its two halves
//! [`calibrate`] and [`compile_calibrated`] when several configurations share a calibration),
//! then THE circuit builder ([`build_circuit`]): the backend's lowering and parameter search,
//! the model's output names and the client-side post-processing. Every path to a circuit —
//! `compile`, evaluation, sweeps, searches — goes through it, so they all run the same one.

use std::path::Path;
use std::time::{Duration, Instant};

use fhec_ir::{Graph, Tensor};
use fhec_passes::bitwidth::{max_accumulator_bits, tlu_count};
use fhec_passes::{run_pass, run_passes, PassContext, PipelineReport};
use fhec_runtime::circuit::{ClientOp, ClientStep};
use fhec_runtime::Circuit;

use crate::config::{CryptoConfig, QuantConfig, RoundingBits};
use crate::error::{DriverError, Result};

/// The result of the pass pipeline.
#[derive(Debug)]
pub struct Compiled {
    /// The options it was compiled with.
    pub quant: QuantConfig,
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
            fhec_ir::int_interp::run_counting(&self.graph, inputs)?
        } else {
            (fhec_ir::interp::run(&self.graph, inputs)?, 0)
        };
        let outs = self
            .report
            .apply_postprocessing(outs)
            .map_err(DriverError::ClientPostProcessing)?;
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
}

/// Compiles `graph` (a copy) through the whole pipeline.
pub fn quantise(
    graph: &Graph,
    quant: &QuantConfig,
    calibration: Vec<Vec<Tensor>>,
    model: &Path,
) -> Result<Compiled> {
    if let Some(RoundingBits::Auto { .. }) = quant.rounding_bits {
        return Err(DriverError::AutoRoundingUnresolved);
    }
    let calibrated = calibrate(graph, quant, calibration, model)?;
    compile_calibrated(calibrated, quant, model)
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
    /// The graph so far: canonicalised, pruned, calibration ranges recorded (still float).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// What the first half of the pipeline did (pruned layers included).
    pub fn report(&self) -> &PipelineReport {
        &self.ctx.report
    }

    /// Whether a compile with `quant` may continue from this.
    pub fn serves(&self, quant: &QuantConfig) -> bool {
        let (mine, theirs) = (&self.ctx.options, quant.pass_options());
        mine.prune_threshold == theirs.prune_threshold
            && mine.prune_rates == theirs.prune_rates
            && mine.prune_method == theirs.prune_method
            && mine.quantization.is_some() == theirs.quantization.is_some()
    }
}

/// Runs the first half of the pipeline on a copy of `graph`.
pub fn calibrate(
    graph: &Graph,
    quant: &QuantConfig,
    calibration: Vec<Vec<Tensor>>,
    model: &Path,
) -> Result<Calibrated> {
    let start = Instant::now();
    let mut graph = graph.clone();
    let mut ctx = PassContext::new(quant.pass_options());
    ctx.calibration_inputs = calibration;
    let (first, _) = fhec_passes::pipeline_split();
    run_passes(&mut graph, &mut ctx, first).map_err(|e| pipeline_error(e, quant, model, &ctx))?;
    Ok(Calibrated {
        graph,
        ctx,
        elapsed: start.elapsed(),
    })
}

/// Runs the second half of the pipeline with `quant`'s quantisation, rounding and range
/// options on a [`Calibrated`] graph (whose pruning options must match:
/// [`Calibrated::serves`]).
pub fn compile_calibrated(
    calibrated: Calibrated,
    quant: &QuantConfig,
    model: &Path,
) -> Result<Compiled> {
    let start = Instant::now();
    let Calibrated {
        mut graph,
        mut ctx,
        elapsed,
    } = calibrated;
    ctx.options = quant.pass_options();
    let quantized = ctx.options.quantization.is_some();
    let (_, second) = fhec_passes::pipeline_split();
    for pass in second {
        run_pass(&mut graph, &mut ctx, pass).map_err(|e| pipeline_error(e, quant, model, &ctx))?;
    }
    Ok(Compiled {
        quant: quant.clone(),
        graph,
        report: ctx.report,
        quantized,
        elapsed: elapsed + start.elapsed(),
    })
}

/// A pipeline failure, typed: missing calibration data apart.
fn pipeline_error(
    source: fhec_passes::PassError,
    quant: &QuantConfig,
    model: &Path,
    ctx: &PassContext,
) -> DriverError {
    let model = model.to_path_buf();
    if ctx.calibration_inputs.is_empty()
        && matches!(source.source, fhec_ir::IrError::NeedsCalibration { .. })
    {
        return DriverError::NeedsCalibration {
            model,
            config: quant.describe(),
            source,
        };
    }
    DriverError::Pipeline {
        model,
        config: quant.bits.map(|_| quant.describe()),
        source,
    }
}

/// THE circuit builder: the quantised graph lowered to a circuit program with TFHE
/// parameters for `crypto`'s target, its outputs named after the model's (the lowering
/// names them after their last node) and the pipeline's client-side post-processing
/// attached.
pub fn build_circuit(
    compiled: &Compiled,
    crypto: &CryptoConfig,
    model: &Path,
    output_names: &[String],
) -> Result<(Circuit, fhec_backend::BackendTimings)> {
    if !compiled.quantized {
        return Err(DriverError::NotQuantised);
    }
    let (mut circuit, timings) = fhec_backend::compile_timed(&compiled.graph, &crypto.options())
        .map_err(|source| DriverError::Circuit {
            model: model.to_path_buf(),
            config: format!("{}; {}", compiled.quant.describe(), crypto.describe()),
            source,
        })?;
    for (spec, name) in circuit.program.outputs.iter_mut().zip(output_names) {
        spec.name = name.clone();
    }
    circuit.postprocessing = compiled
        .report
        .postprocessing
        .iter()
        .filter(|p| !matches!(p.op, fhec_ir::Op::Identity))
        .map(|p| client_op(p.output, &p.op))
        .collect::<Result<_>>()?;
    Ok((circuit, timings))
}

/// The client-side post-processing of the pipeline report in the runtime's terms.
fn client_op(output: usize, op: &fhec_ir::Op) -> Result<ClientOp> {
    let step = match op {
        fhec_ir::Op::Softmax { axis } => ClientStep::Softmax { axis: *axis },
        fhec_ir::Op::Reshape { shape } => ClientStep::Reshape {
            shape: shape.clone(),
        },
        fhec_ir::Op::Transpose { perm } => ClientStep::Transpose { perm: perm.clone() },
        other => return Err(DriverError::PostProcessing { op: other.name() }),
    };
    Ok(ClientOp { output, step })
}

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
    hooks: &crate::Hooks,
) -> Result<CompiledModel> {
    let start = Instant::now();
    let model = crate::model::import_model(path, import)?;
    let imported = start.elapsed();
    let quant = match (&quant.rounding_bits, &quant.calib) {
        (Some(RoundingBits::Auto { .. }), None) => {
            return Err(DriverError::AutoRounding(
                crate::error::AutoRoundingProblem::NoData,
            ))
        }
        (_, Some(calib)) => crate::tune::resolve_auto_rounding(
            &model.graph,
            path,
            quant,
            crypto,
            calib,
            &crate::data::DataKeys::default(),
            hooks,
        )?,
        (_, None) => quant.clone(),
    };
    let calibration = crate::samples::calibration_for(&model.graph, &quant, path, hooks)?;
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
