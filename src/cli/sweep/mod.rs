//! `fhec sweep`: one model over datasets × quantisation / rounding / failure-probability /
//! pruning configurations, one CSV (and JSON lines) row per configuration.
//!
//! Each dataset's test set, calibration data and float predictions are loaded once; each
//! configuration is then quantised and run in the clear on the whole test set, compiled to a
//! circuit and simulated (whole test set) and run encrypted on the first K samples when asked.
//! A configuration that fails (no TFHE parameters, accumulators too wide) becomes a row with
//! `status=error` and the sweep goes on; bad input (missing file, bad model, foreign result
//! file) fails before any work.
//!
//! Rows are written atomically (the whole file rewritten to a temporary sibling, then renamed)
//! after every configuration, so a sweep killed at any moment leaves complete files, and
//! `--resume` continues without redoing finished rows. Keys are cached per parameter set in
//! `DIR/keys/<fingerprint>/`, across configurations and restarts.
//!
//! Across machines: `--shard I/N` runs a deterministic share of the configurations (see
//! [`plan::Shard::select`]) into its own DIR, and `--merge DIR... --out DIR` joins the shards
//! ([`merge`]). Every run writes its plan (`sweep_<NAME>.json`) for that. `--top K` and
//! `--xlsx` are derived from the final rows ([`outputs`]), by a run and by a merge alike.

mod merge;
pub(crate) mod outputs;
mod plan;
pub(crate) mod table;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use fhec_backend::PErrorTarget;
use fhec_ir::{Graph, Op, TensorFact};
use fhec_runtime::fhe::{ClientKey, CompressedServerKey};
use fhec_runtime::Circuit;
use serde::Serialize;

use super::compile::{parse_probability, CircuitReport, CryptoArgs, DEFAULT_P_ERROR};
use super::eval::{
    agreement, clear_predictions, correct, data_calibration, evaluation_circuit, fhe_predictions,
    float_predictions, load_test_set, simulate_predictions, TestSet, DATA_CALIB_HINT,
};
use super::fhe::{FheSession, FheTimings};
use super::progress::Progress;
use super::quant_args::{
    calibrate, compile_calibrated, parse_bits, parse_prune_rates, parse_rounding_bits,
    parse_threshold, single_input, Calibrated, Calibration, Compiled, PruneMethodArg, PruneRates,
    QuantArgs, RoundingBits, RoundingModeArg, DEFAULT_ROUNDING_BITS,
};
use super::{import_model, json_text, print_out, ImportArgs};
use crate::data::DataKeys;
use outputs::{write_derived, DatasetRows, Derived};
use plan::{parse_shard, ConfigKey, Plan, Shard};
use table::{
    columns, read_baseline, read_rows, remove_stale_temporaries, write_table, BaselineRow, Row,
    BASELINE_COLUMNS,
};

/// What a sweep measures besides float accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum SweepMode {
    /// The quantised integer model in the clear, whole test set (always run).
    Clear,
    /// The compiled circuit with simulated bootstrap noise, whole test set.
    Simulate,
    /// Real encryption on the first --fhe-samples samples.
    Fhe,
}

#[derive(Args, Debug)]
#[command(after_long_help = crate::data::layout_note())]
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
    pub rounding_mode: Vec<RoundingModeArg>,
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
    pub prune_method: PruneMethodArg,
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

/// One point of the sweep.
#[derive(Clone, Debug)]
struct Config {
    bits: u32,
    rounding: Option<(u32, RoundingModeArg)>,
    target: PErrorTarget,
    prune: f32,
    /// Empty: no pruning by rate.
    prune_rate: Vec<f32>,
    prune_method: PruneMethodArg,
}

impl Config {
    fn rounding_bits(&self) -> String {
        self.rounding.map_or("none".into(), |(b, _)| b.to_string())
    }

    fn rounding_mode(&self) -> String {
        self.rounding.map_or("none", |(_, m)| m.name()).to_string()
    }

    fn p_error(&self) -> (f64, &'static str) {
        match self.target {
            PErrorTarget::PerPbs(p) => (p, "per_pbs"),
            PErrorTarget::Global(p) => (p, "global"),
        }
    }

    fn prune_threshold(&self) -> String {
        if self.prune == 0.0 {
            "none".into()
        } else {
            self.prune.to_string()
        }
    }

