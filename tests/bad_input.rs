//! The README's bad-input table, one test per row: every kind of bad input to the `fhec`
//! binary exits with code 2, says on stderr which file or field is at fault and what to do,
//! and leaves no output file behind (outputs are written to a temporary file and renamed).
//!
//! The FHE artifacts come from the small, fast configuration of `tests/cli_fhe.rs` (pruned
//! MLP, 3 bits, exact rounding to 3 bits), made once per test binary: keygen costs seconds.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{fails, fhec, fixtures, ok, SMALL_EXACT};
use fhec_runtime::artifact::{read_file, ArtifactKind};
use fhec_runtime::Circuit;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use tract_onnx::pb;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn model() -> PathBuf {
    fixtures().join("mlp_torch_pruned.onnx")
}

fn calib() -> String {
    s(&fixtures().join("data/breast_cancer.npz"))
}

fn sample() -> String {
    s(&fixtures().join("data/breast_cancer_sample.npy"))
}

/// Runs `fhec args`, expects exit code 2 and an error report with every needle, and checks
/// that none of `outputs` exists afterwards.
/// With `FHEC_BAD_INPUT_LOG=FILE`, each refusal is appended to FILE (test, command, stderr):
/// the README's table quotes these messages.
fn refused(args: &[String], needles: &[&str], outputs: &[&Path]) -> String {
    let err = fails(&fhec(args), needles);
    if let Some(log) = std::env::var_os("FHEC_BAD_INPUT_LOG") {
        use std::io::Write;
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        writeln!(f, "### {test}: fhec {}\n{err}", args.join(" ")).expect("write log");
    }
    for out in outputs {
        assert!(
            !out.exists(),
            "'{}' exists after a failed `fhec {}`",
            out.display(),
            args.join(" ")
        );
    }
    err
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// `fhec compile MODEL -o OUT` with the small exact options and `extra`.
fn compile_args(model: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["compile", &s(model), "--calib", &calib(), "-o", &s(out)]);
    a.extend(SMALL_EXACT.iter().chain(extra).map(|x| x.to_string()));
    a
}

/// Files of a directory, sorted (to show that nothing, not even a temporary, was left).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn write_npy<T: ndarray_npy::WritableElement>(dir: &Path, name: &str, a: &ArrayD<T>) -> PathBuf {
    let p = dir.join(name);
    ndarray_npy::write_npy(&p, a).expect("write npy");
    p
}

// ---------------------------------------------------------------------------------------------
// FHE artifacts shared by the tests

/// Circuit `m` with two key pairs (`a`, `b`), circuit `m2` (other parameters) with key pair
/// `c`, and `x.ct`: the breast-cancer sample encrypted under `a`.
struct Artifacts {
    dir: PathBuf,
    circuit: PathBuf,
    circuit2: PathBuf,
    ck_a: PathBuf,
    sk_a: PathBuf,
    ck_b: PathBuf,
    ck_c: PathBuf,
    sk_c: PathBuf,
    x_ct: PathBuf,
}

static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();

#[cfg(unix)]
extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Removes the shared artifacts (about 110 MB of server keys) when the test binary exits.
#[cfg(unix)]
extern "C" fn remove_artifacts() {
    if let Some(a) = ARTIFACTS.get() {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
}

/// Made once per test binary in Cargo's per-target temporary directory and removed at exit
/// (statics are never dropped, so a `TempDir` would leak); directories of earlier runs whose
/// process is gone (killed before exiting) are removed first.
fn artifacts() -> &'static Artifacts {
    ARTIFACTS.get_or_init(|| {
        // SAFETY: registers a plain function with the C library; it only removes files.
        #[cfg(unix)]
        unsafe {
            atexit(remove_artifacts);
        }
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let prefix = "bad_input_artifacts_";
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix(prefix) else {
                    continue;
                };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let circuit = dir.join("m.fhec");
        let circuit2 = dir.join("m2.fhec");
        ok(&fhec(compile_args(&model(), &circuit, &[])));
        ok(&fhec(compile_args(
            &model(),
            &circuit2,
            &["--p-error", "0.01"],
        )));
        let keys = |tag: &str| (dir.join(format!("{tag}.ck")), dir.join(format!("{tag}.sk")));
        let ((ck_a, sk_a), (ck_b, sk_b), (ck_c, sk_c)) = (keys("a"), keys("b"), keys("c"));
        std::thread::scope(|scope| {
            for (c, ck, sk) in [
                (&circuit, &ck_a, &sk_a),
                (&circuit, &ck_b, &sk_b),
                (&circuit2, &ck_c, &sk_c),
            ] {
                scope.spawn(move || {
                    ok(&fhec(args(&[
                        "keygen",
                        &s(c),
                        "--client-key",
                        &s(ck),
                        "--server-key",
                        &s(sk),
                    ])))
                });
            }
        });
        let x_ct = dir.join("x.ct");
        ok(&fhec(args(&[
            "encrypt",
            &s(&circuit),
            "--client-key",
            &s(&ck_a),
            "--input",
            &sample(),
            "-o",
            &s(&x_ct),
        ])));
        Artifacts {
            dir,
            circuit,
            circuit2,
            ck_a,
            sk_a,
            ck_b,
            ck_c,
            sk_c,
            x_ct,
        }
    })
}

