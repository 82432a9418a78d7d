//! `fhec eval`, `fhec predict --mode clear` and `fhec inspect --bits` end to end: accuracy of
//! the quantised fixture models against float, table-lookup counts, accumulator widths,
//! pruning, rounding, QAT, the MedMNIST and NHWC data layouts, and every class of user error
//! exiting with code 2. Invocations are kept small (`--limit`, `--calib-limit`) so that each
//! runs well under a few seconds in the dev profile.

mod common;

use std::path::{Path, PathBuf};

use common::{data_arg, fails, fhec, model_arg, node, ok, stderr};
use fhec_testkit::{value_info, FLOAT};
use ndarray::{s, Array1, ArrayD};
use ndarray_npy::{NpzReader, NpzWriter};
use prost::Message;
use serde_json::Value;
use tract_onnx::pb;

// ---------------------------------------------------------------------------------------------
// helpers

/// `fhec eval MODEL --data DATA --json ARGS...`, parsed; stdout must be exactly one object.
fn eval_json(stem: &str, data_file: &str, args: &[&str]) -> (Value, String) {
    let m = model_arg(stem);
    let d = data_arg(data_file);
    let mut all = vec!["eval", m.as_str(), "--data", d.as_str(), "--json"];
    all.extend_from_slice(args);
    let o = fhec(&all);
    let out = ok(&o);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{out}"));
    assert!(v.is_object(), "{out}");
    (v, stderr(&o))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer: {v}"))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().expect("index") as usize)
        .collect()
}

fn argmax_rows(a: &ArrayD<f32>) -> Vec<usize> {
    a.outer_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0
        })
        .collect()
}

const REQUIRED_KEYS: [&str; 15] = [
    "accuracy",
    "float_accuracy",
    "agreement",
    "tlu_count",
    "max_accumulator_bits",
    "samples",
    "mode",
    "bits",
    "quantization",
    "layers",
    "pruned",
    "postprocessing",
    "ops_before",
    "ops_after",
    "timings_ms",
];

