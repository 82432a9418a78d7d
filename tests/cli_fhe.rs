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
    let opts: Vec<&str> = SMALL_EXACT.iter().chain(extra).copied().collect();
    let (out, _, json) = compile_with(dir, name, &opts);
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

/// `fhec encrypt|run|decrypt CIRCUIT --client-key|--server-key KEY --input IN -o OUT`.
fn step(command: &str, circuit: &str, key: &str, input: &str, out: &str) -> std::process::Output {
    let key_flag = if command == "run" {
        "--server-key"
    } else {
        "--client-key"
    };
    fhec([command, circuit, key_flag, key, "--input", input, "-o", out])
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
    ok(&step(
        "encrypt",
        &s(&circuit),
        &s(&ck),
        &sample(),
        &s(&x_ct),
    ));
    ok(&step("run", &s(&circuit), &s(&sk), &s(&x_ct), &s(&y_ct)));
    ok(&step("decrypt", &s(&circuit), &s(&ck), &s(&y_ct), &s(&y)));
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
        &step("decrypt", &s(&circuit), &s(&ck2), &s(&y_ct), &s(&other)),
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
        &step(
            "run",
            &s(&circuit),
            &s(&sk2),
            &s(&x_ct),
            &s(&d.join("z.ct")),
        ),
        &["server key", "other parameters"],
    );

    // A bit flip anywhere in a ciphertext file is caught before use.
    let mut bytes = std::fs::read(&y_ct).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let flipped = d.join("flipped.ct");
    std::fs::write(&flipped, &bytes).unwrap();
    fails(
        &step("decrypt", &s(&circuit), &s(&ck), &s(&flipped), &s(&other)),
        &["flipped.ct", "corrupted"],
    );

    // The wrong kind of file.
    fails(
        &step("decrypt", &s(&circuit), &s(&sk), &s(&y_ct), &s(&other)),
        &["expected a client (secret) key"],
    );
    fails(
        &step("run", &s(&ck), &s(&sk), &s(&x_ct), &s(&d.join("z.ct"))),
        &["expected a compiled circuit"],
    );
    // An output directory that does not exist: clear error before any work.
    fails(
        &step(
            "encrypt",
            &s(&circuit),
            &s(&ck),
            &sample(),
            &s(&d.join("missing/x.ct")),
        ),
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

#[test]
fn per_channel_weight_scales_on_the_last_layer_survive_encryption() {
    // Brevitas QAT with one weight scale per output neuron, the last layer included: its
    // outputs are dequantised on the client with a scale per channel (no table lookup).
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures()
        .join("mlp_brevitas_perchannel.onnx")
        .display()
        .to_string();
    let (fhe_out, clear_out) = (dir.path().join("f.npy"), dir.path().join("c.npy"));
    let circuit = dir.path().join("m.fhec");
    let mut args = vec![
        "compile".to_string(),
        model.clone(),
        "--calib".into(),
        data(),
    ];
    args.extend(SMALL_EXACT.map(String::from));
    args.extend(["-o".to_string(), s(&circuit)]);
    ok(&fhec(&args));
    let loaded = Circuit::load(&circuit).unwrap();
    let scales = &loaded.program.outputs[0].channel_scales;
    assert_eq!(scales.len(), 2, "{:?}", loaded.program.outputs[0]);
    assert_ne!(scales[0], scales[1]);
    for (mode, out) in [("fhe", &fhe_out), ("clear", &clear_out)] {
        let mut args = vec![
            "predict".to_string(),
            model.clone(),
            "--calib".into(),
            data(),
        ];
        args.extend(["--input".to_string(), sample()]);
        args.extend(SMALL_EXACT.map(String::from));
        args.extend(["--mode", mode, "-o"].map(String::from));
        args.push(s(out));
        ok(&fhec(&args));
    }
    assert_eq!(read_npy(&fhe_out), read_npy(&clear_out));
    // The float model's logits, within the quantisation error of 3-bit rounding.
    let float_out = dir.path().join("float.npy");
    ok(&fhec([
        "predict",
        &model,
        "--input",
        &sample(),
        "--mode",
        "float",
        "-o",
        &s(&float_out),
    ]));
    let (want, got) = (read_npy(&float_out), read_npy(&clear_out));
    let span = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in want.iter().zip(got.iter()) {
        assert!((a - b).abs() <= 0.5 * span, "float {want} vs clear {got}");
    }
}

// --- the default (approximate) rounding, the noise trace, simulation, --global-p-error ------

/// The embedding example (`runtime/examples/embed.rs`), compiled into this test so that its
/// `infer` runs on a circuit `fhec compile` wrote (its `main` only parses arguments).
#[allow(dead_code)]
#[path = "../runtime/examples/embed.rs"]
mod embed;

use common::interval::{output_bounds, Iv};
use common::{argmax, breast_cancer_test};
use fhec_runtime::circuit::Instruction;
use fhec_runtime::Circuit;

/// The small configuration with the DEFAULT rounding mode (approximate): 3 bits, accumulators
/// (up to 9 bits here) rounded to their top 3 bits before each lookup.
const SMALL_APPROX: [&str; 4] = ["--bits", "3", "--rounding-bits", "3"];

/// `compile` with `opts` instead of the exact options; returns the circuit path, the loaded
/// circuit and the `--json` report.
fn compile_with(dir: &Path, name: &str, opts: &[&str]) -> (PathBuf, Circuit, serde_json::Value) {
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
    args.extend(opts.iter().map(|a| a.to_string()));
    let json: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).expect("compile --json");
    let circuit = Circuit::load(&out).expect("load the compiled circuit");
    (out, circuit, json)
}