fn encrypt_args(circuit: &Path, ck: &Path, input: &str, out: &Path) -> Vec<String> {
    args(&[
        "encrypt",
        &s(circuit),
        "--client-key",
        &s(ck),
        "--input",
        input,
        "-o",
        &s(out),
    ])
}

fn run_args(circuit: &Path, sk: &Path, input: &Path, out: &Path) -> Vec<String> {
    args(&[
        "run",
        &s(circuit),
        "--server-key",
        &s(sk),
        "--input",
        &s(input),
        "-o",
        &s(out),
    ])
}

fn decrypt_args(circuit: &Path, ck: &Path, input: &Path, out: &Path) -> Vec<String> {
    args(&[
        "decrypt",
        &s(circuit),
        "--client-key",
        &s(ck),
        "--input",
        &s(input),
        "-o",
        &s(out),
    ])
}

fn keygen_args(circuit: &Path, ck: &Path, sk: &Path) -> Vec<String> {
    args(&[
        "keygen",
        &s(circuit),
        "--client-key",
        &s(ck),
        "--server-key",
        &s(sk),
    ])
}

// ---------------------------------------------------------------------------------------------
// models

/// The pruned MLP's protobuf, changed by `edit`.
fn edited_model(dir: &Path, name: &str, edit: impl FnOnce(&mut pb::ModelProto)) -> PathBuf {
    let bytes = std::fs::read(model()).expect("fixture");
    let mut proto = pb::ModelProto::decode(bytes.as_slice()).expect("fixture decodes");
    edit(&mut proto);
    let path = dir.join(name);
    std::fs::write(&path, proto.encode_to_vec()).expect("write model");
    path
}

#[test]
fn truncated_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(model()).unwrap();
    let m = dir.path().join("half.onnx");
    std::fs::write(&m, &full[..full.len() / 2]).unwrap();
    let out = dir.path().join("m.fhec");
    refused(
        &compile_args(&m, &out, &[]),
        &[
            "half.onnx",
            "not a valid ONNX model",
            "check the file is a complete .onnx export",
        ],
        &[&out],
    );
    assert_eq!(files_in(dir.path()), ["half.onnx"]);
}

#[test]
fn random_bytes_as_onnx() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic pseudo-random bytes (xorshift).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let m = dir.path().join("random.onnx");
    std::fs::write(&m, bytes).unwrap();
    let out = dir.path().join("m.fhec");
    refused(
        &compile_args(&m, &out, &[]),
        &[
            "random.onnx",
            "not a valid ONNX model",
            "complete .onnx export",
        ],
        &[&out],
    );
    assert_eq!(files_in(dir.path()), ["random.onnx"]);
}

#[test]
fn unsupported_op() {
    let dir = tempfile::tempdir().unwrap();
    let m = edited_model(dir.path(), "celu.onnx", |p| {
        let graph = p.graph.as_mut().expect("graph");
        let relu = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "Relu")
            .expect("a Relu node");
        relu.op_type = "Celu".into();
    });
    let out = dir.path().join("m.fhec");
    refused(
        &compile_args(&m, &out, &[]),
        &["celu.onnx", "'/1/Relu'", "Celu", "opset 14"],
        &[&out],
    );
    assert_eq!(files_in(dir.path()), ["celu.onnx"]);
}

