//! End to end through the binary: compile → keygen → encrypt → run → decrypt on a small MLP,
//! against the clear quantised model; mismatched and corrupted artifacts; eval and predict in
//! simulate and fhe modes.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, fhec, fixtures, ok, SMALL_EXACT};
use ndarray::ArrayD;

fn model() -> String {
    fixtures()
        .join("mlp_torch_pruned.onnx")
        .display()
        .to_string()
}

fn data() -> String {
    fixtures()
        .join("data/breast_cancer.npz")
        .display()
        .to_string()
}

fn sample() -> String {
    fixtures()
        .join("data/breast_cancer_sample.npy")
        .display()
        .to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Compiles the pruned MLP with the small exact options plus `extra`; returns the circuit
/// path and the parsed `--json` report.
fn compile(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let out = dir.join(name);
    let mut args = vec![
        "compile".to_string(),
        model(),
        "--calib".into(),
        data(),
        "-o".into(),
        s(&out),
        "--json".into(),
    ];
    args.extend(SMALL_EXACT.iter().chain(extra).map(|a| a.to_string()));
    let json: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).expect("compile --json");
    (out, json)
}

fn keygen(dir: &Path, circuit: &Path, tag: &str) -> (PathBuf, PathBuf) {
    let (c, sk) = (
        dir.join(format!("{tag}.client.key")),
        dir.join(format!("{tag}.server.key")),
    );
    ok(&fhec([
        "keygen",
        &s(circuit),
        "--client-key",
        &s(&c),
        "--server-key",
        &s(&sk),
    ]));
    (c, sk)
}

fn read_npy(p: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(p).expect("npy")
}

#[test]
fn encrypted_pipeline_matches_clear_and_refuses_mixed_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (circuit, json) = compile(d, "m.fhec", &[]);
    for key in [
        "pbs_count",
        "max_accumulator_bits",
        "tlu_precision_bits",
        "params",
        "p_error_per_pbs",
        "global_p_error",
        "predicted_latency_s",
    ] {
        assert!(
            json.get(key).is_some(),
            "compile --json lacks {key}: {json}"
        );
    }
    assert!(json["pbs_count"].as_u64().unwrap() > 0);
    assert!(json["p_error_per_pbs"].as_f64().unwrap() <= 2f64.powi(-40) * 1.0001);

    let (ck, sk) = keygen(d, &circuit, "a");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ck).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "client key must be owner-only");
    }
    let (x_ct, y_ct, y) = (d.join("x.ct"), d.join("y.ct"), d.join("y.npy"));
    ok(&fhec([
        "encrypt",
        &s(&circuit),
        "--client-key",
        &s(&ck),
        "--input",
        &sample(),
        "-o",
        &s(&x_ct),
    ]));
    ok(&fhec([
        "run",
        &s(&circuit),
        "--server-key",
        &s(&sk),
        "--input",
        &s(&x_ct),
        "-o",
        &s(&y_ct),
    ]));
    ok(&fhec([
        "decrypt",
        &s(&circuit),
        "--client-key",
        &s(&ck),
        "--input",
        &s(&y_ct),
        "-o",
        &s(&y),
    ]));
    #[cfg(unix)]
    {
        // Decrypted results are as private as the client key.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&y).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "decrypted output mode {mode:o}");
    }
    let clear = d.join("clear.npy");
    ok(&fhec([
        "predict",
        &model(),
        "--mode",
        "clear",
        "--calib",
        &data(),
        "--input",
        &sample(),
        "-o",
        &s(&clear),
        SMALL_EXACT[0],
        SMALL_EXACT[1],
        SMALL_EXACT[2],
        SMALL_EXACT[3],
        SMALL_EXACT[4],
        SMALL_EXACT[5],
    ]));
    assert_eq!(
        read_npy(&y),
        read_npy(&clear),
        "FHE output differs from clear"
    );

    // Another client key of the same circuit cannot decrypt these ciphertexts.
    let (ck2, _) = keygen(d, &circuit, "b");
    let other = d.join("other.npy");
    fails(
        &fhec([
            "decrypt",
            &s(&circuit),
            "--client-key",
            &s(&ck2),
            "--input",
            &s(&y_ct),
            "-o",
            &s(&other),
        ]),
        &["key"],
    );
    assert!(
        !other.exists(),
        "a failed decrypt must not leave an output file"
    );

    // A server key made for another circuit (other parameters) is refused.
    let (circuit2, json2) = compile(d, "m2.fhec", &["--p-error", "0.01"]);
    assert_ne!(json["fingerprint"], json2["fingerprint"]);
    let (_, sk2) = keygen(d, &circuit2, "c");
    fails(
        &fhec([
            "run",
            &s(&circuit),
            "--server-key",
            &s(&sk2),
            "--input",
            &s(&x_ct),
            "-o",
            &s(&d.join("z.ct")),
        ]),
        &["server key", "other parameters"],
    );

    // A bit flip anywhere in a ciphertext file is caught before use.
    let mut bytes = std::fs::read(&y_ct).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let flipped = d.join("flipped.ct");
    std::fs::write(&flipped, &bytes).unwrap();
    fails(
        &fhec([
            "decrypt",
            &s(&circuit),
            "--client-key",
            &s(&ck),
            "--input",
            &s(&flipped),
            "-o",
            &s(&other),
        ]),
        &["flipped.ct", "corrupted"],
    );

    // The wrong kind of file.
    fails(
        &fhec([
            "decrypt",
            &s(&circuit),
            "--client-key",
            &s(&sk),
            "--input",
            &s(&y_ct),
            "-o",
            &s(&other),
        ]),
        &["expected a client (secret) key"],
    );
    fails(
        &fhec([
            "run",
            &s(&ck),
            "--server-key",
            &s(&sk),
            "--input",
            &s(&x_ct),
            "-o",
            &s(&d.join("z.ct")),
        ]),
        &["expected a compiled circuit"],
    );
    // An output directory that does not exist: clear error before any work.
    fails(
        &fhec([
            "encrypt",
            &s(&circuit),
            "--client-key",
            &s(&ck),
            "--input",
            &sample(),
            "-o",
            &s(&d.join("missing/x.ct")),
        ]),
        &["does not exist"],
    );
}

