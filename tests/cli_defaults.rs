//! The headline command with its defaults: `fhec compile MODEL --bits N --calib D` (default
//! rounding to 7 bits, default p_error 2^-40, worst-case table ranges) on every fixture at
//! every width 2..=8.
//!
//! Every combination compiles, except the max-pooling CNNs at 8 bits: their max-pool
//! comparisons of two 8-bit activations are 9-bit lookups, which no parameter set up to
//! N = 2^15 brings to 2^-40 (best ~1e-10); they fail with an error that names the 9-bit
//! lookups, and compile with a larger --p-error.

mod common;

use common::*;
use serde_json::Value;

/// (model, data file, has max-pooling).
const FIXTURES: &[(&str, &str, bool)] = &[
    ("mlp_torch", "breast_cancer.npz", false),
    ("mlp_torch_pruned", "breast_cancer.npz", false),
    ("mlp_brevitas", "breast_cancer.npz", false),
    ("mlp_keras", "breast_cancer.npz", false),
    ("mlp_tf2onnx_13", "breast_cancer.npz", false),
    ("mlp_tf2onnx_17", "breast_cancer.npz", false),
    ("cnn_torch_28", "digits_28.npz", true),
    ("cnn_brevitas_28", "digits_28.npz", true),
    ("cnn_keras_28", "digits_28.npz", true),
    ("cnn_keras_export_28", "digits_28.npz", true),
    ("cnn_torch_rgb_28", "digits_rgb_28.npz", true),
    ("cnn_torch_64", "digits_64.npz", false),
    ("cnn_torch_8", "digits_8.npz", true),
];

fn compile_all_widths(stem: &str) {
    let &(_, data, max_pool) = FIXTURES
        .iter()
        .find(|f| f.0 == stem)
        .expect("listed fixture");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.fhec");
    let model = fixtures().join(format!("{stem}.onnx"));
    let calib = fixtures().join("data").join(data);
    for bits in 2..=8 {
        let o = fhec([
            "compile".as_ref(),
            model.as_os_str(),
            "--bits".as_ref(),
            bits.to_string().as_ref(),
            "--calib".as_ref(),
            calib.as_os_str(),
            "--calib-limit".as_ref(),
            "30".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "--json".as_ref(),
        ]);
        // cnn_brevitas_28 is QAT with 4-bit activations whatever --bits says.
        if max_pool && bits == 8 && stem != "cnn_brevitas_28" {
            fails(&o, &["9-bit lookups", "--p-error"]);
            assert!(
                !out.exists(),
                "{stem}: a failed compile left '{}'",
                out.display()
            );
            continue;
        }
        let v: Value =
            serde_json::from_str(&ok(&o)).unwrap_or_else(|e| panic!("{stem} at {bits} bits: {e}"));
        assert_eq!(
            v["quantization"]["rounding_bits"], 7,
            "{stem} at {bits} bits"
        );
        assert_eq!(v["quantization"]["ranges"], "worst-case");
        // Tables read at most 7 bits; max-pool comparisons read one bit more than the
        // activations they compare.
        let widest = v["tlu_precision_bits"].as_u64().unwrap();
        let limit = if max_pool { 7.max(bits + 1) } else { 7 };
        assert!(
            widest <= limit as u64,
            "{stem} at {bits} bits: {widest}-bit lookups"
        );
        assert!(v["pbs_count"].as_u64().unwrap() > 0);
        std::fs::remove_file(&out).unwrap();
    }
}

macro_rules! fixture_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                compile_all_widths(stringify!($name));
            }
        )*
    };
}

fixture_tests!(
    mlp_torch,
    mlp_torch_pruned,
    mlp_brevitas,
    mlp_keras,
    mlp_tf2onnx_13,
    mlp_tf2onnx_17,
    cnn_torch_28,
    cnn_brevitas_28,
    cnn_keras_28,
    cnn_keras_export_28,
    cnn_torch_rgb_28,
    cnn_torch_64,
    cnn_torch_8,
);

/// `--rounding-bits none` opts out of the default: the MLP's 16-bit tables then have no
/// parameters, with an error that says so.
#[test]
fn rounding_none_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.fhec");
    let model = fixtures().join("mlp_torch.onnx");
    let calib = fixtures().join("data/breast_cancer.npz");
    let o = fhec([
        "compile".as_ref(),
        model.as_os_str(),
        "--bits".as_ref(),
        "6".as_ref(),
        "--rounding-bits".as_ref(),
        "none".as_ref(),
        "--calib".as_ref(),
        calib.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    fails(&o, &["no rounding", "polynomial size"]);
    assert!(!out.exists());
}
