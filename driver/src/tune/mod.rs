//! Tune searches: the fastest configuration (bits, rounding width, failure probability,
//! pruning rate) whose simulated accuracy reaches a target, by the search in [`search`]; and
//! [`resolve_auto_rounding`], the same search restricted to rounding widths.
//!
//! Candidates are scored on a validation slice — the data file's `val` split when it has one
//! (`x_val`/`y_val`, MedMNIST `val_images`), else a seeded share of its train split, which
//! is then left out of calibration — never on the test split: the winner's test accuracy is
//! measured afterwards, once, and reported apart. Every candidate's record is written to
//! `DIR/candidates.csv` (+ `.jsonl`) after it is measured, so a resumed search continues an
//! interrupted one; the winner's circuit goes to `DIR/winner.fhec`, the summary to
//! `DIR/tune.json`.

pub mod search;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fhec_frontend::ImportOptions;
use fhec_ir::{Graph, Tensor};
use fhec_runtime::Circuit;
use ndarray::Axis;
use serde::{Deserialize, Serialize};

use crate::compile::{build_circuit, quantise};
use crate::config::{
    CryptoConfig, PruneMethod, QuantConfig, RoundingBits, RoundingMode, DEFAULT_P_ERROR,
};
use crate::data::{load_dataset, DataError, DataKeys, Dataset, Split};
use crate::error::{one_line, AutoRoundingProblem, DataRole, DriverError, FileFix, Result};
use crate::hooks::Hooks;
use crate::predict::{
    clear_predictions, correct, fhe_predictions, float_predictions, simulate_predictions,
};
use crate::report::{json_text, CircuitReport};
use crate::samples::{check_labels, load_test_set, model_samples, single_input, TestSet};
use crate::session::FheSession;
use crate::sweep::table::{write_atomic, write_table};
use crate::sweep::SharedWork;
use search::{pareto_front, Candidate, Evaluator, Goal, Price, Record, Status};

/// The accuracy a search must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Simulated validation accuracy, in (0, 1].
    Accuracy(f64),
    /// At most this many accuracy points below the float model on the validation slice.
    MaxDrop(f64),
}

/// What to search, on what, where the records go.
#[derive(Debug, Clone)]
pub struct TuneSpec {
    pub model: PathBuf,
    pub import: ImportOptions,
    /// Labelled data with a train and a test split (and optionally a val split).
    pub data: PathBuf,
    pub keys: DataKeys,
    pub target: Target,
    /// Output directory: candidates.csv/.jsonl, winner.fhec, setup.json, tune.json.
    pub out: PathBuf,
    /// Time for the search (pricing and evaluating candidates).
    pub budget: Duration,
    /// Largest failure probability per bootstrap tried; the search tries P, P/10, P/100.
    pub max_p_error: f64,
    pub bits: Vec<u32>,
    /// Rounding widths tried (approximate rounding).
    pub rounding_bits: Vec<RoundingBits>,
    /// Pruning rates tried (one rate for every layer).
    pub prune_rate: Vec<f32>,
    pub prune_method: PruneMethod,
    /// Share of the train split held out for validation when the file has no val split.
    pub val_fraction: f64,
    /// Seed of the validation hold-out and of the simulated noise.
    pub seed: u64,
    pub calib_limit: usize,
    /// Threads the latency prediction assumes.
    pub threads: Option<u32>,
    /// Run the winner encrypted on the first K test samples.
    pub confirm: Option<usize>,
    /// End the search at the winner instead of going on for the Pareto front.
    pub stop_at_winner: bool,
    pub resume: bool,
    pub overwrite: bool,
}

/// What a search depends on: a resumed search must match it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Setup {
    pub model: String,
    pub data: String,
    pub validation: String,
    pub validation_samples: usize,
    pub calibration_samples: usize,
    pub target: f64,
    pub seed: u64,
    pub prune_method: PruneMethod,
}