/// Writes the first `k` test samples as one `[k, 30]` batch.
fn write_batch(dir: &Path, name: &str, k: usize) -> (PathBuf, ndarray::Array2<f32>, Vec<i64>) {
    let (x, y) = breast_cancer_test(k);
    let p = dir.join(name);
    ndarray_npy::write_npy(&p, &x).unwrap();
    (p, x, y)
}

/// `predict --mode clear` with `opts` on `input`; returns the written output.
fn predict_clear(dir: &Path, input: &Path, opts: &[&str], tag: &str) -> ArrayD<f32> {
    let out = dir.join(format!("{tag}.clear.npy"));
    let mut args = vec![
        "predict".to_string(),
        model(),
        "--mode".into(),
        "clear".into(),
        "--calib".into(),
        data(),
        "--input".into(),
        s(input),
        "-o".into(),
        s(&out),
    ];
    args.extend(opts.iter().map(|a| a.to_string()));
    ok(&fhec(&args));
    read_npy(&out)
}

/// The integers behind dequantised outputs of the circuit's first output: each value must be
/// `scale * (q - zero_point)` for an integer `q` (what decryption dequantises).
fn output_integers(circuit: &Circuit, y: ndarray::ArrayViewD<f32>) -> Vec<i64> {
    let spec = &circuit.program.outputs[0];
    y.iter()
        .map(|&v| {
            let q = (v / spec.scale).round() as i64 + spec.zero_point;
            assert_eq!(
                spec.scale * (q - spec.zero_point) as f32,
                v,
                "{v} is not a dequantised output integer"
            );
            q
        })
        .collect()
}

/// Sample `i` of a `[k, F]` batch as the circuit's `[1, F]` input.
fn one(x: &ndarray::Array2<f32>, i: usize) -> ArrayD<f32> {
    x.row(i).insert_axis(ndarray::Axis(0)).to_owned().into_dyn()
}

/// The `(precision, shift, exact)` of every lookup of a (max-pool-free) circuit, in order,
/// with its instruction index and the number of elements it looks up.
fn lookups(circuit: &Circuit) -> Vec<(usize, u32, u32, bool, usize)> {
    let p = &circuit.program;
    p.instructions
        .iter()
        .enumerate()
        .filter_map(|(i, ins)| match ins {
            Instruction::Tlu { input, lut } => Some((
                i,
                lut.precision,
                lut.shift(),
                lut.rounding.is_some_and(|r| r.is_exact()),
                p.values[*input].len(),
            )),
            Instruction::MaxPool { .. } => panic!("the MLP has no max pooling"),
            _ => None,
        })
        .collect()
}

