//! `fhec eval`: accuracy of a model on a labelled dataset, in float and quantised (clear)
//! execution, with what quantisation costs: table lookups, accumulator widths per layer,
//! pruned neurons, ops before and after the pipeline.
//!
//! The float accuracy always comes from the imported float graph; `--mode clear` also compiles
//! the model through the whole pipeline with quantisation on and runs the integer graph
//! (`int_interp`: exactly what the FHE circuit computes) on every sample. Samples run in
//! parallel (rayon). Info and progress lines go to stderr, the report (or, with `--json`, one
//! JSON object) to stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use fhec_ir::{Tensor, TensorFact};
use fhec_runtime::Circuit;
use rayon::prelude::*;
use serde::Serialize;

use super::compile::{CircuitReport, CryptoArgs};
use super::fhe::{FheSession, FheTimings};
use super::progress::{Progress, Task};
use super::quant_args::{
    histogram_text, layers_json, layers_table, load_calibration, model_samples, op_histogram,
    postprocessing_json, pruned_json, single_input, Calibration, Compiled, LayerJson, PassJson,
    PostJson, PrunedJson, QuantArgs, QuantSummary,
};
use super::{import_model, json_text, print_out, ImportArgs};
use crate::data::{load_dataset, DataError, DataKeys, Split};

/// How `eval` executes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalMode {
    /// The imported float graph only.
    Float,
    /// The quantised integer graph in the clear (bit-exact with FHE execution), compared with
    /// float.
    Clear,
    /// The compiled circuit with the noise its parameters predict drawn at every bootstrap:
    /// forecasts FHE accuracy over a whole test set.
    Simulate,
    /// Real encryption: keygen once, then encrypt, run and decrypt every sample (use
    /// --limit: each sample costs the predicted latency).
    Fhe,
}

impl EvalMode {
    pub fn name(self) -> &'static str {
        match self {
            EvalMode::Float => "float",
            EvalMode::Clear => "clear",
            EvalMode::Simulate => "simulate",
            EvalMode::Fhe => "fhe",
        }
    }
}

#[derive(Args, Debug)]
#[command(after_long_help = crate::data::layout_note())]
pub struct EvalArgs {
    /// The ONNX model to evaluate.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Labelled data (.npz, .csv, .tsv); its test split is evaluated (layouts below).
    /// Samples stored NCHW for a model taking NHWC images are transposed automatically.
    #[arg(long, value_name = "D.npz")]
    pub data: PathBuf,
    /// The .npz array holding the test features (read verbatim).
    #[arg(long, value_name = "KEY")]
    pub x_key: Option<String>,
    /// The .npz array (or CSV column) holding the labels.
    #[arg(long, value_name = "KEY")]
    pub y_key: Option<String>,
    /// float: the float model only; clear: also the quantised model (needs --bits);
    /// simulate / fhe: also the compiled circuit, simulated or encrypted.
    /// [default: clear with --bits, float without]
    #[arg(long, value_enum)]
    pub mode: Option<EvalMode>,
    /// Evaluate only the first K test samples.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Seed of the simulation's noise (simulate mode).
    #[arg(long, default_value = "0")]
    pub seed: u64,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub crypto: CryptoArgs,
    #[command(flatten)]
    pub import: ImportArgs,
}

