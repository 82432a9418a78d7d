//! Evaluation of a model on a labelled dataset in one of four modes — the float model, the
//! quantised model in the clear (bit-exact with FHE), the circuit with simulated noise, and
//! real encryption — each compared with the cheaper ones: one [`evaluate`] call produces the
//! whole [`EvalReport`]. The per-sample predictions are [`crate::predict`]'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fhec_frontend::ImportOptions;
use fhec_ir::Graph;
use fhec_runtime::Circuit;
use serde::Serialize;

use crate::compile::{build_circuit, quantise, Compiled};
use crate::config::{CryptoConfig, QuantConfig, QuantSummary};
use crate::data::DataKeys;
use crate::error::{DriverError, Result};
use crate::hooks::Hooks;
use crate::predict::{
    agreement, clear_predictions, correct, fhe_predictions, float_predictions,
    simulate_predictions, ClearPredictions,
};
use crate::report::{
    layers_json, op_histogram, postprocessing_json, pruned_json, CircuitReport, LayerJson,
    PassJson, PostJson, PrunedJson,
};
use crate::samples::{data_calibration, load_test_set, single_input, Calibration, TestSet};
use crate::session::{FheSession, FheTimings};

/// How a model is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EvalMode {
    /// The imported float graph only.
    Float,
    /// The quantised integer graph in the clear (bit-exact with FHE execution), compared with
    /// float.
    Clear,
    /// The compiled circuit with the noise its parameters predict drawn at every bootstrap:
    /// forecasts FHE accuracy over a whole test set.
    Simulate,
    /// Real encryption: keygen once, then encrypt, run and decrypt every sample (each
    /// sample costs the predicted latency).
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

/// What to evaluate, on what, how.
#[derive(Debug, Clone)]
pub struct EvalRequest<'a> {
    pub model: &'a Path,
    pub import: ImportOptions,
    /// Labelled data; its test split is evaluated.
    pub data: &'a Path,
    pub keys: DataKeys,
    pub mode: EvalMode,
    /// Evaluate only the first samples.
    pub limit: Option<usize>,
    /// Seed of the simulation's noise.
    pub seed: u64,
    pub quant: QuantConfig,
    pub crypto: CryptoConfig,
}

/// Everything an evaluation reports (serialised as is by `eval --json`).
#[derive(Serialize, Debug)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub mode: &'static str,
    /// The bit width (null when not quantised).
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

/// An evaluation's report, the quantisation it used (an `auto` rounding width resolved)
/// and the compiled model.
pub struct Evaluation {
    pub report: EvalReport,
    pub quant: QuantConfig,
    pub compiled: Option<Compiled>,
}

/// Predictions of each mode that ran.
struct Runs {
    float: Vec<usize>,
    clear: Option<ClearPredictions>,
    circuit: Option<Vec<usize>>,
    fhe_timings: Option<FheTimings>,
    times: [Option<Duration>; 3],
}

/// Evaluates a model on the test split of a dataset in `req.mode` (and every cheaper mode,
/// for comparison).
pub fn evaluate(req: &EvalRequest, hooks: &Hooks) -> Result<Evaluation> {
    hooks.install(|| evaluate_here(req, hooks))?
}

