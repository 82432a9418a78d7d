//! `fhec prune -o` and the ONNX writer under it: every float fixture, canonicalised and
//! written back, computes the same as fhec's graph in tract-onnx (an independent ONNX
//! implementation) and after re-import; quantised-model ops are refused by name; the CLI
//! writes a pruned model whose float accuracy is the one it reports.

mod common;

use common::{fails, fhec, fixture_models, fixtures, import_fixture, ok, reference, sample};
use fhec_passes::{PassContext, PassOptions};
use tract_onnx::prelude::*;

/// The first half of the pipeline (canonicalise, exact pruning, calibration) on `stem`.
fn canonical(stem: &str) -> (fhec_ir::Graph, Vec<String>) {
    let m = import_fixture(stem);
    let mut g = m.graph.clone();
    let mut ctx = PassContext::new(PassOptions::default());
    let (first, _) = fhec_passes::pipeline_split();
    fhec_passes::run_passes(&mut g, &mut ctx, first).expect("passes");
    (g, m.output_names)
}

fn tract_run(bytes: &[u8], x: &ndarray::ArrayD<f32>) -> ndarray::ArrayD<f32> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact(x.shape()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load the written model: {e:?}"));
    let out = model
        .run(tvec!(Tensor::from(x.clone()).into()))
        .expect("tract run");
    out[0].to_plain_array_view::<f32>().unwrap().to_owned()
}

fn max_diff(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max)
}

#[test]
fn every_float_fixture_written_back_computes_the_same_in_tract_and_after_reimport() {
    let mut checked = 0;
    for stem in fixture_models() {
        if stem.contains("brevitas") {
            continue;
        }
        let (g, names) = canonical(&stem);
        let onnx = fhec_frontend::export::export(&g, &names, "test")
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let bytes = prost::Message::encode_to_vec(&onnx);
        let back = fhec_frontend::import_bytes(&bytes, "written.onnx", &Default::default())
            .unwrap_or_else(|e| panic!("{stem}: the written model does not import: {e}"));
        assert_eq!(back.output_names, names, "{stem}");
        let (x, _) = reference(&stem);
        for i in 0..x.shape()[0].min(3) {
            let xi = sample(&x, i);
            let ours = fhec_ir::interp::run(&g, std::slice::from_ref(&xi)).unwrap();
            let again = fhec_ir::interp::run(&back.graph, std::slice::from_ref(&xi)).unwrap();
            let tract = tract_run(&bytes, &xi);
            assert!(
                max_diff(&again[0], &ours[0]) < 1e-5,
                "{stem}: re-import differs"
            );
            let d = max_diff(&tract, &ours[0]);
            assert!(
                d < 1e-4,
                "{stem}: tract on the written model differs by {d}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures checked");
}

#[test]
fn quantised_and_qdq_graphs_are_refused_naming_the_node() {
    let (g, names) = canonical("mlp_brevitas");
    let e = fhec_frontend::export::export(&g, &names, "test")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("QuantizeLinear") || e.contains("DequantizeLinear"),
        "{e}"
    );
    assert!(e.contains("export QAT models from their framework"), "{e}");
}

#[test]
fn prune_writes_the_model_whose_accuracy_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.onnx");
    let model = fixtures().join("ecg/mlp_keras_ecg.onnx");
    let data = fixtures().join("data/ecg_synthetic.npz");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "prune".into(),
            model.display().to_string(),
            "--prune-rate".into(),
            "0.5".into(),
            "--calib".into(),
            data.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let r: serde_json::Value = serde_json::from_str(&ok(&fhec(args(&[
        "--data",
        &data.display().to_string(),
        "--json",
    ]))))
    .unwrap();
    let first = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["before"] == 64)
        .expect("the 64-unit layer");
    assert_eq!(first["after"], 32);
    let eval: serde_json::Value = serde_json::from_str(&ok(&fhec([
        "eval",
        &out.display().to_string(),
        "--data",
        &data.display().to_string(),
        "--mode",
        "float",
        "--json",
    ])))
    .unwrap();
    assert_eq!(eval["accuracy"], r["accuracy_after"]);
    assert!(r["accuracy_after"].as_f64().unwrap() < r["accuracy_before"].as_f64().unwrap());
    // What the pruned file computes is what the pruned graph computes in fhec.
    let bytes = std::fs::read(&out).unwrap();
    let back = fhec_frontend::import_bytes(&bytes, "written.onnx", &Default::default()).unwrap();
    let (x, _) = reference("mlp_keras_ecg");
    let xi = sample(&x, 0);
    let ours = fhec_ir::interp::run(&back.graph, std::slice::from_ref(&xi)).unwrap();
    assert!(max_diff(&tract_run(&bytes, &xi), &ours[0]) < 1e-4);

    fails(
        &fhec([
            "prune",
            &model.display().to_string(),
            "--prune-rate",
            "0.5",
            "--calib",
            &data.display().to_string(),
            "-o",
            &model.display().to_string(),
        ]),
        &["both an input and the output"],
    );
    fails(
        &fhec([
            "prune",
            &fixtures().join("mlp_brevitas.onnx").display().to_string(),
            "--prune-rate",
            "0.5",
            "--calib",
            &fixtures()
                .join("data/breast_cancer.npz")
                .display()
                .to_string(),
            "-o",
            &dir.path().join("q.onnx").display().to_string(),
        ]),
        // Quantize/dequantize pairs between its layers: nothing prunable, nothing written.
        &["mlp_brevitas.onnx", "has no prunable layer"],
    );
    assert!(!dir.path().join("q.onnx").exists());
}