/// Everything `eval` reports; `--json` prints it as is.
#[derive(Serialize, Debug)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub mode: &'static str,
    /// `--bits` (null when not quantised).
    pub bits: Option<u32>,
    /// The effective quantisation options.
    pub quantization: QuantSummary,
    pub samples: usize,
    /// Accuracy of the evaluated mode: quantised in clear mode, float in float mode.
    pub accuracy: f64,
    pub float_accuracy: f64,
    /// Quantised accuracy (clear mode only).
    pub quantized_accuracy: Option<f64>,
    /// Fraction of samples whose quantised argmax equals the float one (clear mode only).
    pub agreement: Option<f64>,
    /// Clear (quantised) accuracy on the same samples (simulate and fhe modes).
    pub clear_accuracy: Option<f64>,
    /// Fraction of samples whose simulated / encrypted argmax equals the clear one.
    pub clear_agreement: Option<f64>,
    /// Samples with a table lookup outside its table's domain (quantised runs; only tables
    /// on observed ranges can be left). Such a lookup reads a wrong (negacyclic) entry in
    /// FHE, and every engine here reproduces it.
    pub samples_outside_table_domain: Option<usize>,
    /// The circuit's cost and parameters (simulate and fhe modes).
    pub circuit: Option<CircuitReport>,
    /// Phases of encrypted inference (fhe mode).
    pub fhe_timings: Option<FheTimings>,
    pub correct: usize,
    pub float_correct: usize,
    /// Argmax per sample of the evaluated mode.
    pub predictions: Vec<usize>,
    pub float_predictions: Vec<usize>,
    pub calibration: Option<String>,
    pub calibration_samples: usize,
    /// A note when the data was transposed to fit the model input.
    pub layout: Option<String>,
    pub tlu_count: Option<usize>,
    pub max_accumulator_bits: Option<u32>,
    pub layers: Vec<LayerJson>,
    pub pruned: Vec<PrunedJson>,
    pub postprocessing: Vec<PostJson>,
    pub rounding: Option<RoundingJson>,
    pub nodes_before: usize,
    pub nodes_after: Option<usize>,
    pub ops_before: BTreeMap<String, usize>,
    pub ops_after: Option<BTreeMap<String, usize>>,
    pub passes: Vec<PassJson>,
    pub timings_ms: Timings,
}