impl Setup {
    /// What differs between two setups (the target within float noise: JSON does not
    /// round-trip every last bit).
    fn difference(&self, now: &Setup) -> Option<String> {
        let text = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            Some(format!("{what} was {a}, now {b}"))
        };
        if self.model != now.model {
            return text("the model", &self.model, &now.model);
        }
        if self.data != now.data {
            return text("the data", &self.data, &now.data);
        }
        if self.validation != now.validation || self.validation_samples != now.validation_samples {
            return text("the validation slice", &self.validation, &now.validation);
        }
        if self.calibration_samples != now.calibration_samples {
            return text(
                "the calibration samples",
                &self.calibration_samples,
                &now.calibration_samples,
            );
        }
        if (self.target - now.target).abs() > 1e-9 {
            return text("the target accuracy", &self.target, &now.target);
        }
        if self.seed != now.seed {
            return text("the seed", &self.seed, &now.seed);
        }
        if self.prune_method != now.prune_method {
            return text(
                "the pruning method",
                &self.prune_method.name(),
                &now.prune_method.name(),
            );
        }
        None
    }
}

/// Where a search's samples come from.
struct SplitSpec<'a> {
    data: &'a Path,
    keys: &'a DataKeys,
    model: &'a Path,
    val_fraction: f64,
    seed: u64,
    calib_limit: usize,
    /// Load the test split too (a search reports on it; `auto` rounding does not need one).
    with_test: bool,
}

/// The labelled samples a search uses, fitted to the model input.
struct Splits {
    validation: Labelled,
    /// How the validation slice was made.
    validation_source: String,
    calibration: Vec<Vec<Tensor>>,
    /// Present when asked for ([`SplitSpec::with_test`]).
    test: Option<TestSet>,
}

struct Labelled {
    samples: Vec<Tensor>,
    labels: Vec<i64>,
}

/// A search's result (`tune.json`).
#[derive(Serialize, Debug)]
pub struct TuneReport {
    /// The winner's simulated accuracy on the test split.
    pub accuracy: Option<f64>,
    /// The winner's clear (quantised) accuracy on the test split.
    pub clear_accuracy: Option<f64>,
    /// The float model on the test split.
    pub float_accuracy: f64,
    pub test_samples: usize,
    pub validation_float_accuracy: f64,
    pub target_accuracy: f64,
    /// The winner's simulated accuracy on the validation slice (what it was chosen by).
    pub validation_accuracy: Option<f64>,
    pub predicted_latency_s: Option<f64>,
    /// The same configuration without pruning (for the speed-up pruning buys).
    pub dense_predicted_latency_s: Option<f64>,
    pub pbs_count: Option<u64>,
    pub bits: Option<u32>,
    pub rounding_bits: Option<String>,
    pub p_error: Option<f64>,
    pub prune_rate: Option<f32>,
    /// How pruning by rate chose and replaced neurons.
    pub prune_method: &'static str,
    pub circuit: Option<String>,
    pub fhe_samples: Option<usize>,
    pub fhe_accuracy: Option<f64>,
    pub measured_latency_s: Option<f64>,
    pub search_s: f64,
    pub out_of_budget: bool,
    pub setup: Setup,
    pub pareto_front: Vec<CandidateRow>,
    pub candidates: Vec<CandidateRow>,
}

/// Runs a search; returns its report (also written to `DIR/tune.json`).
pub fn run(spec: &TuneSpec, hooks: &Hooks) -> Result<TuneReport> {
    hooks.install(|| run_here(spec, hooks))?
}

