//! `fhec tune`: the fastest configuration (bits, rounding width, failure probability,
//! pruning rate) whose simulated accuracy reaches a target. The search, its records and its
//! resume are the driver's ([`fhec_driver::tune`]); here are the flags, the text report and
//! the `--xlsx` workbook.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::{ArgGroup, Args};
use fhec_driver::data::DataKeys;
use fhec_driver::sweep::table::write_atomic;
use fhec_driver::tune::search::Status;
use fhec_driver::tune::{Target, TuneReport, TuneSpec, CANDIDATE_COLUMNS};
use fhec_driver::Hooks;

use super::compile::parse_probability;
use super::progress::Progress;
use super::quant_args::{parse_bits, parse_rounding_bits, PruneMethod, RoundingBits};
use super::sweep::outputs::{sheet_name, write_header, write_record};
use super::{advise, json_text, print_out, ImportArgs, DATA_CALIB_HINT};

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
    pub prune_method: PruneMethod,
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

impl TuneArgs {
    /// The search as the driver takes it.
    fn spec(&self) -> TuneSpec {
        let target = match (self.target_accuracy, self.max_drop) {
            (Some(a), _) => Target::Accuracy(a),
            (None, Some(p)) => Target::MaxDrop(p),
            // clap's `goal` group requires one of the two.
            (None, None) => Target::MaxDrop(0.0),
        };
        TuneSpec {
            model: self.model.clone(),
            import: self.import.options(),
            data: self.data.clone(),
            keys: DataKeys {
                x_key: self.x_key.clone(),
                y_key: self.y_key.clone(),
            },
            target,
            out: self.out.clone(),
            budget: Duration::from_secs(self.budget_s),
            max_p_error: self.max_p_error,
            bits: self.bits.clone(),
            rounding_bits: self.rounding_bits.clone(),
            prune_rate: self.prune_rate.clone(),
            prune_method: self.prune_method,
            val_fraction: self.val_fraction,
            seed: self.seed,
            calib_limit: usize::try_from(self.calib_limit).unwrap_or(usize::MAX),
            threads: self.threads,
            confirm: self
                .confirm
                .map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            stop_at_winner: self.stop_at_winner,
            resume: self.resume,
            overwrite: self.overwrite,
        }
    }
}

pub fn run(args: &TuneArgs) -> Result<()> {
    let progress = Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let report =
        fhec_driver::tune::run(&args.spec(), &hooks).map_err(|e| advise(e, DATA_CALIB_HINT))?;
    if args.xlsx {
        let path = args.out.join("tune.xlsx");
        let book = workbook(&report)
            .map_err(|e| anyhow!("cannot build the workbook '{}': {e}", path.display()))?;
        write_atomic(&path, &book)?;
    }
    if args.json {
        let mut summary = json_text(&report);
        summary.push('\n');
        print_out(&summary)
    } else {
        print_out(&report_text(&report, args))
    }
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
