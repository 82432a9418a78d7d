//! `fhec sweep` end to end through the binary: result files and their contents, agreement
//! with `fhec eval`, resuming (after a trimmed file and after SIGKILL), refusing foreign or
//! existing files, the key cache in an FHE sweep, CNN / MedMNIST file naming.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, fhec, fixtures, ok, stderr};
use fhec_testkit::{value_info, FLOAT};
use ndarray::{Array2, Array3};
use prost::Message;
use tract_onnx::pb;

fn fixture(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The configuration columns a sweep row is keyed on.
const KEY: [&str; 8] = [
    "model",
    "dataset",
    "bits",
    "rounding_bits",
    "rounding_mode",
    "p_error",
    "p_error_kind",
    "prune_threshold",
];

/// Header and rows of a results CSV (asserting every row is complete).
fn read_csv(p: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = r
        .records()
        .map(|x| x.unwrap_or_else(|e| panic!("{}: incomplete row: {e}", p.display())))
        .collect();
    for row in &rows {
        assert_eq!(
            row.len(),
            header.len(),
            "{}: short row {row:?}",
            p.display()
        );
    }
    (header, rows)
}

fn col<'a>(header: &[String], row: &'a csv::StringRecord, name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    &row[i]
}

fn key_of(header: &[String], row: &csv::StringRecord) -> String {
    KEY.iter()
        .map(|k| col(header, row, k))
        .collect::<Vec<_>>()
        .join("|")
}

fn f(header: &[String], row: &csv::StringRecord, name: &str) -> f64 {
    col(header, row, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} = {:?} is not a number", col(header, row, name)))
}

/// Asserts the configurations are unique; returns them.
fn keys(header: &[String], rows: &[csv::StringRecord]) -> HashSet<String> {
    let k: HashSet<String> = rows.iter().map(|r| key_of(header, r)).collect();
    assert_eq!(k.len(), rows.len(), "duplicate configurations");
    k
}