#[test]
fn eval_simulate_and_fhe_modes_report_accuracy_and_timings() {
    let (model, data) = (model(), data());
    let sim = ok(&fhec([
        "eval",
        &model,
        "--data",
        &data,
        "--bits",
        "4",
        "--rounding-bits",
        "4",
        "--mode",
        "simulate",
        "--p-error",
        "0.008",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&sim).unwrap();
    assert_eq!(v["mode"], "simulate");
    let acc = v["accuracy"].as_f64().unwrap();
    let clear = v["clear_accuracy"].as_f64().unwrap();
    assert!(
        (acc - clear).abs() < 0.1,
        "simulated accuracy {acc} far from clear {clear}"
    );
    assert!(v["circuit"]["pbs_count"].as_u64().unwrap() > 0);

    let mut args = vec![
        "eval", &model, "--data", &data, "--mode", "fhe", "--limit", "2", "--json",
    ];
    args.extend(SMALL_EXACT);
    let fhe = ok(&fhec(&args));
    let v: serde_json::Value = serde_json::from_str(&fhe).unwrap();
    assert_eq!(v["samples"], 2);
    // At the default 2^-40 per bootstrap, encrypted predictions equal the clear ones.
    assert_eq!(v["clear_agreement"].as_f64(), Some(1.0), "{fhe}");
    for k in ["keygen_s", "encrypt_s", "run_s", "decrypt_s"] {
        assert!(v["fhe_timings"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
}

#[test]
fn predict_fhe_writes_the_clear_result_with_timings() {
    let dir = tempfile::tempdir().unwrap();
    let (fhe_out, clear_out) = (dir.path().join("f.npy"), dir.path().join("c.npy"));
    let mut common = vec![
        model(),
        "--calib".into(),
        data(),
        "--input".into(),
        sample(),
    ];
    common.extend(SMALL_EXACT.map(String::from));
    let mut args = vec!["predict".to_string()];
    args.extend(common.iter().cloned());
    args.extend(["--mode", "fhe", "--json", "-o"].map(String::from));
    args.push(s(&fhe_out));
    let v: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).unwrap();
    for k in ["keygen_s", "encrypt_s", "run_s", "decrypt_s"] {
        assert!(v[k].as_f64().is_some(), "predict --json lacks {k}: {v}");
    }
    let mut args = vec!["predict".to_string()];
    args.extend(common.iter().cloned());
    args.extend(["--mode", "clear", "-o"].map(String::from));
    args.push(s(&clear_out));
    ok(&fhec(&args));
    assert_eq!(read_npy(&fhe_out), read_npy(&clear_out));
}
