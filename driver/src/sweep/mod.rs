//! Sweeps: one model over datasets × quantisation / rounding / failure-probability / pruning
//! configurations, one results row per configuration ([`table::Row`]).
//!
//! Each dataset's test set, calibration data and float predictions are loaded once; each
//! configuration is then quantised and run in the clear on the whole test set, compiled to a
//! circuit and simulated (whole test set) and run encrypted on the first K samples when asked.
//! A configuration that fails (no TFHE parameters, accumulators too wide) becomes a row with
//! `status=error` and the sweep goes on; bad input (missing file, bad model, foreign result
//! file) fails before any work.
//!
//! Rows are written atomically after every configuration, so a sweep killed at any moment
//! leaves complete files, and a resumed sweep does not redo finished rows. Keys are cached per
//! parameter set in `DIR/keys/<fingerprint>/`, across configurations and restarts. A shard
//! ([`plan::Shard`]) runs a deterministic share of the configurations; every run writes its
//! [`plan::Plan`] so that shards can be merged ([`merge`]).

pub mod merge;
pub mod plan;
pub mod rank;
pub mod table;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fhec_backend::PErrorTarget;
use fhec_frontend::ImportOptions;
use fhec_ir::{Graph, Op, TensorFact};

use crate::compile::{build_circuit, calibrate, compile_calibrated, Calibrated, Compiled};
use crate::config::{
    CryptoConfig, PruneMethod, QuantConfig, RoundingBits, RoundingMode, DEFAULT_P_ERROR,
    DEFAULT_ROUNDING_BITS,
};
use crate::data::DataKeys;
use crate::error::{one_line, DriverError, Result};
use crate::hooks::Hooks;
use crate::predict::{
    agreement, clear_predictions, correct, fhe_predictions, float_predictions, simulate_predictions,
};
use crate::report::CircuitReport;
use crate::samples::{data_calibration, load_test_set, single_input, Calibration, TestSet};
use crate::session::{FheTimings, KeyCache};
use plan::{ConfigKey, Plan, Shard};
use table::{
    columns, read_baseline, read_rows, remove_stale_temporaries, write_table, BaselineRow, Row,
    BASELINE_COLUMNS,
};

/// What a sweep measures besides float accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SweepMode {
    /// The quantised integer model in the clear, whole test set (always run).
    Clear,
    /// The compiled circuit with simulated bootstrap noise, whole test set.
    Simulate,
    /// Real encryption on the first samples.
    Fhe,
}

/// What to sweep: the model, the datasets, every option's values, where the results go.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub model: PathBuf,
    pub import: ImportOptions,
    /// Labelled data files; each gets its own results file, named after the file stem.
    pub data: Vec<PathBuf>,
    pub keys: DataKeys,
    pub bits: Vec<u32>,
    /// Rounding widths (empty: [`DEFAULT_ROUNDING_BITS`]).
    pub rounding_bits: Vec<RoundingBits>,
    /// Each mode is swept for every rounding width.
    pub rounding_mode: Vec<RoundingMode>,
    /// Failure probabilities per bootstrap (with `global_p_error` empty too:
    /// [`DEFAULT_P_ERROR`]).
    pub p_error: Vec<f64>,
    pub global_p_error: Vec<f64>,
    pub prune_threshold: Vec<f32>,
    /// Pruning rates: one rate, or one per layer; all zeros is no pruning.
    pub prune_rate: Vec<Vec<f32>>,
    pub prune_method: PruneMethod,
    pub modes: HashSet<SweepMode>,
    /// Encrypted samples per configuration (fhe mode).
    pub fhe_samples: usize,
    /// Evaluate only the first samples of each dataset.
    pub limit: Option<usize>,
    /// Calibration data for every dataset (default: each data file's train split).
    pub calib: Option<PathBuf>,
    pub calib_limit: usize,
    /// Threads the latency prediction assumes.
    pub threads: Option<u32>,
    /// Seed of the simulation's noise.
    pub seed: u64,
    /// Output directory (created): results, plan, key cache.
    pub out: PathBuf,
    /// Continue the sweep whose results are in `out`.
    pub resume: bool,
    /// Start again, replacing this sweep's result files in `out`.
    pub overwrite: bool,
    /// The `<NAME>` of the files (default `<FORMAT>_<SIZE>_<METHOD>`).
    pub name: Option<String>,
    pub shard: Option<Shard>,
}