#[derive(Serialize, Debug, Clone)]
pub struct RoundingJson {
    pub bits: u32,
    pub mode: &'static str,
    /// Table lookups whose input was narrowed.
    pub tables_rounded: usize,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Timings {
    pub import: f64,
    pub load_data: f64,
    pub compile: Option<f64>,
    pub float: f64,
    pub clear: Option<f64>,
    pub simulate: Option<f64>,
    pub fhe: Option<f64>,
    pub total: f64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn info(line: String) {
    eprintln!("{line}");
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(t: &Tensor) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in t.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Runs `f` on every sample in parallel; the first failure names its sample.
pub fn run_all<F>(samples: &[Tensor], what: &str, f: F) -> Result<Vec<usize>>
where
    F: Fn(&Tensor) -> Result<Tensor> + Sync,
{
    samples
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            f(x).map(|o| argmax(&o))
                .with_context(|| format!("{what} execution failed on test sample {i}"))
        })
        .collect()
}

/// A labelled test split, fitted to the model input: what eval and sweep evaluate on.
pub struct TestSet {
    /// One model-input-shaped tensor per sample.
    pub samples: Vec<Tensor>,
    /// Class index per sample (checked >= 0).
    pub labels: Vec<i64>,
    /// A note when the data was transposed to fit the model input.
    pub layout: Option<String>,
    /// Description of the file and arrays read.
    pub source: String,
}

/// Loads the test split of `data` (labels required, first `limit` samples) and fits it to
/// the model input.
pub fn load_test_set(
    data: &Path,
    keys: &DataKeys,
    limit: Option<usize>,
    input: &str,
    fact: &TensorFact,
) -> Result<TestSet> {
    let ds = load_dataset(data, Split::Test, keys)
        .with_context(|| format!("cannot load test data '{}'", data.display()))?;
    let Some(labels) = ds.y.clone() else {
        bail!(
            "'{}' has no labels ({}); evaluation needs labels: y_test / test_labels in a .npz \
             (or name the array with --y-key), or a label column in a .csv",
            data.display(),
            ds.source
        );
    };
    if ds.is_empty() {
        bail!("'{}' holds no test samples", data.display());
    }
    let ds = match limit {
        Some(k) => ds.head(k),
        None => ds,
    };
    let labels: Vec<i64> = labels.iter().take(ds.len()).copied().collect();
    check_labels(&labels, data)?;
    let (samples, layout) = model_samples(&ds, input, fact, data, "data")?;
    Ok(TestSet {
        samples,
        labels,
        layout,
        source: ds.source,
    })
}

/// Calibration data for evaluating on `data`: `--calib` when given, else the train split of
/// `data`, else none (with a note: only a fully quantisation-aware model compiles without).
pub fn data_calibration(
    quant: &QuantArgs,
    data: &Path,
    keys: &DataKeys,
    graph: &fhec_ir::Graph,
    model: &Path,
    info: &mut dyn FnMut(String),
) -> Result<Calibration> {
    match &quant.calib {
        Some(path) => load_calibration(path, keys, graph, model, quant.calib_limit, true, info),
        None => match load_calibration(
            data,
            keys,
            graph,
            model,
            quant.calib_limit,
            false,
            &mut |_| {},
        ) {
            Ok(c) => Ok(c),
            Err(e) if no_train_split(&e) => {
                info(format!(
                    "note: '{}' has no train split to calibrate on; pass --calib FILE \
                     unless the model is fully quantisation-aware",
                    data.display()
                ));
                Ok(Calibration::default())
            }
            Err(e) => Err(e),
        },
    }
}

/// How to give calibration data to a command that evaluates on a dataset.
pub const DATA_CALIB_HINT: &str =
    "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy), \
     or a --data file that has a train split";

/// Argmax of the float model per sample.
pub fn float_predictions(graph: &fhec_ir::Graph, samples: &[Tensor]) -> Result<Vec<usize>> {
    run_all(samples, "float", |x| {
        let mut outs =
            fhec_ir::interp::run(graph, std::slice::from_ref(x)).map_err(|e| anyhow!("{e}"))?;
        if outs.is_empty() {
            bail!("the model has no output");
        }
        Ok(outs.swap_remove(0))
    })
}

/// The quantised model's predictions over a test set.
pub struct ClearPredictions {
    /// Argmax per sample.
    pub predictions: Vec<usize>,
    /// Samples with at least one table lookup outside its table's domain (possible with
    /// tables on observed ranges; such a lookup reads the negacyclic wrap, as FHE does).
    pub left_domain: usize,
}

/// Argmax of the quantised model (integer graph + client post-processing) per sample.
pub fn clear_predictions(compiled: &Compiled, samples: &[Tensor]) -> Result<ClearPredictions> {
    let one = |x: &Tensor| -> Result<(usize, bool)> {
        let (mut outs, outside) = compiled.run_counting(std::slice::from_ref(x))?;
        if outs.is_empty() {
            bail!("the compiled model has no output");
        }
        Ok((argmax(&outs.swap_remove(0)), outside > 0))
    };
    let runs: Vec<(usize, bool)> = samples
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            one(x).with_context(|| format!("quantised (clear) execution failed on test sample {i}"))
        })
        .collect::<Result<_>>()?;
    Ok(ClearPredictions {
        predictions: runs.iter().map(|r| r.0).collect(),
        left_domain: runs.iter().filter(|r| r.1).count(),
    })
}

/// Compiles a quantised model into the circuit evaluation runs: no client post-processing
/// (the argmax does not need it).
pub fn evaluation_circuit(
    compiled: &Compiled,
    crypto: &CryptoArgs,
    model: &Path,
) -> Result<Circuit> {
    let mut circuit = fhec_backend::compile(&compiled.graph, &crypto.options())
        .map_err(super::compile::backend_error)
        .with_context(|| {
            format!(
                "cannot compile '{}' to a circuit ({})",
                model.display(),
                crypto.describe()
            )
        })?;
    circuit.postprocessing.clear();
    Ok(circuit)
}

