//! Merging: joins the results directories of a sweep's shards (or of any runs of the same
//! plan) into one, as if one run had made every row.
//!
//! The shards' plans must agree (model, datasets, configurations, shard count). Rows are
//! matched by configuration; where two directories hold the same configuration, the row with
//! more measured cells wins (then the lower shard). The output is rewritten whole from the
//! inputs each time, so merging again (after more shards finished) is idempotent, and its
//! plan lets a resumed sweep into the output run whatever no shard finished.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::plan::{ConfigKey, Plan};
use super::table::{
    columns, read_baseline, read_rows, write_table, BaselineRow, Row, BASELINE_COLUMNS,
};
use super::DatasetRows;
use crate::error::{DriverError, Result};

/// What one merge did, per sweep name found in the inputs.
#[derive(serde::Serialize, Debug, Default)]
pub struct MergeSummary {
    pub name: String,
    pub inputs: Vec<String>,
    pub shards_found: Vec<u32>,
    pub shards_missing: Vec<u32>,
    pub rows: usize,
    /// Configurations of the plan without a row in any input, per dataset.
    pub configurations_missing: usize,
    pub files: Vec<String>,
    /// Files derived from the merged rows by the caller (top K, workbook, plots).
    pub top: Option<String>,
    pub xlsx: Option<String>,
    pub plots: Vec<String>,
    pub warnings: Vec<String>,
}

/// One merged sweep: what was done, and its rows (for the caller's derived files).
pub struct Merged {
    pub summary: MergeSummary,
    pub datasets: Vec<DatasetRows>,
    pub baseline: Vec<BaselineRow>,
}

