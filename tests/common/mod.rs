//! Helpers of the CLI crate's integration tests: fixture paths as CLI arguments, running the
//! built binary, checking its exit and error report (with the workspace's shared test helpers
//! re-exported: fixture paths and loading).
#![allow(dead_code)]

pub mod interval;

#[allow(unused_imports)] // each test binary uses its own subset
pub use fhec_testkit::{fixture_models, fixtures, import_fixture, reference, sample};

use std::path::Path;
use std::process::{Command, Output};

use ndarray_npy::NpzReader;

/// The path of fixture model `stem` (`tests/fixtures/<stem>.onnx`), as a CLI argument.
pub fn model_arg(stem: &str) -> String {
    fixtures()
        .join(format!("{stem}.onnx"))
        .display()
        .to_string()
}

/// The path of fixture data file `name` (`tests/fixtures/data/<name>`), as a CLI argument.
pub fn data_arg(name: &str) -> String {
    fixtures().join("data").join(name).display().to_string()
}

/// Runs the built `fhec` binary.
pub fn fhec<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("run fhec")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "expected success\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts exit code 2 and an `error:` report (a line starting with `error: `, after any
/// progress notes) mentioning every needle, with no panic; returns stderr.
pub fn fails(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit code 2\nstdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    let start = if err.starts_with("error: ") {
        Some(0)
    } else {
        err.find("\nerror: ").map(|i| i + 1)
    };
    let report = &err[start.unwrap_or_else(|| panic!("no 'error: ' line in stderr:\n{err}"))..];
    for n in needles {
        assert!(report.contains(n), "error report lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "stderr: {err}");
    err
}

/// An ONNX node for hand-built test models.
pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> tract_onnx::pb::NodeProto {
    tract_onnx::pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The small exact configuration of the CLI FHE tests (pruned MLP, 3 bits, exact rounding to
/// 3 bits): encrypted results equal the clear ones bit for bit, in seconds.
pub const SMALL_EXACT: [&str; 6] = [
    "--bits",
    "3",
    "--rounding-bits",
    "3",
    "--rounding-mode",
    "exact",
];

/// The first `k` samples of the breast-cancer fixture's test split (`[k, 30]`) and their
/// labels, read from the `.npz` here (independently of fhec's data loader).
pub fn breast_cancer_test(k: usize) -> (ndarray::Array2<f32>, Vec<i64>) {
    let path = fixtures().join("data/breast_cancer.npz");
    let mut npz =
        NpzReader::new(std::fs::File::open(&path).expect("breast_cancer.npz")).expect("npz");
    let x: ndarray::Array2<f32> = npz.by_name("x_test").expect("x_test");
    let y: ndarray::Array1<i64> = npz.by_name("y_test").expect("y_test");
    let k = k.min(x.nrows());
    (
        x.slice(ndarray::s![..k, ..]).to_owned(),
        y.iter().take(k).copied().collect(),
    )
}

/// Index of the largest value (the first on ties), as `fhec eval` counts a prediction.
pub fn argmax(row: ndarray::ArrayView1<f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Writes samples `x` (`[N, F]`) and their labels as a CSV with a header (`f0,...,label`);
/// each value printed as the `f64` it widens to, so that it reads back exactly.
pub fn write_csv(path: &Path, x: ndarray::ArrayView2<f32>, labels: &[i64]) {
    use std::fmt::Write as _;
    let mut text: String = (0..x.ncols()).map(|j| format!("f{j},")).collect();
    text.push_str("label\n");
    for (row, label) in x.rows().into_iter().zip(labels) {
        for v in row {
            write!(text, "{},", f64::from(*v)).unwrap();
        }
        writeln!(text, "{label}").unwrap();
    }
    std::fs::write(path, text).unwrap();
}