#[test]
fn default_approximate_rounding_stays_within_one_entry_per_lookup_and_traces_against_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (circuit_path, circuit, json) = compile_with(d, "a.fhec", &SMALL_APPROX);
    assert_eq!(
        json["quantization"]["rounding_mode"], "approximate",
        "the default rounding mode"
    );
    assert!(circuit.postprocessing.is_empty());
    let luts = lookups(&circuit);
    assert!(
        luts.iter()
            .any(|&(_, _, shift, exact, _)| shift > 0 && !exact),
        "no lookup rounds approximately: the test would not exercise approximate rounding"
    );
    let (ck, sk) = keygen(d, &circuit_path, "a");

    // A batch: compile → keygen → encrypt → run → decrypt, against predict --mode clear.
    let k = 4;
    let (batch, x, _) = write_batch(d, "x4.npy", k);
    let (x_ct, y_ct, y) = (d.join("x.ct"), d.join("y.ct"), d.join("y.npy"));
    ok(&step(
        "encrypt",
        &s(&circuit_path),
        &s(&ck),
        &s(&batch),
        &s(&x_ct),
    ));
    ok(&step(
        "run",
        &s(&circuit_path),
        &s(&sk),
        &s(&x_ct),
        &s(&y_ct),
    ));
    ok(&step(
        "decrypt",
        &s(&circuit_path),
        &s(&ck),
        &s(&y_ct),
        &s(&y),
    ));
    let fhe = read_npy(&y);
    let clear = predict_clear(d, &batch, &SMALL_APPROX, "x4");
    assert_eq!(fhe.shape(), &[k, 2]);
    assert_eq!(clear.shape(), &[k, 2]);
    // The same samples simulated REPEATS times each (eval draws each row's noise from its own
    // seed): how often the simulated argmax leaves the clear one.
    const REPEATS: usize = 1000;
    let (xs, ys) = breast_cancer_test(k);
    let rep: Vec<usize> = (0..k * REPEATS).map(|r| r % k).collect();
    let csv = d.join("repeated.csv");
    common::write_csv(
        &csv,
        xs.select(ndarray::Axis(0), &rep).view(),
        &rep.iter().map(|&i| ys[i]).collect::<Vec<_>>(),
    );
    let mut args = vec![
        "eval".to_string(),
        model(),
        "--data".into(),
        s(&csv),
        "--calib".into(),
        data(),
        "--mode".into(),
        "simulate".into(),
        "--json".into(),
    ];
    args.extend(SMALL_APPROX.iter().map(|a| a.to_string()));
    let sim: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).unwrap();
    let sim_preds: Vec<u64> = sim["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(sim_preds.len(), k * REPEATS);
    let clear_argmax: Vec<usize> = (0..k)
        .map(|i| {
            argmax(
                clear
                    .index_axis(ndarray::Axis(0), i)
                    .into_dimensionality()
                    .unwrap(),
            )
        })
        .collect();
    let mut sim_flips = vec![0; k];
    for (r, &p) in rep.iter().zip(&sim_preds) {
        if p as usize != clear_argmax[*r] {
            sim_flips[*r] += 1;
        }
    }
    let mut confident = 0;
    for (i, &flips) in sim_flips.iter().enumerate() {
        let bounds = output_bounds(&circuit, &[one(&x, i)]).unwrap();
        let bounds: Vec<Iv> = bounds[0].iter().copied().collect();
        let q_fhe = output_integers(&circuit, fhe.index_axis(ndarray::Axis(0), i));
        let q_clear = output_integers(&circuit, clear.index_axis(ndarray::Axis(0), i));
        for (j, b) in bounds.iter().enumerate() {
            assert!(
                b.contains(q_clear[j]),
                "sample {i}: clear {q_clear:?} outside {b:?}"
            );
            assert!(
                b.contains(q_fhe[j]),
                "sample {i}, output {j}: decrypted {} outside {b:?}, the range one-entry \
                 approximate lookups allow (clear {})",
                q_fhe[j],
                q_clear[j]
            );
        }
        let (a_fhe, a_clear) = (
            argmax(
                fhe.index_axis(ndarray::Axis(0), i)
                    .into_dimensionality()
                    .unwrap(),
            ),
            argmax(
                clear
                    .index_axis(ndarray::Axis(0), i)
                    .into_dimensionality()
                    .unwrap(),
            ),
        );
        // The worst case allows any argmax here, so the argmax is checked where the noise
        // simulation (which models approximate rounding, README) never moved it in REPEATS
        // draws. A sample whose real flip rate is q passes that filter with probability
        // (1 - q)^REPEATS, so a false alarm has probability at most 1 / (e * REPEATS) per
        // sample (under 1.5e-3 for the whole test); which samples pass is itself fixed, the
        // simulation's seeds are.
        if flips == 0 {
            confident += 1;
            assert_eq!(a_fhe, a_clear, "sample {i}: FHE argmax differs from clear");
        }
    }
    assert!(
        confident >= 1,
        "the simulation moved the argmax of {} of {k} samples: {sim_flips:?}",
        k - confident
    );

    // The noise trace of sample 0 (run --debug-client-key), against the clear execution.
    let (single, _, _) = write_batch(d, "x1.npy", 1);
    let (x1, y1_ct, y1) = (d.join("x1.ct"), d.join("y1.ct"), d.join("y1.npy"));
    ok(&step(
        "encrypt",
        &s(&circuit_path),
        &s(&ck),
        &s(&single),
        &s(&x1),
    ));
    let traced = |json: bool, out: &Path| {
        let mut args = vec![
            "run".to_string(),
            s(&circuit_path),
            "--server-key".into(),
            s(&sk),
            "--input".into(),
            s(&x1),
            "-o".into(),
            s(out),
            "--debug-client-key".into(),
            s(&ck),
        ];
        if json {
            args.push("--json".into());
        }
        let o = fhec(&args);
        let text = ok(&o);
        assert!(
            common::stderr(&o).contains("--debug-client-key decrypts intermediate values"),
            "{}",
            common::stderr(&o)
        );
        text
    };
    let v: serde_json::Value = serde_json::from_str(&traced(true, &y1_ct)).unwrap();
    ok(&step(
        "decrypt",
        &s(&circuit_path),
        &s(&ck),
        &s(&y1_ct),
        &s(&y1),
    ));
    let q_fhe = output_integers(&circuit, read_npy(&y1).view());
    let q_clear = output_integers(&circuit, clear.index_axis(ndarray::Axis(0), 0));
    let bounds = output_bounds(&circuit, &[one(&x, 0)]).unwrap();
    for (b, q) in bounds[0].iter().zip(&q_fhe) {
        assert!(b.contains(*q), "traced run: {q} outside {b:?}");
    }
    let trace = &v["noise_trace"];
    assert_eq!(v["samples"], 1);
    assert_eq!(trace["output_elements"], q_clear.len());
    let differ = q_fhe.iter().zip(&q_clear).filter(|(a, b)| a != b).count();
    assert_eq!(
        trace["output_elements_wrong"], differ,
        "the trace's count of output integers that differ from the clear execution \
         (decrypted {q_fhe:?}, clear {q_clear:?})"
    );
    let rows = trace["lookups"].as_array().unwrap();
    assert_eq!(rows.len(), luts.len(), "one trace row per lookup");
    for (r, &(ins, precision, shift, exact, elements)) in rows.iter().zip(&luts) {
        assert_eq!(r["instruction"], ins, "{r}");
        assert_eq!(r["op"], "Tlu");
        assert_eq!(r["precision"], precision, "{r}");
        assert_eq!(r["shift"], shift, "{r}");
        assert_eq!(r["exact"], exact, "{r}");
        assert_eq!(r["elements"], elements, "{r}");
        let wrong = r["inputs_wrong"].as_u64().unwrap() + r["outputs_wrong"].as_u64().unwrap();
        assert!(wrong <= elements as u64, "{r}");
        // At 2^-40 per bootstrap only approximate rounding reads a neighbouring entry.
        if shift == 0 || exact {
            assert_eq!(r["rotation_out_of_box"], 0, "{r}");
        }
    }
    // Fresh encryptions of the decrypted inputs: the first lookup reads right inputs.
    assert_eq!(rows[0]["inputs_wrong"], 0);
    let lookups_wrong: u64 = rows
        .iter()
        .map(|r| r["outputs_wrong"].as_u64().unwrap())
        .sum();
    if lookups_wrong == 0 {
        assert_eq!(
            q_fhe, q_clear,
            "no lookup went wrong, yet the outputs differ"
        );
    }
    // The text report of a second run. Its counts may differ from the first run's: tfhe-rs
    // picks its FFT algorithm by timing, the FFT's rounding is part of the bootstrap noise, and
    // approximate rounding leaves elements close to a box edge. So the second run is checked
    // against its own decrypted outputs.
    let (y1b_ct, y1b) = (d.join("y1b.ct"), d.join("y1b.npy"));
    let text = traced(false, &y1b_ct);
    ok(&step(
        "decrypt",
        &s(&circuit_path),
        &s(&ck),
        &s(&y1b_ct),
        &s(&y1b),
    ));
    let q_fhe_b = output_integers(&circuit, read_npy(&y1b).view());
    let differ_b = q_fhe_b.iter().zip(&q_clear).filter(|(a, b)| a != b).count();
    assert!(
        text.contains("noise trace (decrypted with the client key"),
        "{text}"
    );
    for &(ins, precision, shift, exact, elements) in &luts {
        let bits = match (shift, exact) {
            (0, _) => format!("{precision}"),
            (s, true) => format!("{precision}+{s}e"),
            (s, false) => format!("{precision}+{s}a"),
        };
        assert!(
            text.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&ins.to_string().as_str())
                    && w.get(1) == Some(&"Tlu")
                    && w.contains(&bits.as_str())
                    && w.contains(&elements.to_string().as_str())
            }),
            "no trace row for instruction {ins} ({bits}, {elements} elements):\n{text}"
        );
    }
    let summary = format!(
        " lookup output(s) decrypted to another value than the clear execution; {differ_b} of {} \
         circuit output integers differ",
        q_clear.len()
    );
    let line = text
        .lines()
        .find(|l| l.contains(&summary))
        .unwrap_or_else(|| panic!("no summary line ending in {summary:?}:\n{text}"));
    let lookups_wrong_b: u64 = line
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("summary line without a count: {line}"));
    if lookups_wrong_b == 0 {
        assert_eq!(
            differ_b, 0,
            "no lookup went wrong, yet the outputs differ: {line}"
        );
    }
}