#[test]
fn dynamic_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let m = edited_model(dir.path(), "dynamic.onnx", |p| {
        use tract_onnx::pb::tensor_shape_proto::dimension::Value;
        let graph = p.graph.as_mut().expect("graph");
        let Some(pb::type_proto::Value::TensorType(t)) = graph.input[0]
            .r#type
            .as_mut()
            .and_then(|t| t.value.as_mut())
        else {
            panic!("tensor input")
        };
        let dims = &mut t.shape.as_mut().expect("shape").dim;
        dims[1].value = Some(Value::DimParam("features".into()));
    });
    let out = dir.path().join("m.fhec");
    let err = refused(
        &compile_args(&m, &out, &[]),
        &["graph input 'input'", "'features'", "--input-shape"],
        &[&out],
    );
    assert!(err.contains("dynamic.onnx"), "{err}");
    assert_eq!(files_in(dir.path()), ["dynamic.onnx"]);
    // The advice works: with the dimension given, the model compiles.
    ok(&fhec(compile_args(
        &m,
        &out,
        &["--input-shape", "input=1,30"],
    )));
}

// ---------------------------------------------------------------------------------------------
// client inputs

#[test]
fn input_of_the_wrong_shape() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let x = write_npy(
        dir.path(),
        "x31.npy",
        &ArrayD::<f32>::zeros(IxDyn(&[1, 31])),
    );
    let out = dir.path().join("x.ct");
    refused(
        &encrypt_args(&a.circuit, &a.ck_a, &s(&x), &out),
        &["x31.npy", "[1,31]", "'input'", "[1,30]"],
        &[&out],
    );
    // A batch whose samples have the wrong shape (a batch of [1,30] samples is accepted).
    let x = write_npy(
        dir.path(),
        "batch31.npy",
        &ArrayD::<f32>::zeros(IxDyn(&[4, 31])),
    );
    refused(
        &encrypt_args(&a.circuit, &a.ck_a, &s(&x), &out),
        &[
            "batch31.npy",
            "[4,31]",
            "'input'",
            "[1,30]",
            "[B,30] (a batch of B samples)",
        ],
        &[&out],
    );
    assert_eq!(files_in(dir.path()), ["batch31.npy", "x31.npy"]);
}

#[test]
fn input_of_the_wrong_dtype() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let x = write_npy(
        dir.path(),
        "int.npy",
        &ArrayD::<i64>::zeros(IxDyn(&[1, 30])),
    );
    let out = dir.path().join("x.ct");
    refused(
        &encrypt_args(&a.circuit, &a.ck_a, &s(&x), &out),
        &["int.npy", "int64", "float32"],
        &[&out],
    );
    // Not a .npy at all.
    refused(
        &encrypt_args(&a.circuit, &a.ck_a, &s(&a.circuit), &out),
        &["m.fhec", "not a valid .npy array"],
        &[&out],
    );
}

