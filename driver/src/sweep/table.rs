//! The sweep's result files: the row schema (the shared contract with `fhec plot`), reading
//! (with the migration of files written before a column existed) and atomic writing.

use std::path::Path;

use fhec_runtime::atomic::Access;
use serde::{Deserialize, Serialize};

use crate::error::{DriverError, FileFix, Result};

/// The CSV columns, in order (the shared contract with `fhec plot`).
pub const COLUMNS: [&str; 41] = [
    "dataset",
    "model",
    "format",
    "size",
    "method",
    "bits",
    "rounding_bits",
    "rounding_mode",
    "p_error",
    "p_error_kind",
    "prune_threshold",
    "prune_rate",
    "prune_method",
    "status",
    "error",
    "samples",
    "float_accuracy",
    "clear_accuracy",
    "simulate_accuracy",
    "fhe_samples",
    "fhe_accuracy",
    "fhe_clear_agreement",
    "max_accumulator_bits",
    "pbs_count",
    "tlu_precision_bits",
    "param_sets",
    "lwe_dimension",
    "glwe_dimension",
    "polynomial_size",
    "pbs_base_log",
    "pbs_level",
    "ks_base_log",
    "ks_level",
    "p_error_per_pbs",
    "global_p_error",
    "predicted_latency_s",
    "measured_latency_s",
    "keygen_s",
    "server_key_bytes",
    "compile_s",
    "fingerprint",
];

/// The columns as a slice (kept in sync with [`Row`] by a unit test).
pub fn columns() -> &'static [&'static str] {
    &COLUMNS
}

/// One configuration's results (one CSV / JSON line). Empty (`None`) = not measured.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub dataset: String,
    pub model: String,
    pub format: String,
    pub size: String,
    pub method: String,
    pub bits: u32,
    pub rounding_bits: String,
    pub rounding_mode: String,
    pub p_error: f64,
    pub p_error_kind: String,
    pub prune_threshold: String,
    /// Share of hidden units removed by pruning by rate (`0` = none; `R1:R2` per layer).
    /// Files written before this column read it as `0` (see [`ADDED_COLUMNS`]).
    #[serde(default = "no_prune_rate")]
    pub prune_rate: String,
    /// How pruning by rate chose and replaced neurons (`none` without it).
    #[serde(default = "no_prune_method")]
    pub prune_method: String,
    pub status: String,
    pub error: String,
    pub samples: usize,
    pub float_accuracy: f64,
    pub clear_accuracy: Option<f64>,
    pub simulate_accuracy: Option<f64>,
    pub fhe_samples: usize,
    pub fhe_accuracy: Option<f64>,
    pub fhe_clear_agreement: Option<f64>,
    pub max_accumulator_bits: Option<u32>,
    pub pbs_count: Option<u64>,
    pub tlu_precision_bits: Option<u32>,
    /// TFHE parameter sets of the circuit; the parameter columns after it describe set 0,
    /// the one with the most bootstraps. Empty in files written before this column.
    #[serde(default)]
    pub param_sets: Option<usize>,
    pub lwe_dimension: Option<usize>,
    pub glwe_dimension: Option<usize>,
    pub polynomial_size: Option<usize>,
    pub pbs_base_log: Option<usize>,
    pub pbs_level: Option<usize>,
    pub ks_base_log: Option<usize>,
    pub ks_level: Option<usize>,
    pub p_error_per_pbs: Option<f64>,
    pub global_p_error: Option<f64>,
    pub predicted_latency_s: Option<f64>,
    pub measured_latency_s: Option<f64>,
    pub keygen_s: Option<f64>,
    pub server_key_bytes: Option<u64>,
    pub compile_s: f64,
    pub fingerprint: String,
}

/// Float accuracy per dataset (`results_<FORMAT>_<SIZE>_<METHOD>_clear.csv`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BaselineRow {
    pub dataset: String,
    pub model: String,
    pub format: String,
    pub size: String,
    pub method: String,
    pub samples: usize,
    pub float_accuracy: f64,
}

pub const BASELINE_COLUMNS: [&str; 7] = [
    "dataset",
    "model",
    "format",
    "size",
    "method",
    "samples",
    "float_accuracy",
];

/// Columns added after the first results format, per revision: files written before a
/// revision (fhec sweeps of 2026-12-06 and earlier lack `prune_rate` and `prune_method`;
/// those before parameter sets per lookup class lack `param_sets`) are read with the
/// columns' serde defaults and rewritten in the current schema on the next write.
const ADDED_COLUMNS: [&[&str]; 2] = [&["prune_rate", "prune_method"], &["param_sets"]];

/// The headers of results files written before each revision of [`ADDED_COLUMNS`].
fn legacy_headers() -> Vec<Vec<&'static str>> {
    (0..ADDED_COLUMNS.len())
        .map(|revision| {
            let added: Vec<&str> = ADDED_COLUMNS[revision..].concat();
            COLUMNS
                .iter()
                .copied()
                .filter(|c| !added.contains(c))
                .collect()
        })
        .collect()
}

fn no_prune_rate() -> String {
    "0".into()
}

fn no_prune_method() -> String {
    "none".into()
}

// ---------------------------------------------------------------------------------------------
// result files

/// Reads a results CSV written by `fhec sweep` (this version's columns, or an older
/// version's, migrated); anything else is an error naming the file.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let legacy = legacy_headers();
    let legacy: Vec<&[&str]> = legacy.iter().map(Vec::as_slice).collect();
    read_table(path, columns(), &legacy)
}

