//! Batch files through the binary: `fhec encrypt` of a batch `.npy` writes one ciphertext file
//! of N independently encrypted samples, `fhec run` runs them all, `fhec decrypt` writes
//! `[N, ...]`; the result equals that of each sample run alone (the pruned MLP with exact
//! rounding, where encrypted results equal the clear ones). One sample, with or without its
//! batch axis, keeps the single-sample file of before. Bad batches exit with code 2.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, fhec, fixtures, ok, SMALL_EXACT};
use fhec_runtime::fhe::{Ciphertexts, EncryptedTensors};
use ndarray::{s, ArrayD, Axis, IxDyn};

fn p(p: &Path) -> String {
    p.display().to_string()
}

fn model() -> String {
    p(&fixtures().join("mlp_torch_pruned.onnx"))
}

fn data() -> String {
    p(&fixtures().join("data/breast_cancer.npz"))
}

fn keygen(dir: &Path, circuit: &Path) -> (PathBuf, PathBuf) {
    let (ck, sk) = (dir.join("c.key"), dir.join("s.key"));
    ok(&fhec([
        "keygen",
        &p(circuit),
        "--client-key",
        &p(&ck),
        "--server-key",
        &p(&sk),
    ]));
    (ck, sk)
}

fn encrypt(circuit: &Path, ck: &Path, inputs: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec![
        "encrypt".to_string(),
        p(circuit),
        "--client-key".into(),
        p(ck),
    ];
    for i in inputs {
        args.extend(["--input".to_string(), p(i)]);
    }
    args.extend(["-o".to_string(), p(out)]);
    fhec(args)
}

fn run(circuit: &Path, sk: &Path, input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "run".to_string(),
        p(circuit),
        "--server-key".into(),
        p(sk),
        "--input".into(),
        p(input),
        "-o".into(),
        p(out),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    ok(&fhec(args))
}

fn decrypt(circuit: &Path, ck: &Path, input: &Path, out: &Path) -> String {
    ok(&fhec([
        "decrypt",
        &p(circuit),
        "--client-key",
        &p(ck),
        "--input",
        &p(input),
        "-o",
        &p(out),
    ]))
}

fn read_npy(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).expect("npy")
}