fn mlp_sweep(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "sweep",
        &fixture("mlp_torch.onnx"),
        "--data",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "4,6",
        "--rounding-bits",
        "5,6",
        "--p-error",
        "0.008",
        "--modes",
        "clear,simulate",
        "--out",
        &s(out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

const MLP_CSV: &str = "results_TABULAR_30_PTQ_breast_cancer.csv";

#[test]
fn mlp_sweep_writes_rows_matching_eval_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stdout = ok(&fhec(mlp_sweep(&out, &[])));
    let csv_path = out.join(MLP_CSV);
    for f in [
        MLP_CSV,
        "results_TABULAR_30_PTQ_breast_cancer.jsonl",
        "results_TABULAR_30_PTQ_clear.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing; stdout:\n{stdout}");
    }
    let (header, rows) = read_csv(&csv_path);
    assert_eq!(header[..3], ["dataset", "model", "format"]);
    assert_eq!(header.last().map(String::as_str), Some("fingerprint"));
    assert_eq!(rows.len(), 4);
    assert_eq!(keys(&header, &rows).len(), 4);
    for r in &rows {
        assert_eq!(col(&header, r, "status"), "ok", "{r:?}");
        assert_eq!(col(&header, r, "format"), "TABULAR");
        assert_eq!(col(&header, r, "size"), "30");
        assert_eq!(col(&header, r, "method"), "PTQ");
        assert_eq!(col(&header, r, "samples"), "114");
        for a in ["float_accuracy", "clear_accuracy", "simulate_accuracy"] {
            let v = f(&header, r, a);
            assert!((0.0..=1.0).contains(&v), "{a} = {v}");
        }
        assert!(f(&header, r, "pbs_count") > 0.0);
        assert!(f(&header, r, "p_error_per_pbs") <= 0.008 * 1.0001);
        assert_eq!(col(&header, r, "fhe_accuracy"), "", "fhe not asked");
        assert_eq!(col(&header, r, "fhe_samples"), "0");
        // The clear accuracy is exactly what `fhec eval` reports for this configuration.
        let mut args = vec![
            "eval".to_string(),
            fixture("mlp_torch.onnx"),
            "--data".into(),
            fixture("data/breast_cancer.npz"),
            "--bits".into(),
            col(&header, r, "bits").into(),
            "--json".into(),
        ];
        if col(&header, r, "rounding_bits") != "none" {
            args.extend([
                "--rounding-bits".to_string(),
                col(&header, r, "rounding_bits").into(),
            ]);
        }
        let v: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).unwrap();
        // Same counts (serde_json's float parsing may differ from the CSV's in the last bit).
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let clear = f(&header, r, "clear_accuracy");
        assert!(
            close(v["quantized_accuracy"].as_f64().unwrap(), clear),
            "eval {} vs sweep {r:?}",
            v["quantized_accuracy"]
        );
        assert_eq!((clear * 114.0).round(), v["correct"].as_f64().unwrap());
        assert!(close(
            v["float_accuracy"].as_f64().unwrap(),
            f(&header, r, "float_accuracy")
        ));
        assert_eq!(
            v["max_accumulator_bits"].as_f64(),
            Some(f(&header, r, "max_accumulator_bits"))
        );
    }
    // JSON lines: one object per row, same values.
    let jsonl =
        std::fs::read_to_string(out.join("results_TABULAR_30_PTQ_breast_cancer.jsonl")).unwrap();
    let objs: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 4);
    assert_eq!(
        objs[0]["clear_accuracy"].as_f64(),
        Some(f(&header, &rows[0], "clear_accuracy"))
    );
    assert!(objs[0]["fhe_accuracy"].is_null());
    let (bh, brows) = read_csv(&out.join("results_TABULAR_30_PTQ_clear.csv"));
    assert_eq!(brows.len(), 1);
    assert_eq!(col(&bh, &brows[0], "dataset"), "breast_cancer");
    assert_eq!(
        f(&bh, &brows[0], "float_accuracy"),
        f(&header, &rows[0], "float_accuracy")
    );

    // Without --resume, existing results are refused.
    fails(
        &fhec(mlp_sweep(&out, &[])),
        &["--resume", "--overwrite", MLP_CSV],
    );

    // Drop the last row; --resume recomputes only that one.
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&csv_path, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let o = fhec(mlp_sweep(&out, &["--resume", "--no-plots"]));
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("3 of 4 configuration(s) already done"),
        "{err}"
    );
    assert_eq!(err.matches("[4/4]").count(), 1, "{err}");
    assert!(!err.contains("[1/4]"), "{err}");
    let (h2, rows2) = read_csv(&csv_path);
    assert_eq!(h2, header);
    assert_eq!(keys(&h2, &rows2), keys(&header, &rows));
    // The recomputed row has the same (deterministic) clear and simulated accuracy.
    let last = rows.last().unwrap();
    let again = rows2
        .iter()
        .find(|r| key_of(&h2, r) == key_of(&header, last))
        .unwrap();
    for c in [
        "clear_accuracy",
        "simulate_accuracy",
        "pbs_count",
        "fingerprint",
    ] {
        assert_eq!(col(&h2, again, c), col(&header, last, c), "{c}");
    }

    // A resume with nothing left to do recomputes nothing.
    let o = fhec(mlp_sweep(&out, &["--resume", "--no-plots", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["computed"], 0);
    assert_eq!(v["skipped"], 4);
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);

    // --overwrite starts again.
    let o = fhec(mlp_sweep(&out, &["--overwrite", "--no-plots", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["computed"], 4);
    assert_eq!(read_csv(&csv_path).1.len(), 4);
}

#[test]
fn foreign_result_files_are_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let foreign = out.join(MLP_CSV);
    std::fs::write(&foreign, "name,score\nx,1\n").unwrap();
    for flag in ["--resume", "--overwrite"] {
        fails(
            &fhec(mlp_sweep(&out, &[flag])),
            &[MLP_CSV, "not a results file"],
        );
    }
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "name,score\nx,1\n"
    );
    // Hard input errors fail before any work.
    let missing = dir.path().join("nope.npz");
    let mut args = mlp_sweep(&dir.path().join("o2"), &[]);
    args[3] = s(&missing);
    fails(&fhec(&args), &["nope.npz", "no such file"]);
    assert!(!dir.path().join("o2").exists());
    let mut args = mlp_sweep(&dir.path().join("o3"), &[]);
    args[1] = fixture("data/breast_cancer.npz");
    fails(&fhec(&args), &["cannot import model"]);
}