    /// The configuration columns of its row.
    fn key(&self) -> ConfigKey {
        let (p, kind) = self.p_error();
        ConfigKey {
            bits: self.bits,
            rounding_bits: self.rounding_bits(),
            rounding_mode: self.rounding_mode(),
            p_error: p.to_string(),
            p_error_kind: kind.into(),
            prune_threshold: self.prune_threshold(),
            prune_rate: self.prune_rate(),
            prune_method: self.prune_method(),
        }
    }

    /// The method's name, `none` without pruning by rate.
    fn prune_method(&self) -> String {
        if self.prune_rate.is_empty() {
            "none".into()
        } else {
            self.prune_method.name().into()
        }
    }

    /// `0` (none), `0.5`, or one rate per layer `0.5:0.25`.
    fn prune_rate(&self) -> String {
        if self.prune_rate.is_empty() {
            "0".into()
        } else {
            let rates: Vec<String> = self.prune_rate.iter().map(f32::to_string).collect();
            rates.join(":")
        }
    }

    /// `bits=6 rounding=5 p_error=0.008`, for progress lines.
    fn label(&self) -> String {
        let mut s = format!("bits={}", self.bits);
        match self.rounding {
            Some((b, RoundingModeArg::Approximate)) => s.push_str(&format!(" rounding={b}")),
            Some((b, m)) => s.push_str(&format!(" rounding={b}/{}", m.name())),
            None => s.push_str(" rounding=none"),
        }
        let (p, kind) = self.p_error();
        if kind == "global" {
            s.push_str(&format!(" global_p_error={p}"));
        } else {
            s.push_str(&format!(" p_error={p}"));
        }
        if self.prune != 0.0 {
            s.push_str(&format!(" prune={}", self.prune));
        }
        if !self.prune_rate.is_empty() {
            s.push_str(&format!(" prune_rate={}", self.prune_rate()));
        }
        s
    }