fn write_npy(path: &Path, a: &ArrayD<f32>) -> PathBuf {
    ndarray_npy::write_npy(path, a).expect("write npy");
    path.to_path_buf()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn batch_round_trip_equals_per_sample_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let circuit = d.join("m.fhec");
    let mut args: Vec<String> = ["compile", &model(), "--calib", &data(), "-o", &p(&circuit)]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(SMALL_EXACT.map(String::from));
    ok(&fhec(&args));
    let (ck, sk) = keygen(d, &circuit);

    // Three test samples: a batch [3, 30].
    let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(data()).unwrap()).expect("npz");
    let x_test: ndarray::Array2<f32> = npz.by_name("x_test").expect("x_test");
    let batch = x_test.slice(s![..3, ..]).to_owned().into_dyn();
    let batch_npy = write_npy(&d.join("batch.npy"), &batch);

    // encrypt → run → decrypt of the batch: one file each.
    let (x_ct, y_ct, y_npy) = (d.join("x.ct"), d.join("y.ct"), d.join("y.npy"));
    let out = ok(&encrypt(&circuit, &ck, &[&batch_npy], &x_ct));
    assert!(out.contains("a batch of 3 samples"), "{out}");
    assert!(out.contains("KiB") || out.contains("MiB"), "size: {out}");
    let file = EncryptedTensors::load(&x_ct).unwrap();
    assert_eq!(file.tensors.len(), 1);
    assert_eq!(file.tensors[0].shape, [3, 1, 30]);
    match &file.tensors[0].ciphertexts {
        Ciphertexts::SeededBatch { seeds, bodies } => {
            assert_eq!(bodies.len(), 90);
            assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2] && seeds[0] != seeds[2]);
        }
        other => panic!("a batch of samples each with its own seed, got {other:?}"),
    }
    let json: serde_json::Value =
        serde_json::from_str(&run(&circuit, &sk, &x_ct, &y_ct, &["--json"])).unwrap();
    assert_eq!(json["samples"], 3, "{json}");
    let (run_s, per_sample) = (
        json["run_s"].as_f64().unwrap(),
        json["run_s_per_sample"].as_f64().unwrap(),
    );
    assert!(
        (per_sample * 3.0 - run_s).abs() <= 1e-9 * run_s.max(1.0),
        "{json}"
    );
    assert_eq!(json["input_bytes"], size(&x_ct), "{json}");
    assert_eq!(json["output_bytes"], size(&y_ct), "{json}");
    assert_eq!(
        EncryptedTensors::load(&y_ct).unwrap().tensors[0].shape,
        [3, 1, 2]
    );
    let out = decrypt(&circuit, &ck, &y_ct, &y_npy);
    assert!(
        out.contains("[3,2]") && out.contains("(3 samples)"),
        "{out}"
    );
    let y = read_npy(&y_npy);
    assert_eq!(y.shape(), [3, 2]);
    // Three different results, so that samples run or written in another order would show.
    let row = |i| y.index_axis(Axis(0), i);
    assert!(
        row(0) != row(1) && row(1) != row(2) && row(0) != row(2),
        "{y}"
    );

    // Each sample alone, in both single-sample forms ([30] and [1,30]), with the same
    // circuit and keys: the single-sample file of before, and the same result row.
    for i in 0..3 {
        let row = batch.index_axis(Axis(0), i).to_owned();
        let x = if i == 0 {
            row
        } else {
            row.insert_axis(Axis(0))
        };
        let (xi, ci, yi, ni) = (
            write_npy(&d.join(format!("x{i}.npy")), &x),
            d.join(format!("x{i}.ct")),
            d.join(format!("y{i}.ct")),
            d.join(format!("y{i}.npy")),
        );
        let out = ok(&encrypt(&circuit, &ck, &[&xi], &ci));
        assert!(out.contains("encrypted 1 input(s) into"), "{out}");
        let single = EncryptedTensors::load(&ci).unwrap();
        assert_eq!(single.tensors[0].shape, [1, 30]);
        assert!(matches!(
            single.tensors[0].ciphertexts,
            Ciphertexts::Seeded { .. }
        ));
        let out = run(&circuit, &sk, &ci, &yi, &[]);
        assert!(out.contains("ran 1 sample ("), "{out}");
        assert!(out.contains(&format!("read '{}'", ci.display())), "{out}");
        assert_eq!(
            EncryptedTensors::load(&yi).unwrap().tensors[0].shape,
            [1, 2]
        );
        decrypt(&circuit, &ck, &yi, &ni);
        let alone = read_npy(&ni);
        assert_eq!(
            alone.shape(),
            [1, 2],
            "a single sample keeps the output shape"
        );
        assert_eq!(
            alone.index_axis(Axis(0), 0),
            y.index_axis(Axis(0), i),
            "sample {i}: the batch result differs from the sample run alone"
        );
    }

    // And the batch equals the clear quantised model (exact rounding).
    let clear = d.join("clear.npy");
    let mut args: Vec<String> = [
        "predict",
        &model(),
        "--mode",
        "clear",
        "--calib",
        &data(),
        "--input",
        &p(&batch_npy),
        "-o",
        &p(&clear),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(SMALL_EXACT.map(String::from));
    ok(&fhec(&args));
    assert_eq!(read_npy(&clear), y, "FHE batch differs from clear");

    // A batch whose samples do not have the circuit's input shape; an empty batch.
    let wrong = write_npy(&d.join("wrong.npy"), &ArrayD::zeros(IxDyn(&[3, 31])));
    let bad_ct = d.join("bad.ct");
    fails(
        &encrypt(&circuit, &ck, &[&wrong], &bad_ct),
        &[
            "'",
            "wrong.npy' has shape [3,31]",
            "graph input 'input' (float32 [1,30])",
            "[B,30] (a batch of B samples)",
        ],
    );
    let empty = write_npy(&d.join("empty.npy"), &ArrayD::zeros(IxDyn(&[0, 30])));
    fails(
        &encrypt(&circuit, &ck, &[&empty], &bad_ct),
        &["empty.npy", "empty batch", "at least one sample"],
    );
    assert!(!bad_ct.exists());
    // The input batch is not a result of the circuit.
    fails(
        &fhec([
            "decrypt",
            &p(&circuit),
            "--client-key",
            &p(&ck),
            "--input",
            &p(&x_ct),
            "-o",
            &p(&d.join("bad.npy")),
        ]),
        &[
            "x.ct",
            "[3, 1, 30]",
            "[N, 1, 2]",
            "not a result of this circuit",
        ],
    );
    // The noise trace takes one sample.
    let traced = d.join("traced.ct");
    fails(
        &fhec([
            "run",
            &p(&circuit),
            "--server-key",
            &p(&sk),
            "--input",
            &p(&x_ct),
            "-o",
            &p(&traced),
            "--debug-client-key",
            &p(&ck),
        ]),
        &["x.ct", "batch of 3 samples", "traces one sample"],
    );
    assert!(!traced.exists());
}