/// A sweep killed with SIGKILL leaves complete files; --resume finishes it.
#[test]
fn killed_sweep_leaves_complete_rows_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "sweep",
            &fixture("mlp_torch.onnx"),
            "--data",
            &fixture("data/breast_cancer.npz"),
            "--bits",
            "2,3,4,5,6,7,8",
            "--rounding-bits",
            "none,4,5,6",
            "--p-error",
            "0.008",
            "--modes",
            "clear,simulate",
            "--no-plots",
            "--out",
            &s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let csv_path = out.join(MLP_CSV);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_secs(60) {
        if csv_path.is_file() {
            seen = read_csv(&csv_path).1.len();
            if seen >= 1 {
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    assert!(seen >= 1, "no row landed within a minute");
    assert!(
        !finished_early,
        "the sweep finished before it could be killed"
    );
    let (header, rows) = read_csv(&csv_path);
    assert_eq!(header.len(), 41);
    assert!(rows.len() < 28, "{} rows", rows.len());
    let before = keys(&header, &rows);
    // No temporary file is mistaken for results; a resume cleans them up.
    let o = fhec(args(&["--resume"]));
    ok(&o);
    assert!(
        stderr(&o).contains(&format!(
            "{} of 28 configuration(s) already done",
            rows.len()
        )),
        "{}",
        stderr(&o)
    );
    let (h2, rows2) = read_csv(&csv_path);
    assert_eq!(h2, header);
    assert_eq!(rows2.len(), 28);
    let after = keys(&h2, &rows2);
    assert!(before.is_subset(&after));
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.contains(".tmp").then_some(n)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Two configurations with the same parameters: the second reuses the cached keys.
#[test]
fn fhe_sweep_caches_keys_per_parameter_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "sweep",
            &fixture("mlp_torch_pruned.onnx"),
            "--data",
            &fixture("data/breast_cancer.npz"),
            "--bits",
            "3",
            "--rounding-bits",
            "3",
            "--rounding-mode",
            "exact",
            // 0 and a threshold too small to prune anything more: the same circuit.
            "--prune-threshold",
            "0,0.000001",
            "--modes",
            "clear,fhe",
            // The fastest failure probability the FHE tests use: small keys, quick bootstraps.
            "--p-error",
            "0.01",
            "--limit",
            "20",
            "--no-plots",
            "--out",
            &s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    ok(&fhec(args(&["--fhe-samples", "1"])));
    let csv_path = out.join(MLP_CSV);
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(rows.len(), 2);
    let fp0 = col(&h, &rows[0], "fingerprint");
    assert!(!fp0.is_empty());
    assert_eq!(
        fp0,
        col(&h, &rows[1], "fingerprint"),
        "same parameters expected"
    );
    assert!(
        f(&h, &rows[0], "keygen_s") > 0.0,
        "first config generates keys"
    );
    assert_eq!(
        col(&h, &rows[1], "keygen_s"),
        "",
        "second config reuses them"
    );
    for r in &rows {
        assert_eq!(col(&h, r, "status"), "ok", "{r:?}");
        assert_eq!(col(&h, r, "fhe_samples"), "1");
        assert!((0.0..=1.0).contains(&f(&h, r, "fhe_clear_agreement")));
        assert!((0.0..=1.0).contains(&f(&h, r, "fhe_accuracy")));
        assert!(f(&h, r, "measured_latency_s") > 0.0);
        assert!(f(&h, r, "server_key_bytes") > 0.0);
        assert_eq!(col(&h, r, "simulate_accuracy"), "");
    }
    let kdir = out.join("keys").join(fp0);
    assert!(kdir.join("client.key").is_file() && kdir.join("server.key").is_file());

    // Across restarts too: drop the last row and resume; the keys on disk are reused.
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&csv_path, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let o = fhec(args(&["--resume", "--fhe-samples", "1"]));
    ok(&o);
    assert!(stderr(&o).contains("1 of 2 configuration(s) already done"));
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(rows.len(), 2);
    assert_eq!(col(&h, &rows[1], "fhe_samples"), "1");
    assert_eq!(col(&h, &rows[1], "keygen_s"), "", "cached on disk");
    assert!((0.0..=1.0).contains(&f(&h, &rows[1], "fhe_clear_agreement")));
}

#[test]
fn cnn_sweeps_name_files_after_format_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = fhec([
        "sweep",
        &fixture("cnn_torch_28.onnx"),
        "--data",
        &fixture("data/digits_medmnist_28.npz"),
        "--bits",
        "4",
        "--rounding-bits",
        "none,6",
        "--p-error",
        "0.008",
        "--modes",
        "clear,simulate",
        "--limit",
        "8",
        "--no-plots",
        "--out",
        &s(&out),
    ]);
    ok(&o);
    let (h, rows) = read_csv(&out.join("results_GREY_28x28_PTQ_digits_medmnist_28.csv"));
    assert_eq!(rows.len(), 2);
    // Without rounding, 4-bit inputs overflow what one bootstrap can read at this p_error:
    // an error row, and the sweep goes on.
    let none = &rows[0];
    assert_eq!(col(&h, none, "rounding_bits"), "none");
    assert_eq!(col(&h, none, "status"), "error");
    assert!(
        col(&h, none, "error").contains("no TFHE parameters"),
        "{none:?}"
    );
    assert!(!col(&h, none, "error").contains('\n'));
    assert!(
        (0.0..=1.0).contains(&f(&h, none, "clear_accuracy")),
        "measured before the failure"
    );
    let r6 = &rows[1];
    assert_eq!(col(&h, r6, "status"), "ok", "{r6:?}");
    assert_eq!(col(&h, r6, "samples"), "8");
    assert!((0.0..=1.0).contains(&f(&h, r6, "simulate_accuracy")));
    assert!(stderr(&o).contains("ERROR"), "{}", stderr(&o));

    // RGB, clear only.
    ok(&fhec([
        "sweep",
        &fixture("cnn_torch_rgb_28.onnx"),
        "--data",
        &fixture("data/digits_medmnist_rgb_28.npz"),
        "--bits",
        "3",
        "--modes",
        "clear",
        "--limit",
        "8",
        "--no-plots",
        "--out",
        &s(&out),
    ]));
    let (h, rows) = read_csv(&out.join("results_RGB_28x28_PTQ_digits_medmnist_rgb_28.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        col(&h, &rows[0], "pbs_count"),
        "",
        "no circuit in clear mode"
    );
}

// --- MedMNIST 128x128 -----------------------------------------------------------------------

/// `x[1,1,128,128] -> Flatten -> Gemm(16384 -> 2)`: class 1 when the image is bright.
fn bright_model(dir: &Path) -> PathBuf {
    let n = 128 * 128;
    let mut w = vec![0f32; n * 2];
    for i in 0..n {
        w[i * 2] = -1.0 / n as f32;
        w[i * 2 + 1] = 1.0 / n as f32;
    }
    let graph = pb::GraphProto {
        name: "bright".into(),
        node: vec![
            common::node("flat", "Flatten", &["x"], &["f"]),
            common::node("fc", "Gemm", &["f", "w", "b"], &["y"]),
        ],
        initializer: vec![
            pb::TensorProto {
                name: "w".into(),
                dims: vec![n as i64, 2],
                data_type: 1,
                float_data: w,
                ..Default::default()
            },
            pb::TensorProto {
                name: "b".into(),
                dims: vec![2],
                data_type: 1,
                float_data: vec![0.5, -0.5],
                ..Default::default()
            },
        ],
        input: vec![value_info("x", FLOAT, &[1, 1, 128, 128])],
        output: vec![value_info("y", FLOAT, &[1, 2])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 14,
        }],
        producer_name: "fhec-test".into(),
        graph: Some(graph),
        ..Default::default()
    };
    let p = dir.join("bright.onnx");
    std::fs::write(&p, model.encode_to_vec()).unwrap();
    p
}

/// A MedMNIST-layout .npz: uint8 `[N,128,128]` images, `[N,1]` labels (1 = bright).
fn medmnist_128(dir: &Path) -> PathBuf {
    let p = dir.join("brightmnist_128.npz");
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&p).unwrap());
    for split in ["train", "test"] {
        let n = 6;
        let images = Array3::<u8>::from_shape_fn((n, 128, 128), |(i, y, x)| {
            if i % 2 == 1 {
                200 + ((x + y) % 50) as u8
            } else {
                ((x * y) % 40) as u8
            }
        });
        let labels = Array2::<u8>::from_shape_fn((n, 1), |(i, _)| (i % 2) as u8);
        npz.add_array(format!("{split}_images"), &images).unwrap();
        npz.add_array(format!("{split}_labels"), &labels).unwrap();
    }
    npz.finish().unwrap();
    p
}

