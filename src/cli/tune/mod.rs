//! `fhec tune`: the fastest configuration (bits, rounding width, failure probability,
//! pruning rate) whose simulated accuracy reaches a target, by the search in [`search`].
//!
//! Candidates are scored on a validation slice — the data file's `val` split when it has one
//! (`x_val`/`y_val`, MedMNIST `val_images`), else a seeded share of its train split, which
//! is then left out of calibration — never on the test split: the winner's test accuracy is
//! measured afterwards, once, and reported apart. Every candidate's record is written to
//! `DIR/candidates.csv` (+ `.jsonl`) after it is measured, so `--resume` continues an
//! interrupted search; the winner's circuit goes to `DIR/winner.fhec`, the summary to
//! `DIR/tune.json`.

pub mod search;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};
use fhec_ir::{Graph, Tensor};
use fhec_runtime::Circuit;
use ndarray::Axis;
use serde::{Deserialize, Serialize};

use super::compile::{
    compile_circuit, parse_probability, CircuitReport, CryptoArgs, DEFAULT_P_ERROR,
};
use super::eval::{
    check_labels, clear_predictions, correct, evaluation_circuit, fhe_predictions,
    float_predictions, load_test_set, simulate_predictions, TestSet,
};
use super::fhe::FheSession;
use super::progress::Progress;
use super::quant_args::{
    model_samples, parse_bits, parse_rounding_bits, single_input, PruneMethodArg, PruneRates,
    QuantArgs, RoundingBits, RoundingModeArg,
};
use super::sweep::outputs::{sheet_name, write_header, write_record};
use super::sweep::table::{write_atomic, write_table};
use super::sweep::{one_line, SharedWork};
use super::{import_model, json_text, print_out, ImportArgs};
use crate::data::{load_dataset, DataError, DataKeys, Dataset, Split};
use search::{pareto_front, Candidate, Evaluator, Goal, Price, Record, Status};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("goal").required(true).args(["target_accuracy", "max_drop"])))]
pub struct TuneArgs {
    /// The ONNX model to tune.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Labelled data (.npz with a train and a test split, optionally a val split; MedMNIST
    /// .npz read directly).
    #[arg(long, value_name = "D.npz")]
    pub data: PathBuf,
    /// Simulated validation accuracy to reach, e.g. 0.95.
    #[arg(long, value_name = "A", value_parser = parse_accuracy)]
    pub target_accuracy: Option<f64>,
    /// At most P accuracy points below the float model on the validation slice, e.g. 1.
    #[arg(long, value_name = "P", value_parser = parse_points)]
    pub max_drop: Option<f64>,
    /// Output directory: candidates.csv/.jsonl, winner.fhec, tune.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Time for the search (pricing and evaluating candidates), in seconds.
    #[arg(long, value_name = "S", default_value = "600", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_s: u64,
    /// Largest failure probability per bootstrap tried; the search tries P, P/10 and P/100.
    #[arg(long, value_name = "P", default_value = "0.01", value_parser = parse_probability)]
    pub max_p_error: f64,
    /// Bit widths tried.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_bits, default_value = "2,3,4,5,6,7,8")]
    pub bits: Vec<u32>,
    /// Rounding widths tried (`none` = no rounding; approximate rounding).
    #[arg(long, value_name = "R,...", value_delimiter = ',', value_parser = parse_rounding_bits, default_value = "4,5,6,7,8")]
    pub rounding_bits: Vec<RoundingBits>,
    /// Pruning rates tried (lossy, as `eval --prune-rate`; one rate for every layer).
    #[arg(long, value_name = "R,...", value_delimiter = ',', value_parser = parse_rate, default_value = "0,0.25,0.5,0.75")]
    pub prune_rate: Vec<f32>,
    /// How pruning by rate chooses and replaces neurons (see `eval --help`).
    #[arg(long, value_enum, value_name = "METHOD", default_value = "refit")]
    pub prune_method: PruneMethodArg,
    /// Share of the train split held out for validation when the file has no val split.
    #[arg(long, value_name = "F", default_value = "0.2", value_parser = parse_fraction)]
    pub val_fraction: f64,
    /// Seed of the validation hold-out and of the simulated noise.
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// Calibrate on at most K samples (the first K of the calibration part).
    #[arg(long, value_name = "K", default_value = "500", value_parser = clap::value_parser!(u64).range(1..))]
    pub calib_limit: u64,
    /// Threads the latency prediction assumes [default: the threads of this machine].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Run the winner encrypted on the first K test samples (key generation included).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirm: Option<u64>,
    /// End the search at the winner instead of going on for the Pareto front.
    #[arg(long)]
    pub stop_at_winner: bool,
    /// Continue the search recorded in DIR (same model, data, goal and seed).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start again, replacing the search recorded in DIR.
    #[arg(long)]
    pub overwrite: bool,
    /// Also write DIR/tune.xlsx (candidates, Pareto front).
    #[arg(long)]
    pub xlsx: bool,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// The .npz array holding the test features (read verbatim).
    #[arg(long, value_name = "KEY")]
    pub x_key: Option<String>,
    /// The .npz array (or CSV column) holding the labels.
    #[arg(long, value_name = "KEY")]
    pub y_key: Option<String>,
    #[command(flatten)]
    pub import: ImportArgs,
}