/// Merges the output directories `inputs` (of a sweep's shards) into `out`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Vec<Merged>> {
    let invalid = |text: String| Err(DriverError::Invalid(text));
    for d in inputs {
        if !d.is_dir() {
            return Err(DriverError::MergeInputNotDir { path: d.clone() });
        }
        if same_dir(d, out) {
            return Err(DriverError::MergeIntoInput { path: d.clone() });
        }
    }
    // Plans by sweep name, in input order.
    let mut sweeps: Vec<(String, Vec<(PathBuf, Plan)>)> = Vec::new();
    for d in inputs {
        let plans = Plan::read_all(d)?;
        if plans.is_empty() {
            return invalid(format!(
                "'{}' holds no sweep plan (sweep_<NAME>.json): is it the output directory of a \
                 sweep of this version?",
                d.display()
            ));
        }
        for (_, plan) in plans {
            match sweeps.iter_mut().find(|(n, _)| *n == plan.name) {
                Some((_, v)) => v.push((d.clone(), plan)),
                None => sweeps.push((plan.name.clone(), vec![(d.clone(), plan)])),
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|source| DriverError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let mut merged = Vec::new();
    for (name, mut inputs) in sweeps {
        check_plans(&name, &inputs)?;
        // Lower shards first: they win ties between equally complete rows.
        inputs.sort_by_key(|(_, p)| p.shard.map_or(0, |s| s.index));
        merged.push(merge_sweep(&name, &inputs, out)?);
    }
    Ok(merged)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// All plans of one sweep name describe the same sweep.
fn check_plans(name: &str, inputs: &[(PathBuf, Plan)]) -> Result<()> {
    let (first_dir, first) = &inputs[0];
    for (dir, plan) in &inputs[1..] {
        if let Some(why) = first.mismatch(plan) {
            return Err(DriverError::Invalid(format!(
                "'{}' and '{}' hold different sweeps named '{name}' ({why}): merge only the \
                 shards of one sweep",
                first_dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

fn merge_sweep(name: &str, inputs: &[(PathBuf, Plan)], out: &Path) -> Result<Merged> {
    let plan = &inputs[0].1;
    let count = plan.shard.map_or(1, |s| s.count);
    let mut found: Vec<u32> = inputs
        .iter()
        .map(|(_, p)| p.shard.map_or(0, |s| s.index))
        .collect();
    found.sort_unstable();
    found.dedup();
    let shards_missing: Vec<u32> = (0..count).filter(|i| !found.contains(i)).collect();
    let mut warnings = Vec::new();

    let mut baseline: Vec<BaselineRow> = Vec::new();
    let mut datasets = Vec::new();
    let mut configurations_missing = 0;
    for dataset in &plan.datasets {
        let file = format!("results_{name}_{dataset}.csv");
        let mut rows: Vec<Row> = Vec::new();
        for (dir, _) in inputs {
            let path = dir.join(&file);
            if path.exists() {
                for r in read_rows(&path)? {
                    take_better(&mut rows, r, dir, &mut warnings);
                }
            }
        }
        let order: HashMap<&ConfigKey, usize> = plan
            .configurations
            .iter()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        // Plan order; rows of earlier sweeps into the same directories after, as found.
        rows.sort_by_key(|r| order.get(&ConfigKey::of(r)).copied().unwrap_or(usize::MAX));
        configurations_missing += plan
            .configurations
            .iter()
            .filter(|k| {
                !rows
                    .iter()
                    .any(|r| r.model == plan.model && &ConfigKey::of(r) == *k)
            })
            .count();
        let csv = out.join(&file);
        write_table(&csv, &csv.with_extension("jsonl"), columns(), &rows)?;
        datasets.push(DatasetRows {
            name: dataset.clone(),
            csv,
            rows,
        });
    }
    for (dir, _) in inputs {
        let path = dir.join(format!("results_{name}_clear.csv"));
        if path.exists() {
            for b in read_baseline(&path)? {
                add_baseline(&mut baseline, b, &path)?;
            }
        }
    }
    let baseline_csv = out.join(format!("results_{name}_clear.csv"));
    write_table(
        &baseline_csv,
        &baseline_csv.with_extension("jsonl"),
        &BASELINE_COLUMNS,
        &baseline,
    )?;
    Plan::new(
        name,
        &plan.model,
        plan.datasets.clone(),
        plan.configurations.clone(),
        None,
    )
    .write(out)?;
    let text = |p: &Path| p.display().to_string();
    Ok(Merged {
        summary: MergeSummary {
            name: name.into(),
            inputs: inputs.iter().map(|(d, _)| text(d)).collect(),
            shards_found: found,
            shards_missing,
            rows: datasets.iter().map(|d| d.rows.len()).sum(),
            configurations_missing,
            files: datasets.iter().map(|d| text(&d.csv)).collect(),
            warnings,
            ..Default::default()
        },
        datasets,
        baseline,
    })
}

/// Adds `r` to `rows`, or replaces the row of the same model and configuration when `r` has
/// more measured cells.
fn take_better(rows: &mut Vec<Row>, r: Row, dir: &Path, warnings: &mut Vec<String>) {
    let key = ConfigKey::of(&r);
    let Some(old) = rows
        .iter_mut()
        .find(|o| o.model == r.model && ConfigKey::of(o) == key)
    else {
        rows.push(r);
        return;
    };
    let (mine, theirs) = (measured_cells(old), measured_cells(&r));
    if theirs > mine {
        *old = r;
    } else if theirs == mine && !same_measurements(old, &r) {
        warnings.push(format!(
            "{} {key}: two directories measured it differently; kept the first (lower \
             shard), not the one in '{}'",
            r.dataset,
            dir.display()
        ));
    }
}

/// How much of a row was measured (an interrupted shard leaves fewer cells).
fn measured_cells(r: &Row) -> usize {
    let v = serde_json::to_value(r).unwrap_or_default();
    let cells = v.as_object().map_or(0, |m| {
        m.values()
            .filter(|x| !x.is_null() && x.as_str() != Some(""))
            .count()
    });
    cells + r.fhe_samples + usize::from(r.status == "ok")
}

/// Equal but for timings (which differ on every run).
fn same_measurements(a: &Row, b: &Row) -> bool {
    let strip = |r: &Row| Row {
        compile_s: 0.0,
        keygen_s: None,
        measured_latency_s: None,
        ..r.clone()
    };
    strip(a) == strip(b)
}

fn add_baseline(baseline: &mut Vec<BaselineRow>, b: BaselineRow, path: &Path) -> Result<()> {
    match baseline
        .iter()
        .find(|o| o.dataset == b.dataset && o.model == b.model)
    {
        None => baseline.push(b),
        Some(o) if o.samples == b.samples && o.float_accuracy == b.float_accuracy => {}
        Some(o) => {
            return Err(DriverError::Invalid(format!(
                "'{}': dataset '{}' has {} samples at float accuracy {} there, but {} at {} in \
                 another shard: the shards did not read the same data (same data files and \
                 limit?)",
                path.display(),
                b.dataset,
                b.samples,
                b.float_accuracy,
                o.samples,
                o.float_accuracy
            )))
        }
    }
    Ok(())
}