/// Argmax of the simulated circuit per sample; sample `i` draws its noise from a seed
/// derived from `seed` and `i`, so results do not depend on the thread count.
pub fn simulate_predictions(
    circuit: &Circuit,
    samples: &[Tensor],
    seed: u64,
) -> Result<Vec<usize>> {
    samples
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            let seed = seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(i as u64);
            let outs = fhec_runtime::simulate::simulate(circuit, std::slice::from_ref(x), seed)
                .with_context(|| format!("simulation failed on test sample {i}"))?;
            outs.first()
                .map(argmax)
                .ok_or_else(|| anyhow!("the circuit has no output"))
        })
        .collect()
}

/// Encrypts, runs and decrypts every sample in turn (each run uses every thread); one
/// progress step per sample.
pub fn fhe_predictions(
    session: &mut FheSession,
    circuit: &Circuit,
    samples: &[Tensor],
    labels: &[i64],
    progress: &Task,
) -> Result<Vec<usize>> {
    let mut preds = Vec::with_capacity(samples.len());
    for (i, x) in samples.iter().enumerate() {
        let t = Instant::now();
        let outs = session
            .infer(circuit, std::slice::from_ref(x))
            .with_context(|| format!("encrypted execution failed on test sample {i}"))?;
        let p = outs
            .first()
            .map(argmax)
            .ok_or_else(|| anyhow!("the circuit has no output"))?;
        preds.push(p);
        progress.step(Some(&format!(
            "  sample {}/{}: predicted {p}, label {}, {:.3} s",
            i + 1,
            samples.len(),
            labels[i],
            t.elapsed().as_secs_f64()
        )));
    }
    Ok(preds)
}

/// Predictions equal to their label.
pub fn correct(preds: &[usize], labels: &[i64]) -> usize {
    preds
        .iter()
        .zip(labels)
        .filter(|(&p, &l)| p as i64 == l)
        .count()
}

