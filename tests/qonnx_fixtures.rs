//! The QONNX fixtures (Brevitas `export_qonnx`): each twin imports to exactly the IR of the
//! QCDQ export of the same model, so its clear (quantised) accuracy and outputs equal the
//! twin's; the TruncAvgPool2d models of Brevitas 0.13.4 (QONNX `Trunc` version 2) and 0.10.2
//! (version 1, Concrete ML 1.9's export) reproduce Brevitas in float and agree with each other.

mod common;

use common::{data_arg, fhec, fixtures, import_fixture, model_arg, ok, reference, sample};
use ndarray::ArrayD;
use ndarray_npy::NpzReader;
use serde_json::Value;

/// (QONNX fixture, QCDQ twin, dataset).
const TWINS: [(&str, &str, &str); 2] = [
    ("mlp_brevitas_qonnx", "mlp_brevitas", "breast_cancer.npz"),
    ("cnn_brevitas_qonnx_28", "cnn_brevitas_28", "digits_28.npz"),
];

/// The TruncAvgPool2d fixtures (same architecture and seed; Brevitas 0.13.4 and 0.10.2).
const TRUNC: [&str; 2] = [
    "cnn_brevitas_trunc_qonnx_8",
    "cnn_brevitas010_trunc_qonnx_8",
];

fn eval_json(stem: &str, data_file: &str, args: &[&str]) -> Value {
    let (m, d) = (model_arg(stem), data_arg(data_file));
    let mut all = vec!["eval", m.as_str(), "--data", d.as_str(), "--json"];
    all.extend_from_slice(args);
    let out = ok(&fhec(&all));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{stem}: {e}\n{out}"))
}