    fn quant(&self, args: &SweepArgs) -> QuantArgs {
        QuantArgs {
            bits: Some(self.bits),
            rounding_bits: Some(
                self.rounding
                    .map_or(RoundingBits::None, |(b, _)| RoundingBits::Keep(b)),
            ),
            rounding_mode: self.rounding.map(|(_, m)| m),
            prune_threshold: self.prune,
            prune_rate: (!self.prune_rate.is_empty()).then(|| PruneRates(self.prune_rate.clone())),
            prune_method: self.prune_method,
            calib: args.calib.clone(),
            calib_limit: usize::try_from(args.calib_limit).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }

    fn crypto(&self, args: &SweepArgs) -> CryptoArgs {
        let (p_error, global_p_error) = match self.target {
            PErrorTarget::PerPbs(p) => (Some(p), None),
            PErrorTarget::Global(p) => (None, Some(p)),
        };
        CryptoArgs {
            p_error,
            global_p_error,
            threads: args.threads,
        }
    }
}

/// The columns a row is matched on when resuming: model, dataset, configuration.
type RowKey = (String, String, ConfigKey);

fn row_key(r: &Row) -> RowKey {
    (r.model.clone(), r.dataset.clone(), ConfigKey::of(r))
}

/// What the model's input and quantisation say about the results' file names.
#[derive(Clone, Debug)]
struct ModelKind {
    format: String,
    size: String,
    method: String,
}

/// GREY / RGB from the channel count of an NCHW or NHWC image input, TABULAR for `[1, F]`.
fn model_kind(graph: &Graph, fact: &TensorFact) -> ModelKind {
    let s = fact.shape.as_slice();
    let image = |c: usize, h: usize, w: usize| {
        let format = match c {
            1 => "GREY".to_string(),
            3 => "RGB".to_string(),
            c => format!("{c}CH"),
        };
        (format, format!("{h}x{w}"))
    };
    let (format, size) = match s {
        [_, f] => ("TABULAR".to_string(), f.to_string()),
        [_, c, h, w] if *c == 1 || *c == 3 => image(*c, *h, *w),
        [_, h, w, c] if *c == 1 || *c == 3 => image(*c, *h, *w),
        [_, c, h, w] => image(*c, *h, *w),
        [_, h, w] => ("GREY".to_string(), format!("{h}x{w}")),
        other => (
            "TENSOR".to_string(),
            other
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
        ),
    };
    let qat = graph
        .node_ids()
        .any(|id| matches!(graph.node(id).op, Op::QuantizeLinear(_)));
    ModelKind {
        format,
        size,
        method: if qat { "QAT" } else { "PTQ" }.into(),
    }
}

/// The result files of one dataset.
struct DatasetFiles {
    name: String,
    data: PathBuf,
    csv: PathBuf,
    jsonl: PathBuf,
}

/// Keys made or loaded for one parameter set, kept for the next configuration.
struct CachedSession {
    fingerprint: String,
    session: FheSession,
    server_key_bytes: u64,
}

pub fn run(args: &SweepArgs) -> Result<()> {
    if !args.merge.is_empty() {
        return run_merge(args);
    }
    let wall = Instant::now();
    let progress = Progress::stderr();
    let modes: HashSet<SweepMode> = args.modes.iter().copied().collect();
    let simulate = modes.contains(&SweepMode::Simulate);
    let fhe = modes.contains(&SweepMode::Fhe);

    // Hard input errors first: the model, the data files, the output directory.
    let model_path = args
        .model
        .as_deref()
        .context("give the MODEL.onnx to sweep (or --merge DIR... to join shards)")?;
    let model = import_model(model_path, &args.import)?;
    let graph = &model.graph;
    let (input, fact) = single_input(graph, model_path)?;
    let kind = model_kind(graph, fact);
    let model_name = model_path.file_name().map_or_else(
        || model_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let prefix = results_name(args, &kind)?;
    let datasets = dataset_files(args, &prefix)?;
    if let Some(c) = &args.calib {
        if !c.is_file() {
            bail!(
                "cannot read calibration file '{}': no such file",
                c.display()
            );
        }
    }
    let plan_configs = configurations(args);
    let configs = match args.shard {
        Some(shard) => shard.select(plan_configs.clone(), Config::key),
        None => plan_configs.clone(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory '{}'", args.out.display()))?;
    let baseline_csv = args.out.join(format!("results_{prefix}_clear.csv"));
    let baseline_jsonl = args.out.join(format!("results_{prefix}_clear.jsonl"));
    let (previous, mut baseline) =
        existing_results(args, &prefix, &datasets, &baseline_csv, &baseline_jsonl)?;
    Plan::new(
        &prefix,
        &model_name,
        datasets.iter().map(|d| d.name.clone()).collect(),
        plan_configs.iter().map(Config::key).collect(),
        args.shard,
    )
    .write(&args.out)?;
    if let Some(shard) = args.shard {
        progress.line(&format!(
            "shard {shard}: {} of the {} configuration(s)",
            configs.len(),
            plan_configs.len()
        ));
    }

    let keys = DataKeys {
        x_key: args.x_key.clone(),
        y_key: args.y_key.clone(),
    };
    let total = configs.len() * datasets.len();
    let overall = progress.bar(total as u64, "configs");
    let mut done = 0usize;
    let mut summary = Summary::default();
    let mut cached: Option<CachedSession> = None;
    let mut finished_files = Vec::new();
    for (d, mut rows) in datasets.iter().zip(previous) {
        let test = load_test_set(
            &d.data,
            &keys,
            args.limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            input,
            fact,
        )?;
        if let Some(n) = &test.layout {
            progress.line(&format!("note: {n}"));
        }
        let mut info = |l: String| progress.line(&l);
        let calibration = data_calibration(
            &configs[0].quant(args),
            &d.data,
            &keys,
            graph,
            model_path,
            &mut info,
        )?;
        let mut shared = SharedWork::default();
        let float_preds = float_predictions(graph, &test.samples)?;
        let n = test.samples.len();
        let float_accuracy = correct(&float_preds, &test.labels) as f64 / n as f64;
        progress.line(&format!(
            "{}: {n} test samples, float accuracy {float_accuracy:.4}, {} calibration samples",
            d.name,
            calibration.samples.len()
        ));
        let base = BaselineRow {
            dataset: d.name.clone(),
            model: model_name.clone(),
            format: kind.format.clone(),
            size: kind.size.clone(),
            method: kind.method.clone(),
            samples: n,
            float_accuracy,
        };
        match baseline
            .iter_mut()
            .find(|b| b.dataset == base.dataset && b.model == base.model)
        {
            Some(b) => *b = base,
            None => baseline.push(base),
        }
        write_table(&baseline_csv, &baseline_jsonl, &BASELINE_COLUMNS, &baseline)?;

        let k = if fhe {
            n.min(usize::try_from(args.fhe_samples).unwrap_or(usize::MAX))
        } else {
            0
        };
        let finished = |r: &Row| {
            r.status == "error"
                || (r.samples == n
                    && r.clear_accuracy.is_some()
                    && (!simulate || r.simulate_accuracy.is_some())
                    && (!fhe || r.fhe_samples >= k))
        };
        let template = Row {
            dataset: d.name.clone(),
            model: model_name.clone(),
            format: kind.format.clone(),
            size: kind.size.clone(),
            method: kind.method.clone(),
            status: "ok".into(),
            samples: n,
            float_accuracy,
            ..Default::default()
        };
        let skip: HashSet<RowKey> = rows.iter().filter(|r| finished(r)).map(row_key).collect();
        let skipped = configs
            .iter()
            .filter(|c| skip.contains(&row_key(&config_row(&template, c))))
            .count();
        if args.resume {
            progress.line(&format!(
                "{}: resuming '{}': {skipped} of {} configuration(s) already done, skipped",
                d.name,
                d.csv.display(),
                configs.len()
            ));
            summary.skipped += skipped;
        }
        // Keep the JSON lines in step with the CSV (a kill may have come between the two).
        write_table(&d.csv, &d.jsonl, columns(), &rows)?;

        for c in &configs {
            done += 1;
            let mut row = config_row(&template, c);
            let key = row_key(&row);
            if skip.contains(&key) {
                overall.step(None);
                continue;
            }
            let t = Instant::now();
            let label = c.label();
            overall.message(&format!("{} {label}", d.name));
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                run_config(
                    args,
                    c,
                    &mut row,
                    &RunInput {
                        graph,
                        model: model_path,
                        test: &test,
                        calibration: &calibration,
                        simulate,
                        fhe_k: k,
                        keys_dir: &args.out.join("keys"),
                    },
                    &progress,
                    &mut cached,
                    &mut shared,
                )
            }));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(one_line(&e)),
                Err(p) => Some(format!(
                    "internal error (this is a bug in fhec, please report it): {}",
                    panic_text(&p)
                )),
            };
            if let Some(e) = failure {
                row.status = "error".into();
                row.error = e;
                summary.errors += 1;
            }
            summary.computed += 1;
            match rows.iter_mut().find(|r| row_key(r) == key) {
                Some(r) => *r = row.clone(),
                None => rows.push(row.clone()),
            }
            write_table(&d.csv, &d.jsonl, columns(), &rows)?;
            overall.step(Some(&row_line(
                done,
                total,
                &row,
                &label,
                t.elapsed().as_secs_f64(),
            )));
            if progress.is_tty() {
                progress.line(&row_line(
                    done,
                    total,
                    &row,
                    &label,
                    t.elapsed().as_secs_f64(),
                ));
            }
        }
        summary.files.push(d.csv.display().to_string());
        let keys_of_sweep: HashSet<RowKey> = configs
            .iter()
            .map(|c| row_key(&config_row(&template, c)))
            .collect();
        summary.rows.extend(
            rows.iter()
                .filter(|r| keys_of_sweep.contains(&row_key(r)))
                .cloned(),
        );
        finished_files.push(DatasetRows {
            name: d.name.clone(),
            csv: d.csv.clone(),
            rows,
        });
    }
    drop(overall);
    let written = write_derived(
        &args.out,
        &prefix,
        &finished_files,
        &baseline,
        &Derived::of(args),
    )?;
    for w in &written.plot_warnings {
        progress.line(&format!("warning: {w}"));
    }
    summary.plots = written
        .plots
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    summary.top = written.top.map(|p| p.display().to_string());
    summary.xlsx = written.xlsx.map(|p| p.display().to_string());
    summary.plan = Plan::path(&args.out, &prefix).display().to_string();
    summary.baseline = baseline_csv.display().to_string();
    summary.shard = args.shard.map(|s| s.to_string());
    summary.wall_s = wall.elapsed().as_secs_f64();
    if args.json {
        print_out(&json_text(&summary)?)
    } else {
        print_out(&summary_text(&summary))
    }
}