fn run_here(spec: &TuneSpec, hooks: &Hooks) -> Result<TuneReport> {
    let model = crate::model::import_model(&spec.model, &spec.import)?;
    let graph = &model.graph;
    let splits = load_splits(
        &SplitSpec {
            data: &spec.data,
            keys: &spec.keys,
            model: &spec.model,
            val_fraction: spec.val_fraction,
            seed: spec.seed,
            calib_limit: spec.calib_limit,
            with_test: true,
        },
        graph,
    )?;
    let validation = &splits.validation;
    let test = splits.test.as_ref().expect("the test split was asked for");
    let accuracy = |samples: &[Tensor], labels: &[i64]| -> Result<f64> {
        let preds = float_predictions(graph, samples, hooks)?;
        Ok(correct(&preds, labels) as f64 / labels.len() as f64)
    };
    let float_val = accuracy(&validation.samples, &validation.labels)?;
    let float_test = accuracy(&test.samples, &test.labels)?;
    let target = match spec.target {
        Target::Accuracy(a) => a,
        Target::MaxDrop(p) => float_val - p / 100.0,
    };
    hooks.note(&format!(
        "validation: {} ({} samples), float accuracy {float_val:.4}; target {target:.4}; \
         calibration: {} samples",
        splits.validation_source,
        validation.labels.len(),
        splits.calibration.len()
    ));
    let setup = Setup {
        model: spec.model.display().to_string(),
        data: spec.data.display().to_string(),
        validation: splits.validation_source.clone(),
        validation_samples: validation.labels.len(),
        calibration_samples: splits.calibration.len(),
        target,
        seed: spec.seed,
        prune_method: spec.prune_method,
    };
    let previous = prepare_out(spec, &setup)?;
    let setup_text = serde_json::to_string_pretty(&setup).expect("a setup serialises");
    write_atomic(&spec.out.join("setup.json"), setup_text.as_bytes())?;

    let started = Instant::now();
    let outcome = search_grid(spec, graph, &splits, &previous, target, hooks)?;
    let search_s = started.elapsed().as_secs_f64();
    let winner = match outcome.winner {
        Some(i) => Some(confirm_winner(
            spec,
            graph,
            &model.output_names,
            &splits,
            &outcome.records[i],
            hooks,
        )?),
        None => None,
    };
    let report = report(
        spec,
        &outcome,
        winner,
        setup,
        [float_test, float_val, target, search_s],
        test.labels.len(),
    );
    let mut summary = json_text(&report);
    summary.push('\n');
    write_atomic(&spec.out.join("tune.json"), summary.as_bytes())?;
    Ok(report)
}

/// The search over the grid, every record saved as it is measured.
fn search_grid(
    spec: &TuneSpec,
    graph: &Graph,
    splits: &Splits,
    previous: &[Record],
    target: f64,
    hooks: &Hooks,
) -> Result<search::Outcome> {
    let grid = grid(spec);
    let mut measure = Measure {
        graph,
        model: &spec.model,
        calibration: &splits.calibration,
        validation: &splits.validation,
        threads: spec.threads,
        seed: spec.seed,
        prune_method: spec.prune_method,
        rounding_mode: RoundingMode::Approximate,
        shared: SharedWork::default(),
        circuit: None,
        hooks,
    };
    let csv = spec.out.join("candidates.csv");
    let bar = hooks.task("candidates", Some(grid.len() as u64));
    let mut last_saved = 0usize;
    let outcome = search::search(
        &mut measure,
        grid,
        previous,
        &Goal {
            target,
            budget: spec.budget,
            stop_at_winner: spec.stop_at_winner,
        },
        &mut |records| {
            // A cancelled search keeps the records saved before it: those after were cut
            // short, not measured.
            if hooks.check().is_err() {
                return;
            }
            let rows: Vec<CandidateRow> = records.iter().map(CandidateRow::from).collect();
            if let Err(e) = write_table(
                &csv,
                &csv.with_extension("jsonl"),
                &CANDIDATE_COLUMNS,
                &rows,
            ) {
                hooks.note(&format!(
                    "warning: cannot save the candidates: {}",
                    one_line(&e)
                ));
            }
            let measured = records
                .iter()
                .filter(|r| r.status != Status::NotPriced && r.status != Status::NotEvaluated)
                .count();
            for _ in last_saved..measured {
                bar.step(None);
            }
            last_saved = last_saved.max(measured);
        },
    );
    hooks.check()?;
    Ok(outcome)
}

