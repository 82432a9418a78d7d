//! `fhec sweep`: one model over datasets × quantisation / rounding / failure-probability /
//! pruning configurations, one CSV (and JSON lines) row per configuration. The sweep itself
//! is the driver's ([`fhec_driver::sweep`]: configurations, measuring, atomic rows, resume,
//! key cache, shards, merges); here are the flags, the files derived from the final rows
//! (`--top`, `--xlsx`, plots: [`outputs`]) and the summary.

pub(crate) mod outputs;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fhec_driver::data::DataKeys;
use fhec_driver::sweep::plan::{parse_shard, Shard};
use fhec_driver::sweep::table::Row;
use fhec_driver::sweep::{SweepMode, SweepSpec};
use fhec_driver::Hooks;
use serde::Serialize;

use super::compile::parse_probability;
use super::progress::Progress;
use super::quant_args::{
    parse_bits, parse_prune_rates, parse_rounding_bits, parse_threshold, PruneMethod, PruneRates,
    RoundingBits, RoundingMode,
};
use super::{advise, json_text, print_out, ImportArgs, DATA_CALIB_HINT};
use outputs::{write_derived, Derived};

#[derive(Args, Debug)]
#[command(after_long_help = super::layout_note())]
pub struct SweepArgs {
    /// The ONNX model to sweep.
    #[arg(value_name = "MODEL.onnx", required_unless_present = "merge")]
    pub model: Option<PathBuf>,
    /// Labelled data (.npz, .csv, .tsv; MedMNIST .npz read directly); repeat for several
    /// datasets. Each gets its own results file, named after the file stem.
    #[arg(long = "data", value_name = "D.npz", required_unless_present = "merge")]
    pub data: Vec<PathBuf>,
    /// The .npz array holding the test features (read verbatim), for every --data.
    #[arg(long, value_name = "KEY")]
    pub x_key: Option<String>,
    /// The .npz array (or CSV column) holding the labels, for every --data.
    #[arg(long, value_name = "KEY")]
    pub y_key: Option<String>,
    /// Quantisation widths to sweep (weights, activations and inputs), e.g. 4,5,6,7,8.
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_bits, required_unless_present = "merge")]
    pub bits: Vec<u32>,
    /// Accumulator rounding to sweep: `none` or the top bits kept before each lookup,
    /// e.g. none,5,6 [default: 7, as `compile`].
    #[arg(long, value_name = "R,...", value_delimiter = ',', value_parser = parse_rounding_bits)]
    pub rounding_bits: Vec<RoundingBits>,
    /// How rounding rounds (each mode is swept for every rounding width).
    #[arg(
        long,
        value_name = "MODE,...",
        value_delimiter = ',',
        value_enum,
        default_value = "approximate"
    )]
    pub rounding_mode: Vec<RoundingMode>,
    /// Failure probabilities of one bootstrap to sweep [default: 2^-40 unless
    /// --global-p-error is given].
    #[arg(long, value_name = "P,...", value_delimiter = ',', value_parser = parse_probability)]
    pub p_error: Vec<f64>,
    /// Failure probabilities of a whole inference to sweep (split over its bootstraps).
    #[arg(long, value_name = "P,...", value_delimiter = ',', value_parser = parse_probability)]
    pub global_p_error: Vec<f64>,
    /// Pruning thresholds to sweep (0 = exact zeros only, written `none`).
    #[arg(long, value_name = "T,...", value_delimiter = ',', value_parser = parse_threshold, default_value = "0")]
    pub prune_threshold: Vec<f32>,
    /// Neuron pruning rates to sweep (lossy, as `compile --prune-rate`; 0 = none), e.g.
    /// 0,0.25,0.5,0.75; `R1:R2:...` is one rate per prunable layer.
    #[arg(long, value_name = "R,...", value_delimiter = ',', value_parser = parse_prune_rates, default_value = "0")]
    pub prune_rate: Vec<PruneRates>,
    /// How pruning by rate chooses and replaces neurons (see `eval --help`).
    #[arg(long, value_enum, value_name = "METHOD", default_value = "refit")]
    pub prune_method: PruneMethod,
    /// What to measure: clear (always), simulate (noise simulation of the circuit), fhe
    /// (encrypted, on the first --fhe-samples samples).
    #[arg(
        long,
        value_name = "MODE,...",
        value_delimiter = ',',
        value_enum,
        default_value = "clear,simulate"
    )]
    pub modes: Vec<SweepMode>,
    /// Encrypted samples per configuration (fhe mode).
    #[arg(long, value_name = "K", default_value = "10", value_parser = clap::value_parser!(u64).range(1..))]
    pub fhe_samples: u64,
    /// Evaluate only the first N test samples of each dataset.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Calibration data for every dataset [default: each --data file's train split].
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Use at most K calibration samples (the first K).
    #[arg(long, value_name = "K", default_value = "500", value_parser = clap::value_parser!(u64).range(1..))]
    pub calib_limit: u64,
    /// Threads the latency prediction assumes [default: the threads of this machine].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Seed of the simulation's noise.
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// Output directory (created): results CSV and JSON lines, plots, key cache.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue a sweep whose results are in DIR: configurations with a row are skipped.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start again, replacing this sweep's result files in DIR (cached keys are kept).
    #[arg(long)]
    pub overwrite: bool,
    /// Use NAME instead of <FORMAT>_<SIZE>_<METHOD> in the file names.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Do not draw plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Print one JSON summary object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write top_<K>.csv: the K best configurations of each dataset (highest simulated
    /// accuracy, else clear; then lowest predicted latency; then fewest bootstraps).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,
    /// Also write results_<NAME>.xlsx: one sheet per dataset, the float baseline, the top K.
    #[arg(long)]
    pub xlsx: bool,
    /// Run only shard I of N (0 <= I < N): a deterministic share of the configurations, for
    /// a sweep spread over machines. Give each shard its own --out (and so its own key
    /// cache), then join them with --merge.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Merge the --out directories of a sweep's shards into --out (idempotent: merge again
    /// as more shards finish). Takes no model, data or configuration options.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with_all = ["model", "data", "bits", "shard", "resume", "overwrite"])]
    pub merge: Vec<PathBuf>,
    #[command(flatten)]
    pub import: ImportArgs,
}