fn check_keys(v: &Value) {
    for k in REQUIRED_KEYS {
        assert!(v.get(k).is_some(), "no key {k}: {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// eval on the fixtures

#[test]
fn eval_mlp_6_bits_json() {
    let (v, err) = eval_json("mlp_torch", "breast_cancer.npz", &["--bits", "6"]);
    check_keys(&v);
    assert_eq!(v["mode"], "clear");
    assert_eq!(v["bits"], 6);
    assert_eq!(v["quantization"]["weight_bits"], 6);
    assert_eq!(u(&v, "samples"), 114);
    assert!((f(&v, "float_accuracy") - 0.956).abs() < 0.001, "{v}");
    assert!(f(&v, "accuracy") >= 0.946, "{v}");
    assert!(f(&v, "agreement") >= 0.97, "{v}");
    assert_eq!(u(&v, "tlu_count"), 96);
    let acc_bits = u(&v, "max_accumulator_bits");
    assert!((10..=20).contains(&acc_bits), "{acc_bits}");
    assert_eq!(u(&v, "calibration_samples"), 455, "train split by default");
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{v}");
    for l in layers {
        for k in [
            "layer",
            "op",
            "worst_bits",
            "worst_range",
            "observed_bits",
            "observed_range",
            "tlu_input_bits",
        ] {
            assert!(l.get(k).is_some(), "layer lacks {k}: {l}");
        }
        assert_eq!(l["op"], "Gemm");
        let worst = l["worst_range"].as_array().unwrap();
        let seen = l["observed_range"].as_array().unwrap();
        assert!(worst[0].as_i64() <= seen[0].as_i64() && seen[1].as_i64() <= worst[1].as_i64());
        assert!(l["observed_bits"].as_u64() <= l["worst_bits"].as_u64());
    }
    assert_eq!(max_worst(layers), acc_bits);
    assert_eq!(v["pruned"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["postprocessing"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["ops_before"]["Gemm"], 3);
    assert_eq!(v["ops_before"]["Relu"], 2);
    assert_eq!(v["ops_after"]["Tlu"], 2);
    assert_eq!(v["ops_after"]["Quantize"], 1);
    assert!(v["ops_after"].get("Relu").is_none());
    assert_eq!(usizes(&v["predictions"]).len(), 114);
    assert_eq!(v["passes"].as_array().map(Vec::len), Some(13));
    // Progress goes to stderr, never into the JSON.
    assert!(err.contains("compiling"), "{err}");
}

fn max_worst(layers: &[Value]) -> u64 {
    layers
        .iter()
        .map(|l| l["worst_bits"].as_u64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn eval_pruned_mlp_halves_the_table_lookups() {
    let (v, _) = eval_json("mlp_torch_pruned", "breast_cancer.npz", &["--bits", "6"]);
    check_keys(&v);
    assert_eq!(u(&v, "tlu_count"), 48);
    assert!(f(&v, "accuracy") >= 0.93, "{v}");
    let pruned = v["pruned"].as_array().unwrap();
    let sizes: Vec<(u64, u64)> = pruned
        .iter()
        .map(|p| (p["before"].as_u64().unwrap(), p["after"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes, vec![(64, 32), (32, 16)], "{v}");
    assert!(pruned.iter().all(|p| p["layer"].is_string()));
}

#[test]
fn eval_with_rounding() {
    let (v, _) = eval_json(
        "mlp_torch",
        "breast_cancer.npz",
        &["--bits", "6", "--rounding-bits", "6"],
    );
    assert!(f(&v, "accuracy") >= 0.93, "{v}");
    assert_eq!(u(&v, "tlu_count"), 96);
    assert_eq!(v["rounding"]["bits"], 6);
    assert_eq!(v["rounding"]["mode"], "approximate");
    assert_eq!(v["rounding"]["tables_rounded"], 2);
    for l in v["layers"].as_array().unwrap() {
        if let Some(t) = l["tlu_input_bits"].as_u64() {
            assert!(t <= 6, "{l}");
        }
    }
    let (e, _) = eval_json(
        "mlp_torch",
        "breast_cancer.npz",
        &[
            "--bits",
            "6",
            "--rounding-bits",
            "5",
            "--rounding-mode",
            "exact",
            "--limit",
            "20",
        ],
    );
    assert_eq!(e["quantization"]["rounding_mode"], "exact");
    assert_eq!(e["rounding"]["mode"], "exact");
    assert_eq!(u(&e, "samples"), 20);
}

#[test]
fn eval_cnn_5_bits() {
    let (v, _) = eval_json(
        "cnn_torch_28",
        "digits_28.npz",
        &["--bits", "5", "--limit", "100", "--calib-limit", "100"],
    );
    check_keys(&v);
    assert_eq!(u(&v, "samples"), 100);
    assert_eq!(u(&v, "calibration_samples"), 100);
    assert!(f(&v, "float_accuracy") >= 0.93, "{v}");
    assert!(f(&v, "accuracy") >= f(&v, "float_accuracy") - 0.05, "{v}");
    assert!(u(&v, "tlu_count") > 1000, "{v}");
    let ops: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["op"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"Conv") && ops.contains(&"Gemm"), "{ops:?}");
    // BatchNorm is folded away, Relu becomes tables.
    assert_eq!(v["ops_before"]["BatchNorm"], 1);
    assert!(v["ops_after"].get("BatchNorm").is_none(), "{v}");
    assert!(v["ops_after"]["Tlu"].as_u64().unwrap() >= 2);
}

#[test]
fn eval_qat_model_matches_float() {
    let (v, _) = eval_json(
        "cnn_brevitas_28",
        "digits_28.npz",
        &["--bits", "4", "--limit", "40", "--calib-limit", "20"],
    );
    assert!(f(&v, "float_accuracy") >= 0.9, "{v}");
    assert!(
        (f(&v, "accuracy") - f(&v, "float_accuracy")).abs() <= 0.01,
        "QAT: {v}"
    );
}

#[test]
fn eval_medmnist_layout() {
    let args = ["--bits", "6", "--limit", "50", "--calib-limit", "50"];
    let (med, _) = eval_json("cnn_torch_28", "digits_medmnist_28.npz", &args);
    assert!(med["data"].as_str().unwrap().contains("MedMNIST"), "{med}");
    assert!(
        med["calibration"]
            .as_str()
            .unwrap()
            .contains("train_images"),
        "{med}"
    );
    assert_eq!(u(&med, "samples"), 50);
    assert!(f(&med, "accuracy") >= 0.9, "{med}");
    // The MedMNIST file is digits_28 * 255 as uint8: same samples, same float predictions.
    let (plain, _) = eval_json(
        "cnn_torch_28",
        "digits_28.npz",
        &["--mode", "float", "--limit", "50"],
    );
    assert_eq!(
        usizes(&med["float_predictions"]),
        usizes(&plain["float_predictions"])
    );
}

#[test]
fn eval_nhwc_keras_model_transposes_nchw_data() {
    let (v, err) = eval_json(
        "cnn_keras_28",
        "digits_28.npz",
        &["--bits", "6", "--limit", "50", "--calib-limit", "30"],
    );
    assert!(
        err.contains("NHWC") && err.contains("transposing"),
        "stderr: {err}"
    );
    assert!(v["layout"].as_str().unwrap().contains("NHWC"), "{v}");
    assert!(f(&v, "float_accuracy") >= 0.94, "{v}");
    assert!(f(&v, "accuracy") >= f(&v, "float_accuracy") - 0.04, "{v}");
    assert!(u(&v, "tlu_count") > 0);
}

#[test]
fn eval_float_mode() {
    let (v, _) = eval_json("mlp_torch", "breast_cancer.npz", &[]);
    check_keys(&v);
    assert_eq!(v["mode"], "float");
    assert!(v["bits"].is_null());
    assert_eq!(f(&v, "accuracy"), f(&v, "float_accuracy"));
    assert!(v["agreement"].is_null() && v["tlu_count"].is_null(), "{v}");
    assert!((f(&v, "float_accuracy") - 0.956).abs() < 0.001);
    // With --bits, float mode still compiles and reports the circuit's cost.
    let (b, _) = eval_json(
        "mlp_torch",
        "breast_cancer.npz",
        &["--mode", "float", "--bits", "6"],
    );
    assert_eq!(b["mode"], "float");
    assert_eq!(u(&b, "tlu_count"), 96);
    assert!(b["agreement"].is_null());
}

#[test]
fn eval_key_overrides_and_separate_calibration_file() {
    // Evaluate the train split by naming its arrays; calibrate on a separate file.
    let (v, _) = eval_json(
        "mlp_torch",
        "breast_cancer.npz",
        &[
            "--x-key",
            "x_train",
            "--y-key",
            "y_train",
            "--bits",
            "5",
            "--calib",
            &data_arg("breast_cancer.npz"),
            "--calib-limit",
            "50",
        ],
    );
    assert_eq!(u(&v, "samples"), 455);
    assert_eq!(u(&v, "calibration_samples"), 50);
    assert!(f(&v, "accuracy") >= 0.9, "{v}");
}

#[test]
fn eval_text_report() {
    let m = model_arg("mlp_torch");
    let d = data_arg("breast_cancer.npz");
    let o = fhec(["eval", &m, "--data", &d, "--bits", "6"]);
    let out = ok(&o);
    for needle in [
        "float accuracy:      0.9561",
        "quantised accuracy:",
        "agreement:",
        "table lookups:       96 per inference",
        "max accumulator:",
        "rounding:            top ",
        "accumulator bits per layer",
        "/0/Gemm",
        "worst range",
        "observed range",
        "pruned neurons:      none",
        "ops before (12 nodes):",
        "ops after ",
        "Tlu\u{d7}2",
        "timings:",
    ] {
        assert!(out.contains(needle), "report lacks {needle:?}:\n{out}");
    }
    assert!(!out.contains("compiling"), "progress belongs on stderr");
    // Rounding is on by default; `--rounding-bits none` turns it off.
    let o = fhec([
        "eval",
        &m,
        "--data",
        &d,
        "--bits",
        "6",
        "--rounding-bits",
        "none",
    ]);
    let out = ok(&o);
    assert!(out.contains("rounding:            none"), "{out}");
    assert!(out.contains("no rounding"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// predict --mode clear

#[test]
fn predict_clear_reproduces_eval_predictions() {
    let n = 8;
    let (v, _) = eval_json(
        "mlp_torch",
        "breast_cancer.npz",
        &["--bits", "6", "--limit", &n.to_string()],
    );
    let eval_preds = usizes(&v["predictions"]);
    let dir = tempfile::tempdir().unwrap();
    let mut npz =
        NpzReader::new(std::fs::File::open(data_arg("breast_cancer.npz")).unwrap()).unwrap();
    let x: ArrayD<f32> = npz.by_name("x_test").unwrap();
    let x = x.slice(s![..n, ..]).to_owned().into_dyn();
    let xin = dir.path().join("x.npy");
    ndarray_npy::write_npy(&xin, &x).unwrap();
    let out = dir.path().join("y.npy");
    let (xs, outs) = (xin.display().to_string(), out.display().to_string());
    let m = model_arg("mlp_torch");
    let calib = data_arg("breast_cancer.npz");
    let text = ok(&fhec([
        "predict", &m, "--input", &xs, "--mode", "clear", "--bits", "6", "--calib", &calib,
        "--output", &outs,
    ]));
    assert!(text.contains("mode clear"), "{text}");
    let y: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(y.shape(), &[n, 2]);
    assert_eq!(argmax_rows(&y), eval_preds);
    // The dequantised logits are close to, but not exactly, the float ones.
    let fout = dir.path().join("f.npy");
    let fouts = fout.display().to_string();
    ok(&fhec([
        "predict", &m, "--input", &xs, "--mode", "float", "--output", &fouts,
    ]));
    let yf: ArrayD<f32> = ndarray_npy::read_npy(&fout).unwrap();
    let diff = (&y - &yf).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
    assert!(diff > 0.0 && diff < 3.0, "max |clear - float| = {diff}");
}

#[test]
fn predict_clear_on_qat_model_needs_no_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let outs = out.display().to_string();
    let m = model_arg("mlp_brevitas");
    let x = data_arg("breast_cancer_sample.npy");
    ok(&fhec([
        "predict", &m, "-i", &x, "--mode", "clear", "--bits", "4", "-o", &outs,
    ]));
    let y: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(y.shape(), &[1, 2]);
}

#[test]
fn predict_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let m = model_arg("mlp_torch");
    let x = data_arg("breast_cancer_sample.npy");
    let run = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "predict".into(),
            m.clone(),
            "-i".into(),
            x.clone(),
            "-o".into(),
            out.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        fhec(&a)
    };
    // No calibration data for a PTQ model: say to pass --calib, name the pass and the node.
    fails(
        &run(&["--mode", "clear", "--bits", "6"]),
        &[
            "--calib",
            "pass 'quantize'",
            "node 'input'",
            "no calibration range",
        ],
    );
    fails(&run(&["--mode", "clear"]), &["--bits"]);
    fails(
        &run(&["--mode", "float", "--bits", "6"]),
        &["only apply to --mode clear"],
    );
    assert!(!out.exists(), "a failed run leaves no output");
}

// ---------------------------------------------------------------------------------------------
// inspect --bits

#[test]
fn inspect_with_bits_shows_the_pipeline() {
    let m = model_arg("mlp_torch_pruned");
    let calib = data_arg("breast_cancer.npz");
    let out = ok(&fhec([
        "inspect",
        &m,
        "--bits",
        "6",
        "--calib",
        &calib,
        "--calib-limit",
        "100",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let p = &v["pipeline"];
    let passes = p["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 13, "{p}");
    for pass in passes {
        for k in ["pass", "nodes_before", "nodes_after", "changes"] {
            assert!(pass.get(k).is_some(), "{pass}");
        }
    }
    assert_eq!(passes[0]["pass"], "drop_identity");
    assert_eq!(p["tlu_count"], 48);
    assert!(p["max_accumulator_bits"].as_u64().unwrap() >= 10);
    assert_eq!(p["layers"].as_array().unwrap().len(), 3);
    assert_eq!(p["pruned"].as_array().unwrap().len(), 2);
    // The rest of the inspect report is unchanged.
    assert_eq!(v["supported"], true);

    let text = ok(&fhec([
        "inspect",
        &m,
        "--bits",
        "6",
        "--calib",
        &calib,
        "--calib-limit",
        "100",
    ]));
    for needle in [
        "pipeline: 6 bits",
        "prune: 12 -> 12 nodes, 2 change(s)",
        "pruned neurons:",
        "accumulator bits",
        "table lookups:   48 per inference",
        "compiled IR:",
        "Tlu{",
    ] {
        assert!(text.contains(needle), "inspect lacks {needle:?}:\n{text}");
    }

    // Without --bits: no pipeline key.
    let plain = ok(&fhec(["inspect", &m, "--json"]));
    let v: Value = serde_json::from_str(&plain).unwrap();
    assert!(v.get("pipeline").is_none());
    // A PTQ model without --calib: the error says to pass it.
    fails(&fhec(["inspect", &m, "--bits", "6"]), &["--calib"]);
    // QAT needs none.
    let q = ok(&fhec([
        "inspect",
        &model_arg("mlp_brevitas"),
        "--bits",
        "4",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&q).unwrap();
    assert!(v["pipeline"]["tlu_count"].as_u64().unwrap() > 0, "{v}");
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn eval_errors_exit_2() {
    let m = model_arg("mlp_torch");
    let bc = data_arg("breast_cancer.npz");
    let run = |args: &[&str]| {
        let mut a = vec!["eval"];
        a.extend_from_slice(args);
        fhec(&a)
    };
    // Missing labels.
    fails(
        &run(&[
            &m,
            "--data",
            &data_arg("breast_cancer_sample.npy"),
            "--bits",
            "6",
        ]),
        &["no labels", "breast_cancer_sample.npy"],
    );
    // Data that does not fit the model input: both shapes.
    fails(
        &run(&[&m, "--data", &data_arg("digits_28.npz"), "--bits", "6"]),
        &["[1,28,28]", "[1,30]", "digits_28.npz"],
    );
    fails(
        &run(&[
            &model_arg("cnn_torch_rgb_28"),
            "--data",
            &data_arg("digits_28.npz"),
            "--mode",
            "float",
        ]),
        &["[1,28,28]", "[1,3,28,28]"],
    );
    // Bad bit widths.
    for (flag, value) in [
        ("--bits", "9"),
        ("--bits", "1"),
        ("--bits", "six"),
        ("--weight-bits", "12"),
        ("--activation-bits", "0"),
    ] {
        let o = if flag == "--bits" {
            run(&[&m, "--data", &bc, flag, value])
        } else {
            run(&[&m, "--data", &bc, "--bits", "6", flag, value])
        };
        fails(&o, &[flag]);
    }
    fails(&run(&[&m, "--data", &bc, "--bits", "9"]), &["2..=8"]);
    // --rounding-bits 0.
    fails(
        &run(&[&m, "--data", &bc, "--bits", "6", "--rounding-bits", "0"]),
        &["--rounding-bits", "at least 1"],
    );
    // Clear mode without --bits; overrides without --bits.
    fails(&run(&[&m, "--data", &bc, "--mode", "clear"]), &["--bits"]);
    fails(
        &run(&[&m, "--data", &bc, "--weight-bits", "4"]),
        &["--bits"],
    );
    // Bad limits.
    fails(&run(&[&m, "--data", &bc, "--limit", "0"]), &["--limit"]);
    fails(
        &run(&[&m, "--data", &bc, "--bits", "6", "--calib-limit", "0"]),
        &["--calib-limit"],
    );
    // A data file that is not there.
    fails(
        &run(&[&m, "--data", "/nonexistent/d.npz"]),
        &["/nonexistent/d.npz"],
    );
}

/// Writes an npz with only a test split (no train split to calibrate on).
fn test_only_npz(dir: &Path, n: usize, features: usize) -> PathBuf {
    let p = dir.join("test_only.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    let x = ArrayD::<f32>::from_shape_fn(vec![n, features], |d| {
        ((d[0] * 7 + d[1] * 3) % 11) as f32 / 5.0 - 1.0
    });
    let y = Array1::<i64>::from_shape_fn(n, |i| (i % 2) as i64);
    w.add_array("x_test", &x).unwrap();
    w.add_array("y_test", &y).unwrap();
    w.finish().unwrap();
    p
}

#[test]
fn eval_without_calibration_data_says_to_pass_calib() {
    let dir = tempfile::tempdir().unwrap();
    let d = test_only_npz(dir.path(), 10, 30);
    let d = d.display().to_string();
    let m = model_arg("mlp_torch");
    fails(
        &fhec(["eval", &m, "--data", &d, "--bits", "6"]),
        &[
            "--calib",
            "pass 'quantize'",
            "node 'input'",
            "no calibration range",
        ],
    );
    // With --calib it works.
    let bc = data_arg("breast_cancer.npz");
    let out = ok(&fhec([
        "eval", &m, "--data", &d, "--bits", "6", "--calib", &bc, "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(u(&v, "samples"), 10);
    // A QAT model needs no calibration data.
    ok(&fhec([
        "eval",
        &model_arg("mlp_brevitas"),
        "--data",
        &d,
        "--bits",
        "4",
    ]));
}

// --- a model the quantiser cannot handle: the sum of two runtime branches -----------------

fn weights(name: &str, rows: usize, cols: usize, seed: usize) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![rows as i64, cols as i64],
        data_type: 1,
        float_data: (0..rows * cols)
            .map(|i| (((i * 13 + seed * 5) % 17) as f32 - 8.0) / 8.0)
            .collect(),
        ..Default::default()
    }
}

/// `x[1,4] -> relu(x W1) + relu(x W2)`: a residual-style sum of two runtime tensors.
/// `relu(x @ w1) <op> relu(x @ w2)`, both operands runtime tensors.
fn two_branch_model(dir: &Path, op: &str) -> PathBuf {
    let graph = pb::GraphProto {
        name: "two_branches".into(),
        node: vec![
            node("mm1", "MatMul", &["x", "w1"], &["a"]),
            node("relu1", "Relu", &["a"], &["ra"]),
            node("mm2", "MatMul", &["x", "w2"], &["b"]),
            node("relu2", "Relu", &["b"], &["rb"]),
            node("combine", op, &["ra", "rb"], &["y"]),
        ],
        initializer: vec![weights("w1", 4, 2, 1), weights("w2", 4, 2, 2)],
        input: vec![value_info("x", FLOAT, &[1, 4])],
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
    let p = dir.join(format!("{op}.onnx"));
    std::fs::write(&p, model.encode_to_vec()).unwrap();
    p
}

#[test]
fn quantisation_failure_names_pass_node_and_op() {
    let dir = tempfile::tempdir().unwrap();
    let calib = test_only_npz(dir.path(), 12, 4).display().to_string();
    // The sum of two branches (a residual connection) quantises; their product does not,
    // and says where and why.
    let sum = two_branch_model(dir.path(), "Add").display().to_string();
    ok(&fhec([
        "eval", &sum, "--data", &calib, "--bits", "6", "--calib", &calib,
    ]));
    let m = two_branch_model(dir.path(), "Mul").display().to_string();
    ok(&fhec(["eval", &m, "--data", &calib, "--mode", "float"]));
    let err = fails(
        &fhec([
            "eval", &m, "--data", &calib, "--bits", "6", "--calib", &calib,
        ]),
        &[
            "cannot compile",
            "pass 'quantize'",
            "node 'combine'",
            "(Mul)",
        ],
    );
    assert!(err.contains("two runtime tensors"), "{err}");
}