#[test]
fn medmnist_128_grey_is_read_directly() {
    let dir = tempfile::tempdir().unwrap();
    let model = bright_model(dir.path());
    let data = medmnist_128(dir.path());
    let out = dir.path().join("out");
    ok(&fhec([
        "sweep",
        &s(&model),
        "--data",
        &s(&data),
        "--bits",
        "6",
        "--modes",
        "clear",
        "--no-plots",
        "--out",
        &s(&out),
    ]));
    let (h, rows) = read_csv(&out.join("results_GREY_128x128_PTQ_brightmnist_128.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(col(&h, &rows[0], "samples"), "6");
    // Bright images (label 1) score higher on class 1: the /255 scaling and layout are right.
    assert_eq!(f(&h, &rows[0], "float_accuracy"), 1.0);
    assert_eq!(f(&h, &rows[0], "clear_accuracy"), 1.0);
}

// --- the accuracy columns against independent runs; several datasets, CSV data, plots -------

/// `predict` of the pruned MLP at 3 bits, rounding to 3 bits (`mode`), calibrated on the
/// fixture's train split, with `extra` options; returns the written output.
fn predict(
    dir: &Path,
    input: &Path,
    mode: &str,
    rounding: &str,
    extra: &[&str],
) -> ndarray::ArrayD<f32> {
    let out = dir.join(format!(
        "p{}.npy",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut args: Vec<String> = [
        "predict",
        &fixture("mlp_torch_pruned.onnx"),
        "--mode",
        mode,
        "--calib",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "3",
        "--rounding-bits",
        "3",
        "--rounding-mode",
        rounding,
        "--input",
        &s(input),
        "-o",
        &s(&out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    args.extend(extra.iter().map(|x| x.to_string()));
    ok(&fhec(&args));
    ndarray_npy::read_npy(&out).unwrap()
}

/// Argmax of every row of a `[N, C]` output.
fn argmaxes(y: &ndarray::ArrayD<f32>) -> Vec<usize> {
    y.outer_iter()
        .map(|r| common::argmax(r.into_dimensionality().unwrap()))
        .collect()
}

fn correct(preds: &[usize], labels: &[i64]) -> usize {
    preds
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p as i64 == **l)
        .count()
}

#[test]
fn sweep_accuracy_columns_match_independent_predictions_for_both_rounding_modes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (n, k) = (22, 2);
    let out = d.join("out");
    ok(&fhec([
        "sweep",
        &fixture("mlp_torch_pruned.onnx"),
        "--data",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "3",
        "--rounding-bits",
        "3",
        "--rounding-mode",
        "approximate,exact",
        "--modes",
        "clear,simulate,fhe",
        "--limit",
        &n.to_string(),
        "--fhe-samples",
        &k.to_string(),
        "--no-plots",
        "--out",
        &s(&out),
    ]));
    let (h, rows) = read_csv(&out.join(MLP_CSV));
    let modes: Vec<&str> = rows.iter().map(|r| col(&h, r, "rounding_mode")).collect();
    assert_eq!(modes, ["approximate", "exact"], "one row per rounding mode");

    let (x, labels) = common::breast_cancer_test(n);
    let batch = d.join("x.npy");
    ndarray_npy::write_npy(&batch, &x).unwrap();
    // Each sample alone, for the simulation's per-sample seeds.
    let singles: Vec<PathBuf> = (0..n)
        .map(|i| {
            let p = d.join(format!("x{i}.npy"));
            ndarray_npy::write_npy(&p, &x.slice(ndarray::s![i..i + 1, ..]).to_owned()).unwrap();
            p
        })
        .collect();
    for r in &rows {
        let mode = col(&h, r, "rounding_mode");
        assert_eq!(col(&h, r, "status"), "ok", "{r:?}");
        assert_eq!(col(&h, r, "samples"), n.to_string());
        assert_eq!(col(&h, r, "fhe_samples"), k.to_string());
        // clear_accuracy: predict --mode clear on the same samples, counted here.
        let clear = argmaxes(&predict(d, &batch, "clear", mode, &[]));
        let clear_correct = correct(&clear, &labels);
        assert_eq!(
            f(&h, r, "clear_accuracy"),
            clear_correct as f64 / n as f64,
            "{mode}: clear predictions {clear:?}, labels {labels:?}"
        );
        // simulate_accuracy: the sweep (seed 0) draws sample i's noise from seed i
        // (`fhec sweep --seed`: per-sample seeds seed * C + i), as predict --seed i does for a
        // single sample.
        let sim: Vec<usize> = singles
            .iter()
            .enumerate()
            .map(|(i, p)| {
                argmaxes(&predict(
                    d,
                    p,
                    "simulate",
                    mode,
                    &["--seed", &i.to_string()],
                ))[0]
            })
            .collect();
        assert_eq!(
            f(&h, r, "simulate_accuracy"),
            correct(&sim, &labels) as f64 / n as f64,
            "{mode}: simulated predictions {sim:?}"
        );
        // fhe_*: the first k samples, encrypted.
        let fhe_acc = f(&h, r, "fhe_accuracy");
        let agreement = f(&h, r, "fhe_clear_agreement");
        let clear_k = correct(&clear[..k], &labels[..k]);
        assert_ne!(
            clear_k as f64 / k as f64,
            clear_correct as f64 / n as f64,
            "the test needs the clear accuracy on the first {k} samples to differ from the \
             whole set's"
        );
        let (fhe_correct, agree) = ((fhe_acc * k as f64).round(), (agreement * k as f64).round());
        assert_eq!(fhe_correct / k as f64, fhe_acc, "a fraction of {k} samples");
        assert_eq!(agree / k as f64, agreement, "a fraction of {k} samples");
        // Each disagreement with the clear prediction changes the count by at most one.
        assert!(
            (fhe_correct - clear_k as f64).abs() <= k as f64 - agree,
            "{mode}: fhe {fhe_correct} correct, clear {clear_k}, agreement {agree} of {k}"
        );
        if mode == "exact" {
            // Exact rounding at 2^-40 per bootstrap: encrypted = clear, bit for bit.
            assert_eq!(agreement, 1.0, "{r:?}");
            assert_eq!(fhe_acc, clear_k as f64 / k as f64, "{r:?}");
        }
    }

    // At 2^-40 the simulation leaves these predictions clear; at 5% per bootstrap it does
    // not, and simulate_accuracy must still be the simulation's, not the clear accuracy.
    let noisy = d.join("noisy");
    ok(&fhec([
        "sweep",
        &fixture("mlp_torch_pruned.onnx"),
        "--data",
        &fixture("data/breast_cancer.npz"),
        "--bits",
        "3",
        "--rounding-bits",
        "3",
        "--p-error",
        "0.05",
        "--modes",
        "clear,simulate",
        "--limit",
        &n.to_string(),
        "--no-plots",
        "--out",
        &s(&noisy),
    ]));
    let (h, rows) = read_csv(&noisy.join(MLP_CSV));
    assert_eq!(rows.len(), 1);
    let sim: Vec<usize> = singles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let extra = ["--seed", &i.to_string(), "--p-error", "0.05"];
            argmaxes(&predict(d, p, "simulate", "approximate", &extra))[0]
        })
        .collect();
    let sim_acc = correct(&sim, &labels) as f64 / n as f64;
    assert_ne!(
        sim_acc,
        f(&h, &rows[0], "clear_accuracy"),
        "the test needs a simulated accuracy other than the clear one ({sim:?})"
    );
    assert_eq!(f(&h, &rows[0], "simulate_accuracy"), sim_acc, "{sim:?}");
}

#[test]
fn sweep_over_two_datasets_with_csv_data_writes_both_and_their_plots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, labels) = common::breast_cancer_test(114);
    // A second dataset: test rows 50..90 as a CSV (calibration from --calib for both).
    let (x2, y2) = (
        x.slice(ndarray::s![50..90, ..]).to_owned(),
        labels[50..90].to_vec(),
    );
    let csv = d.join("bc_subset.csv");
    common::write_csv(&csv, x2.view(), &y2);
    let sweep = |out: &Path, data: &[&Path], extra: &[&str]| {
        let mut a: Vec<String> = vec!["sweep".into(), fixture("mlp_torch_pruned.onnx")];
        for p in data {
            a.extend(["--data".to_string(), s(p)]);
        }
        a.extend(
            [
                "--calib",
                &fixture("data/breast_cancer.npz"),
                "--bits",
                "3",
                "--rounding-bits",
                "3",
                "--modes",
                "clear,simulate",
                "--out",
                &s(out),
                "--json",
            ]
            .iter()
            .map(|x| x.to_string()),
        );
        a.extend(extra.iter().map(|x| x.to_string()));
        let v: serde_json::Value = serde_json::from_str(&ok(&fhec(&a))).unwrap();
        v
    };
    let npz = PathBuf::from(fixture("data/breast_cancer.npz"));
    let both = d.join("both");
    let v = sweep(&both, &[&npz, &csv], &[]);
    let file = |ds: &str| format!("results_TABULAR_30_PTQ_{ds}.csv");
    for ds in ["breast_cancer", "bc_subset"] {
        let (h, rows) = read_csv(&both.join(file(ds)));
        assert_eq!(rows.len(), 1, "{ds}");
        assert_eq!(col(&h, &rows[0], "dataset"), ds);
        // Each dataset's row is what a sweep of that dataset alone writes.
        let alone = d.join(format!("alone_{ds}"));
        let data = if ds == "bc_subset" { &csv } else { &npz };
        sweep(&alone, &[data], &["--no-plots"]);
        let (ha, ra) = read_csv(&alone.join(file(ds)));
        for c in [
            "samples",
            "float_accuracy",
            "clear_accuracy",
            "simulate_accuracy",
            "fingerprint",
        ] {
            assert_eq!(col(&h, &rows[0], c), col(&ha, &ra[0], c), "{ds} {c}");
        }
        // ...and the clear accuracy is predict --mode clear's on its samples, counted here.
        let (xs, ys) = if ds == "bc_subset" {
            (&x2, &y2)
        } else {
            (&x, &labels)
        };
        let input = d.join(format!("{ds}.npy"));
        ndarray_npy::write_npy(&input, xs).unwrap();
        let clear = argmaxes(&predict(d, &input, "clear", "approximate", &[]));
        assert_eq!(col(&h, &rows[0], "samples"), ys.len().to_string());
        assert_eq!(
            f(&h, &rows[0], "clear_accuracy"),
            correct(&clear, ys) as f64 / ys.len() as f64,
            "{ds}"
        );
        let pictures: Vec<String> = std::fs::read_dir(&alone)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".png") || n.ends_with(".svg"))
            .collect();
        assert!(pictures.is_empty(), "--no-plots wrote {pictures:?}");
    }
    // The two datasets differ, so their rows must too.
    let acc = |ds: &str| {
        let (h, rows) = read_csv(&both.join(file(ds)));
        f(&h, &rows[0], "clear_accuracy")
    };
    assert_ne!(acc("breast_cancer"), acc("bc_subset"));

    // Plots: accuracy and latency, PNG and SVG, per dataset, beside its CSV, as listed.
    let mut listed: Vec<String> = v["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = vec![];
    for ds in ["bc_subset", "breast_cancer"] {
        for what in ["accuracy", "latency"] {
            for ext in ["png", "svg"] {
                expected.push(s(
                    &both.join(format!("results_TABULAR_30_PTQ_{ds}_{what}.{ext}"))
                ));
            }
        }
    }
    assert_eq!(listed, expected);
    for p in &expected {
        let bytes = std::fs::read(p).unwrap();
        if p.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{p}");
            assert!(bytes.ends_with(b"IEND\xaeB`\x82"), "{p}: truncated PNG");
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg"), "{p}");
            assert!(svg.trim_end().ends_with("</svg>"), "{p}: truncated SVG");
            let ds = if p.contains("bc_subset") {
                "bc_subset"
            } else {
                "breast_cancer"
            };
            assert!(svg.contains(ds), "{p} does not name its dataset");
        }
    }

    // The CSV form of the whole test split: eval gives the npz's accuracy and predictions.
    let full = d.join("bc_test.csv");
    common::write_csv(&full, x.view(), &labels);
    let eval = |data: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&fhec([
            "eval",
            &fixture("mlp_torch_pruned.onnx"),
            "--data",
            data,
            "--calib",
            &fixture("data/breast_cancer.npz"),
            "--bits",
            "3",
            "--json",
        ])))
        .unwrap()
    };
    let (a, b) = (eval(&s(&full)), eval(&fixture("data/breast_cancer.npz")));
    assert_eq!(a["samples"], 114);
    for key in [
        "samples",
        "accuracy",
        "float_accuracy",
        "correct",
        "predictions",
        "float_predictions",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// Configurations that differ only in the failure probability quantise identically, so the
/// sweep compiles the model and runs it in the clear once for all of them (and calibrates once
/// per dataset): each row of a two-failure-probability sweep equals, column for column, the
/// row of a sweep at that failure probability alone.
#[test]
fn p_error_variants_share_the_quantisation_and_match_sweeps_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = |name: &str, p_errors: &str| {
        let out = dir.path().join(name);
        let args: Vec<String> = [
            "sweep",
            &fixture("mlp_torch.onnx"),
            "--data",
            &fixture("data/breast_cancer.npz"),
            "--bits",
            "4",
            "--rounding-bits",
            "5",
            "--p-error",
            p_errors,
            "--modes",
            "clear,simulate",
            "--no-plots",
            "--out",
            &s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        ok(&fhec(&args));
        read_csv(&out.join(MLP_CSV))
    };
    let (header, both) = sweep("both", "0.008,0.05");
    assert_eq!(both.len(), 2);
    let (c0, c1) = (
        col(&header, &both[0], "clear_accuracy"),
        col(&header, &both[1], "clear_accuracy"),
    );
    assert_eq!(c0, c1, "one quantisation, one clear accuracy");
    assert_ne!(
        col(&header, &both[0], "p_error_per_pbs"),
        col(&header, &both[1], "p_error_per_pbs")
    );
    let columns = [
        "clear_accuracy",
        "simulate_accuracy",
        "max_accumulator_bits",
        "pbs_count",
        "p_error_per_pbs",
        "lwe_dimension",
        "polynomial_size",
        "pbs_level",
    ];
    for (i, p) in ["0.008", "0.05"].iter().enumerate() {
        let (h, alone) = sweep(&format!("alone{i}"), p);
        assert_eq!(alone.len(), 1);
        for c in columns {
            assert_eq!(
                col(&header, &both[i], c),
                col(&h, &alone[0], c),
                "p_error {p}, column {c}"
            );
        }
    }
}