impl SweepArgs {
    /// The sweep as the driver takes it.
    fn spec(&self) -> Result<SweepSpec> {
        let model = self
            .model
            .clone()
            .context("give the MODEL.onnx to sweep (or --merge DIR... to join shards)")?;
        Ok(SweepSpec {
            model,
            import: self.import.options(),
            data: self.data.clone(),
            keys: DataKeys {
                x_key: self.x_key.clone(),
                y_key: self.y_key.clone(),
            },
            bits: self.bits.clone(),
            rounding_bits: self.rounding_bits.clone(),
            rounding_mode: self.rounding_mode.clone(),
            p_error: self.p_error.clone(),
            global_p_error: self.global_p_error.clone(),
            prune_threshold: self.prune_threshold.clone(),
            prune_rate: self.prune_rate.iter().map(|r| r.0.clone()).collect(),
            prune_method: self.prune_method,
            modes: self.modes.iter().copied().collect(),
            fhe_samples: usize::try_from(self.fhe_samples).unwrap_or(usize::MAX),
            limit: self.limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            calib: self.calib.clone(),
            calib_limit: usize::try_from(self.calib_limit).unwrap_or(usize::MAX),
            threads: self.threads,
            seed: self.seed,
            out: self.out.clone(),
            resume: self.resume,
            overwrite: self.overwrite,
            name: self.name.clone(),
            shard: self.shard,
        })
    }
}

pub fn run(args: &SweepArgs) -> Result<()> {
    if !args.merge.is_empty() {
        return run_merge(args);
    }
    let wall = Instant::now();
    let spec = args.spec()?;
    let progress = Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let outcome = fhec_driver::sweep::run(&spec, &hooks).map_err(|e| advise(e, DATA_CALIB_HINT))?;
    let written = write_derived(
        &args.out,
        &outcome.name,
        &outcome.datasets,
        &outcome.baseline,
        &Derived::of(args),
    )?;
    for w in &written.plot_warnings {
        progress.line(&format!("warning: {w}"));
    }
    let summary = Summary {
        files: outcome
            .datasets
            .iter()
            .map(|d| d.csv.display().to_string())
            .collect(),
        baseline: outcome.baseline_csv.display().to_string(),
        plots: written
            .plots
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        computed: outcome.computed,
        skipped: outcome.skipped,
        errors: outcome.errors,
        shard: args.shard.map(|s| s.to_string()),
        plan: outcome.plan.display().to_string(),
        top: written.top.map(|p| p.display().to_string()),
        xlsx: written.xlsx.map(|p| p.display().to_string()),
        wall_s: wall.elapsed().as_secs_f64(),
        rows: outcome.rows,
    };
    if args.json {
        print_out(&json_text(&summary))
    } else {
        print_out(&summary_text(&summary))
    }
}

/// `--merge`: joins shard directories, then prints what it did.
fn run_merge(args: &SweepArgs) -> Result<()> {
    let merged = fhec_driver::sweep::merge::merge(&args.merge, &args.out)
        .map_err(|e| advise(e, DATA_CALIB_HINT))?;
    let mut summaries = Vec::new();
    for m in merged {
        let written = write_derived(
            &args.out,
            &m.summary.name,
            &m.datasets,
            &m.baseline,
            &Derived::of(args),
        )?;
        let text = |p: &std::path::Path| p.display().to_string();
        let mut summary = m.summary;
        summary.warnings.extend(written.plot_warnings);
        summary.top = written.top.as_deref().map(text);
        summary.xlsx = written.xlsx.as_deref().map(text);
        summary.plots = written.plots.iter().map(|p| text(p)).collect();
        summaries.push(summary);
    }
    if args.json {
        return print_out(&json_text(&summaries));
    }
    let mut o = String::new();
    for m in &summaries {
        let _ = writeln!(
            o,
            "{}: merged {} row(s) from {} ({} shard(s) found)",
            m.name,
            m.rows,
            m.inputs.join(", "),
            m.shards_found.len()
        );
        if !m.shards_missing.is_empty() {
            let missing: Vec<String> = m.shards_missing.iter().map(u32::to_string).collect();
            let _ = writeln!(o, "  shards not given: {}", missing.join(", "));
        }
        if m.configurations_missing > 0 {
            let _ = writeln!(
                o,
                "  {} configuration(s) of the plan have no row yet: merge again when their \
                 shards finish, or run them with `fhec sweep ... --resume --out {}`",
                m.configurations_missing,
                args.out.display()
            );
        }
        for w in &m.warnings {
            let _ = writeln!(o, "  warning: {w}");
        }
        for f in m.files.iter().chain(&m.top).chain(&m.xlsx).chain(&m.plots) {
            let _ = writeln!(o, "  wrote {f}");
        }
    }
    print_out(&o)
}

