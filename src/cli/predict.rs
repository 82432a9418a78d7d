//! `fhec predict`: runs a model on `.npy` inputs and writes its first output as `.npy`.
//!
//! Each `--input` holds one sample (the graph input's shape, which has batch 1, with or
//! without that leading 1) or a batch of samples stacked along axis 0. Samples are run
//! independently (in parallel) and the first graph output is written batched the same way.
//!
//! `--mode clear` compiles the model through the whole pass pipeline with quantisation on
//! (`--bits`, calibrated on `--calib`) and runs the integer graph in the clear: exactly what
//! the FHE circuit computes. The written output is dequantised, with any client-side
//! post-processing (e.g. a split-off softmax) applied.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use fhec_ir::{Graph, Tensor};
use rayon::prelude::*;

use super::compile::CryptoArgs;
use super::quant_args::QuantArgs;
use super::{advise, import_model, json_text, print_out, shape_text, ImportArgs, CALIB_HINT};
use fhec_driver::feed::{assemble, common_batch, make_feed, Feed};
use fhec_driver::npy::{read_npy, write_npy};
use fhec_driver::report::CircuitReport;
use fhec_driver::session::{FheSession, FheTimings};
use fhec_driver::Hooks;
use fhec_runtime::atomic::{Access, PendingFile};

/// How `predict` executes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The imported graph in plain floating point (no quantization, no encryption).
    Float,
    /// The quantised integer graph, executed in the clear (bit-exact with FHE; needs --bits
    /// and, unless the model is fully QAT, --calib).
    Clear,
    /// The compiled circuit with the noise its parameters predict (needs --bits).
    Simulate,
    /// Real encryption in one process: keygen, encrypt, run, decrypt (needs --bits).
    Fhe,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Float => "float",
            Mode::Clear => "clear",
            Mode::Simulate => "simulate",
            Mode::Fhe => "fhe",
        }
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The ONNX model to run.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// A .npy array (float32/float64; integers for int8/uint8 inputs) for one graph input:
    /// one sample, or a batch stacked along axis 0. Give one per graph input, in order.
    #[arg(long = "input", short = 'i', value_name = "X.npy", required = true)]
    pub inputs: Vec<PathBuf>,
    /// How to execute the model.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Where to write the first graph output (.npy, float32), batched like the inputs.
    #[arg(long, short = 'o', value_name = "OUT.npy")]
    pub output: PathBuf,
    /// Also print one JSON object (outputs, circuit, timings per phase) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seed of the simulation's noise (simulate mode).
    #[arg(long, default_value = "0")]
    pub seed: u64,
    #[command(flatten)]
    pub import: ImportArgs,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub crypto: CryptoArgs,
}

#[derive(serde::Serialize)]
struct PredictJson {
    output: String,
    mode: &'static str,
    shape: Vec<usize>,
    values: Vec<f32>,
    samples: usize,
    circuit: Option<CircuitReport>,
    #[serde(flatten)]
    fhe: Option<FheTimings>,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    match args.mode {
        Mode::Float if args.quant.any_given() => bail!(
            "the quantisation options (--bits, --calib, --rounding-bits, --prune-threshold, ...) \
             only apply to --mode clear"
        ),
        Mode::Clear | Mode::Simulate | Mode::Fhe if args.quant.bits.is_none() => bail!(
            "--mode {} needs --bits N (2..=8): the quantisation width of weights, activations \
             and inputs",
            args.mode.name()
        ),
        _ => {}
    }
    let model = import_model(&args.model, &args.import)?;
    let graph = &model.graph;
    let n_inputs = graph.inputs().len();
    if args.inputs.len() != n_inputs {
        bail!(
            "model '{}' has {n_inputs} graph input(s) {:?} but {} --input file(s) were given; pass one .npy per graph input, in this order",
            args.model.display(),
            model.input_names,
            args.inputs.len()
        );
    }
    let mut feeds = Vec::with_capacity(n_inputs);
    for (path, &id) in args.inputs.iter().zip(graph.inputs()) {
        let node = graph.node(id);
        let array = read_npy(path)?;
        feeds.push(make_feed(array, path, &node.name, &node.fact)?);
    }
    let batch = common_batch(&feeds, &args.inputs)?;
    let batched = feeds.iter().any(|f| f.batch.is_some());