/// The report of a finished search.
fn report(
    spec: &TuneSpec,
    outcome: &search::Outcome,
    winner: Option<Confirmed>,
    setup: Setup,
    [float_test, float_val, target, search_s]: [f64; 4],
    test_samples: usize,
) -> TuneReport {
    let n = setup.validation_samples;
    let front = pareto_front(&outcome.records, n);
    let won = outcome.winner.map(|i| &outcome.records[i]);
    let dense = won.and_then(|w| {
        let w = &w.candidate;
        outcome
            .records
            .iter()
            .find(|r| {
                r.candidate.prune_rate == 0.0
                    && r.candidate.bits == w.bits
                    && r.candidate.rounding_bits == w.rounding_bits
                    && r.candidate.p_error == w.p_error
            })
            .and_then(|r| r.predicted_latency_s)
    });
    TuneReport {
        accuracy: winner.as_ref().map(|w| w.test_simulate_accuracy),
        clear_accuracy: winner.as_ref().map(|w| w.test_clear_accuracy),
        float_accuracy: float_test,
        test_samples,
        validation_float_accuracy: float_val,
        target_accuracy: target,
        validation_accuracy: won.and_then(|r| r.val_simulate_accuracy),
        predicted_latency_s: won.and_then(|r| r.predicted_latency_s),
        dense_predicted_latency_s: dense,
        pbs_count: won.and_then(|r| r.pbs_count),
        bits: won.map(|r| r.candidate.bits),
        rounding_bits: won.map(|r| rounding_text(r.candidate.rounding_bits)),
        p_error: won.map(|r| r.candidate.p_error),
        prune_rate: won.map(|r| r.candidate.prune_rate),
        prune_method: spec.prune_method.name(),
        circuit: winner.as_ref().map(|w| w.circuit.display().to_string()),
        fhe_samples: winner.as_ref().and_then(|w| w.fhe.map(|f| f.0)),
        fhe_accuracy: winner.as_ref().and_then(|w| w.fhe.map(|f| f.1)),
        measured_latency_s: winner.as_ref().and_then(|w| w.fhe.map(|f| f.2)),
        search_s,
        out_of_budget: outcome.out_of_budget,
        setup,
        pareto_front: front
            .iter()
            .map(|&i| CandidateRow::from(&outcome.records[i]))
            .collect(),
        candidates: outcome.records.iter().map(CandidateRow::from).collect(),
    }
}

/// An `auto` rounding width resolved: the cheapest rounding width (2..=8, or none) whose
/// simulated accuracy on a validation slice of `data` is at most TOL points below the float
/// model's, by the search restricted to rounding widths (the other options as given).
/// Returns `quant` with that width; unchanged without `auto`.
pub fn resolve_auto_rounding(
    graph: &Graph,
    model: &Path,
    quant: &QuantConfig,
    crypto: &CryptoConfig,
    data: &Path,
    keys: &DataKeys,
    hooks: &Hooks,
) -> Result<QuantConfig> {
    let Some(RoundingBits::Auto {
        tolerance_centipoints,
    }) = quant.rounding_bits
    else {
        return Ok(quant.clone());
    };
    let problem = |p| Err(DriverError::AutoRounding(p));
    let tolerance = f64::from(tolerance_centipoints) / 100.0;
    let Some(bits) = quant.bits else {
        return problem(AutoRoundingProblem::NoBits);
    };
    if crypto.global_p_error.is_some() {
        return problem(AutoRoundingProblem::GlobalPError);
    }
    let prune_rate = match quant.prune_rate.as_deref() {
        None => 0.0,
        Some([r]) => *r,
        Some(_) => return problem(AutoRoundingProblem::PerLayerPruneRates),
    };
    let splits = load_splits(
        &SplitSpec {
            data,
            keys,
            model,
            val_fraction: 0.2,
            seed: 0,
            calib_limit: quant.calib_limit,
            with_test: false,
        },
        graph,
    )?;
    let validation = &splits.validation;
    let n = validation.labels.len();
    let float = correct(
        &float_predictions(graph, &validation.samples, hooks)?,
        &validation.labels,
    ) as f64
        / n as f64;
    let target = float - tolerance / 100.0;
    let p_error = crypto.p_error.unwrap_or(DEFAULT_P_ERROR);
    let grid: Vec<Candidate> = (2..=8)
        .map(Some)
        .chain([None])
        .map(|rounding_bits| Candidate {
            bits,
            rounding_bits,
            prune_rate,
            p_error,
        })
        .collect();
    let mut measure = Measure {
        graph,
        model,
        calibration: &splits.calibration,
        validation,
        threads: crypto.threads,
        seed: 0,
        prune_method: quant.prune_method,
        rounding_mode: quant.rounding_mode(),
        shared: SharedWork::default(),
        circuit: None,
        hooks,
    };
    let goal = Goal {
        target,
        budget: Duration::from_secs(600),
        stop_at_winner: true,
    };
    let outcome = search::search(&mut measure, grid, &[], &goal, &mut |_| {});
    hooks.check()?;
    let Some(w) = outcome.winner else {
        let best = outcome
            .records
            .iter()
            .filter_map(|r| r.val_simulate_accuracy.or(r.val_clear_accuracy))
            .fold(0.0, f64::max);
        return problem(AutoRoundingProblem::NoWidth {
            tolerance,
            bits,
            float,
            best,
            validation: splits.validation_source,
        });
    };
    let winner = &outcome.records[w];
    hooks.note(&format!(
        "auto:{tolerance} rounding: {} (simulated {:.4} on {} ({n} samples), float \
         {float:.4}, target {target:.4}; {:.3} s predicted)",
        winner
            .candidate
            .rounding_bits
            .map_or("none".to_string(), |b| format!("rounding to {b} bits")),
        winner.val_simulate_accuracy.unwrap_or(0.0),
        splits.validation_source,
        winner.predicted_latency_s.unwrap_or(0.0)
    ));
    Ok(QuantConfig {
        rounding_bits: Some(
            winner
                .candidate
                .rounding_bits
                .map_or(RoundingBits::None, RoundingBits::Keep),
        ),
        ..quant.clone()
    })
}