/// An error and its causes on one line (a warning, a CSV cell).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let text = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// summary

#[derive(Serialize, Default)]
struct Summary {
    /// One results CSV per dataset.
    files: Vec<String>,
    baseline: String,
    plots: Vec<String>,
    /// Configurations measured by this run.
    computed: usize,
    /// Configurations found done in the existing files (--resume).
    skipped: usize,
    /// Rows with status=error among those computed.
    errors: usize,
    /// `--shard I/N`.
    shard: Option<String>,
    /// The plan written for `--merge` (`sweep_<NAME>.json`).
    plan: String,
    top: Option<String>,
    xlsx: Option<String>,
    wall_s: f64,
    /// Every row of this sweep's configurations (computed or resumed).
    rows: Vec<Row>,
}

fn summary_text(s: &Summary) -> String {
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut table: Vec<Vec<String>> = vec![[
        "dataset", "bits", "round", "p_error", "prune", "rate", "float", "clear", "simulate",
        "fhe", "agree", "pbs", "acc", "pred s", "meas s", "status",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect()];
    for r in &s.rows {
        let round = if r.rounding_bits == "none" {
            "none".to_string()
        } else if r.rounding_mode == "approximate" {
            r.rounding_bits.clone()
        } else {
            format!("{}/{}", r.rounding_bits, r.rounding_mode)
        };
        let p = if r.p_error_kind == "global" {
            format!("{}g", r.p_error)
        } else {
            format!("{:e}", r.p_error)
        };
        let status = if r.status == "error" {
            // The cause, not the context: "cannot compile 'm.onnx' to a circuit (...): no TFHE
            // parameters found: ..." is shown from "no TFHE parameters found".
            let cause = r
                .error
                .split_once("): ")
                .map_or(r.error.as_str(), |(_, c)| c);
            let mut e: String = cause.chars().take(60).collect();
            if cause.chars().count() > 60 {
                e.push_str("...");
            }
            format!("error: {e}")
        } else {
            r.status.clone()
        };
        table.push(vec![
            r.dataset.clone(),
            r.bits.to_string(),
            round,
            p,
            r.prune_threshold.clone(),
            r.prune_rate.clone(),
            format!("{:.4}", r.float_accuracy),
            opt(r.clear_accuracy),
            opt(r.simulate_accuracy),
            opt(r.fhe_accuracy),
            opt(r.fhe_clear_agreement),
            r.pbs_count.map_or("-".into(), |v| v.to_string()),
            r.max_accumulator_bits.map_or("-".into(), |v| v.to_string()),
            r.predicted_latency_s
                .map_or("-".into(), |v| format!("{v:.3}")),
            r.measured_latency_s
                .map_or("-".into(), |v| format!("{v:.3}")),
            status,
        ]);
    }
    let cols = table[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for r in &table {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i == 0 || i == cols - 1 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        let _ = writeln!(o, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(
        o,
        "\n{} configuration(s) computed ({} with errors), {} resumed, in {:.1} s",
        s.computed, s.errors, s.skipped, s.wall_s
    );
    for f in &s.files {
        let _ = writeln!(o, "results: {f} (+ .jsonl)");
    }
    let _ = writeln!(o, "float baseline: {}", s.baseline);
    if let Some(t) = &s.top {
        let _ = writeln!(o, "top configurations: {t}");
    }
    if let Some(x) = &s.xlsx {
        let _ = writeln!(o, "spreadsheet: {x}");
    }
    for p in &s.plots {
        let _ = writeln!(o, "plot: {p}");
    }
    match &s.shard {
        Some(shard) => {
            let _ = writeln!(
                o,
                "shard {shard}; plan: {} (join the shards with `fhec sweep --merge DIR... --out DIR`)",
                s.plan
            );
        }
        None => {
            let _ = writeln!(o, "plan: {}", s.plan);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_choices_parse() {
        assert_eq!(parse_rounding_bits("none"), Ok(RoundingBits::None));
        assert_eq!(parse_rounding_bits(" 6"), Ok(RoundingBits::Keep(6)));
        assert!(parse_rounding_bits("0").is_err());
        assert!(parse_rounding_bits("x").is_err());
    }
}