#[test]
fn nan_or_infinite_input() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ct");
    let sample: ArrayD<f32> = ndarray_npy::read_npy(sample()).unwrap();
    for (name, bad, needle) in [
        ("nan.npy", f32::NAN, "NaN"),
        ("inf.npy", f32::INFINITY, "inf"),
        ("neg_inf.npy", f32::NEG_INFINITY, "-inf"),
    ] {
        let mut x = sample.clone();
        x.as_slice_mut().unwrap()[7] = bad;
        let x = write_npy(dir.path(), name, &x);
        refused(
            &encrypt_args(&a.circuit, &a.ck_a, &s(&x), &out),
            &[name, "[0,7]", needle, "finite"],
            &[&out],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// artifacts that do not belong together

#[test]
fn client_key_of_another_circuit() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ct");
    refused(
        &encrypt_args(&a.circuit, &a.ck_c, &sample(), &out),
        &[
            "c.ck",
            "other parameters",
            "run `fhec keygen` for this circuit",
        ],
        &[&out],
    );
    let out = dir.path().join("y.npy");
    refused(
        &decrypt_args(&a.circuit, &a.ck_c, &a.x_ct, &out),
        &[
            "c.ck",
            "other parameters",
            "run `fhec keygen` for this circuit",
        ],
        &[&out],
    );
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn client_key_of_another_key_pair() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    refused(
        &decrypt_args(&a.circuit, &a.ck_b, &a.x_ct, &out),
        &[
            "x.ct",
            "b.ck",
            "another client key",
            "use the keys of the pair that encrypted them",
        ],
        &[&out],
    );
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn server_key_of_another_circuit() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.ct");
    refused(
        &run_args(&a.circuit, &a.sk_c, &a.x_ct, &out),
        &["server key", "c.sk", "other parameters", "fhec keygen"],
        &[&out],
    );
    // The circuit of the other parameters refuses ciphertexts of this one's client.
    refused(
        &run_args(&a.circuit2, &a.sk_c, &a.x_ct, &out),
        &["x.ct"],
        &[&out],
    );
    assert!(files_in(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// damaged artifacts

/// What each artifact kind is read by: (file, command that reads it with `file` in place).
fn readers(a: &Artifacts, file: &Path, out: &Path) -> Vec<(&'static str, Vec<String>)> {
    let sk_out = out.with_extension("sk");
    vec![
        ("circuit", keygen_args(file, out, &sk_out)),
        ("client key", encrypt_args(&a.circuit, file, &sample(), out)),
        ("server key", run_args(&a.circuit, file, &a.x_ct, out)),
        ("ciphertext", decrypt_args(&a.circuit, &a.ck_a, file, out)),
    ]
}

/// Writes a damaged copy of each artifact kind and expects every reader to refuse it.
fn refuse_damaged(tag: &str, damage: impl Fn(&mut Vec<u8>), needles: &[&str]) {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    for (i, original) in [&a.circuit, &a.ck_a, &a.sk_a, &a.x_ct].iter().enumerate() {
        let mut bytes = std::fs::read(original).unwrap();
        damage(&mut bytes);
        let ext = original.extension().unwrap().to_string_lossy().into_owned();
        let file = dir.path().join(format!("{tag}.{ext}"));
        std::fs::write(&file, &bytes).unwrap();
        let (kind, cmd) = readers(a, &file, &out).swap_remove(i);
        let mut all = vec![file.file_name().unwrap().to_str().unwrap()];
        all.extend(needles);
        let err = refused(&cmd, &all, &[&out, &out.with_extension("sk")]);
        assert!(err.contains(kind), "{kind}: {err}");
        std::fs::remove_file(&file).unwrap();
    }
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn bit_flipped_artifacts() {
    // A bit in the header's parameter fingerprint, in the middle of the payload, in the last
    // byte: each is caught by the checksum before anything is decoded.
    for (tag, at) in [("fingerprint", 0usize), ("middle", 1), ("last", 2)] {
        refuse_damaged(
            &format!("flip_{tag}"),
            |b| {
                let i = [20, b.len() / 2, b.len() - 1][at];
                b[i] ^= 0x04;
            },
            &[
                "checksum mismatch",
                "corrupted",
                "copy it again or regenerate it",
            ],
        );
    }
}

#[test]
fn truncated_artifacts() {
    refuse_damaged(
        "truncated",
        |b| b.truncate(b.len() - 100),
        &[
            "truncated",
            "payload bytes",
            "copy the file again or regenerate it",
        ],
    );
    refuse_damaged(
        "stub",
        |b| b.truncate(40),
        &["not an fhec artifact", "pass a file written by fhec"],
    );
}

#[test]
fn format_version_mismatch() {
    // A file of the previous format (version 1: outputs without per-channel scales).
    refuse_damaged(
        "v1",
        |b| b[5..9].copy_from_slice(&1u32.to_le_bytes()),
        &["format version 1", "reads version 4", "recreate the file"],
    );
}

#[test]
fn insecure_parameters_in_a_circuit() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    // A circuit whose LWE noise was lowered below the 128-bit minimum, written through the
    // artifact API: its header, fingerprint and checksum are all valid.
    let (_, mut circuit): (_, Circuit) = read_file(&a.circuit, ArtifactKind::Circuit).unwrap();
    let mut sets = circuit.params.sets().to_vec();
    sets[0].lwe_noise_std /= 4.0;
    circuit.params =
        fhec_runtime::ParamSets::with_own_keys(sets, circuit.params.returns().to_vec()).unwrap();
    let tampered = dir.path().join("weak.fhec");
    circuit.save(&tampered).unwrap();
    let (ck, sk) = (dir.path().join("w.ck"), dir.path().join("w.sk"));
    refused(
        &keygen_args(&tampered, &ck, &sk),
        &[
            "weak.fhec",
            "128-bit security",
            "lwe_noise_std",
            "recompile the model",
        ],
        &[&ck, &sk],
    );
    let out = dir.path().join("x.ct");
    refused(
        &encrypt_args(&tampered, &a.ck_a, &sample(), &out),
        &["weak.fhec", "128-bit security"],
        &[&out],
    );
    assert_eq!(files_in(dir.path()), ["weak.fhec"]);
}

// ---------------------------------------------------------------------------------------------
// outputs

#[test]
fn unwritable_output_path() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("no_such_dir");
    std::fs::create_dir(d.join("sub")).unwrap();
    let sub = d.join("sub");
    for (out, needle) in [
        (missing.join("out"), "does not exist"),
        (sub.clone(), "is a directory"),
    ] {
        let other = d.join("other.sk");
        let cases = [
            ("compile", compile_args(&model(), &out, &[])),
            ("keygen client", keygen_args(&a.circuit, &out, &other)),
            ("keygen server", keygen_args(&a.circuit, &other, &out)),
            (
                "encrypt",
                encrypt_args(&a.circuit, &a.ck_a, &sample(), &out),
            ),
            ("run", run_args(&a.circuit, &a.sk_a, &a.x_ct, &out)),
            ("decrypt", decrypt_args(&a.circuit, &a.ck_a, &a.x_ct, &out)),
        ];
        for (what, cmd) in cases {
            let err = refused(&cmd, &["cannot write", needle], &[&other]);
            assert!(err.contains(&s(&out)), "{what}: {err}");
        }
        assert!(!missing.exists());
        assert!(files_in(&sub).is_empty(), "{:?}", files_in(&sub));
        assert_eq!(files_in(d), ["sub"]);
    }
    // A directory no process may create files in, root included (CI runs as root, which
    // ignores permission bits): sysfs, or a process directory of procfs.
    #[cfg(target_os = "linux")]
    {
        let dir = ["/sys", "/proc/self"]
            .into_iter()
            .map(Path::new)
            .find(|d| d.is_dir())
            .expect("neither /sys nor /proc/self is a directory");
        let out = dir.join("fhec-bad-input.ct");
        refused(
            &encrypt_args(&a.circuit, &a.ck_a, &sample(), &out),
            &["cannot write", "not writable"],
            &[&out],
        );
    }
    // A directory made read-only, for a user that permission bits bind (as root, where they
    // do not, the case above covers it).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(sub.join("probe"), b"").is_err() {
            let out = sub.join("x.ct");
            refused(
                &encrypt_args(&a.circuit, &a.ck_a, &sample(), &out),
                &["cannot write", "not writable"],
                &[&out],
            );
        } else {
            std::fs::remove_file(sub.join("probe")).unwrap();
        }
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(files_in(&sub).is_empty());
    }
}

#[test]
fn output_that_names_an_input() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Copies, so that a failure of this test cannot damage the shared artifacts.
    let copy = |p: &Path, name: &str| {
        let to = d.join(name);
        std::fs::copy(p, &to).unwrap();
        to
    };
    let circuit = copy(&a.circuit, "m.fhec");
    let ck = copy(&a.ck_a, "a.ck");
    let x_ct = copy(&a.x_ct, "x.ct");
    let onnx = copy(&model(), "m.onnx");
    let input = copy(Path::new(&sample()), "x.npy");
    let other = d.join("other.sk");
    let cases = [
        ("compile", compile_args(&onnx, &onnx, &[]), &onnx),
        ("keygen", keygen_args(&circuit, &circuit, &other), &circuit),
        (
            "encrypt",
            encrypt_args(&circuit, &ck, &s(&input), &input),
            &input,
        ),
        ("run", run_args(&circuit, &a.sk_a, &x_ct, &x_ct), &x_ct),
        ("decrypt", decrypt_args(&circuit, &ck, &x_ct, &ck), &ck),
    ];
    for (what, cmd, victim) in cases {
        let before = std::fs::read(victim).unwrap();
        let err = refused(
            &cmd,
            &["both an input and the output", "another output path"],
            &[&other],
        );
        assert!(err.contains(&s(victim)), "{what}: {err}");
        assert_eq!(
            std::fs::read(victim).unwrap(),
            before,
            "{what} changed its input"
        );
    }
    assert_eq!(files_in(d), ["a.ck", "m.fhec", "m.onnx", "x.ct", "x.npy"]);
}