/// Fraction of equal predictions (over the shorter of the two).
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let total = Instant::now();
    let mode = args.mode.unwrap_or(if args.quant.bits.is_some() {
        EvalMode::Clear
    } else {
        EvalMode::Float
    });
    if mode != EvalMode::Float && args.quant.bits.is_none() {
        bail!(
            "--mode {} needs --bits N (2..=8): the quantisation width of weights, activations and inputs",
            mode.name()
        );
    }

    let t = Instant::now();
    let model = import_model(&args.model, &args.import)?;
    let float_graph = &model.graph;
    let (input, fact) = single_input(float_graph, &args.model)?;
    let import_time = t.elapsed();

    // Test data (labels required).
    let t = Instant::now();
    let keys = DataKeys {
        x_key: args.x_key.clone(),
        y_key: args.y_key.clone(),
    };
    let test = load_test_set(
        &args.data,
        &keys,
        args.limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        input,
        fact,
    )?;
    let TestSet {
        samples,
        labels,
        layout,
        source,
    } = test;
    if let Some(n) = &layout {
        info(format!("note: {n}"));
    }

    // `--rounding-bits auto`: chosen on a validation slice of --data before anything else.
    let quant = &crate::cli::tune::resolve_auto_rounding(
        float_graph,
        &args.model,
        &args.quant,
        &args.crypto,
        &args.data,
        &keys,
    )?;

    // Calibration: --calib, else the train split of --data.
    let calibration = if quant.bits.is_some() {
        data_calibration(
            quant,
            &args.data,
            &keys,
            float_graph,
            &args.model,
            &mut info,
        )?
    } else {
        Calibration::default()
    };
    let load_time = t.elapsed();
    let calib_n = calibration.samples.len();

    // Compile.
    let compiled = if quant.bits.is_some() {
        let used = if calibration.available > calib_n {
            format!(
                "the first {calib_n} of {} samples (--calib-limit)",
                calibration.available
            )
        } else {
            format!("{calib_n} samples")
        };
        info(format!(
            "compiling: {}; calibrating on {used}",
            quant.describe()
        ));
        let calib_source = calibration.source.clone();
        Some((
            super::quant_args::compile(
                float_graph,
                quant,
                calibration.samples,
                &args.model,
                DATA_CALIB_HINT,
            )?,
            calib_source,
        ))
    } else {
        None
    };

    // Float inference.
    let t = Instant::now();
    let float_preds = float_predictions(float_graph, &samples)?;
    let float_time = t.elapsed();

    // Clear (quantised) inference.
    let t = Instant::now();
    let clear_preds = match (&compiled, mode) {
        (Some((c, _)), EvalMode::Clear | EvalMode::Simulate | EvalMode::Fhe) => {
            info(format!(
                "running the quantised model on {} samples",
                samples.len()
            ));
            Some(clear_predictions(c, &samples)?)
        }
        _ => None,
    };
    let left_domain = clear_preds.as_ref().map(|c| c.left_domain);
    let clear_preds = clear_preds.map(|c| c.predictions);
    let clear_time = clear_preds.as_ref().map(|_| t.elapsed());

    // The circuit: simulated or encrypted execution.
    let circuit = match (&compiled, mode) {
        (Some((c, _)), EvalMode::Simulate | EvalMode::Fhe) => {
            let circuit = evaluation_circuit(c, &args.crypto, &args.model)?;
            let report = CircuitReport::new(&circuit);
            info(format!(
                "circuit: {} bootstraps, {}, {:.3e} per bootstrap, predicted {:.3} s per sample",
                report.pbs_count,
                circuit.params,
                report.p_error_per_pbs,
                report.predicted_latency_s
            ));
            Some((circuit, report))
        }
        _ => None,
    };
    let t = Instant::now();
    let mut fhe_timings = None;
    let circuit_preds = match (&circuit, mode) {
        (Some((circuit, _)), EvalMode::Simulate) => {
            info(format!(
                "simulating the circuit on {} samples",
                samples.len()
            ));
            Some(simulate_predictions(circuit, &samples, args.seed)?)
        }
        (Some((circuit, report)), EvalMode::Fhe) => {
            let progress = Progress::stderr();
            let mut session = {
                let _spin = progress.spinner(&format!("generating keys ({})", circuit.params));
                FheSession::new(circuit)?
            };
            progress.line(&format!(
                "keys in {:.2} s; running {} encrypted samples (predicted {:.2} s each)",
                session.timings.keygen_s + session.timings.server_key_s,
                samples.len(),
                report.predicted_latency_s
            ));
            let bar = progress.bar(samples.len() as u64, "FHE samples");
            let preds = fhe_predictions(&mut session, circuit, &samples, &labels, &bar)?;
            fhe_timings = Some(session.timings);
            Some(preds)
        }
        _ => None,
    };
    let circuit_time = circuit_preds.as_ref().map(|_| t.elapsed());

    let n = samples.len();
    let count = |preds: &[usize]| correct(preds, &labels);
    let float_correct = count(&float_preds);
    let frac = |k: usize| k as f64 / n as f64;
    let evaluated = circuit_preds.as_ref().or(clear_preds.as_ref());
    let (correct, predictions) = match evaluated {
        Some(p) => (count(p), p.clone()),
        None => (float_correct, float_preds.clone()),
    };
    let agree = agreement;
    let agreement = evaluated.map(|p| agree(p, &float_preds));
    let clear_agreement = match (&circuit_preds, &clear_preds) {
        (Some(c), Some(q)) => Some(agree(c, q)),
        _ => None,
    };
    let clear_accuracy = match (&circuit_preds, &clear_preds) {
        (Some(_), Some(q)) => Some(frac(count(q))),
        _ => None,
    };

    let (comp, calib_source) = match &compiled {
        Some((c, s)) => (Some(c), s.clone()),
        None => (None, None),
    };
    let report = EvalReport {
        model: args.model.display().to_string(),
        data: source,
        mode: mode.name(),
        bits: quant.bits,
        quantization: quant.summary(),
        samples: n,
        accuracy: frac(correct),
        float_accuracy: frac(float_correct),
        quantized_accuracy: evaluated.map(|_| frac(correct)),
        agreement,
        clear_accuracy,
        clear_agreement,
        samples_outside_table_domain: left_domain,
        circuit: circuit.as_ref().map(|(_, r)| r.clone()),
        fhe_timings,
        correct,
        float_correct,
        predictions,
        float_predictions: float_preds,
        calibration: calib_source,
        calibration_samples: calib_n,
        layout,
        tlu_count: comp.and_then(Compiled::tlu_count),
        max_accumulator_bits: comp.and_then(Compiled::max_accumulator_bits),
        layers: comp.map_or(vec![], |c| layers_json(&c.report.bit_widths)),
        pruned: comp.map_or(vec![], |c| pruned_json(&c.report)),
        postprocessing: comp.map_or(vec![], |c| postprocessing_json(&c.report)),
        rounding: match (comp, quant.effective_rounding_bits()) {
            (Some(c), Some(bits)) => Some(RoundingJson {
                bits,
                mode: quant.rounding_mode().name(),
                tables_rounded: c.rounded_tables(),
            }),
            _ => None,
        },
        nodes_before: float_graph.node_count(),
        nodes_after: comp.map(|c| c.graph.node_count()),
        ops_before: op_histogram(float_graph),
        ops_after: comp.map(|c| op_histogram(&c.graph)),
        passes: comp.map_or(vec![], |c| c.summary().passes),
        timings_ms: Timings {
            import: ms(import_time),
            load_data: ms(load_time),
            compile: comp.map(|c| ms(c.elapsed)),
            float: ms(float_time),
            clear: clear_time.map(ms),
            simulate: circuit_time.filter(|_| mode == EvalMode::Simulate).map(ms),
            fhe: circuit_time.filter(|_| mode == EvalMode::Fhe).map(ms),
            total: ms(total.elapsed()),
        },
    };
    if args.json {
        print_out(&json_text(&report)?)
    } else {
        print_out(&render_text(&report, comp, quant))
    }
}