fn framework_accuracy(stem: &str) -> f64 {
    let p = fixtures().join("reference").join(format!("{stem}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["test_accuracy"].as_f64().unwrap()
}

#[test]
fn qonnx_twins_import_to_the_qcdq_ir() {
    for (qonnx, qcdq, _) in TWINS {
        let (a, b) = (import_fixture(qonnx).graph, import_fixture(qcdq).graph);
        let (ia, ib): (Vec<_>, Vec<_>) = (a.node_ids().collect(), b.node_ids().collect());
        assert_eq!(ia.len(), ib.len(), "{qonnx}: node count");
        for (&x, &y) in ia.iter().zip(&ib) {
            let (nx, ny) = (a.node(x), b.node(y));
            // Names differ (QONNX node and initializer names); ops, constants (bit for bit),
            // facts and wiring do not.
            assert_eq!(nx.op, ny.op, "{qonnx}: '{}' vs '{}'", nx.name, ny.name);
            assert_eq!(nx.fact, ny.fact, "{qonnx}: '{}'", nx.name);
            let pos = |g: &fhec_ir::Graph, ids: &[fhec_ir::NodeId], n| {
                g.node_inputs(n)
                    .iter()
                    .map(|i| ids.iter().position(|j| j == i).unwrap())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                pos(&a, &ia, x),
                pos(&b, &ib, y),
                "{qonnx}: inputs of '{}'",
                nx.name
            );
        }
        assert_eq!(a.outputs().len(), b.outputs().len());
    }
}

#[test]
fn qonnx_clear_accuracy_equals_the_qcdq_twin() {
    let mut report = vec![];
    for (qonnx, qcdq, data_file) in TWINS {
        for rounding in ["none", "7"] {
            let args = [
                "--bits",
                "4",
                "--mode",
                "clear",
                "--rounding-bits",
                rounding,
            ];
            let (a, b) = (
                eval_json(qonnx, data_file, &args),
                eval_json(qcdq, data_file, &args),
            );
            for key in ["samples", "accuracy", "float_accuracy", "agreement"] {
                assert_eq!(
                    a[key], b[key],
                    "{qonnx} vs {qcdq}, --rounding-bits {rounding}: {key}"
                );
            }
            assert_eq!(a["float_accuracy"].as_f64(), Some(framework_accuracy(qcdq)));
            report.push(format!(
                "{qonnx:<24} clear {:.4} (rounding {rounding}) = {qcdq} {:.4}",
                a["accuracy"].as_f64().unwrap(),
                b["accuracy"].as_f64().unwrap()
            ));
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn qonnx_clear_outputs_equal_the_qcdq_twin() {
    // The whole test split through `predict --mode clear` (QAT: no calibration data needed):
    // the same integer graph gives the same logits, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    for (qonnx, qcdq, data_file) in TWINS {
        let mut npz = NpzReader::new(std::fs::File::open(data_arg(data_file)).unwrap()).unwrap();
        let x: ArrayD<f32> = npz.by_name("x_test").unwrap();
        let xp = dir.path().join(format!("{qonnx}_x.npy"));
        ndarray_npy::write_npy(&xp, &x).unwrap();
        let run = |stem: &str| {
            let out = dir.path().join(format!("{stem}_y.npy"));
            ok(&fhec([
                "predict",
                &model_arg(stem),
                "--input",
                &xp.display().to_string(),
                "--mode",
                "clear",
                "--bits",
                "4",
                "--output",
                &out.display().to_string(),
            ]));
            ndarray_npy::read_npy::<_, ArrayD<f32>>(&out).unwrap()
        };
        assert_eq!(run(qonnx), run(qcdq), "{qonnx} vs {qcdq}");
    }
}

#[test]
fn qonnx_fixtures_reproduce_brevitas_in_float() {
    for stem in TWINS.iter().map(|t| t.0).chain(TRUNC) {
        let m = import_fixture(stem);
        let (xs, ys) = reference(stem);
        let mut worst = 0f32;
        for i in 0..xs.shape()[0] {
            let out = fhec_ir::interp::run(&m.graph, &[sample(&xs, i)]).unwrap();
            for (g, w) in out[0].iter().zip(sample(&ys, i).iter()) {
                worst = worst.max((g - w).abs());
            }
        }
        assert!(worst <= 2e-5, "{stem}: max abs error {worst}");
    }
}

#[test]
fn trunc_versions_agree_and_match_brevitas() {
    // Float: both Trunc versions (and Brevitas 0.10.2 / 0.13.4, which trained the same weights)
    // give the same predictions on the whole test split; clear stays within a point of float.
    let mut float_acc = vec![];
    for stem in TRUNC {
        let v = eval_json(stem, "digits_8.npz", &["--bits", "4", "--mode", "clear"]);
        let (acc, float) = (
            v["accuracy"].as_f64().unwrap(),
            v["float_accuracy"].as_f64().unwrap(),
        );
        assert_eq!(float, framework_accuracy(stem), "{stem}: float");
        assert!(
            (acc - float).abs() <= 0.01,
            "{stem}: clear {acc}, float {float}"
        );
        float_acc.push((acc, float));
    }
    assert_eq!(float_acc[0], float_acc[1], "{TRUNC:?}");
    let (a, b) = (reference(TRUNC[0]).1, reference(TRUNC[1]).1);
    assert_eq!(a, b, "the two Brevitas versions' reference outputs");
}

#[test]
fn inspect_names_the_qonnx_ops() {
    let out = ok(&fhec([
        "inspect",
        &model_arg("cnn_brevitas010_trunc_qonnx_8"),
    ]));
    assert!(out.contains("onnx.brevitas:Quant×6"), "{out}");
    assert!(out.contains("onnx.brevitas:Trunc×2"), "{out}");
    assert!(out.contains("supported:  yes"), "{out}");
    let ops = ok(&fhec(["inspect", "--supported-ops"]));
    for op in ["onnx.brevitas::Quant", "qonnx.custom_op.general::Trunc"] {
        assert!(ops.contains(op), "{ops}");
    }
}