#[test]
fn embed_example_runs_a_compiled_circuit_like_predict_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (circuit_path, circuit, _) = compile_with(d, "a.fhec", &SMALL_APPROX);
    let (single, x, _) = write_batch(d, "x1.npy", 1);
    let values: Vec<f32> = x.iter().copied().collect();
    let outcome = embed::infer(&circuit_path, &values).expect("the embed example");
    assert_eq!(outcome.names, ["output"]);
    // Its clear run is predict --mode clear's, value for value.
    let clear = predict_clear(d, &single, &SMALL_APPROX, "x1");
    assert_eq!(outcome.clear[0].shape(), &[1, 2]);
    assert_eq!(
        outcome.clear[0].iter().collect::<Vec<_>>(),
        clear.iter().collect::<Vec<_>>()
    );
    // Its encrypted run stays within what approximate rounding allows.
    let bounds = output_bounds(&circuit, &[one(&x, 0)]).unwrap();
    let bounds: Vec<Iv> = bounds[0].iter().copied().collect();
    let q = output_integers(&circuit, outcome.fhe[0].view());
    for (b, v) in bounds.iter().zip(&q) {
        assert!(b.contains(*v), "embed: decrypted {v} outside {b:?}");
    }
}

/// `predict --mode simulate` with `opts` and `--seed seed` on `input`.
fn predict_simulate(dir: &Path, input: &Path, opts: &[&str], seed: u64, tag: &str) -> ArrayD<f32> {
    let out = dir.join(format!("{tag}.sim{seed}.npy"));
    let mut args = vec![
        "predict".to_string(),
        model(),
        "--mode".into(),
        "simulate".into(),
        "--calib".into(),
        data(),
        "--input".into(),
        s(input),
        "--seed".into(),
        seed.to_string(),
        "-o".into(),
        s(&out),
    ];
    args.extend(opts.iter().map(|a| a.to_string()));
    ok(&fhec(&args));
    read_npy(&out)
}