/// Whether loading failed only because the file has no train split.
fn no_train_split(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<DataError>(),
            Some(DataError::UnknownLayout { .. })
        )
    })
}

/// Labels must be class indices the model can predict.
pub(crate) fn check_labels(labels: &[i64], data: &Path) -> Result<()> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0) {
        bail!(
            "'{}': label of test sample {i} is {l}; labels must be class indices >= 0",
            data.display()
        );
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The human-readable report.
pub fn render_text(r: &EvalReport, c: Option<&Compiled>, q: &QuantArgs) -> String {
    let mut o = String::new();
    let n = r.samples;
    let _ = writeln!(o, "model:        {}", r.model);
    let _ = writeln!(o, "data:         {}", r.data);
    if let Some(l) = &r.layout {
        let _ = writeln!(o, "layout:       {l}");
    }
    if let Some(cal) = &r.calibration {
        let _ = writeln!(o, "calibration:  {cal} ({} samples)", r.calibration_samples);
    } else if c.is_some() {
        let _ = writeln!(o, "calibration:  none");
    }
    let _ = writeln!(o, "mode:         {}", r.mode);
    let _ = writeln!(o, "quantisation: {}", q.describe());
    let _ = writeln!(o, "samples:      {n}");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "float accuracy:      {:.4} ({}/{n}, {})",
        r.float_accuracy,
        r.float_correct,
        pct(r.float_accuracy)
    );
    if let Some(clear) = r.clear_accuracy {
        let _ = writeln!(o, "clear accuracy:      {clear:.4} ({})", pct(clear));
    }
    if let Some(k) = r.samples_outside_table_domain.filter(|&k| k > 0) {
        let _ = writeln!(
            o,
            "left a table domain: {k}/{n} samples (tables on observed ranges: such a lookup \
             reads a wrapped entry, in FHE too)"
        );
    }
    if let (Some(acc), Some(agree)) = (r.quantized_accuracy, r.agreement) {
        let label = match r.mode {
            "simulate" => "simulated accuracy: ",
            "fhe" => "FHE accuracy:       ",
            _ => "quantised accuracy: ",
        };
        let _ = writeln!(
            o,
            "{label} {acc:.4} ({}/{n}, {}, {:+.2} points)",
            r.correct,
            pct(acc),
            100.0 * (acc - r.float_accuracy)
        );
        let _ = writeln!(
            o,
            "agreement:           {agree:.4} ({}/{n} argmax equal to float)",
            (agree * n as f64).round() as usize
        );
    }
    if let Some(ca) = r.clear_agreement {
        let _ = writeln!(
            o,
            "agreement with clear: {ca:.4} ({}/{n} argmax equal to the clear quantised model)",
            (ca * n as f64).round() as usize
        );
    }
    if let Some(c) = &r.circuit {
        let _ = writeln!(o, "\ncircuit:");
        o.push_str(&c.text());
    }
    if let Some(t) = &r.fhe_timings {
        let _ = writeln!(
            o,
            "FHE timings:     keygen {:.2} s, server key expansion {:.2} s; per sample: encrypt {:.3} s, run {:.3} s, decrypt {:.4} s",
            t.keygen_s,
            t.server_key_s,
            t.encrypt_s,
            t.run_s,
            t.decrypt_s
        );
    }
    if let Some(c) = c {
        let _ = writeln!(o);
        if let Some(t) = r.tlu_count {
            let _ = writeln!(o, "table lookups:       {t} per inference");
        }
        if let Some(b) = r.max_accumulator_bits {
            let _ = writeln!(o, "max accumulator:     {b} bits (worst case)");
        }
        match &r.rounding {
            Some(ro) => {
                let _ = writeln!(
                    o,
                    "rounding:            top {} bits ({}), {} table(s) narrowed",
                    ro.bits, ro.mode, ro.tables_rounded
                );
            }
            None => {
                let _ = writeln!(o, "rounding:            none");
            }
        }
        if r.postprocessing.is_empty() {
            let _ = writeln!(o, "client post-proc.:   none");
        } else {
            let ops: Vec<String> = r
                .postprocessing
                .iter()
                .map(|p| format!("output {}: {}{} ({})", p.output, p.op, p.attrs, p.node))
                .collect();
            let _ = writeln!(o, "client post-proc.:   {}", ops.join("; "));
        }
        if !c.report.bit_widths.is_empty() {
            let _ = writeln!(
                o,
                "\naccumulator bits per layer (worst case / observed on calibration):"
            );
            o.push_str(&layers_table(&c.report.bit_widths));
        }
        if r.pruned.is_empty() {
            let _ = writeln!(o, "\npruned neurons:      none");
        } else {
            let _ = writeln!(o, "\npruned neurons:");
            for p in &r.pruned {
                let _ = writeln!(
                    o,
                    "  {}: {} -> {} ({} constant, {} dead)",
                    p.layer, p.before, p.after, p.constant, p.dead
                );
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "ops before ({} nodes): {}",
            r.nodes_before,
            histogram_text(&r.ops_before)
        );
        if let (Some(after), Some(na)) = (&r.ops_after, r.nodes_after) {
            let _ = writeln!(o, "ops after  ({na} nodes): {}", histogram_text(after));
        }
    }
    let t = &r.timings_ms;
    let mut times = vec![
        format!("import {:.0} ms", t.import),
        format!("data {:.0} ms", t.load_data),
    ];
    if let Some(c) = t.compile {
        times.push(format!("compile {c:.0} ms"));
    }
    times.push(format!("float {:.0} ms", t.float));
    if let Some(c) = t.clear {
        times.push(format!(
            "clear {c:.0} ms ({:.2} ms/sample)",
            c / n.max(1) as f64
        ));
    }
    if let Some(c) = t.simulate {
        times.push(format!(
            "simulate {c:.0} ms ({:.2} ms/sample)",
            c / n.max(1) as f64
        ));
    }
    if let Some(c) = t.fhe {
        times.push(format!("fhe {:.1} s", c / 1e3));
    }
    times.push(format!("total {:.0} ms", t.total));
    let _ = writeln!(o, "\ntimings: {}", times.join(", "));
    o
}