pub fn read_baseline(path: &Path) -> Result<Vec<BaselineRow>> {
    read_table(path, &BASELINE_COLUMNS, &[])
}

/// Rows of `path` whose header is `expected` or one of the `legacy` headers (whose missing
/// columns `T` fills with its serde defaults).
fn read_table<T: serde::de::DeserializeOwned>(
    path: &Path,
    expected: &[&str],
    legacy: &[&[&str]],
) -> Result<Vec<T>> {
    let foreign = |why: String| DriverError::ForeignFile {
        path: path.to_path_buf(),
        problem: format!("is not a results file of this sweep ({why})"),
        fix: FileFix::MoveAway,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| DriverError::Read {
        what: "results file",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let header = reader
        .headers()
        .map_err(|e| foreign(format!("cannot read its header: {e}")))?
        .clone();
    let known = |h: &[&str]| header.iter().eq(h.iter().copied());
    if !known(expected) && !legacy.iter().any(|h| known(h)) {
        return Err(foreign(format!(
            "its header is '{}', expected '{}'",
            header.iter().collect::<Vec<_>>().join(","),
            expected.join(",")
        )));
    }
    let mut rows = Vec::new();
    for (i, r) in reader.deserialize::<T>().enumerate() {
        rows.push(r.map_err(|e| foreign(format!("row {}: {e}", i + 1)))?);
    }
    Ok(rows)
}

/// Rewrites `csv` and `jsonl` with `rows`, each through a temporary sibling and a rename:
/// a kill at any moment leaves the old or the new complete file.
pub fn write_table<T: Serialize>(
    csv_path: &Path,
    jsonl: &Path,
    header: &[&str],
    rows: &[T],
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| DriverError::Write {
        path: csv_path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(header).map_err(|e| failed(&e))?;
    for r in rows {
        w.serialize(r).map_err(|e| failed(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| failed(&e))?;
    write_atomic(csv_path, &bytes)?;
    let mut lines = String::new();
    for r in rows {
        lines.push_str(&serde_json::to_string(r).map_err(|e| failed(&e))?);
        lines.push('\n');
    }
    write_atomic(jsonl, lines.as_bytes())
}

/// [`fhec_runtime::atomic::write_atomic`] of an ordinary file, the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    fhec_runtime::atomic::write_atomic(path, bytes, Access::Shared).map_err(|source| {
        DriverError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Temporary files a killed sweep left behind (`.results_<prefix>_*.tmp*`).
pub fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let start = format!(".results_{prefix}_");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&start) && name.contains(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_the_row_struct() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(Row::default()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert_eq!(header, columns().join(","));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(BaselineRow {
            dataset: String::new(),
            model: String::new(),
            format: String::new(),
            size: String::new(),
            method: String::new(),
            samples: 0,
            float_accuracy: 0.0,
        })
        .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), BASELINE_COLUMNS.join(","));
    }

    #[test]
    fn files_of_every_earlier_revision_read_with_defaults() {
        let r = Row {
            dataset: "d".into(),
            bits: 6,
            param_sets: Some(2),
            lwe_dimension: Some(800),
            prune_rate: "0.5".into(),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (c, j) = (dir.path().join("r.csv"), dir.path().join("r.jsonl"));
        write_table(&c, &j, columns(), std::slice::from_ref(&r)).unwrap();
        let text = std::fs::read_to_string(&c).unwrap();
        // Drop the columns of each revision from the newest back, as older fhec wrote them.
        let mut dropped: Vec<&str> = Vec::new();
        for (revision, added) in ADDED_COLUMNS.iter().enumerate().rev() {
            dropped.extend(added.iter());
            let mut rd = csv::Reader::from_reader(text.as_bytes());
            let header = rd.headers().unwrap().clone();
            let keep: Vec<usize> = (0..header.len())
                .filter(|&i| !dropped.contains(&&header[i]))
                .collect();
            let mut w = csv::Writer::from_path(&c).unwrap();
            w.write_record(keep.iter().map(|&i| &header[i])).unwrap();
            for rec in rd.records() {
                let rec = rec.unwrap();
                w.write_record(keep.iter().map(|&i| &rec[i])).unwrap();
            }
            w.flush().unwrap();
            let read = read_rows(&c).unwrap_or_else(|e| panic!("revision {revision}: {e}"));
            assert_eq!(read[0].param_sets, None, "revision {revision}");
            assert_eq!(read[0].lwe_dimension, Some(800));
            let rate = if revision == 0 { "0" } else { "0.5" };
            assert_eq!(read[0].prune_rate, rate, "revision {revision}");
        }
    }

    #[test]
    fn rows_round_trip_through_csv_with_empty_cells() {
        let r = Row {
            dataset: "d".into(),
            bits: 6,
            rounding_bits: "5".into(),
            p_error: 0.008,
            error: "no parameters, \"quoted\"".into(),
            clear_accuracy: Some(0.9561403508771931),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (c, j) = (dir.path().join("r.csv"), dir.path().join("r.jsonl"));
        write_table(&c, &j, columns(), std::slice::from_ref(&r)).unwrap();
        assert_eq!(read_rows(&c).unwrap(), vec![r.clone()]);
        let line = std::fs::read_to_string(&j).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["simulate_accuracy"], serde_json::Value::Null);
        assert_eq!(v["p_error"], 0.008);
        std::fs::write(&c, "a,b\n1,2\n").unwrap();
        let e = read_rows(&c).unwrap_err().to_string();
        assert!(
            e.contains("r.csv") && e.contains("not a results file"),
            "{e}"
        );
    }
}