/// A hand-built circuit with two inputs, `x` and `y` ([1, 4], 3-bit signed, scale 0.5), whose
/// outputs are the inputs themselves; secure parameters, no bootstrap.
fn two_input_circuit(path: &Path) {
    use fhec_runtime::circuit::*;
    use fhec_runtime::noise::{minimal_secure_std_glwe, minimal_secure_std_lwe};
    let (n, k, big_n) = (742, 1, 2048);
    let params = fhec_runtime::CryptoParams {
        lwe_dimension: n,
        glwe_dimension: k,
        polynomial_size: big_n,
        lwe_noise_std: minimal_secure_std_lwe(n),
        glwe_noise_std: minimal_secure_std_glwe(k, big_n),
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    };
    let input = |name: &str| InputSpec {
        name: name.into(),
        shape: vec![1, 4],
        quantization: QParams {
            scale: 0.5,
            zero_point: 0,
            bits: 3,
            signed: true,
        },
    };
    let output = |name: &str, value| OutputSpec {
        name: name.into(),
        value,
        scale: 0.5,
        zero_point: 0,
        channel_scales: vec![],
    };
    let value = ValueInfo {
        shape: vec![1, 4],
        min: -4,
        max: 3,
        delta_log2: 60,
        noise_factor: 1.0,
    };
    let circuit = Circuit {
        program: Program {
            inputs: vec![input("x"), input("y")],
            outputs: vec![output("x_out", 0), output("y_out", 1)],
            values: vec![value.clone(), value],
            instructions: vec![
                Instruction::Input { index: 0 },
                Instruction::Input { index: 1 },
            ],
        },
        params: params.into(),
        prediction: Prediction {
            threads: 1,
            ..Default::default()
        },
        postprocessing: vec![],
    };
    circuit.save(path).unwrap();
}

#[test]
fn two_input_batches_agree_on_the_number_of_samples() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let circuit = d.join("two.fhec");
    two_input_circuit(&circuit);
    let (ck, sk) = keygen(d, &circuit);
    // Multiples of the scale 0.5 within [-2, 1.5]: exact after quantisation.
    let values = |n: usize, offset: f32| {
        let v = (0..n * 4)
            .map(|i| ((i as f32 + offset) % 8.0) * 0.5 - 2.0)
            .collect();
        ArrayD::from_shape_vec(IxDyn(&[n, 4]), v).unwrap()
    };
    let x3 = values(3, 0.0);
    let (x, y) = (
        write_npy(&d.join("x.npy"), &x3),
        write_npy(&d.join("y.npy"), &values(3, 5.0)),
    );
    let (x_ct, y_ct, out) = (d.join("in.ct"), d.join("out.ct"), d.join("out.npy"));
    ok(&encrypt(&circuit, &ck, &[&x, &y], &x_ct));
    let file = EncryptedTensors::load(&x_ct).unwrap();
    assert_eq!(file.tensors.len(), 2);
    assert!(file.tensors.iter().all(|t| t.shape == [3, 1, 4]));
    run(&circuit, &sk, &x_ct, &y_ct, &[]);
    decrypt(&circuit, &ck, &y_ct, &out);
    assert_eq!(read_npy(&out), x3, "the first output is input x");

    // Different numbers of samples per input: a batch of 2, or one sample, next to 3.
    let two = write_npy(&d.join("two.npy"), &values(2, 1.0));
    let one = write_npy(&d.join("one.npy"), &values(1, 1.0));
    let bad_ct = d.join("bad.ct");
    for other in [&two, &one] {
        let name = other.file_name().unwrap().to_str().unwrap();
        let err = fails(
            &encrypt(&circuit, &ck, &[&x, other], &bad_ct),
            &["different numbers of samples", "x.npy': 3", name],
        );
        assert!(err.contains("disagrees with the first"), "{err}");
    }
    assert!(!bad_ct.exists());
}