    // Fail on an unwritable output before doing any work.
    let mut inputs = vec![args.model.as_path()];
    inputs.extend(args.inputs.iter().map(PathBuf::as_path));
    super::compile::check_not_an_input(&args.output, &inputs)?;
    let pending = PendingFile::create(&args.output, Access::Shared)
        .with_context(|| format!("cannot write '{}'", args.output.display()))?;
    let mut circuit_report = None;
    let mut fhe_timings = None;
    let output = match args.mode {
        Mode::Float => run_float(graph, &feeds, batch)?,
        Mode::Simulate | Mode::Fhe => {
            let compiled = quantised(graph, &args.model, &args.quant)?;
            let (circuit, _) = fhec_driver::build_circuit(
                &compiled,
                &args.crypto.config(),
                &args.model,
                &model.output_names,
            )
            .map_err(|e| advise(e, CALIB_HINT))?;
            let report = CircuitReport::new(&circuit);
            eprintln!(
                "circuit: {} bootstraps, {}, predicted {:.3} s per sample",
                report.pbs_count, circuit.params, report.predicted_latency_s
            );
            circuit_report = Some(report);
            let post = |outs: Vec<Tensor>| {
                fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outs)
                    .map_err(anyhow::Error::new)
            };
            if args.mode == Mode::Simulate {
                run_samples(&feeds, batch, "simulated", |inputs| {
                    let seed = args.seed;
                    post(fhec_runtime::simulate::simulate(&circuit, inputs, seed)?)
                })?
            } else {
                let mut session = FheSession::new(&circuit)?;
                let mut outs = Vec::with_capacity(batch);
                for i in 0..batch {
                    let inputs: Vec<Tensor> = feeds.iter().map(|f| f.sample(i)).collect();
                    let o = session
                        .infer(&circuit, &inputs)
                        .with_context(|| format!("encrypted execution failed on sample {i}"))?;
                    let mut o = post(o)?;
                    if o.is_empty() {
                        bail!("the circuit produced no output");
                    }
                    outs.push(o.swap_remove(0));
                }
                fhe_timings = Some(session.timings);
                outs
            }
        }
        Mode::Clear => {
            let compiled = quantised(graph, &args.model, &args.quant)?;
            run_samples(&feeds, batch, "quantised (clear)", |inputs| {
                Ok(compiled.run(inputs)?)
            })?
        }
    };
    let output = assemble(output, batched)?;
    write_npy(pending, &output)?;
    if args.json {
        return print_out(&json_text(&PredictJson {
            output: args.output.display().to_string(),
            mode: args.mode.name(),
            shape: output.shape().to_vec(),
            values: output.iter().copied().collect(),
            samples: batch,
            circuit: circuit_report,
            fhe: fhe_timings,
        }));
    }

    let out_id = graph.outputs()[0];
    let out_name = &graph.node(out_id).name;
    let mut text = format!(
        "wrote '{}': output '{}' float32 {} ({batch} sample{}, mode {})\n",
        args.output.display(),
        model.output_names.first().unwrap_or(out_name),
        shape_text(output.shape()),
        if batch == 1 { "" } else { "s" },
        args.mode.name(),
    );
    if output.len() <= 16 {
        let vals: Vec<String> = output.iter().map(|v| format!("{v:.6}")).collect();
        text.push_str(&format!("  [{}]\n", vals.join(", ")));
    }
    if graph.outputs().len() > 1 {
        text.push_str(&format!(
            "note: the model has {} outputs {:?}; only the first is written\n",
            graph.outputs().len(),
            model.output_names
        ));
    }
    print_out(&text)
}

/// Runs every sample through the float interpreter; returns the first output of each.
fn run_float(graph: &Graph, feeds: &[Feed], batch: usize) -> Result<Vec<Tensor>> {
    run_samples(feeds, batch, "float", |inputs| {
        fhec_ir::interp::run(graph, inputs).map_err(anyhow::Error::new)
    })
}

/// Runs `f` on every sample in parallel; returns the first output of each.
fn run_samples<F>(feeds: &[Feed], batch: usize, what: &str, f: F) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>> + Sync,
{
    let results: Vec<Result<Tensor>> = (0..batch)
        .into_par_iter()
        .map(|i| {
            let inputs: Vec<Tensor> = feeds.iter().map(|f| f.sample(i)).collect();
            let mut outs =
                f(&inputs).with_context(|| format!("{what} execution failed on sample {i}"))?;
            if outs.is_empty() {
                bail!("the model produced no output on sample {i}");
            }
            Ok(outs.swap_remove(0))
        })
        .collect();
    results.into_iter().collect()
}

/// The model quantised with `--bits` and friends, calibrated on `--calib` when given.
fn quantised(
    graph: &fhec_ir::Graph,
    model: &std::path::Path,
    quant: &QuantArgs,
) -> Result<fhec_driver::Compiled> {
    let progress = super::progress::Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let quant = quant.config();
    let calibration = fhec_driver::samples::calibration_for(graph, &quant, model, &hooks)
        .map_err(|e| advise(e, CALIB_HINT))?;
    fhec_driver::quantise(graph, &quant, calibration.samples, model)
        .map_err(|e| advise(e, CALIB_HINT))
}
