//! The committed fuzz seed corpus (`fuzz/corpus/<target>/`) through the very functions the
//! fuzz targets call (`fuzz/src/lib.rs`), so CI checks every seed and every regression input
//! without a fuzzer: no panic, and the `valid-*` seeds load. Plus: small files that declare
//! huge lengths fail fast without a large allocation.
//!
//! Regenerate the artifact seeds (after a format change) with
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seeds`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Records the largest single allocation of the current thread, so that a test can bound
/// what decoding a hostile file allocates (other tests run on other threads).
struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|p| p.set(0));
    let out = f();
    (out, PEAK.with(|p| p.get()))
}

type Target = fn(&[u8]) -> Result<(), String>;

const TARGETS: [(&str, Target); 4] = [
    ("onnx_import", harness::onnx_import),
    ("circuit_load", harness::circuit_load),
    ("key_load", harness::key_load),
    ("ciphertext_load", harness::ciphertext_load),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_runs_without_panic_and_valid_seeds_load() {
    let mut total = 0;
    for (target, run) in TARGETS {
        let files = seeds(target);
        assert!(
            files.iter().any(|(n, _)| n.starts_with("valid-")),
            "{target}: no valid-* seed"
        );
        for (name, bytes) in files {
            let start = Instant::now();
            let result = run(&bytes);
            let took = start.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "{target}/{name} took {took:?}"
            );
            if name.starts_with("valid-") {
                assert!(result.is_ok(), "{target}/{name} should load: {result:?}");
            }
            if name.starts_with("regress-") {
                assert!(result.is_err(), "{target}/{name} should be refused");
            }
            total += 1;
        }
    }
    assert!(total >= 12, "only {total} seeds");
}

/// bincode encoding of the artifacts (fixed-width little-endian integers, u64 lengths).
fn len(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// The framed-payload input of an artifact target (mode byte 1, or 3 for a server key).
fn framed(mode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(payload);
    v
}

/// The payload of the valid seed `name` of `target`, without its mode byte and header.
fn seed_payload(target: &str, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(corpus_dir(target).join(name)).expect("seed");
    assert_eq!(bytes[0] & 1, 1, "{name} is a payload seed");
    bytes[1..].to_vec()
}

/// Refused, quickly, with no single allocation above 2 MiB (serde pre-allocates at most
/// 1 MiB per sequence; the bincode size limit stops the reads at the end of the payload).
fn assert_refused_cheaply(what: &str, run: Target, input: &[u8]) {
    let start = Instant::now();
    let (result, peak) = peak_of(|| run(input));
    let took = start.elapsed();
    assert!(result.is_err(), "{what}: accepted");
    assert!(peak <= 2 << 20, "{what}: allocated {peak} bytes at once");
    assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
}

#[test]
fn huge_declared_lengths_fail_fast_without_allocating() {
    // A circuit whose first Vec (the inputs) claims 2^60 entries.
    let mut p = len(1 << 60);
    p.extend_from_slice(&[0; 64]);
    assert_refused_cheaply("circuit inputs", harness::circuit_load, &framed(1, &p));
    // Nested: a Vec of tensors, each shape claiming 2^61 dimensions.
    let mut p = len(3); // three tensors
    for _ in 0..3 {
        p.extend_from_slice(&len(1 << 61)); // shape: 2^61 dimensions
        p.extend_from_slice(&len(1));
    }
    assert_refused_cheaply("tensor shapes", harness::ciphertext_load, &framed(1, &p));
    // A seeded tensor claiming 2^62 bodies.
    let mut p = len(1);
    p.extend_from_slice(&len(1));
    p.extend_from_slice(&len(4)); // shape [4]
    p.extend_from_slice(&0u32.to_le_bytes()); // Seeded
    p.extend_from_slice(&[0; 16]); // seed
    p.extend_from_slice(&len(1 << 62));
    p.extend_from_slice(&[0; 32]);
    assert_refused_cheaply("seeded bodies", harness::ciphertext_load, &framed(1, &p));
    // A seeded batch claiming 2^62 seeds, and one of 3 seeds claiming 2^62 bodies.
    for (seeds, bodies) in [(1u64 << 62, 0u64), (3, 1 << 62)] {
        let mut p = len(1);
        p.extend_from_slice(&len(2));
        p.extend_from_slice(&len(3)); // shape [3, 4]
        p.extend_from_slice(&len(4));
        p.extend_from_slice(&2u32.to_le_bytes()); // SeededBatch
        p.extend_from_slice(&len(seeds));
        if seeds == 3 {
            p.extend_from_slice(&[0; 48]);
            p.extend_from_slice(&len(bodies));
        }
        p.extend_from_slice(&[0; 32]);
        assert_refused_cheaply("seeded batch", harness::ciphertext_load, &framed(1, &p));
    }
    // Key files: valid parameters, then a key claiming 2^61 coefficients.
    let client = seed_payload("key_load", "valid-client-payload");
    let params_len = 9 * 8;
    let mut p = client[..params_len].to_vec();
    p.extend_from_slice(&len(1 << 61));
    p.extend_from_slice(&[1; 64]);
    assert_refused_cheaply("client key", harness::key_load, &framed(1, &p));
    let mut p = client[..params_len].to_vec();
    p.extend_from_slice(&[0; 16]); // bsk seed
    p.extend_from_slice(&len(1 << 61));
    p.extend_from_slice(&[1; 64]);
    assert_refused_cheaply("server key", harness::key_load, &framed(3, &p));
    // A full tensor of shape [2^60, 0]: a valid file whose batch must not be split into
    // 2^60 empty samples.
    let mut p = len(1);
    p.extend_from_slice(&len(2));
    p.extend_from_slice(&len(1 << 60));
    p.extend_from_slice(&len(0)); // shape [2^60, 0]
    p.extend_from_slice(&1u32.to_le_bytes()); // Full
    p.extend_from_slice(&len(4)); // lwe_size
    p.extend_from_slice(&len(0)); // no data
    let start = Instant::now();
    let (result, peak) = peak_of(|| harness::ciphertext_load(&framed(1, &p)));
    assert!(result.is_ok(), "{result:?}");
    assert!(
        peak <= 2 << 20,
        "empty samples: allocated {peak} bytes at once"
    );
    assert!(start.elapsed() < Duration::from_secs(1), "empty samples");
    // The same claims in whole files (mode 0) are refused by the checksum already, and a
    // length field beyond the file by the header.
    let mut file = b"FHEC".to_vec();
    file.push(4);
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&[0; 48]);
    file.extend_from_slice(&len(u64::MAX));
    file.extend_from_slice(&[0; 40]);
    assert_refused_cheaply("header length", harness::ciphertext_load, &framed(0, &file));
}

/// Files of one sample written before batch files existed (the committed `valid-seeded-file`
/// and `valid-full-file`) are written back byte for byte: a single-sample file keeps the
/// format it had, and a batch is told apart by its tensors' extra leading axis.
#[test]
fn single_sample_files_keep_their_bytes() {
    use fhec_runtime::fhe::EncryptedTensors;
    let dir = tempfile::tempdir().unwrap();
    for name in ["valid-seeded-file", "valid-full-file"] {
        let bytes = std::fs::read(corpus_dir("ciphertext_load").join(name)).unwrap();
        let file = &bytes[1..];
        let loaded = EncryptedTensors::from_bytes(file).unwrap();
        assert_eq!(loaded.tensors[0].shape, [1, 4], "{name}");
        let out = dir.path().join(name);
        loaded.save(&out).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            file,
            "{name} written back differs"
        );
    }
}

/// A max pool declaring 2^31 windows: validation must not walk every window (it checks the
/// two ends, the only windows that can lie entirely in padding at dilation 1).
#[test]
fn a_huge_max_pool_validates_without_walking_its_windows() {
    use fhec_runtime::circuit::*;
    let n = 1usize << 31;
    let value = |len| ValueInfo {
        shape: vec![1, 1, len],
        min: -4,
        max: 3,
        delta_log2: 60,
        noise_factor: 1.0,
    };
    let program = Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, 1, n],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 3,
                signed: true,
            },
        }],
        outputs: vec![],
        values: vec![value(n), value(n - 1)],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::MaxPool {
                input: 0,
                window: Window {
                    kernel: vec![2],
                    strides: vec![1],
                    dilations: vec![1],
                    pads: vec![(0, 0)],
                },
                relu: Lut {
                    input_min: -4,
                    precision: 3,
                    rounding: None,
                    tables: vec![vec![0, 0, 0, 0, 0, 1, 2, 3]],
                    axis: None,
                    sets: Default::default(),
                },
            },
        ],
    };
    let start = Instant::now();
    program.validate().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // A window entirely in padding is still found at either end.
    let mut bad = program.clone();
    bad.values[1].shape[2] = n / 2 + 1;
    if let Instruction::MaxPool { window, .. } = &mut bad.instructions[1] {
        window.strides = vec![2];
        window.pads = vec![(2, 0)];
    }
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("entirely in padding"), "{err}");
}

/// A model whose `ConstantOfShape` asks for 2^40 elements with 16 bytes of shape.
fn huge_constant_of_shape_model() -> Vec<u8> {
    use prost::Message;
    use tract_onnx::pb::*;
    let shape = TensorProto {
        name: "s".into(),
        dims: vec![2],
        data_type: 7, // INT64
        int64_data: vec![1 << 20, 1 << 20],
        ..Default::default()
    };
    let node = NodeProto {
        input: vec!["s".into()],
        output: vec!["y".into()],
        op_type: "ConstantOfShape".into(),
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node],
        initializer: vec![shape],
        output: vec![ValueInfoProto {
            name: "y".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn onnx_constant_folding_checks_the_declared_size_first() {
    let model = huge_constant_of_shape_model();
    let start = Instant::now();
    let (result, peak) = peak_of(|| harness::onnx_import(&model));
    let err = result.unwrap_err();
    assert!(err.contains("exceeds"), "{err}");
    assert!(peak <= 2 << 20, "allocated {peak} bytes at once");
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Writes the artifact seeds: tiny keys (NOT secure parameters, tiny files), a hand-built
/// circuit and one compiled by `fhec compile`, and ciphertexts (one sample and a batch of
/// three, seeded and full), each as a whole file (mode
/// byte 0, or 2 for a server key) and as a bare payload (mode byte 1, or 3).
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format change"]
fn regenerate_seeds() {
    use fhec_runtime::circuit::*;
    use fhec_runtime::fhe::{Ciphertexts, EncryptedTensor, EncryptedTensors};
    use fhec_runtime::noise::{minimal_secure_std_glwe, minimal_secure_std_lwe};
    use fhec_runtime::{ClientKey, CryptoParams};

    const HEADER_LEN: usize = 97;
    let dir = tempfile::tempdir().unwrap();
    let write = |target: &str, name: &str, mode: u8, file: &Path| {
        let bytes = std::fs::read(file).unwrap();
        let out = corpus_dir(target);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(format!("valid-{name}-file")), framed(mode, &bytes)).unwrap();
        std::fs::write(
            out.join(format!("valid-{name}-payload")),
            framed(mode | 1, &bytes[HEADER_LEN..]),
        )
        .unwrap();
    };

    std::fs::write(
        corpus_dir("onnx_import").join("regress-constant-of-shape-huge.onnx"),
        huge_constant_of_shape_model(),
    )
    .unwrap();

    // Keys: n=8, k=1, N=16 keep them a few kilobytes.
    let tiny = CryptoParams {
        lwe_dimension: 8,
        glwe_dimension: 1,
        polynomial_size: 16,
        ..fhec_runtime::fhe::insecure_test_params()
    };
    let (client, server) = ClientKey::generate_insecure_for_tests(tiny).unwrap();
    let ck = dir.path().join("client.key");
    let sk = dir.path().join("server.key");
    client.save(&ck).unwrap();
    server.save(&sk).unwrap();
    write("key_load", "client", 0, &ck);
    write("key_load", "server", 2, &sk);

    // A hand-built circuit with secure parameters: input -> table lookup -> output.
    let (n, k, big_n) = (742, 1, 2048);
    let params = CryptoParams {
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
    let value = |delta_log2, min, max| ValueInfo {
        shape: vec![1, 4],
        min,
        max,
        delta_log2,
        noise_factor: 1.0,
    };
    let program = Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, 4],
            quantization: QParams {
                scale: 0.5,
                zero_point: 0,
                bits: 3,
                signed: true,
            },
        }],
        outputs: vec![OutputSpec {
            name: "y".into(),
            value: 1,
            scale: 0.5,
            zero_point: 0,
            channel_scales: vec![],
        }],
        values: vec![value(60, -4, 3), value(60, 0, 3)],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Tlu {
                input: 0,
                lut: Lut {
                    input_min: -4,
                    precision: 3,
                    rounding: None,
                    tables: vec![vec![0, 0, 0, 0, 0, 1, 2, 3]],
                    axis: None,
                    sets: Default::default(),
                },
            },
        ],
    };
    let circuit = Circuit {
        program: program.clone(),
        params: params.into(),
        prediction: Prediction {
            pbs_count: 4,
            p_error_per_pbs: 1e-40,
            global_p_error: 4e-40,
            pbs_latency_s: 0.01,
            latency_s: 0.04,
            threads: 1,
            pbs_per_set: vec![4],
            pbs_latency_per_set_s: vec![0.01],
            server_key_bytes: 0,
        },
        postprocessing: vec![ClientOp {
            output: 0,
            step: ClientStep::Softmax { axis: 1 },
        }],
    };
    let c = dir.path().join("relu.fhec");
    circuit.save(&c).unwrap();
    write("circuit_load", "relu", 0, &c);

    // A circuit compiled from a fixture (dense layers, rounding, several tables).
    let mlp = dir.path().join("mlp.fhec");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_fhec"))
        .arg("compile")
        .arg(fixtures.join("mlp_torch_pruned.onnx"))
        .arg("--calib")
        .arg(fixtures.join("data/breast_cancer.npz"))
        .arg("-o")
        .arg(&mlp)
        .args([
            "--bits",
            "3",
            "--rounding-bits",
            "3",
            "--rounding-mode",
            "exact",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    write("circuit_load", "mlp", 0, &mlp);

    // Ciphertexts under the tiny key: seeded inputs and the same expanded to full ones.
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], vec![-4i64, -1, 0, 3]).unwrap();
    let seeded = client.encrypt_integers(&program, &[x]).unwrap();
    let ct = dir.path().join("seeded.ct");
    seeded.save(&ct).unwrap();
    write("ciphertext_load", "seeded", 0, &ct);
    let lwe_size = tiny.big_lwe_dimension() + 1;
    let cts = seeded.tensors[0].ciphertexts.expand(lwe_size).unwrap();
    let full = EncryptedTensors {
        tensors: vec![EncryptedTensor {
            shape: vec![1, 4],
            ciphertexts: Ciphertexts::from_full(lwe_size, cts.iter()),
        }],
        ..seeded
    };
    let ct = dir.path().join("full.ct");
    full.save(&ct).unwrap();
    write("ciphertext_load", "full", 0, &ct);

    // A batch of three samples, seeded (as `fhec encrypt` writes it) and full (as `fhec run`).
    let samples: Vec<EncryptedTensors> = [[-4i64, -1, 0, 3], [1, 2, 3, -4], [0, 0, -2, 2]]
        .iter()
        .map(|x| {
            let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], x.to_vec()).unwrap();
            client.encrypt_integers(&program, &[x]).unwrap()
        })
        .collect();
    let batch = EncryptedTensors::stack_samples(&samples).unwrap();
    let ct = dir.path().join("seeded-batch.ct");
    batch.save(&ct).unwrap();
    write("ciphertext_load", "seeded-batch", 0, &ct);
    let full: Vec<EncryptedTensors> = samples
        .iter()
        .map(|s| {
            let cts = s.tensors[0].ciphertexts.expand(lwe_size).unwrap();
            EncryptedTensors {
                tensors: vec![EncryptedTensor {
                    shape: vec![1, 4],
                    ciphertexts: Ciphertexts::from_full(lwe_size, cts.iter()),
                }],
                ..s.clone()
            }
        })
        .collect();
    let ct = dir.path().join("full-batch.ct");
    EncryptedTensors::stack_samples(&full)
        .unwrap()
        .save(&ct)
        .unwrap();
    write("ciphertext_load", "full-batch", 0, &ct);
}