/// `--merge`: joins shard directories, then prints what it did.
fn run_merge(args: &SweepArgs) -> Result<()> {
    let summaries = merge::merge(args)?;
    if args.json {
        return print_out(&json_text(&summaries)?);
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

/// `<FORMAT>_<SIZE>_<METHOD>`, or `--name`.
fn results_name(args: &SweepArgs, kind: &ModelKind) -> Result<String> {
    Ok(match &args.name {
        Some(n) => {
            if n.is_empty() || n.contains(['/', '\\']) {
                bail!("--name '{n}' must be a non-empty file name part (no '/')");
            }
            n.clone()
        }
        None => format!("{}_{}_{}", kind.format, kind.size, kind.method),
    })
}

/// Each --data file and its results files; refuses missing files and colliding names.
fn dataset_files(args: &SweepArgs, prefix: &str) -> Result<Vec<DatasetFiles>> {
    let mut datasets = Vec::new();
    let mut seen = HashSet::new();
    for d in &args.data {
        if !d.is_file() {
            bail!(
                "cannot read data file '{}': {}",
                d.display(),
                if d.exists() {
                    "it is not a file"
                } else {
                    "no such file"
                }
            );
        }
        let name = d
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("--data '{}' names no file", d.display()))?;
        if name == "clear" {
            bail!(
                "--data '{}': a dataset named 'clear' would collide with the float baseline \
                 file results_{prefix}_clear.csv; rename the file",
                d.display()
            );
        }
        if !seen.insert(name.clone()) {
            bail!(
                "two --data files are named '{name}'; dataset names (file stems) must differ \
                 because they name the results files"
            );
        }
        datasets.push(DatasetFiles {
            csv: args.out.join(format!("results_{prefix}_{name}.csv")),
            jsonl: args.out.join(format!("results_{prefix}_{name}.jsonl")),
            name,
            data: d.clone(),
        });
    }
    Ok(datasets)
}

/// The rows already in DIR per dataset, and the float baseline: refused without --resume or
/// --overwrite, read (and so validated, older schemas migrated) with either, emptied with
/// --overwrite.
fn existing_results(
    args: &SweepArgs,
    prefix: &str,
    datasets: &[DatasetFiles],
    baseline_csv: &Path,
    baseline_jsonl: &Path,
) -> Result<(Vec<Vec<Row>>, Vec<BaselineRow>)> {
    // Existing results: refused, resumed or replaced, never silently overwritten.
    let mut existing: Vec<&Path> = datasets
        .iter()
        .flat_map(|d| [d.csv.as_path(), d.jsonl.as_path()])
        .chain([baseline_csv, baseline_jsonl])
        .filter(|p| p.exists())
        .collect();
    existing.sort();
    if !existing.is_empty() && !args.resume && !args.overwrite {
        bail!(
            "'{}' already holds results of this sweep ({}); pass --resume to continue it or \
             --overwrite to start again",
            args.out.display(),
            existing
                .iter()
                .map(|p| p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Read (and so validate) every existing CSV before any work, --overwrite included.
    let mut previous: Vec<Vec<Row>> = Vec::new();
    for d in datasets {
        previous.push(if d.csv.exists() {
            read_rows(&d.csv)?
        } else {
            vec![]
        });
    }
    let mut baseline: Vec<BaselineRow> = if baseline_csv.exists() {
        read_baseline(baseline_csv)?
    } else {
        vec![]
    };
    if args.overwrite {
        for p in &existing {
            std::fs::remove_file(p)
                .with_context(|| format!("cannot remove '{}' (--overwrite)", p.display()))?;
        }
        previous.iter_mut().for_each(Vec::clear);
        baseline.clear();
    }
    remove_stale_temporaries(&args.out, prefix);
    Ok((previous, baseline))
}

/// Every configuration, bits outermost (the order rows are written in).
fn configurations(args: &SweepArgs) -> Vec<Config> {
    let mut targets: Vec<PErrorTarget> = args
        .p_error
        .iter()
        .map(|&p| PErrorTarget::PerPbs(p))
        .chain(args.global_p_error.iter().map(|&p| PErrorTarget::Global(p)))
        .collect();
    if targets.is_empty() {
        targets.push(PErrorTarget::PerPbs(DEFAULT_P_ERROR));
    }
    let mut out: Vec<Config> = vec![];
    for &bits in &args.bits {
        let widths = if args.rounding_bits.is_empty() {
            vec![RoundingBits::Keep(DEFAULT_ROUNDING_BITS)]
        } else {
            args.rounding_bits.clone()
        };
        let mut roundings: Vec<Option<(u32, RoundingModeArg)>> = vec![];
        for r in widths {
            match r.bits() {
                None => roundings.push(None),
                Some(b) => {
                    for &m in &args.rounding_mode {
                        roundings.push(Some((b, m)));
                    }
                }
            }
        }
        for &rounding in &roundings {
            for &target in &targets {
                for &prune in &args.prune_threshold {
                    for rate in &args.prune_rate {
                        let c = Config {
                            bits,
                            rounding,
                            target,
                            prune,
                            // Rate 0 everywhere removes nothing: the same as no pruning.
                            prune_rate: if rate.0.iter().all(|&r| r == 0.0) {
                                vec![]
                            } else {
                                rate.0.clone()
                            },
                            prune_method: args.prune_method,
                        };
                        // Repeated values on the command line give one configuration.
                        let dup = out.iter().any(|o| {
                            o.bits == c.bits
                                && o.rounding == c.rounding
                                && o.p_error() == c.p_error()
                                && o.prune == c.prune
                                && o.prune_rate == c.prune_rate
                        });
                        if !dup {
                            out.push(c);
                        }
                    }
                }
            }
        }
    }
    out
}

/// A row with the configuration columns of `c` filled in.
fn config_row(template: &Row, c: &Config) -> Row {
    let (p, kind) = c.p_error();
    Row {
        bits: c.bits,
        rounding_bits: c.rounding_bits(),
        rounding_mode: c.rounding_mode(),
        p_error: p,
        p_error_kind: kind.into(),
        prune_threshold: c.prune_threshold(),
        prune_rate: c.prune_rate(),
        prune_method: c.prune_method(),
        ..template.clone()
    }
}

/// What every configuration of one dataset shares.
struct RunInput<'a> {
    graph: &'a Graph,
    model: &'a Path,
    test: &'a TestSet,
    calibration: &'a Calibration,
    simulate: bool,
    /// Encrypted samples (0: no FHE).
    fhe_k: usize,
    keys_dir: &'a Path,
}

/// Work that one dataset's configurations share where it is the same: the calibrated graph
/// per pruning setting, and the quantised model with its clear predictions per set of pass
/// options (configurations that differ only in failure probability quantise identically).
#[derive(Default)]
pub(crate) struct SharedWork {
    calibrated: Vec<Calibrated>,
    quantised: Vec<Quantised>,
}

pub(crate) struct Quantised {
    options: fhec_passes::PassOptions,
    pub compiled: Compiled,
    /// Clear (quantised) argmax per evaluated sample.
    pub clear: Vec<usize>,
}

impl SharedWork {
    /// `graph` quantised with `quant` (calibrated on `calibration`) and its clear argmax on
    /// `samples`: made once per set of pass options, the calibration once per pruning
    /// setting.
    pub(crate) fn quantise(
        &mut self,
        graph: &Graph,
        quant: &QuantArgs,
        calibration: &[Vec<fhec_ir::Tensor>],
        model: &Path,
        samples: &[fhec_ir::Tensor],
    ) -> Result<&Quantised> {
        self.quantised(quant, |shared| {
            let calibrated = shared.calibrated(quant, || {
                calibrate(graph, quant, calibration.to_vec(), model, DATA_CALIB_HINT)
            })?;
            let compiled = compile_calibrated(calibrated, quant, model, DATA_CALIB_HINT)?;
            let clear = clear_predictions(&compiled, samples)?.predictions;
            Ok((compiled, clear))
        })
    }

    /// The calibrated graph `quant` continues from, made by `make` the first time.
    fn calibrated(
        &mut self,
        quant: &QuantArgs,
        make: impl FnOnce() -> Result<Calibrated>,
    ) -> Result<Calibrated> {
        if let Some(k) = self.calibrated.iter().find(|k| k.serves(quant)) {
            return Ok(k.clone());
        }
        let k = make()?;
        self.calibrated.push(k.clone());
        Ok(k)
    }

    /// The model quantised with `quant` and its clear predictions, made by `make` the first
    /// time.
    fn quantised(
        &mut self,
        quant: &QuantArgs,
        make: impl FnOnce(&mut Self) -> Result<(Compiled, Vec<usize>)>,
    ) -> Result<&Quantised> {
        let options = quant.pass_options();
        let i = match self.quantised.iter().position(|q| q.options == options) {
            Some(i) => i,
            None => {
                let (compiled, clear) = make(self)?;
                self.quantised.push(Quantised {
                    options,
                    compiled,
                    clear,
                });
                self.quantised.len() - 1
            }
        };
        Ok(&self.quantised[i])
    }
}

/// Measures one configuration into `row`; on an error, what was measured before it stays.
fn run_config(
    args: &SweepArgs,
    c: &Config,
    row: &mut Row,
    input: &RunInput,
    progress: &Progress,
    cached: &mut Option<CachedSession>,
    shared: &mut SharedWork,
) -> Result<()> {
    let test = input.test;
    let n = test.samples.len();
    let quant = c.quant(args);
    let crypto = c.crypto(args);
    let quantised = {
        let _spin = progress.status(&format!("{}: quantising {}", row.dataset, c.label()));
        shared.quantise(
            input.graph,
            &quant,
            &input.calibration.samples,
            input.model,
            &test.samples,
        )?
    };
    let (compiled, clear) = (&quantised.compiled, &quantised.clear);
    // What compiling this configuration alone costs (the shared calibration included).
    row.compile_s = compiled.elapsed.as_secs_f64();
    row.max_accumulator_bits = compiled.max_accumulator_bits();
    row.clear_accuracy = Some(correct(clear, &test.labels) as f64 / n as f64);
    if !input.simulate && input.fhe_k == 0 {
        return Ok(());
    }

    let t = Instant::now();
    let circuit = {
        let _spin = progress.status(&format!("{}: compiling the circuit", row.dataset));
        evaluation_circuit(compiled, &crypto, input.model)?
    };
    row.compile_s += t.elapsed().as_secs_f64();
    let report = CircuitReport::new(&circuit);
    row.pbs_count = Some(report.pbs_count);
    row.tlu_precision_bits = Some(report.tlu_precision_bits);
    let p = &report.params;
    row.lwe_dimension = Some(p.lwe_dimension);
    row.glwe_dimension = Some(p.glwe_dimension);
    row.polynomial_size = Some(p.polynomial_size);
    row.pbs_base_log = Some(p.pbs_base_log);
    row.pbs_level = Some(p.pbs_level);
    row.ks_base_log = Some(p.ks_base_log);
    row.ks_level = Some(p.ks_level);
    row.p_error_per_pbs = Some(report.p_error_per_pbs);
    row.global_p_error = Some(report.global_p_error);
    row.predicted_latency_s = Some(report.predicted_latency_s);
    row.fingerprint = report.fingerprint.clone();

    if input.simulate {
        let sim = simulate_predictions(&circuit, &test.samples, args.seed)?;
        row.simulate_accuracy = Some(correct(&sim, &test.labels) as f64 / n as f64);
    }
    if input.fhe_k > 0 {
        let k = input.fhe_k;
        let (session, keygen_s) = session_for(&circuit, input.keys_dir, progress, cached)?;
        row.keygen_s = keygen_s;
        row.server_key_bytes = Some(session.server_key_bytes);
        session.session.timings = FheTimings::default();
        let bar = progress.bar(k as u64, "FHE samples");
        let preds = fhe_predictions(
            &mut session.session,
            &circuit,
            &test.samples[..k],
            &test.labels[..k],
            &bar,
        )?;
        row.fhe_samples = k;
        row.fhe_accuracy = Some(correct(&preds, &test.labels[..k]) as f64 / k as f64);
        row.fhe_clear_agreement = Some(agreement(&preds, &clear[..k]));
        row.measured_latency_s = Some(session.session.timings.run_s);
    }
    Ok(())
}

/// The FHE session for `circuit`'s parameters: the one in memory, else keys from
/// `keys_dir/<fingerprint>/`, else fresh keys (saved there). Returns the generation time when
/// keys were generated.
fn session_for<'c>(
    circuit: &Circuit,
    keys_dir: &Path,
    progress: &Progress,
    cached: &'c mut Option<CachedSession>,
) -> Result<(&'c mut CachedSession, Option<f64>)> {
    let fingerprint = circuit.params.fingerprint_hex();
    if cached
        .as_ref()
        .is_some_and(|c| c.fingerprint == fingerprint)
    {
        let c = cached.as_mut().expect("checked");
        return Ok((c, None));
    }
    // Free the previous parameter set's keys before making or loading others.
    *cached = None;
    let dir = keys_dir.join(&fingerprint);
    let (client_path, server_path) = (dir.join("client.key"), dir.join("server.key"));
    let mut keygen_s = None;
    let loaded = if client_path.is_file() && server_path.is_file() {
        let _spin = progress.spinner(&format!("loading cached keys from '{}'", dir.display()));
        match load_keys(&client_path, &server_path, circuit) {
            Ok(k) => Some(k),
            Err(e) => {
                progress.line(&format!(
                    "warning: cached keys in '{}' are unusable ({}); generating new ones",
                    dir.display(),
                    one_line(&e)
                ));
                None
            }
        }
    } else {
        None
    };
    let (client, compressed) = match loaded {
        Some(k) => k,
        None => {
            let _spin = progress.spinner(&format!("generating keys ({})", circuit.params));
            let t = Instant::now();
            let (client, compressed) = ClientKey::generate(&circuit.params)?;
            keygen_s = Some(t.elapsed().as_secs_f64());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create key cache '{}'", dir.display()))?;
            // Client first: a server key file present means the pair is complete.
            client
                .save(&client_path)
                .with_context(|| format!("cannot write '{}'", client_path.display()))?;
            compressed
                .save(&server_path)
                .with_context(|| format!("cannot write '{}'", server_path.display()))?;
            (client, compressed)
        }
    };
    let server_key_bytes = std::fs::metadata(&server_path).map_or(0, |m| m.len());
    let session = {
        let _spin = progress.status("expanding the server key");
        FheSession::from_keys(client, &compressed)?
    };
    *cached = Some(CachedSession {
        fingerprint,
        session,
        server_key_bytes,
    });
    Ok((cached.as_mut().expect("just set"), keygen_s))
}

/// A cached key pair, checked against the circuit's parameters and each other.
fn load_keys(
    client_path: &Path,
    server_path: &Path,
    circuit: &Circuit,
) -> Result<(ClientKey, CompressedServerKey)> {
    let client = ClientKey::load(client_path)
        .with_context(|| format!("cannot load '{}'", client_path.display()))?;
    let server = CompressedServerKey::load(server_path)
        .with_context(|| format!("cannot load '{}'", server_path.display()))?;
    if client.params != circuit.params || server.params != circuit.params {
        bail!("they were made for other parameters than the circuit's");
    }
    client.check_server_key(&server)?;
    Ok((client, server))
}

/// An error and its causes on one line (for the CSV `error` column).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let text = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `[3/12] breast_cancer bits=6 rounding=6: clear 0.9474 simulate 0.9561 (2.1 s)`.
fn row_line(i: usize, total: usize, r: &Row, label: &str, secs: f64) -> String {
    let mut s = format!("[{i}/{total}] {} {label}:", r.dataset);
    let f = |x: Option<f64>| x.map(|v| format!("{v:.4}"));
    if let Some(v) = f(r.clear_accuracy) {
        s.push_str(&format!(" clear {v}"));
    }
    if let Some(v) = f(r.simulate_accuracy) {
        s.push_str(&format!(" simulate {v}"));
    }
    if let Some(v) = f(r.fhe_accuracy) {
        s.push_str(&format!(
            " fhe {v} ({} samples, agreement {})",
            r.fhe_samples,
            f(r.fhe_clear_agreement).unwrap_or_default()
        ));
    }
    if r.status == "error" {
        s.push_str(&format!(" ERROR {}", r.error));
    }
    s.push_str(&format!(" ({secs:.1} s)"));
    s
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

    #[test]
    fn model_kinds() {
        let g = Graph::default();
        let k = |s: Vec<usize>| model_kind(&g, &TensorFact::f32(s));
        let t = k(vec![1, 30]);
        assert_eq!((t.format.as_str(), t.size.as_str()), ("TABULAR", "30"));
        let t = k(vec![1, 1, 128, 128]);
        assert_eq!((t.format.as_str(), t.size.as_str()), ("GREY", "128x128"));
        let t = k(vec![1, 3, 64, 64]);
        assert_eq!((t.format.as_str(), t.size.as_str()), ("RGB", "64x64"));
        let t = k(vec![1, 28, 28, 3]);
        assert_eq!((t.format.as_str(), t.size.as_str()), ("RGB", "28x28"));
        assert_eq!(t.method, "PTQ");
    }
}