/// The grid, bits outermost, failure probabilities innermost.
fn grid(spec: &TuneSpec) -> Vec<Candidate> {
    let mut out = Vec::new();
    let p = spec.max_p_error;
    for &bits in &spec.bits {
        for r in &spec.rounding_bits {
            for &prune_rate in &spec.prune_rate {
                for p_error in [p, p / 10.0, p / 100.0] {
                    let c = Candidate {
                        bits,
                        rounding_bits: r.bits(),
                        prune_rate,
                        p_error,
                    };
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

/// Refuses a directory holding another search unless resuming or overwriting; returns the
/// records to resume from.
fn prepare_out(spec: &TuneSpec, setup: &Setup) -> Result<Vec<Record>> {
    let (setup_path, csv) = (spec.out.join("setup.json"), spec.out.join("candidates.csv"));
    let exists = setup_path.exists() || csv.exists();
    if exists && !spec.resume && !spec.overwrite {
        return Err(DriverError::ResultsExist {
            dir: spec.out.clone(),
            what: "a tune search".into(),
        });
    }
    std::fs::create_dir_all(&spec.out).map_err(|source| DriverError::Write {
        path: spec.out.clone(),
        source,
    })?;
    if !spec.resume || !exists {
        return Ok(vec![]);
    }
    let foreign = |path: &Path, problem: String| DriverError::ForeignFile {
        path: path.to_path_buf(),
        problem,
        fix: FileFix::StartAgain,
    };
    let text = std::fs::read_to_string(&setup_path).map_err(|source| DriverError::Read {
        what: "tune setup",
        path: setup_path.clone(),
        source,
    })?;
    let old: Setup = serde_json::from_str(&text)
        .map_err(|e| foreign(&setup_path, format!("is not a tune setup ({e})")))?;
    if let Some(why) = old.difference(setup) {
        return Err(DriverError::SetupChanged {
            dir: spec.out.clone(),
            why,
        });
    }
    if !csv.exists() {
        return Ok(vec![]);
    }
    let mut reader = csv::Reader::from_path(&csv).map_err(|e| DriverError::Read {
        what: "candidates file",
        path: csv.clone(),
        source: std::io::Error::other(e),
    })?;
    let mut records = Vec::new();
    for (i, row) in reader.deserialize::<CandidateRow>().enumerate() {
        let bad = |e: String| {
            foreign(
                &csv,
                format!(
                    "row {}: {e}; it is not a candidates file of this fhec",
                    i + 1
                ),
            )
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        records.push(row.record().map_err(bad)?);
    }
    Ok(records)
}

/// The labelled validation slice, calibration samples and (when asked) the test split.
fn load_splits(spec: &SplitSpec, graph: &Graph) -> Result<Splits> {
    let (input, fact) = single_input(graph, spec.model)?;
    let (keys, limit, data) = (spec.keys, spec.calib_limit, spec.data);
    let data_error = |source| DriverError::Data {
        role: DataRole::SearchTrain,
        path: data.to_path_buf(),
        source,
    };
    let train = load_dataset(data, Split::Train, keys).map_err(data_error)?;
    let labelled = |ds: &Dataset, what: &'static str| -> Result<Labelled> {
        let labels: Vec<i64> =
            ds.y.as_ref()
                .ok_or_else(|| DriverError::NoSplitLabels {
                    path: data.to_path_buf(),
                    what,
                })?
                .to_vec();
        check_labels(&labels, data)?;
        let (samples, _) = model_samples(ds, input, fact, data, what)?;
        Ok(Labelled { samples, labels })
    };
    let (validation, validation_source, calibration) = match load_dataset(data, Split::Val, keys) {
        Ok(val) => {
            let source = format!("the val split of {}", val.source);
            (labelled(&val, "val split")?, source, train.head(limit))
        }
        Err(DataError::UnknownLayout { .. }) => {
            let (val, rest) = hold_out(&train, spec.val_fraction, spec.seed);
            let source = format!(
                "{} of the {} train samples of '{}' (seed {}, held out of calibration)",
                val.len(),
                train.len(),
                data.display(),
                spec.seed
            );
            (
                labelled(&val, "validation hold-out")?,
                source,
                rest.head(limit),
            )
        }
        Err(e) => return Err(data_error(e)),
    };
    if validation.labels.is_empty() {
        return Err(DriverError::NoSamples {
            path: data.to_path_buf(),
            what: "validation",
        });
    }
    let (calibration, _) = model_samples(&calibration, input, fact, data, "calibration data")?;
    let test = if spec.with_test {
        Some(load_test_set(data, keys, None, input, fact)?)
    } else {
        None
    };
    Ok(Splits {
        validation,
        validation_source,
        calibration: calibration.into_iter().map(|t| vec![t]).collect(),
        test,
    })
}

/// A seeded random share `fraction` of `ds` (at least one sample) and the rest, each in
/// file order.
fn hold_out(ds: &Dataset, fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let n = ds.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed ^ 0x5851_f42d_4c95_7f2d;
    for i in (1..n).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let k = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let (mut val, mut rest) = (order[..k].to_vec(), order[k..].to_vec());
    val.sort_unstable();
    rest.sort_unstable();
    let pick = |idx: &[usize], what: &str| Dataset {
        x: ds.x.select(Axis(0), idx),
        y: ds.y.as_ref().map(|y| y.select(Axis(0), idx)),
        source: format!("{} ({what})", ds.source),
    };
    (pick(&val, "validation"), pick(&rest, "calibration"))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The evaluator of the real pipeline: quantised models shared between candidates that
/// differ only in failure probability, the last circuit kept for its simulation.
struct Measure<'a> {
    graph: &'a Graph,
    model: &'a Path,
    calibration: &'a [Vec<Tensor>],
    validation: &'a Labelled,
    threads: Option<u32>,
    seed: u64,
    prune_method: PruneMethod,
    rounding_mode: RoundingMode,
    shared: SharedWork,
    circuit: Option<(Candidate, Circuit)>,
    hooks: &'a Hooks<'a>,
}

/// A candidate's quantisation options.
fn candidate_quant(
    c: &Candidate,
    prune_method: PruneMethod,
    rounding_mode: RoundingMode,
    calib_limit: usize,
) -> QuantConfig {
    QuantConfig {
        bits: Some(c.bits),
        rounding_bits: Some(
            c.rounding_bits
                .map_or(RoundingBits::None, RoundingBits::Keep),
        ),
        rounding_mode: c.rounding_bits.map(|_| rounding_mode),
        prune_rate: (c.prune_rate > 0.0).then(|| vec![c.prune_rate]),
        prune_method,
        calib_limit,
        ..Default::default()
    }
}

fn candidate_crypto(c: &Candidate, threads: Option<u32>) -> CryptoConfig {
    CryptoConfig {
        p_error: Some(c.p_error),
        global_p_error: None,
        threads,
        ..Default::default()
    }
}

impl Measure<'_> {
    fn quantised(&mut self, c: &Candidate) -> Result<&crate::sweep::Quantised> {
        self.hooks.check()?;
        let quant = candidate_quant(
            c,
            self.prune_method,
            self.rounding_mode,
            self.calibration.len(),
        );
        self.shared.quantise(
            self.graph,
            &quant,
            self.calibration,
            self.model,
            &self.validation.samples,
            self.hooks,
        )
    }

    fn circuit(&mut self, c: &Candidate) -> Result<&Circuit> {
        if self.circuit.as_ref().is_none_or(|(k, _)| k != c) {
            let crypto = candidate_crypto(c, self.threads);
            let model = self.model;
            let compiled = &self.quantised(c)?.compiled;
            let (circuit, _) = build_circuit(compiled, &crypto, model, &[])?;
            self.circuit = Some((c.clone(), circuit));
        }
        Ok(&self.circuit.as_ref().expect("just set").1)
    }
}

impl Evaluator for Measure<'_> {
    fn validation_len(&self) -> usize {
        self.validation.labels.len()
    }

    fn price(&mut self, c: &Candidate) -> Result<Price, String> {
        let report = CircuitReport::new(self.circuit(c).map_err(|e| one_line(&e))?);
        Ok(Price {
            predicted_latency_s: report.predicted_latency_s,
            pbs_count: report.pbs_count,
        })
    }

    fn clear_correct(&mut self, c: &Candidate) -> Result<usize, String> {
        let labels = &self.validation.labels;
        let q = self.quantised(c).map_err(|e| one_line(&e))?;
        Ok(correct(&q.clear, labels))
    }

    fn simulated_correct(&mut self, c: &Candidate, n: usize) -> Result<usize, String> {
        let (seed, hooks) = (self.seed, self.hooks);
        let samples = &self.validation.samples[..n];
        let labels = &self.validation.labels[..n];
        let circuit = self.circuit(c).map_err(|e| one_line(&e))?;
        let preds =
            simulate_predictions(circuit, samples, seed, hooks).map_err(|e| one_line(&e))?;
        Ok(correct(&preds, labels))
    }
}

/// The winner measured on the test split, its circuit written.
struct Confirmed {
    circuit: PathBuf,
    test_clear_accuracy: f64,
    test_simulate_accuracy: f64,
    /// (samples, accuracy, mean latency) of the encrypted confirmation.
    fhe: Option<(usize, f64, f64)>,
}

fn confirm_winner(
    spec: &TuneSpec,
    graph: &Graph,
    output_names: &[String],
    splits: &Splits,
    winner: &Record,
    hooks: &Hooks,
) -> Result<Confirmed> {
    let c = &winner.candidate;
    let quant = candidate_quant(
        c,
        spec.prune_method,
        RoundingMode::Approximate,
        splits.calibration.len(),
    );
    let (compiled, circuit) = {
        let _phase = hooks.phase(&format!("compiling the winner ({})", c.label()));
        let compiled = quantise(graph, &quant, splits.calibration.clone(), &spec.model)?;
        let crypto = candidate_crypto(c, spec.threads);
        let (circuit, _) = build_circuit(&compiled, &crypto, &spec.model, output_names)?;
        (compiled, circuit)
    };
    let path = spec.out.join("winner.fhec");
    circuit.save(&path)?;
    let test = splits.test.as_ref().expect("the test split was asked for");
    let n = test.labels.len() as f64;
    let clear = clear_predictions(&compiled, &test.samples, hooks)?.predictions;
    let simulated = simulate_predictions(&circuit, &test.samples, spec.seed, hooks)?;
    let fhe = match spec.confirm {
        None => None,
        Some(k) => {
            let k = k.min(test.samples.len());
            let mut session = {
                let _spin = hooks.task(&format!("generating keys ({})", circuit.params), None);
                FheSession::new(&circuit)?
            };
            let preds = fhe_predictions(
                &mut session,
                &circuit,
                &test.samples[..k],
                &test.labels[..k],
                hooks,
            )?;
            let acc = correct(&preds, &test.labels[..k]) as f64 / k as f64;
            Some((k, acc, session.timings.run_s))
        }
    };
    Ok(Confirmed {
        circuit: path,
        test_clear_accuracy: correct(&clear, &test.labels) as f64 / n,
        test_simulate_accuracy: correct(&simulated, &test.labels) as f64 / n,
        fhe,
    })
}

/// The columns of `candidates.csv`.
pub const CANDIDATE_COLUMNS: [&str; 11] = [
    "bits",
    "rounding_bits",
    "prune_rate",
    "p_error",
    "status",
    "predicted_latency_s",
    "pbs_count",
    "val_clear_accuracy",
    "val_simulate_accuracy",
    "val_simulated_samples",
    "error",
];

/// One candidate as a CSV / JSON line.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CandidateRow {
    pub bits: u32,
    pub rounding_bits: String,
    pub prune_rate: f32,
    pub p_error: f64,
    pub status: Status,
    pub predicted_latency_s: Option<f64>,
    pub pbs_count: Option<u64>,
    pub val_clear_accuracy: Option<f64>,
    pub val_simulate_accuracy: Option<f64>,
    pub val_simulated_samples: usize,
    pub error: String,
}

fn rounding_text(r: Option<u32>) -> String {
    r.map_or("none".into(), |b| b.to_string())
}

impl From<&Record> for CandidateRow {
    fn from(r: &Record) -> Self {
        CandidateRow {
            bits: r.candidate.bits,
            rounding_bits: rounding_text(r.candidate.rounding_bits),
            prune_rate: r.candidate.prune_rate,
            p_error: r.candidate.p_error,
            status: r.status,
            predicted_latency_s: r.predicted_latency_s,
            pbs_count: r.pbs_count,
            val_clear_accuracy: r.val_clear_accuracy,
            val_simulate_accuracy: r.val_simulate_accuracy,
            val_simulated_samples: r.val_simulated_samples,
            error: r.error.clone(),
        }
    }
}

impl CandidateRow {
    fn record(self) -> Result<Record, String> {
        let rounding_bits = match self.rounding_bits.as_str() {
            "none" => None,
            t => Some(
                t.parse()
                    .map_err(|_| format!("rounding_bits '{t}' is not 'none' or a width"))?,
            ),
        };
        Ok(Record {
            candidate: Candidate {
                bits: self.bits,
                rounding_bits,
                prune_rate: self.prune_rate,
                p_error: self.p_error,
            },
            status: self.status,
            predicted_latency_s: self.predicted_latency_s,
            pbs_count: self.pbs_count,
            val_clear_accuracy: self.val_clear_accuracy,
            val_simulate_accuracy: self.val_simulate_accuracy,
            val_simulated_samples: self.val_simulated_samples,
            error: self.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, ArrayD, IxDyn};

    #[test]
    fn the_hold_out_is_seeded_disjoint_and_complete() {
        let ds = Dataset {
            x: ArrayD::from_shape_fn(IxDyn(&[50, 2]), |i| i[0] as f32),
            y: Some(Array1::from_iter(0..50)),
            source: "s".into(),
        };
        let (a, b) = hold_out(&ds, 0.2, 7);
        assert_eq!((a.len(), b.len()), (10, 40));
        let ids = |d: &Dataset| d.y.as_ref().unwrap().to_vec();
        let mut all = ids(&a);
        all.extend(ids(&b));
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<i64>>());
        assert_eq!(ids(&hold_out(&ds, 0.2, 7).0), ids(&a));
        assert_ne!(ids(&hold_out(&ds, 0.2, 8).0), ids(&a));
        // Features travel with their labels.
        assert!(a.x.outer_iter().zip(ids(&a)).all(|(x, y)| x[0] == y as f32));
    }
}
