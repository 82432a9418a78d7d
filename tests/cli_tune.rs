//! `fhec tune` end to end on the ECG stand-in (`tests/fixtures/ecg/`, a 75 %-sparse Keras
//! MLP with a val split; the fixture itself is checked first): the winner is the cheapest candidate meeting the target, its
//! reported test accuracies equal `fhec eval`'s at that configuration, the circuit it writes
//! loads, and the search resumes and refuses what it should.

mod common;

use std::path::Path;

use common::{fails, fhec, fixtures, import_fixture, ok, reference, sample};
use fhec_ir::Op;
use serde_json::Value;

fn fixture(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

const MODEL: &str = "ecg/mlp_keras_ecg.onnx";
const DATA: &str = "data/ecg_synthetic.npz";

/// A small grid: 3 bit widths x 2 roundings x 2 rates x 3 failure probabilities.
fn tune(out: &Path, goal: &[&str], extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "tune",
        &fixture(MODEL),
        "--data",
        &fixture(DATA),
        "--bits",
        "3,4,5",
        "--rounding-bits",
        "5,6",
        "--prune-rate",
        "0,0.25",
        "--out",
        &s(out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(goal.iter().chain(extra).map(|x| x.to_string()));
    a
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_ecg_fixture_is_the_keras_model_at_75_percent_sparsity() {
    let model = import_fixture("ecg/mlp_keras_ecg");
    let (x, y) = reference("mlp_keras_ecg");
    for i in 0..x.shape()[0] {
        let got = fhec_ir::interp::run(&model.graph, &[sample(&x, i)]).expect("float run");
        let diff = got[0]
            .iter()
            .zip(sample(&y, i).iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "sample {i}: max |fhec - keras| = {diff}");
    }
    // Every weight matrix is 75 % zeros (the fixture script's magnitude pruning).
    let g = &model.graph;
    let mut layers = 0;
    for id in g.node_ids() {
        if !matches!(g.node(id).op, Op::MatMul) {
            continue;
        }
        let t = g
            .const_value(g.node_inputs(id)[1])
            .expect("MatMul with constant weights");
        let zeros = t.iter().filter(|&&v| v == 0.0).count() as f64 / t.len() as f64;
        assert!((zeros - 0.75).abs() < 0.01, "{zeros}");
        layers += 1;
    }
    assert_eq!(layers, 3);
}

#[test]
fn the_winner_is_the_cheapest_meeting_the_target_and_eval_reproduces_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let r = json(&ok(&fhec(tune(
        &out,
        &["--target-accuracy", "0.92"],
        &["--json", "--xlsx"],
    ))));
    for key in [
        "accuracy",
        "float_accuracy",
        "predicted_latency_s",
        "bits",
        "rounding_bits",
        "p_error",
        "prune_rate",
        "circuit",
        "candidates",
    ] {
        assert!(
            r.get(key).is_some_and(|v| !v.is_null()),
            "{key} missing: {r}"
        );
    }
    let candidates = r["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 36);
    let latency = f(&r["predicted_latency_s"]);
    assert!(f(&r["validation_accuracy"]) >= 0.92);
    // Nothing cheaper meets the target, and everything cheaper was measured.
    for c in candidates {
        if let Some(l) = c["predicted_latency_s"].as_f64() {
            if l < latency {
                let status = c["status"].as_str().unwrap();
                assert!(
                    matches!(
                        status,
                        "clear_below_target" | "half_below_target" | "below_target" | "error"
                    ),
                    "a cheaper candidate {c} has status {status}"
                );
                if let Some(a) = c["val_simulate_accuracy"].as_f64() {
                    if c["val_simulated_samples"] == 1000 {
                        assert!(a < 0.92, "{c}");
                    }
                }
            }
        }
    }

    // `fhec eval` at the winner's configuration, calibrated on the same train split.
    let eval = |mode: &str| -> Value {
        let p = r["p_error"].to_string();
        let rate = r["prune_rate"].to_string();
        let bits = r["bits"].to_string();
        let mut a = vec![
            "eval",
            MODEL,
            "--data",
            DATA,
            "--bits",
            &bits,
            "--rounding-bits",
            r["rounding_bits"].as_str().unwrap(),
            "--p-error",
            &p,
            "--mode",
            mode,
            "--json",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        a[1] = fixture(MODEL);
        a[3] = fixture(DATA);
        if rate != "0.0" {
            a.extend(["--prune-rate".to_string(), rate]);
        }
        json(&ok(&fhec(a)))
    };
    assert_eq!(f(&eval("clear")["accuracy"]), f(&r["clear_accuracy"]));
    assert_eq!(f(&eval("simulate")["accuracy"]), f(&r["accuracy"]));

    let circuit = fhec_runtime::Circuit::load(Path::new(r["circuit"].as_str().unwrap()))
        .expect("the winner's circuit loads");
    assert!(circuit.params.sets().iter().all(|p| p.polynomial_size > 0));
    let book = calamine::open_workbook_auto(out.join("tune.xlsx")).unwrap();
    use calamine::Reader;
    assert_eq!(book.sheet_names(), ["candidates", "pareto front"]);
    // The Pareto front is sorted by latency with rising accuracy.
    let front = r["pareto_front"].as_array().unwrap();
    assert!(!front.is_empty());
    for w in front.windows(2) {
        assert!(f(&w[0]["predicted_latency_s"]) <= f(&w[1]["predicted_latency_s"]));
        assert!(f(&w[0]["val_simulate_accuracy"]) < f(&w[1]["val_simulate_accuracy"]));
    }
}

#[test]
fn a_search_resumes_where_it_stopped_and_refuses_another_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let goal = ["--max-drop", "2"];
    let first = json(&ok(&fhec(tune(
        &out,
        &goal,
        &["--json", "--stop-at-winner"],
    ))));
    let unevaluated = |r: &Value| {
        r["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "not_evaluated")
            .count()
    };
    assert!(
        unevaluated(&first) > 0,
        "stopping at the winner leaves the dearer ones"
    );
    fails(
        &fhec(tune(&out, &goal, &[])),
        &["already holds a tune search", "--resume"],
    );
    let second = json(&ok(&fhec(tune(&out, &goal, &["--json", "--resume"]))));
    assert_eq!(unevaluated(&second), 0);
    // Same winner; every record the first run settled is kept as it was.
    for k in ["bits", "rounding_bits", "p_error", "prune_rate", "accuracy"] {
        assert_eq!(first[k], second[k], "{k}");
    }
    let settled: Vec<&Value> = first["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "not_evaluated")
        .collect();
    for c in settled {
        assert!(second["candidates"].as_array().unwrap().contains(c), "{c}");
    }
    fails(
        &fhec(tune(&out, &["--max-drop", "3"], &["--resume"])),
        &["another setup", "--overwrite"],
    );
    let none = ok(&fhec(tune(
        &out,
        &["--target-accuracy", "0.999"],
        &["--overwrite"],
    )));
    assert!(
        none.contains("no candidate reached the target 0.9990"),
        "{none}"
    );
    fails(
        &fhec([
            "tune",
            &fixture(MODEL),
            "--data",
            &fixture(DATA),
            "--out",
            &s(&out),
        ]),
        &["--target-accuracy", "--max-drop"],
    );
}

#[test]
fn rounding_bits_auto_picks_the_width_tune_would_at_that_failure_probability() {
    let data = fixture(DATA);
    let r = json(&ok(&fhec([
        "eval",
        &fixture(MODEL),
        "--data",
        &data,
        "--bits",
        "4",
        "--rounding-bits",
        "auto:2",
        "--p-error",
        "0.01",
        "--mode",
        "clear",
        "--json",
    ])));
    let chosen = r["quantization"]["rounding_bits"]
        .as_u64()
        .expect("a width");
    // The same search by `tune` over every width at 4 bits, unpruned: at p_error 0.01 the
    // chosen width meets the target and every cheaper width was rejected.
    let dir = tempfile::tempdir().unwrap();
    let t = json(&ok(&fhec([
        "tune",
        &fixture(MODEL),
        "--data",
        &data,
        "--bits",
        "4",
        "--rounding-bits",
        "2,3,4,5,6,7,8,none",
        "--prune-rate",
        "0",
        "--max-drop",
        "2",
        "--json",
        "--out",
        &s(&dir.path().join("t")),
    ])));
    let at_p: Vec<&Value> = t["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["p_error"] == 0.01)
        .collect();
    let mine = at_p
        .iter()
        .find(|c| c["rounding_bits"].as_str().and_then(|r| r.parse().ok()) == Some(chosen))
        .expect("the chosen width among tune's candidates");
    assert_eq!(mine["status"], "meets_target", "{mine}");
    for c in &at_p {
        // Widths that do not compile (no parameters) have no latency.
        let Some(l) = c["predicted_latency_s"].as_f64() else {
            assert_eq!(c["status"], "error", "{c}");
            continue;
        };
        if l < f(&mine["predicted_latency_s"]) {
            assert_ne!(
                c["status"], "meets_target",
                "{c} is cheaper and meets the target"
            );
        }
    }
    // Without labelled data to choose on, or where nothing chooses, it is refused.
    fails(
        &fhec([
            "compile",
            &fixture(MODEL),
            "--bits",
            "4",
            "--rounding-bits",
            "auto",
            "-o",
            &s(&dir.path().join("m.fhec")),
        ]),
        &["--rounding-bits auto needs labelled data", "--calib"],
    );
    fails(
        &fhec([
            "predict",
            &fixture("mlp_torch.onnx"),
            "--bits",
            "4",
            "--rounding-bits",
            "auto",
            "--calib",
            &fixture("data/breast_cancer.npz"),
            "--input",
            &fixture("data/breast_cancer_sample.npy"),
            "--mode",
            "clear",
            "-o",
            &s(&dir.path().join("p.npy")),
        ]),
        &["--rounding-bits auto is chosen on labelled data by `fhec eval` and `fhec compile`"],
    );
    assert!(!dir.path().join("m.fhec").exists());
}

#[test]
fn compile_chooses_auto_rounding_on_a_calibration_file_with_only_a_train_split() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("train_only.npz");
    {
        let mut r =
            ndarray_npy::NpzReader::new(std::fs::File::open(fixture(DATA)).unwrap()).unwrap();
        let x: ndarray::Array2<f32> = r.by_name("x_train").unwrap();
        let y: ndarray::Array1<i64> = r.by_name("y_train").unwrap();
        let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&npz).unwrap());
        w.add_array("x_train", &x).unwrap();
        w.add_array("y_train", &y).unwrap();
        w.finish().unwrap();
    }
    let circuit = dir.path().join("m.fhec");
    let o = fhec([
        "compile",
        &fixture(MODEL),
        "--calib",
        &s(&npz),
        "--bits",
        "4",
        "--rounding-bits",
        "auto:2",
        "--p-error",
        "0.01",
        "-o",
        &s(&circuit),
        "--json",
    ]);
    let r = json(&ok(&o));
    let chosen = r["quantization"]["rounding_bits"]
        .as_u64()
        .expect("a width");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("rounding to {chosen} bits"))
            && err.contains("held out of calibration"),
        "{err}"
    );
    assert!(circuit.is_file());
}