#[test]
fn predict_simulate_is_the_clear_result_at_negligible_failure_and_seeded_noise_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (batch, _, _) = write_batch(d, "x8.npy", 8);
    // Exact rounding at 2^-40 per bootstrap: every lookup reads its clear entry, so the
    // simulation is the clear result, value for value, whatever the seed.
    let clear = predict_clear(d, &batch, &SMALL_EXACT, "exact");
    for seed in [0, 7] {
        assert_eq!(
            predict_simulate(d, &batch, &SMALL_EXACT, seed, "exact"),
            clear,
            "seed {seed}"
        );
    }
    // Approximate rounding at 1% per bootstrap: the simulated noise moves outputs (README:
    // simulate draws the noise the parameters predict); the seed fixes the draw.
    let noisy = [SMALL_APPROX.as_slice(), &["--p-error", "0.01"]].concat();
    let clear = predict_clear(d, &batch, &noisy, "approx");
    let a = predict_simulate(d, &batch, &noisy, 0, "approx");
    let b = predict_simulate(d, &batch, &noisy, 1, "approx");
    assert_eq!(a.shape(), clear.shape());
    assert_ne!(
        a, clear,
        "1% per bootstrap with approximate rounding left every output clear"
    );
    assert_ne!(a, b, "two seeds drew the same noise");
    assert_eq!(
        predict_simulate(d, &batch, &noisy, 0, "again"),
        a,
        "the same seed must draw the same noise"
    );
    // On one sample, predict's seed is eval's seed for sample 0: the same simulated argmax.
    let (one_sample, _, _) = write_batch(d, "x1.npy", 1);
    let p = predict_simulate(d, &one_sample, &noisy, 0, "one");
    let mut args = vec![
        "eval".to_string(),
        model(),
        "--data".into(),
        data(),
        "--mode".into(),
        "simulate".into(),
        "--limit".into(),
        "1".into(),
        "--seed".into(),
        "0".into(),
        "--json".into(),
    ];
    args.extend(noisy.iter().map(|a| a.to_string()));
    let v: serde_json::Value = serde_json::from_str(&ok(&fhec(&args))).unwrap();
    assert_eq!(
        v["predictions"][0].as_u64(),
        Some(argmax(p.iter().copied().collect::<ndarray::Array1<f32>>().view()) as u64),
        "eval {} vs predict {p}",
        v["predictions"]
    );
}