/// One point of the sweep.
#[derive(Clone, Debug)]
pub struct Config {
    pub bits: u32,
    pub rounding: Option<(u32, RoundingMode)>,
    pub target: PErrorTarget,
    pub prune: f32,
    /// Empty: no pruning by rate.
    pub prune_rate: Vec<f32>,
    pub prune_method: PruneMethod,
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
    pub fn key(&self) -> ConfigKey {
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
    pub fn label(&self) -> String {
        let mut s = format!("bits={}", self.bits);
        match self.rounding {
            Some((b, RoundingMode::Approximate)) => s.push_str(&format!(" rounding={b}")),
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

    pub fn quant(&self, spec: &SweepSpec) -> QuantConfig {
        QuantConfig {
            bits: Some(self.bits),
            rounding_bits: Some(
                self.rounding
                    .map_or(RoundingBits::None, |(b, _)| RoundingBits::Keep(b)),
            ),
            rounding_mode: self.rounding.map(|(_, m)| m),
            prune_threshold: self.prune,
            prune_rate: (!self.prune_rate.is_empty()).then(|| self.prune_rate.clone()),
            prune_method: self.prune_method,
            calib: spec.calib.clone(),
            calib_limit: spec.calib_limit,
            ..Default::default()
        }
    }

    pub fn crypto(&self, spec: &SweepSpec) -> CryptoConfig {
        let (p_error, global_p_error) = match self.target {
            PErrorTarget::PerPbs(p) => (Some(p), None),
            PErrorTarget::Global(p) => (None, Some(p)),
        };
        CryptoConfig {
            p_error,
            global_p_error,
            threads: spec.threads,
            ..Default::default()
        }
    }
}

/// The columns a row is matched on when resuming: model, dataset, configuration.
type RowKey = (String, String, ConfigKey);

fn row_key(r: &Row) -> RowKey {
    (r.model.clone(), r.dataset.clone(), ConfigKey::of(r))
}

/// What the model's input and quantisation say about the results' file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelKind {
    pub format: String,
    pub size: String,
    pub method: String,
}

/// GREY / RGB from the channel count of an NCHW or NHWC image input, TABULAR for `[1, F]`.
pub fn model_kind(graph: &Graph, fact: &TensorFact) -> ModelKind {
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

/// The final rows of one dataset's results file.
#[derive(Debug, Clone)]
pub struct DatasetRows {
    pub name: String,
    pub csv: PathBuf,
    pub rows: Vec<Row>,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// The `<NAME>` of the files.
    pub name: String,
    /// Every dataset's rows (this sweep's and others in the same files).
    pub datasets: Vec<DatasetRows>,
    pub baseline: Vec<BaselineRow>,
    pub baseline_csv: PathBuf,
    pub plan: PathBuf,
    /// Configurations measured by this run.
    pub computed: usize,
    /// Configurations found done in the existing files (resumed).
    pub skipped: usize,
    /// Rows with status=error among those computed.
    pub errors: usize,
    /// Every row of this sweep's configurations (computed or resumed).
    pub rows: Vec<Row>,
}

/// Everything fixed before the first configuration runs.
struct Setup {
    graph: Graph,
    output_names: Vec<String>,
    input: String,
    fact: TensorFact,
    kind: ModelKind,
    model_name: String,
    name: String,
    datasets: Vec<DatasetFiles>,
    configs: Vec<Config>,
    baseline_csv: PathBuf,
    baseline_jsonl: PathBuf,
}

/// Runs a sweep; its results are in `spec.out` as it goes.
pub fn run(spec: &SweepSpec, hooks: &Hooks) -> Result<SweepOutcome> {
    hooks.install(|| run_here(spec, hooks))?
}

fn run_here(spec: &SweepSpec, hooks: &Hooks) -> Result<SweepOutcome> {
    let setup = prepare(spec, hooks)?;
    let (previous, mut baseline) = existing_results(spec, &setup)?;
    let mut outcome = SweepOutcome {
        name: setup.name.clone(),
        baseline_csv: setup.baseline_csv.clone(),
        plan: Plan::path(&spec.out, &setup.name),
        ..Default::default()
    };
    let total = setup.configs.len() * setup.datasets.len();
    let overall = hooks.task("configs", Some(total as u64));
    let mut keys = KeyCache::new(&spec.out.join("keys"));
    let mut done = 0;
    for (d, rows) in setup.datasets.iter().zip(previous) {
        let rows = sweep_dataset(
            spec,
            &setup,
            d,
            rows,
            &mut baseline,
            &mut Progress {
                hooks,
                overall: &overall,
                done: &mut done,
                total,
            },
            &mut keys,
            &mut outcome,
        )?;
        outcome.datasets.push(DatasetRows {
            name: d.name.clone(),
            csv: d.csv.clone(),
            rows,
        });
    }
    outcome.baseline = baseline;
    Ok(outcome)
}

/// The model, the names, the files and the configurations; refuses bad input before any work.
fn prepare(spec: &SweepSpec, hooks: &Hooks) -> Result<Setup> {
    let model = crate::model::import_model(&spec.model, &spec.import)?;
    let (input, fact) = single_input(&model.graph, &spec.model)?;
    let (input, fact) = (input.to_string(), fact.clone());
    let kind = model_kind(&model.graph, &fact);
    let model_name = spec.model.file_name().map_or_else(
        || spec.model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let name = results_name(spec, &kind)?;
    let datasets = dataset_files(spec, &name)?;
    if let Some(c) = &spec.calib {
        if !c.is_file() {
            return Err(DriverError::Read {
                what: "calibration file",
                path: c.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    let plan_configs = configurations(spec);
    let configs = match spec.shard {
        Some(shard) => shard.select(plan_configs.clone(), Config::key),
        None => plan_configs.clone(),
    };
    std::fs::create_dir_all(&spec.out).map_err(|source| DriverError::Write {
        path: spec.out.clone(),
        source,
    })?;
    Plan::new(
        &name,
        &model_name,
        datasets.iter().map(|d| d.name.clone()).collect(),
        plan_configs.iter().map(Config::key).collect(),
        spec.shard,
    )
    .write(&spec.out)?;
    if let Some(shard) = spec.shard {
        hooks.note(&format!(
            "shard {shard}: {} of the {} configuration(s)",
            configs.len(),
            plan_configs.len()
        ));
    }
    Ok(Setup {
        baseline_csv: spec.out.join(format!("results_{name}_clear.csv")),
        baseline_jsonl: spec.out.join(format!("results_{name}_clear.jsonl")),
        graph: model.graph,
        output_names: model.output_names,
        input,
        fact,
        kind,
        model_name,
        name,
        datasets,
        configs,
    })
}

/// The sweep-wide progress: the configs bar and the count of configurations done.
struct Progress<'h, 'a> {
    hooks: &'h Hooks<'a>,
    overall: &'h crate::hooks::Task<'a>,
    done: &'h mut usize,
    total: usize,
}

/// Measures every configuration of one dataset; returns its rows.
#[allow(clippy::too_many_arguments)]
fn sweep_dataset(
    spec: &SweepSpec,
    setup: &Setup,
    d: &DatasetFiles,
    mut rows: Vec<Row>,
    baseline: &mut Vec<BaselineRow>,
    progress: &mut Progress,
    keys: &mut KeyCache,
    outcome: &mut SweepOutcome,
) -> Result<Vec<Row>> {
    let hooks = progress.hooks;
    let input = dataset_input(spec, setup, d, baseline, hooks)?;
    let n = input.test.samples.len();
    let finished = |r: &Row| {
        r.status == "error"
            || (r.samples == n
                && r.clear_accuracy.is_some()
                && (!input.simulate || r.simulate_accuracy.is_some())
                && (input.fhe_k == 0 || r.fhe_samples >= input.fhe_k))
    };
    let template = Row {
        dataset: d.name.clone(),
        model: setup.model_name.clone(),
        format: setup.kind.format.clone(),
        size: setup.kind.size.clone(),
        method: setup.kind.method.clone(),
        status: "ok".into(),
        samples: n,
        float_accuracy: input.float_accuracy,
        ..Default::default()
    };
    let skip: HashSet<RowKey> = rows.iter().filter(|r| finished(r)).map(row_key).collect();
    if spec.resume {
        let skipped = setup
            .configs
            .iter()
            .filter(|c| skip.contains(&row_key(&config_row(&template, c))))
            .count();
        hooks.note(&format!(
            "{}: resuming '{}': {skipped} of {} configuration(s) already done, skipped",
            d.name,
            d.csv.display(),
            setup.configs.len()
        ));
        outcome.skipped += skipped;
    }
    // Keep the JSON lines in step with the CSV (a kill may have come between the two).
    write_table(&d.csv, &d.jsonl, columns(), &rows)?;
    let mut shared = SharedWork::default();
    for c in &setup.configs {
        hooks.check()?;
        *progress.done += 1;
        let mut row = config_row(&template, c);
        let key = row_key(&row);
        if skip.contains(&key) {
            progress.overall.step(None);
            continue;
        }
        let t = Instant::now();
        let label = c.label();
        progress.overall.message(&format!("{} {label}", d.name));
        if let Some(e) = measure_guarded(spec, c, &mut row, &input, hooks, keys, &mut shared) {
            if matches!(e, Failure::Cancelled) {
                return Err(DriverError::Cancelled);
            }
            row.status = "error".into();
            row.error = e.text();
            outcome.errors += 1;
        }
        outcome.computed += 1;
        match rows.iter_mut().find(|r| row_key(r) == key) {
            Some(r) => *r = row.clone(),
            None => rows.push(row.clone()),
        }
        write_table(&d.csv, &d.jsonl, columns(), &rows)?;
        let line = row_line(
            *progress.done,
            progress.total,
            &row,
            &label,
            t.elapsed().as_secs_f64(),
        );
        progress.overall.step(None);
        hooks.note(&line);
    }
    let keys_of_sweep: HashSet<RowKey> = setup
        .configs
        .iter()
        .map(|c| row_key(&config_row(&template, c)))
        .collect();
    outcome.rows.extend(
        rows.iter()
            .filter(|r| keys_of_sweep.contains(&row_key(r)))
            .cloned(),
    );
    Ok(rows)
}

/// The test set, calibration and float accuracy of one dataset, its baseline row written.
fn dataset_input<'s>(
    spec: &'s SweepSpec,
    setup: &'s Setup,
    d: &DatasetFiles,
    baseline: &mut Vec<BaselineRow>,
    hooks: &Hooks,
) -> Result<RunInput<'s>> {
    let test = load_test_set(&d.data, &spec.keys, spec.limit, &setup.input, &setup.fact)?;
    if let Some(n) = &test.layout {
        hooks.note(&format!("note: {n}"));
    }
    let first = setup
        .configs
        .first()
        .map_or_else(QuantConfig::default, |c| c.quant(spec));
    let calibration = data_calibration(
        &first,
        &d.data,
        &spec.keys,
        &setup.graph,
        &spec.model,
        hooks,
    )?;
    let float_preds = float_predictions(&setup.graph, &test.samples, hooks)?;
    let n = test.samples.len();
    let float_accuracy = correct(&float_preds, &test.labels) as f64 / n as f64;
    hooks.note(&format!(
        "{}: {n} test samples, float accuracy {float_accuracy:.4}, {} calibration samples",
        d.name,
        calibration.samples.len()
    ));
    let base = BaselineRow {
        dataset: d.name.clone(),
        model: setup.model_name.clone(),
        format: setup.kind.format.clone(),
        size: setup.kind.size.clone(),
        method: setup.kind.method.clone(),
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
    write_table(
        &setup.baseline_csv,
        &setup.baseline_jsonl,
        &BASELINE_COLUMNS,
        baseline,
    )?;
    let fhe_k = if spec.modes.contains(&SweepMode::Fhe) {
        n.min(spec.fhe_samples)
    } else {
        0
    };
    Ok(RunInput {
        graph: &setup.graph,
        output_names: &setup.output_names,
        model: &spec.model,
        test,
        calibration,
        float_accuracy,
        simulate: spec.modes.contains(&SweepMode::Simulate),
        fhe_k,
    })
}

/// Why a configuration has no complete row.
enum Failure {
    Error(DriverError),
    Panic(String),
    Cancelled,
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::Error(e) => one_line(e),
            Failure::Panic(p) => {
                format!("internal error (this is a bug in fhec, please report it): {p}")
            }
            Failure::Cancelled => "cancelled".into(),
        }
    }
}

/// [`measure`], with an error or a panic turned into a failure of this configuration only.
fn measure_guarded(
    spec: &SweepSpec,
    c: &Config,
    row: &mut Row,
    input: &RunInput,
    hooks: &Hooks,
    keys: &mut KeyCache,
    shared: &mut SharedWork,
) -> Option<Failure> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        measure(spec, c, row, input, hooks, keys, shared)
    }));
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(DriverError::Cancelled)) => Some(Failure::Cancelled),
        Ok(Err(e)) => Some(Failure::Error(e)),
        Err(p) => Some(Failure::Panic(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into()),
        )),
    }
}

