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
use crate::report::{
    layers_json, op_histogram, postprocessing_json, pruned_json, PassJson, PipelineSummary,
    TableRangesJson,
};

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

    /// How the tables' input domains were chosen, and what narrowing did.
    pub fn table_ranges(&self) -> TableRangesJson {
        TableRangesJson::new(self.quant.table_ranges(), &self.graph, &self.report)
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
