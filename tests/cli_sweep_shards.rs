//! `fhec sweep` across machines and for the ECG workflow, through the binary: `--shard` +
//! `--merge` against one run, resuming a merge's missing configurations, the `prune_rate`
//! column (against `fhec eval`, and the migration of files written before it), `--top K` and
//! `--xlsx`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use calamine::{open_workbook_auto, Data, Reader};
use common::{fails, fhec, fixtures, ok};

fn fixture(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

const RESULTS: &str = "results_TABULAR_30_PTQ_breast_cancer.csv";
const BASELINE: &str = "results_TABULAR_30_PTQ_clear.csv";

/// The configuration columns and what a merge must reproduce exactly.
const COMPARED: [&str; 15] = [
    "dataset",
    "model",
    "bits",
    "rounding_bits",
    "rounding_mode",
    "p_error",
    "p_error_kind",
    "prune_threshold",
    "prune_rate",
    "prune_method",
    "status",
    "samples",
    "float_accuracy",
    "clear_accuracy",
    "simulate_accuracy",
];

/// 2 bit widths x 2 failure probabilities x 2 prune rates = 8 configurations (4 groups
/// sharing their quantisation), clear and simulated.
fn sweep_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "sweep",
        &fixture("mlp_torch.onnx"),
        "--data",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "4,6",
        "--p-error",
        "0.01,0.001",
        "--prune-rate",
        "0,0.5",
        "--modes",
        "clear,simulate",
        "--no-plots",
        "--out",
        &s(out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// Rows of a CSV as column → value maps, in file order.
fn rows(p: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn compared(rows: &[HashMap<String, String>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| COMPARED.iter().map(|c| r[*c].clone()).collect())
        .collect()
}

fn config_of(r: &HashMap<String, String>) -> String {
    COMPARED[..10]
        .iter()
        .map(|c| r[*c].as_str())
        .collect::<Vec<_>>()
        .join("|")
}

#[test]
fn two_shards_merge_into_the_rows_of_one_run_and_merging_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    ok(&fhec(sweep_args(&d("single"), &[])));
    let single = rows(&d("single").join(RESULTS));
    assert_eq!(single.len(), 8);

    let a = ok(&fhec(sweep_args(&d("s0"), &["--shard", "0/2"])));
    assert!(a.contains("shard 0/2"), "{a}");
    ok(&fhec(sweep_args(&d("s1"), &["--shard", "1/2"])));
    let (s0, s1) = (rows(&d("s0").join(RESULTS)), rows(&d("s1").join(RESULTS)));
    // Disjoint shares, each a non-empty half, both failure probabilities of one
    // quantisation on the same shard.
    assert_eq!((s0.len(), s1.len()), (4, 4));
    let group = |r: &HashMap<String, String>| format!("{}|{}", r["bits"], r["prune_rate"]);
    for r in &s0 {
        assert!(!s1.iter().any(|o| config_of(o) == config_of(r)));
        assert!(!s1.iter().any(|o| group(o) == group(r)));
    }

    let out = ok(&fhec([
        "sweep",
        "--merge",
        &s(&d("s0")),
        &s(&d("s1")),
        "--out",
        &s(&d("merged")),
        "--no-plots",
    ]));
    assert!(out.contains("merged 8 row(s)"), "{out}");
    let merged = rows(&d("merged").join(RESULTS));
    assert_eq!(compared(&merged), compared(&single));
    // The merged fingerprints and predicted latencies are the single run's too.
    for (m, s) in merged.iter().zip(&single) {
        assert_eq!(m["fingerprint"], s["fingerprint"]);
        assert_eq!(m["predicted_latency_s"], s["predicted_latency_s"]);
    }
    assert_eq!(
        rows(&d("merged").join(BASELINE)),
        rows(&d("single").join(BASELINE))
    );

    // Idempotent: merging the same shards again leaves every file byte-identical.
    let snapshot = |p: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&d("merged"));
    ok(&fhec([
        "sweep",
        "--merge",
        &s(&d("s1")),
        &s(&d("s0")),
        "--out",
        &s(&d("merged")),
        "--no-plots",
    ]));
    assert_eq!(snapshot(&d("merged")), before);
}

#[test]
fn a_merge_with_a_shard_missing_says_so_and_resume_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    ok(&fhec(sweep_args(&d("s0"), &["--shard", "0/2"])));
    let out = ok(&fhec([
        "sweep",
        "--merge",
        &s(&d("s0")),
        "--out",
        &s(&d("merged")),
        "--no-plots",
    ]));
    assert!(out.contains("shards not given: 1"), "{out}");
    assert!(
        out.contains("4 configuration(s) of the plan have no row yet"),
        "{out}"
    );
    assert_eq!(rows(&d("merged").join(RESULTS)).len(), 4);
    // The merged directory resumes like any sweep: only the missing half runs.
    let out = ok(&fhec(sweep_args(&d("merged"), &["--resume"])));
    assert!(
        out.contains("4 configuration(s) computed (0 with errors), 4 resumed"),
        "{out}"
    );
    ok(&fhec(sweep_args(&d("single"), &[])));
    let mut merged = compared(&rows(&d("merged").join(RESULTS)));
    let mut single = compared(&rows(&d("single").join(RESULTS)));
    merged.sort();
    single.sort();
    assert_eq!(merged, single);
}