#[test]
fn global_p_error_bounds_the_inference_and_sets_the_per_bootstrap_target() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, default_circuit, default) = compile_with(d, "default.fhec", &SMALL_APPROX);
    assert!(default["p_error_per_pbs"].as_f64().unwrap() <= 2f64.powi(-40) * 1.0001);
    for global in [1e-3, 1e-9] {
        let g = global.to_string();
        let opts = [SMALL_APPROX.as_slice(), &["--global-p-error", &g]].concat();
        let (_, circuit, v) = compile_with(d, &format!("g{g}.fhec"), &opts);
        let n = v["pbs_count"].as_u64().unwrap();
        let per_pbs = v["p_error_per_pbs"].as_f64().unwrap();
        let reported = v["global_p_error"].as_f64().unwrap();
        assert_eq!(n, default["pbs_count"].as_u64().unwrap());
        assert!(
            reported <= global,
            "global p_error {reported} > requested {global}"
        );
        // p_error_per_pbs is the largest failure probability of one bootstrap (lookups with
        // noisier inputs fail more often): the inference fails at least that often and at
        // most as often as if every bootstrap did.
        let at_most = -(n as f64 * (-per_pbs).ln_1p()).exp_m1();
        assert!(
            per_pbs <= reported && reported <= at_most * (1.0 + 1e-9),
            "global {reported} outside [{per_pbs}, 1-(1-{per_pbs})^{n} = {at_most}]"
        );
        // The target split evenly over the bootstraps: (1 - p)^n = 1 - global.
        let split = -((-global).ln_1p() / n as f64).exp_m1();
        assert!(per_pbs <= split, "per bootstrap {per_pbs} > {split}");
        // ... which is what --p-error with that per-bootstrap target compiles to.
        let split_text = format!("{split:e}");
        let per = [SMALL_APPROX.as_slice(), &["--p-error", &split_text]].concat();
        let (_, same, w) = compile_with(d, &format!("p{g}.fhec"), &per);
        assert_eq!(
            same.params, circuit.params,
            "--global-p-error {g} vs --p-error {split}"
        );
        assert_eq!(w["fingerprint"], v["fingerprint"]);
        if global == 1e-3 {
            // A looser target than 2^-40 per bootstrap: other (cheaper) parameters.
            assert_ne!(circuit.params, default_circuit.params);
            assert!(per_pbs > 2f64.powi(-40));
        }
    }
}