/// The name of the results files: `<FORMAT>_<SIZE>_<METHOD>`, or the one given.
fn results_name(spec: &SweepSpec, kind: &ModelKind) -> Result<String> {
    Ok(match &spec.name {
        Some(n) => {
            if n.is_empty() || n.contains(['/', '\\']) {
                return Err(DriverError::Invalid(format!(
                    "name '{n}' must be a non-empty file name part (no '/')"
                )));
            }
            n.clone()
        }
        None => format!("{}_{}_{}", kind.format, kind.size, kind.method),
    })
}

/// Each data file and its results files; refuses missing files and colliding names.
fn dataset_files(spec: &SweepSpec, prefix: &str) -> Result<Vec<DatasetFiles>> {
    let mut datasets = Vec::new();
    let mut seen = HashSet::new();
    for d in &spec.data {
        if !d.is_file() {
            return Err(DriverError::Read {
                what: "data file",
                path: d.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    if d.exists() {
                        "it is not a file"
                    } else {
                        "no such file"
                    },
                ),
            });
        }
        let name = d
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| DriverError::Invalid(format!("'{}' names no file", d.display())))?;
        if name == "clear" {
            return Err(DriverError::Invalid(format!(
                "data file '{}': a dataset named 'clear' would collide with the float baseline \
                 file results_{prefix}_clear.csv; rename the file",
                d.display()
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(DriverError::Invalid(format!(
                "two data files are named '{name}'; dataset names (file stems) must differ \
                 because they name the results files"
            )));
        }
        datasets.push(DatasetFiles {
            csv: spec.out.join(format!("results_{prefix}_{name}.csv")),
            jsonl: spec.out.join(format!("results_{prefix}_{name}.jsonl")),
            name,
            data: d.clone(),
        });
    }
    Ok(datasets)
}

/// The rows already in the output directory per dataset, and the float baseline: refused
/// unless resuming or overwriting, read (and so validated, older schemas migrated) with
/// either, emptied when overwriting.
fn existing_results(spec: &SweepSpec, setup: &Setup) -> Result<(Vec<Vec<Row>>, Vec<BaselineRow>)> {
    let mut existing: Vec<&Path> = setup
        .datasets
        .iter()
        .flat_map(|d| [d.csv.as_path(), d.jsonl.as_path()])
        .chain([setup.baseline_csv.as_path(), setup.baseline_jsonl.as_path()])
        .filter(|p| p.exists())
        .collect();
    existing.sort();
    if !existing.is_empty() && !spec.resume && !spec.overwrite {
        return Err(DriverError::ResultsExist {
            dir: spec.out.clone(),
            what: format!(
                "results of this sweep ({})",
                existing
                    .iter()
                    .map(|p| p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    // Read (and so validate) every existing CSV before any work, overwriting included.
    let mut previous: Vec<Vec<Row>> = Vec::new();
    for d in &setup.datasets {
        previous.push(if d.csv.exists() {
            read_rows(&d.csv)?
        } else {
            vec![]
        });
    }
    let mut baseline: Vec<BaselineRow> = if setup.baseline_csv.exists() {
        read_baseline(&setup.baseline_csv)?
    } else {
        vec![]
    };
    if spec.overwrite {
        for p in &existing {
            std::fs::remove_file(p).map_err(|source| DriverError::Write {
                path: p.to_path_buf(),
                source,
            })?;
        }
        previous.iter_mut().for_each(Vec::clear);
        baseline.clear();
    }
    remove_stale_temporaries(&spec.out, &setup.name);
    Ok((previous, baseline))
}

/// Every configuration, bits outermost (the order rows are written in); repeated values
/// give one configuration.
pub fn configurations(spec: &SweepSpec) -> Vec<Config> {
    let mut targets: Vec<PErrorTarget> = spec
        .p_error
        .iter()
        .map(|&p| PErrorTarget::PerPbs(p))
        .chain(spec.global_p_error.iter().map(|&p| PErrorTarget::Global(p)))
        .collect();
    if targets.is_empty() {
        targets.push(PErrorTarget::PerPbs(DEFAULT_P_ERROR));
    }
    let widths = if spec.rounding_bits.is_empty() {
        vec![RoundingBits::Keep(DEFAULT_ROUNDING_BITS)]
    } else {
        spec.rounding_bits.clone()
    };
    let mut roundings: Vec<Option<(u32, RoundingMode)>> = vec![];
    for r in widths {
        match r.bits() {
            None => roundings.push(None),
            Some(b) => roundings.extend(spec.rounding_mode.iter().map(|&m| Some((b, m)))),
        }
    }
    let mut out: Vec<Config> = vec![];
    for &bits in &spec.bits {
        for &rounding in &roundings {
            for &target in &targets {
                for &prune in &spec.prune_threshold {
                    for rate in &spec.prune_rate {
                        let c = Config {
                            bits,
                            rounding,
                            target,
                            prune,
                            // Rate 0 everywhere removes nothing: the same as no pruning.
                            prune_rate: if rate.iter().all(|&r| r == 0.0) {
                                vec![]
                            } else {
                                rate.clone()
                            },
                            prune_method: spec.prune_method,
                        };
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
    output_names: &'a [String],
    model: &'a Path,
    test: TestSet,
    calibration: Calibration,
    float_accuracy: f64,
    simulate: bool,
    /// Encrypted samples (0: no FHE).
    fhe_k: usize,
}

/// Work that configurations share where it is the same: the calibrated graph per pruning
/// setting, and the quantised model with its clear predictions per set of pass options
/// (configurations that differ only in failure probability quantise identically). Sweeps and
/// tune searches both use it.
#[derive(Default)]
pub struct SharedWork {
    calibrated: Vec<Calibrated>,
    quantised: Vec<Quantised>,
}

/// A quantised model and its clear argmax on the evaluated samples.
pub struct Quantised {
    options: fhec_passes::PassOptions,
    pub compiled: Compiled,
    pub clear: Vec<usize>,
}

impl SharedWork {
    /// `graph` quantised with `quant` (calibrated on `calibration`) and its clear argmax on
    /// `samples`: made once per set of pass options, the calibration once per pruning
    /// setting.
    pub fn quantise(
        &mut self,
        graph: &Graph,
        quant: &QuantConfig,
        calibration: &[Vec<fhec_ir::Tensor>],
        model: &Path,
        samples: &[fhec_ir::Tensor],
        hooks: &Hooks,
    ) -> Result<&Quantised> {
        let options = quant.pass_options();
        if let Some(i) = self.quantised.iter().position(|q| q.options == options) {
            return Ok(&self.quantised[i]);
        }
        let calibrated = match self.calibrated.iter().find(|k| k.serves(quant)) {
            Some(k) => k.clone(),
            None => {
                let k = calibrate(graph, quant, calibration.to_vec(), model)?;
                self.calibrated.push(k.clone());
                k
            }
        };
        let compiled = compile_calibrated(calibrated, quant, model)?;
        let clear = clear_predictions(&compiled, samples, hooks)?.predictions;
        self.quantised.push(Quantised {
            options,
            compiled,
            clear,
        });
        Ok(self.quantised.last().expect("just pushed"))
    }
}

/// Measures one configuration into `row`; on an error, what was measured before it stays.
fn measure(
    spec: &SweepSpec,
    c: &Config,
    row: &mut Row,
    input: &RunInput,
    hooks: &Hooks,
    keys: &mut KeyCache,
    shared: &mut SharedWork,
) -> Result<()> {
    let test = &input.test;
    let n = test.samples.len();
    let quantised = {
        let _phase = hooks.phase(&format!("{}: quantising {}", row.dataset, c.label()));
        shared.quantise(
            input.graph,
            &c.quant(spec),
            &input.calibration.samples,
            input.model,
            &test.samples,
            hooks,
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
        let _phase = hooks.phase(&format!("{}: compiling the circuit", row.dataset));
        build_circuit(compiled, &c.crypto(spec), input.model, input.output_names)?.0
    };
    row.compile_s += t.elapsed().as_secs_f64();
    fill_circuit_columns(row, &CircuitReport::new(&circuit));
    if input.simulate {
        let sim = simulate_predictions(&circuit, &test.samples, spec.seed, hooks)?;
        row.simulate_accuracy = Some(correct(&sim, &test.labels) as f64 / n as f64);
    }
    if input.fhe_k > 0 {
        let k = input.fhe_k;
        let cached = keys.session(&circuit, hooks)?;
        row.keygen_s = cached.keygen_s;
        row.server_key_bytes = Some(cached.server_key_bytes);
        let session = cached.session;
        session.timings = FheTimings::default();
        let preds = fhe_predictions(
            session,
            &circuit,
            &test.samples[..k],
            &test.labels[..k],
            hooks,
        )?;
        row.fhe_samples = k;
        row.fhe_accuracy = Some(correct(&preds, &test.labels[..k]) as f64 / k as f64);
        row.fhe_clear_agreement = Some(agreement(&preds, &clear[..k]));
        row.measured_latency_s = Some(session.timings.run_s);
    }
    Ok(())
}

/// The circuit's cost and parameter columns.
fn fill_circuit_columns(row: &mut Row, report: &CircuitReport) {
    row.pbs_count = Some(report.pbs_count);
    row.tlu_precision_bits = Some(report.tlu_precision_bits);
    row.param_sets = Some(report.param_sets.len());
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

#[cfg(test)]
mod tests {
    use super::*;

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