#[test]
fn merge_refuses_what_is_not_one_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    ok(&fhec(sweep_args(&d("s0"), &["--shard", "0/2"])));
    // Another sweep of the same name: other bit widths.
    let mut other = sweep_args(&d("other"), &["--shard", "1/2"]);
    let i = other.iter().position(|a| a == "4,6").unwrap();
    other[i] = "5".into();
    ok(&fhec(other));
    fails(
        &fhec([
            "sweep",
            "--merge",
            &s(&d("s0")),
            &s(&d("other")),
            "--out",
            &s(&d("m")),
        ]),
        &["hold different sweeps", "different configurations", "other"],
    );
    std::fs::create_dir_all(d("empty")).unwrap();
    fails(
        &fhec(["sweep", "--merge", &s(&d("empty")), "--out", &s(&d("m"))]),
        &["holds no sweep plan", "empty"],
    );
    fails(
        &fhec(["sweep", "--merge", &s(&d("s0")), "--out", &s(&d("s0"))]),
        &["is also --out"],
    );
    fails(
        &fhec([
            "sweep",
            "--merge",
            &s(&d("s0")),
            "--bits",
            "4",
            "--out",
            &s(&d("m")),
        ]),
        &["--bits", "cannot be used with"],
    );
    fails(
        &fhec(sweep_args(&d("x"), &["--shard", "2/2"])),
        &["shard 2 of 2 does not exist"],
    );
}