fn evaluate_here(req: &EvalRequest, hooks: &Hooks) -> Result<Evaluation> {
    let total = Instant::now();
    let mode = req.mode;
    if mode != EvalMode::Float && req.quant.bits.is_none() {
        return Err(DriverError::NotQuantised);
    }
    let t = Instant::now();
    let model = crate::model::import_model(req.model, &req.import)?;
    let float_graph = &model.graph;
    let (input, fact) = single_input(float_graph, req.model)?;
    let import_time = t.elapsed();

    let t = Instant::now();
    let test = load_test_set(req.data, &req.keys, req.limit, input, fact)?;
    if let Some(n) = &test.layout {
        hooks.note(&format!("note: {n}"));
    }
    let quant = crate::tune::resolve_auto_rounding(
        float_graph,
        req.model,
        &req.quant,
        &req.crypto,
        req.data,
        &req.keys,
        hooks,
    )?;
    let calibration = if quant.bits.is_some() {
        data_calibration(&quant, req.data, &req.keys, float_graph, req.model, hooks)?
    } else {
        Calibration::default()
    };
    let load_time = t.elapsed();
    let calib_n = calibration.samples.len();
    let calib_source = calibration.source.clone();
    let compiled = match quant.bits {
        Some(_) => Some(compile_for_eval(
            float_graph,
            &quant,
            calibration,
            req.model,
            hooks,
        )?),
        None => None,
    };
    let circuit = match (&compiled, mode) {
        (Some(c), EvalMode::Simulate | EvalMode::Fhe) => {
            let (circuit, _) = build_circuit(c, &req.crypto, req.model, &model.output_names)?;
            let report = CircuitReport::new(&circuit);
            hooks.note(&format!(
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
    let runs = run_modes(
        float_graph,
        compiled.as_ref(),
        circuit.as_ref(),
        &test,
        req,
        hooks,
    )?;
    let report = assemble(
        req,
        &quant,
        float_graph,
        compiled.as_ref(),
        circuit.map(|(_, r)| r),
        test,
        runs,
        (calib_source, calib_n),
        [import_time, load_time, total.elapsed()],
    );
    Ok(Evaluation {
        report,
        quant,
        compiled,
    })
}

fn compile_for_eval(
    graph: &Graph,
    quant: &QuantConfig,
    calibration: Calibration,
    model: &Path,
    hooks: &Hooks,
) -> Result<Compiled> {
    let n = calibration.samples.len();
    let used = if calibration.available > n {
        format!(
            "the first {n} of {} samples (the calibration limit)",
            calibration.available
        )
    } else {
        format!("{n} samples")
    };
    hooks.note(&format!(
        "compiling: {}; calibrating on {used}",
        quant.describe()
    ));
    quantise(graph, quant, calibration.samples, model)
}

/// Runs every mode up to `req.mode`.
fn run_modes(
    float_graph: &Graph,
    compiled: Option<&Compiled>,
    circuit: Option<&(Circuit, CircuitReport)>,
    test: &TestSet,
    req: &EvalRequest,
    hooks: &Hooks,
) -> Result<Runs> {
    let samples = &test.samples;
    let t = Instant::now();
    let float = float_predictions(float_graph, samples, hooks)?;
    let float_time = t.elapsed();
    let t = Instant::now();
    let clear = match compiled {
        Some(c) if req.mode != EvalMode::Float => {
            hooks.note(&format!(
                "running the quantised model on {} samples",
                samples.len()
            ));
            Some(clear_predictions(c, samples, hooks)?)
        }
        _ => None,
    };
    let clear_time = clear.as_ref().map(|_| t.elapsed());
    let t = Instant::now();
    let mut fhe_timings = None;
    let circuit_preds = match (circuit, req.mode) {
        (Some((circuit, _)), EvalMode::Simulate) => {
            hooks.note(&format!(
                "simulating the circuit on {} samples",
                samples.len()
            ));
            Some(simulate_predictions(circuit, samples, req.seed, hooks)?)
        }
        (Some((circuit, report)), EvalMode::Fhe) => {
            let mut session = {
                let _spin = hooks.task(&format!("generating keys ({})", circuit.params), None);
                FheSession::new(circuit)?
            };
            hooks.note(&format!(
                "keys in {:.2} s; running {} encrypted samples (predicted {:.2} s each)",
                session.timings.keygen_s + session.timings.server_key_s,
                samples.len(),
                report.predicted_latency_s
            ));
            let preds = fhe_predictions(&mut session, circuit, samples, &test.labels, hooks)?;
            fhe_timings = Some(session.timings);
            Some(preds)
        }
        _ => None,
    };
    let circuit_time = circuit_preds.as_ref().map(|_| t.elapsed());
    Ok(Runs {
        float,
        clear,
        circuit: circuit_preds,
        fhe_timings,
        times: [Some(float_time), clear_time, circuit_time],
    })
}

/// The report of an evaluation from what each mode predicted.
#[allow(clippy::too_many_arguments)]
fn assemble(
    req: &EvalRequest,
    quant: &QuantConfig,
    float_graph: &Graph,
    comp: Option<&Compiled>,
    circuit: Option<CircuitReport>,
    test: TestSet,
    runs: Runs,
    (calibration, calibration_samples): (Option<String>, usize),
    [import_time, load_time, total]: [Duration; 3],
) -> EvalReport {
    let labels = &test.labels;
    let n = test.samples.len();
    let count = |preds: &[usize]| correct(preds, labels);
    let frac = |k: usize| k as f64 / n as f64;
    let float_correct = count(&runs.float);
    let left_domain = runs.clear.as_ref().map(|c| c.left_domain);
    let clear_preds = runs.clear.map(|c| c.predictions);
    let evaluated = runs.circuit.as_ref().or(clear_preds.as_ref());
    let (n_correct, predictions) = match evaluated {
        Some(p) => (count(p), p.clone()),
        None => (float_correct, runs.float.clone()),
    };
    let both = runs.circuit.as_ref().zip(clear_preds.as_ref());
    let mode = req.mode;
    let [float_time, clear_time, circuit_time] = runs.times;
    EvalReport {
        model: req.model.display().to_string(),
        data: test.source,
        mode: mode.name(),
        bits: quant.bits,
        quantization: quant.summary(),
        samples: n,
        accuracy: frac(n_correct),
        float_accuracy: frac(float_correct),
        quantized_accuracy: evaluated.map(|_| frac(n_correct)),
        agreement: evaluated.map(|p| agreement(p, &runs.float)),
        clear_accuracy: both.map(|(_, q)| frac(count(q))),
        clear_agreement: both.map(|(c, q)| agreement(c, q)),
        samples_outside_table_domain: left_domain,
        circuit,
        fhe_timings: runs.fhe_timings,
        correct: n_correct,
        float_correct,
        predictions,
        float_predictions: runs.float,
        calibration,
        calibration_samples,
        layout: test.layout,
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
            float: float_time.map_or(0.0, ms),
            clear: clear_time.map(ms),
            simulate: circuit_time.filter(|_| mode == EvalMode::Simulate).map(ms),
            fhe: circuit_time.filter(|_| mode == EvalMode::Fhe).map(ms),
            total: ms(total),
        },
    }
}