fn parse_accuracy(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(a) if a > 0.0 && a <= 1.0 => Ok(a),
        _ => Err(format!("'{s}' is not an accuracy in (0, 1], e.g. 0.95")),
    }
}

fn parse_points(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "'{s}' is not a number of accuracy points in [0, 100), e.g. 1"
        )),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("'{s}' is not a fraction in (0, 1)")),
    }
}

fn parse_rate(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(r) if (0.0..1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a rate in [0, 1)")),
    }
}

/// What a search depends on: a resumed search must match it.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Setup {
    model: String,
    data: String,
    validation: String,
    validation_samples: usize,
    calibration_samples: usize,
    target: f64,
    seed: u64,
    prune_method: PruneMethodArg,
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
    /// Load the test split too (`tune` reports on it; `auto` rounding does not need one).
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

pub fn run(args: &TuneArgs) -> Result<()> {
    let progress = Progress::stderr();
    let model = import_model(&args.model, &args.import)?;
    let graph = &model.graph;
    let keys = DataKeys {
        x_key: args.x_key.clone(),
        y_key: args.y_key.clone(),
    };
    let splits = load_splits(
        &SplitSpec {
            data: &args.data,
            keys: &keys,
            model: &args.model,
            val_fraction: args.val_fraction,
            seed: args.seed,
            calib_limit: usize::try_from(args.calib_limit).unwrap_or(usize::MAX),
            with_test: true,
        },
        graph,
    )?;
    let validation = &splits.validation;
    let test = splits
        .test
        .as_ref()
        .context("the test split was asked for")?;
    let float_val = correct(
        &float_predictions(graph, &validation.samples)?,
        &validation.labels,
    ) as f64
        / validation.labels.len() as f64;
    let float_test = correct(&float_predictions(graph, &test.samples)?, &test.labels) as f64
        / test.labels.len() as f64;
    let target = match (args.target_accuracy, args.max_drop) {
        (Some(a), _) => a,
        (None, Some(p)) => float_val - p / 100.0,
        (None, None) => bail!("give --target-accuracy A or --max-drop P"),
    };
    progress.line(&format!(
        "validation: {} ({} samples), float accuracy {float_val:.4}; target {target:.4}; \
         calibration: {} samples",
        splits.validation_source,
        validation.labels.len(),
        splits.calibration.len()
    ));
    let setup = Setup {
        model: args.model.display().to_string(),
        data: args.data.display().to_string(),
        validation: splits.validation_source.clone(),
        validation_samples: validation.labels.len(),
        calibration_samples: splits.calibration.len(),
        target,
        seed: args.seed,
        prune_method: args.prune_method,
    };
    let previous = prepare_out(args, &setup)?;
    write_atomic(
        &args.out.join("setup.json"),
        serde_json::to_string_pretty(&setup)?.as_bytes(),
    )?;

    let grid = grid(args);
    let mut measure = Measure {
        graph,
        model: &args.model,
        calibration: &splits.calibration,
        validation,
        threads: args.threads,
        seed: args.seed,
        prune_method: args.prune_method,
        rounding_mode: RoundingModeArg::Approximate,
        shared: SharedWork::default(),
        circuit: None,
    };
    let csv = args.out.join("candidates.csv");
    let bar = progress.bar(grid.len() as u64, "candidates");
    let mut last_saved = 0usize;
    let started = Instant::now();
    let outcome = search::search(
        &mut measure,
        grid,
        &previous,
        &Goal {
            target,
            budget: Duration::from_secs(args.budget_s),
            stop_at_winner: args.stop_at_winner,
        },
        &mut |records| {
            let rows: Vec<CandidateRow> = records.iter().map(CandidateRow::from).collect();
            if let Err(e) = write_table(
                &csv,
                &csv.with_extension("jsonl"),
                &CANDIDATE_COLUMNS,
                &rows,
            ) {
                progress.line(&format!(
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
    drop(bar);
    let search_s = started.elapsed().as_secs_f64();
    let n = validation.labels.len();
    let front = pareto_front(&outcome.records, n);

    let winner = match outcome.winner {
        Some(i) => Some(confirm_winner(
            args,
            graph,
            &model.output_names,
            &splits,
            &outcome.records[i],
            &progress,
        )?),
        None => None,
    };
    let dense = outcome.winner.and_then(|i| {
        let w = &outcome.records[i].candidate;
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
    let report = TuneReport {
        accuracy: winner.as_ref().map(|w| w.test_simulate_accuracy),
        clear_accuracy: winner.as_ref().map(|w| w.test_clear_accuracy),
        float_accuracy: float_test,
        test_samples: test.labels.len(),
        validation_float_accuracy: float_val,
        target_accuracy: target,
        validation_accuracy: outcome
            .winner
            .and_then(|i| outcome.records[i].val_simulate_accuracy),
        predicted_latency_s: outcome
            .winner
            .and_then(|i| outcome.records[i].predicted_latency_s),
        dense_predicted_latency_s: dense,
        pbs_count: outcome.winner.and_then(|i| outcome.records[i].pbs_count),
        bits: outcome.winner.map(|i| outcome.records[i].candidate.bits),
        rounding_bits: outcome
            .winner
            .map(|i| rounding_text(outcome.records[i].candidate.rounding_bits)),
        p_error: outcome.winner.map(|i| outcome.records[i].candidate.p_error),
        prune_rate: outcome
            .winner
            .map(|i| outcome.records[i].candidate.prune_rate),
        prune_method: args.prune_method.name(),
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
    };
    let mut summary = json_text(&report)?;
    summary.push('\n');
    write_atomic(&args.out.join("tune.json"), summary.as_bytes())?;
    if args.xlsx {
        let path = args.out.join("tune.xlsx");
        let book = workbook(&report)
            .map_err(|e| anyhow!("cannot build the workbook '{}': {e}", path.display()))?;
        write_atomic(&path, &book)?;
    }
    if args.json {
        print_out(&summary)
    } else {
        print_out(&report_text(&report, args))
    }
}

/// `--rounding-bits auto[:TOL]` of `eval` and `compile`: the cheapest rounding width (2..=8,
/// or none) whose simulated accuracy on a validation slice of `data` is at most TOL points
/// below the float model's, by the search of `tune` restricted to rounding widths (the other
/// options as given). Returns `quant` with that width; unchanged without `auto`.
pub fn resolve_auto_rounding(
    graph: &Graph,
    model: &Path,
    quant: &QuantArgs,
    crypto: &CryptoArgs,
    data: &Path,
    keys: &DataKeys,
) -> Result<QuantArgs> {
    let Some(RoundingBits::Auto {
        tolerance_centipoints,
    }) = quant.rounding_bits
    else {
        return Ok(quant.clone());
    };
    let tolerance = f64::from(tolerance_centipoints) / 100.0;
    let bits = quant
        .bits
        .context("--rounding-bits auto needs --bits: it chooses a rounding width for them")?;
    if crypto.global_p_error.is_some() {
        bail!("--rounding-bits auto works with --p-error (per bootstrap), not --global-p-error");
    }
    let prune_rate = match quant.prune_rate.as_ref().map(|r| r.0.as_slice()) {
        None => 0.0,
        Some([r]) => *r,
        Some(_) => bail!("--rounding-bits auto works with one --prune-rate, not one per layer"),
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
        &float_predictions(graph, &validation.samples)?,
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
    };
    let goal = Goal {
        target,
        budget: Duration::from_secs(600),
        stop_at_winner: true,
    };
    let outcome = search::search(&mut measure, grid, &[], &goal, &mut |_| {});
    let Some(w) = outcome.winner else {
        let best = outcome
            .records
            .iter()
            .filter_map(|r| r.val_simulate_accuracy.or(r.val_clear_accuracy))
            .fold(0.0, f64::max);
        bail!(
            "--rounding-bits auto:{tolerance}: no rounding width keeps {bits}-bit accuracy within \
             {tolerance} points of float ({float:.4}) on {} (best {best:.4}); raise the \
             tolerance or --bits, or give a width",
            splits.validation_source
        );
    };
    let winner = &outcome.records[w];
    eprintln!(
        "--rounding-bits auto:{tolerance}: {} (simulated {:.4} on {} ({n} samples), float \
         {float:.4}, target {target:.4}; {:.3} s predicted)",
        winner
            .candidate
            .rounding_bits
            .map_or("none".to_string(), |b| format!("rounding to {b} bits")),
        winner.val_simulate_accuracy.unwrap_or(0.0),
        splits.validation_source,
        winner.predicted_latency_s.unwrap_or(0.0)
    );
    Ok(QuantArgs {
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
fn grid(args: &TuneArgs) -> Vec<Candidate> {
    let mut out = Vec::new();
    let p = args.max_p_error;
    for &bits in &args.bits {
        for r in &args.rounding_bits {
            for &prune_rate in &args.prune_rate {
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

/// Refuses a directory holding another search unless --resume/--overwrite; returns the
/// records to resume from.
fn prepare_out(args: &TuneArgs, setup: &Setup) -> Result<Vec<Record>> {
    let (setup_path, csv) = (args.out.join("setup.json"), args.out.join("candidates.csv"));
    let exists = setup_path.exists() || csv.exists();
    if exists && !args.resume && !args.overwrite {
        bail!(
            "'{}' already holds a tune search; pass --resume to continue it or --overwrite to \
             start again",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory '{}'", args.out.display()))?;
    if !args.resume || !exists {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(&setup_path)
        .with_context(|| format!("cannot read '{}'", setup_path.display()))?;
    let old: Setup = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "'{}' is not a tune setup ({e}); use --overwrite to start again",
            setup_path.display()
        )
    })?;
    if let Some(why) = old.difference(setup) {
        bail!(
            "'{}' holds a search with another setup ({why}); use the same options, or \
             --overwrite",
            args.out.display()
        );
    }
    if !csv.exists() {
        return Ok(vec![]);
    }
    let mut reader =
        csv::Reader::from_path(&csv).with_context(|| format!("cannot read '{}'", csv.display()))?;
    let mut records = Vec::new();
    for (i, row) in reader.deserialize::<CandidateRow>().enumerate() {
        let row = row.map_err(|e| {
            anyhow!(
                "'{}' row {}: {e}; it is not a candidates file of this fhec: use --overwrite",
                csv.display(),
                i + 1
            )
        })?;
        records.push(row.record()?);
    }
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// data

fn load_splits(spec: &SplitSpec, graph: &Graph) -> Result<Splits> {
    let (input, fact) = single_input(graph, spec.model)?;
    let (keys, limit, data) = (spec.keys, spec.calib_limit, spec.data);
    let train = load_dataset(data, Split::Train, keys).with_context(|| {
        format!(
            "cannot load the train split of '{}' (the search calibrates on it)",
            data.display()
        )
    })?;
    let labelled = |ds: &Dataset, what: &str| -> Result<Labelled> {
        let labels: Vec<i64> =
            ds.y.as_ref()
                .ok_or_else(|| anyhow!("'{}': the {what} has no labels", data.display()))?
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
        Err(e) => return Err(anyhow::Error::new(e)),
    };
    if validation.labels.is_empty() {
        bail!("'{}': the validation slice is empty", data.display());
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

// ---------------------------------------------------------------------------------------------
// measuring

/// The evaluator of the real pipeline: quantised models shared between candidates that
/// differ only in failure probability, the last circuit kept for its simulation.
struct Measure<'a> {
    graph: &'a Graph,
    model: &'a Path,
    calibration: &'a [Vec<Tensor>],
    validation: &'a Labelled,
    threads: Option<u32>,
    seed: u64,
    prune_method: PruneMethodArg,
    rounding_mode: RoundingModeArg,
    shared: SharedWork,
    circuit: Option<(Candidate, Circuit)>,
}

fn quant_args(
    c: &Candidate,
    prune_method: PruneMethodArg,
    rounding_mode: RoundingModeArg,
    calib_limit: usize,
) -> QuantArgs {
    QuantArgs {
        bits: Some(c.bits),
        rounding_bits: Some(
            c.rounding_bits
                .map_or(RoundingBits::None, RoundingBits::Keep),
        ),
        rounding_mode: c.rounding_bits.map(|_| rounding_mode),
        prune_rate: (c.prune_rate > 0.0).then(|| PruneRates(vec![c.prune_rate])),
        prune_method,
        calib_limit,
        ..Default::default()
    }
}

fn crypto_args(c: &Candidate, threads: Option<u32>) -> CryptoArgs {
    CryptoArgs {
        p_error: Some(c.p_error),
        global_p_error: None,
        threads,
    }
}

impl Measure<'_> {
    fn quantised(&mut self, c: &Candidate) -> Result<&super::sweep::Quantised> {
        let quant = quant_args(
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
        )
    }

    fn circuit(&mut self, c: &Candidate) -> Result<&Circuit> {
        if self.circuit.as_ref().is_none_or(|(k, _)| k != c) {
            let crypto = crypto_args(c, self.threads);
            let model = self.model;
            let circuit = evaluation_circuit(&self.quantised(c)?.compiled, &crypto, model)?;
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
        let seed = self.seed;
        let samples = &self.validation.samples[..n];
        let labels = &self.validation.labels[..n];
        let circuit = self.circuit(c).map_err(|e| one_line(&e))?;
        let preds = simulate_predictions(circuit, samples, seed).map_err(|e| one_line(&e))?;
        Ok(correct(&preds, labels))
    }
}

/// The winner measured on the test split, its circuit written.
struct Confirmed {
    circuit: PathBuf,
    test_clear_accuracy: f64,
    test_simulate_accuracy: f64,
    /// (samples, accuracy, mean latency) of `--confirm K`.
    fhe: Option<(usize, f64, f64)>,
}

fn confirm_winner(
    args: &TuneArgs,
    graph: &Graph,
    output_names: &[String],
    splits: &Splits,
    winner: &Record,
    progress: &Progress,
) -> Result<Confirmed> {
    let c = &winner.candidate;
    let quant = quant_args(
        c,
        args.prune_method,
        RoundingModeArg::Approximate,
        splits.calibration.len(),
    );
    let crypto = crypto_args(c, args.threads);
    let (compiled, circuit, _) = {
        let _spin = progress.status(&format!("compiling the winner ({})", c.label()));
        compile_circuit(
            graph,
            &quant,
            &crypto,
            splits.calibration.clone(),
            &args.model,
            output_names,
            "the data file's train split",
        )?
    };
    let path = args.out.join("winner.fhec");
    circuit
        .save(&path)
        .with_context(|| format!("cannot write the circuit '{}'", path.display()))?;
    let test = splits
        .test
        .as_ref()
        .context("the test split was asked for")?;
    let n = test.labels.len() as f64;
    let clear = clear_predictions(&compiled, &test.samples)?.predictions;
    let simulated = simulate_predictions(&circuit, &test.samples, args.seed)?;
    let fhe = match args.confirm {
        None => None,
        Some(k) => {
            let k = usize::try_from(k)
                .unwrap_or(usize::MAX)
                .min(test.samples.len());
            let mut session = {
                let _spin = progress.spinner(&format!("generating keys ({})", circuit.params));
                FheSession::new(&circuit)?
            };
            let bar = progress.bar(k as u64, "FHE samples");
            let preds = fhe_predictions(
                &mut session,
                &circuit,
                &test.samples[..k],
                &test.labels[..k],
                &bar,
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

// ---------------------------------------------------------------------------------------------
// records and reports

const CANDIDATE_COLUMNS: [&str; 11] = [
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
struct CandidateRow {
    bits: u32,
    rounding_bits: String,
    prune_rate: f32,
    p_error: f64,
    status: Status,
    predicted_latency_s: Option<f64>,
    pbs_count: Option<u64>,
    val_clear_accuracy: Option<f64>,
    val_simulate_accuracy: Option<f64>,
    val_simulated_samples: usize,
    error: String,
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
    fn record(self) -> Result<Record> {
        let rounding_bits = match self.rounding_bits.as_str() {
            "none" => None,
            t => Some(
                t.parse()
                    .map_err(|_| anyhow!("rounding_bits '{t}' is not 'none' or a width"))?,
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

/// `tune.json` and `--json`.
#[derive(Serialize)]
struct TuneReport {
    /// The winner's simulated accuracy on the test split.
    accuracy: Option<f64>,
    /// The winner's clear (quantised) accuracy on the test split.
    clear_accuracy: Option<f64>,
    /// The float model on the test split.
    float_accuracy: f64,
    test_samples: usize,
    validation_float_accuracy: f64,
    target_accuracy: f64,
    /// The winner's simulated accuracy on the validation slice (what it was chosen by).
    validation_accuracy: Option<f64>,
    predicted_latency_s: Option<f64>,
    /// The same configuration without pruning (for the speed-up pruning buys).
    dense_predicted_latency_s: Option<f64>,
    pbs_count: Option<u64>,
    bits: Option<u32>,
    rounding_bits: Option<String>,
    p_error: Option<f64>,
    prune_rate: Option<f32>,
    /// How pruning by rate chose and replaced neurons (`--prune-method`).
    prune_method: &'static str,
    circuit: Option<String>,
    fhe_samples: Option<usize>,
    fhe_accuracy: Option<f64>,
    measured_latency_s: Option<f64>,
    search_s: f64,
    out_of_budget: bool,
    setup: Setup,
    pareto_front: Vec<CandidateRow>,
    candidates: Vec<CandidateRow>,
}

fn report_text(r: &TuneReport, args: &TuneArgs) -> String {
    let mut o = String::new();
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
    let _ = writeln!(
        o,
        "Pareto front (simulated validation accuracy vs predicted latency, {} samples):",
        r.setup.validation_samples
    );
    let _ = writeln!(
        o,
        "{:>4}  {:>5}  {:>10}  {:>5}  {:>8}  {:>8}  {:>6}  {:>9}",
        "bits", "round", "p_error", "prune", "clear", "simulate", "pbs", "latency s"
    );
    for c in &r.pareto_front {
        let _ = writeln!(
            o,
            "{:>4}  {:>5}  {:>10.3e}  {:>5}  {:>8}  {:>8}  {:>6}  {:>9}",
            c.bits,
            c.rounding_bits,
            c.p_error,
            c.prune_rate,
            opt(c.val_clear_accuracy),
            opt(c.val_simulate_accuracy),
            c.pbs_count.map_or("-".into(), |p| p.to_string()),
            c.predicted_latency_s
                .map_or("-".into(), |l| format!("{l:.3}"))
        );
    }
    let measured = r
        .candidates
        .iter()
        .filter(|c| !matches!(c.status, Status::NotPriced | Status::NotEvaluated))
        .count();
    let _ = writeln!(
        o,
        "\n{measured} of {} candidate(s) measured in {:.1} s{}",
        r.candidates.len(),
        r.search_s,
        if r.out_of_budget {
            format!(
                " (budget of {} s used up; --resume continues)",
                args.budget_s
            )
        } else {
            String::new()
        }
    );
    match (&r.circuit, r.bits) {
        (Some(circuit), Some(bits)) => {
            let _ = writeln!(
                o,
                "winner: bits={bits} rounding={} p_error={} prune_rate={}: validation {} \
                 (target {:.4}), predicted {} s per sample ({} bootstraps){}",
                r.rounding_bits.as_deref().unwrap_or("-"),
                r.p_error.unwrap_or(0.0),
                r.prune_rate.unwrap_or(0.0),
                opt(r.validation_accuracy),
                r.target_accuracy,
                opt(r.predicted_latency_s),
                r.pbs_count.unwrap_or(0),
                match (r.dense_predicted_latency_s, r.predicted_latency_s) {
                    (Some(d), Some(w)) if r.prune_rate.unwrap_or(0.0) > 0.0 => {
                        format!(", {:.2}x the unpruned model's {d:.3} s", w / d)
                    }
                    _ => String::new(),
                }
            );
            let _ = writeln!(
                o,
                "test split ({} samples): float {:.4}, clear {}, simulated {}{}",
                r.test_samples,
                r.float_accuracy,
                opt(r.clear_accuracy),
                opt(r.accuracy),
                match (r.fhe_samples, r.fhe_accuracy, r.measured_latency_s) {
                    (Some(k), Some(a), Some(l)) =>
                        format!(", FHE {a:.4} on {k} samples at {l:.3} s each"),
                    _ => String::new(),
                }
            );
            let _ = writeln!(o, "circuit: {circuit}");
        }
        _ => {
            let _ = writeln!(
                o,
                "no candidate reached the target {:.4}{}",
                r.target_accuracy,
                if r.out_of_budget {
                    " within the budget: raise --budget-s or --resume"
                } else {
                    ": lower the target, or widen --bits / --rounding-bits / --max-p-error"
                }
            );
        }
    }
    let _ = writeln!(o, "records: {}", args.out.join("candidates.csv").display());
    o
}

/// `tune.xlsx`: every candidate, and the Pareto front.
fn workbook(r: &TuneReport) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let mut names = Vec::new();
    for (title, rows) in [
        ("candidates", &r.candidates),
        ("pareto front", &r.pareto_front),
    ] {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(title, &mut names))?;
        write_header(sheet, &bold, 0, &CANDIDATE_COLUMNS)?;
        for (i, row) in rows.iter().enumerate() {
            write_record(
                sheet,
                u32::try_from(i + 1).unwrap_or(u32::MAX),
                0,
                row,
                &CANDIDATE_COLUMNS,
            )?;
        }
    }
    book.save_to_buffer()
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