#[test]
fn prune_rate_rows_match_eval_and_files_without_the_column_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    ok(&fhec(sweep_args(&out, &[])));
    let original = rows(&out.join(RESULTS));
    // The 6-bit, rate-0.5 row agrees with `fhec eval` at that setting.
    let row = original
        .iter()
        .find(|r| r["bits"] == "6" && r["prune_rate"] == "0.5" && r["p_error"] == "0.01")
        .expect("a 6-bit rate-0.5 row");
    let eval = ok(&fhec([
        "eval",
        &fixture("mlp_torch.onnx"),
        "--data",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "6",
        "--prune-rate",
        "0.5",
        "--mode",
        "clear",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert_eq!(v["mode"], "clear");
    let clear = v["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("no accuracy in {eval}"));
    assert_eq!(row["clear_accuracy"].parse::<f64>().unwrap(), clear);
    let dense = original
        .iter()
        .find(|r| r["bits"] == "6" && r["prune_rate"] == "0" && r["p_error"] == "0.01")
        .unwrap();
    assert_eq!(
        row["pbs_count"].parse::<u64>().unwrap() * 2,
        dense["pbs_count"].parse::<u64>().unwrap()
    );

    // A results file as sweeps wrote it before the prune_rate and prune_method columns
    // (rate-0 rows only; the later param_sets column did not exist either).
    let csv_path = out.join(RESULTS);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rate = header.iter().position(|h| h == "prune_rate").unwrap();
    let method = header.iter().position(|h| h == "prune_method").unwrap();
    let sets = header.iter().position(|h| h == "param_sets").unwrap();
    let keep = |r: &csv::StringRecord| -> Vec<String> {
        r.iter()
            .enumerate()
            .filter(|(i, _)| *i != rate && *i != method && *i != sets)
            .map(|(_, c)| c.to_string())
            .collect()
    };
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(keep(&csv::StringRecord::from(header.clone())))
        .unwrap();
    let mut old_rows = 0;
    for r in reader.records() {
        let r = r.unwrap();
        if &r[rate] == "0" {
            w.write_record(keep(&r)).unwrap();
            old_rows += 1;
        }
    }
    w.flush().unwrap();
    drop(w);
    assert_eq!(old_rows, 4);
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(!text.lines().next().unwrap().contains("prune_rate"));

    let resumed = ok(&fhec(sweep_args(&out, &["--resume"])));
    assert!(
        resumed.contains("4 configuration(s) computed (0 with errors), 4 resumed"),
        "{resumed}"
    );
    let after = rows(&csv_path);
    let mut a = compared(&after);
    let mut b = compared(&original);
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the migrated rows read prune_rate 0 and were not recomputed"
    );
}

/// The results columns that hold text (configuration labels, status, hashes).
const TEXT_COLUMNS: [&str; 14] = [
    "dataset",
    "model",
    "format",
    "size",
    "method",
    "rounding_bits",
    "rounding_mode",
    "p_error_kind",
    "prune_threshold",
    "prune_rate",
    "prune_method",
    "status",
    "error",
    "fingerprint",
];

#[test]
fn top_k_ranks_by_the_stated_rule_and_the_workbook_holds_the_csv_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let text = ok(&fhec(sweep_args(&out, &["--top", "3", "--xlsx"])));
    assert!(
        text.contains("top_3.csv") && text.contains(".xlsx"),
        "{text}"
    );
    let all = rows(&out.join(RESULTS));
    let top = rows(&out.join("top_3.csv"));
    assert_eq!(top.len(), 3);
    // Simulated accuracy (highest first), then predicted latency (lowest first).
    let acc = |r: &HashMap<String, String>| r["simulate_accuracy"].parse::<f64>().unwrap();
    let lat = |r: &HashMap<String, String>| r["predicted_latency_s"].parse::<f64>().unwrap();
    let mut expected: Vec<&HashMap<String, String>> = all.iter().collect();
    expected.sort_by(|a, b| acc(b).total_cmp(&acc(a)).then(lat(a).total_cmp(&lat(b))));
    for (i, t) in top.iter().enumerate() {
        assert_eq!(t["rank"], (i + 1).to_string());
        assert_eq!(t["ranked_by"], "simulate_accuracy");
        assert_eq!(config_of(t), config_of(expected[i]));
    }
    assert!(acc(&top[0]) >= acc(&top[2]));

    let mut book = open_workbook_auto(out.join("results_TABULAR_30_PTQ.xlsx")).unwrap();
    assert_eq!(
        book.sheet_names(),
        ["breast_cancer", "float baseline", "top 3"]
    );
    let sheet = book.worksheet_range("breast_cancer").unwrap();
    let cells: Vec<Vec<Data>> = sheet.rows().map(|r| r.to_vec()).collect();
    assert_eq!(cells.len(), all.len() + 1);
    let header: Vec<String> = cells[0].iter().map(|c| c.to_string()).collect();
    for (r, csv_row) in cells[1..].iter().zip(&all) {
        for (name, cell) in header.iter().zip(r) {
            let want = &csv_row[name];
            // Text columns hold text, the others numbers (a spreadsheet can sum them).
            let text = TEXT_COLUMNS.contains(&name.as_str());
            match cell {
                Data::Float(x) if !text => {
                    assert_eq!(*x, want.parse::<f64>().unwrap(), "{name}")
                }
                Data::String(t) if text => assert_eq!(t, want, "{name}"),
                Data::Empty => assert!(want.is_empty(), "{name}: {want}"),
                other => panic!("{name}: unexpected cell {other:?}"),
            }
        }
    }
    let top_sheet = book.worksheet_range("top 3").unwrap();
    assert_eq!(top_sheet.rows().count(), 4);
}
