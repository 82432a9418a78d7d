//! `fhec inspect MODEL --prune-stats`: zero-weight statistics per prunable layer, checked
//! against the weights read straight from the ONNX file and against the fixtures' documented
//! architecture.

mod common;

use common::{fhec, fixtures, ok};
use serde_json::Value;
use tract_onnx::prelude::Framework;

/// The initializer `name` of a fixture as a row-major `[rows, cols]` matrix.
fn initializer(stem: &str, name: &str) -> (usize, usize, Vec<f32>) {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(fixtures().join(format!("{stem}.onnx")))
        .expect("read the ONNX file");
    let graph = proto.graph.expect("graph");
    let t = graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{stem}: no initializer {name}"));
    // float_data, or little-endian raw_data.
    let data: Vec<f32> = if t.float_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    assert_eq!(shape.len(), 2, "{stem}: {name} is not a matrix");
    assert_eq!(data.len(), shape[0] * shape[1]);
    (shape[0], shape[1], data)
}

fn stats(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["inspect", "--prune-stats", "--json"];
    all.extend(args);
    let v: Value = serde_json::from_str(&ok(&fhec(all))).expect("--json");
    v["prune_stats"].as_array().expect("prune_stats").clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Equal up to JSON's float round trip (serde_json parses to within an ulp or two).
#[track_caller]
fn assert_close(got: &[f64], want: &[f64], what: &Value) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "{what}, unit {j}: {g} vs {w}");
    }
}

/// torch `Linear` weights are `[out, in]`: unit `j`'s incoming weights are row `j` of its
/// layer, its outgoing weights column `j` of the next.
fn expected(stem: &str, layer: &str, next: &str, t: f32) -> (Vec<f64>, Vec<f64>) {
    let (out, inp, w) = initializer(stem, layer);
    let (out2, inp2, w2) = initializer(stem, next);
    assert_eq!(inp2, out, "{layer} feeds {next}");
    let zero = |v: &f32| v.abs() <= t;
    let incoming = (0..out)
        .map(|j| w[j * inp..(j + 1) * inp].iter().filter(|v| zero(v)).count() as f64 / inp as f64)
        .collect();
    let outgoing = (0..out)
        .map(|j| (0..out2).filter(|&o| zero(&w2[o * inp2 + j])).count() as f64 / out2 as f64)
        .collect();
    (incoming, outgoing)
}

#[test]
fn mlp_zero_fractions_match_the_onnx_weights() {
    let model = fixtures().join("mlp_torch_pruned.onnx");
    let model = model.to_str().unwrap();
    for t in [0.0f32, 0.05] {
        let ts = t.to_string();
        let layers = stats(&[model, "--prune-threshold", &ts]);
        assert_eq!(
            layers.len(),
            2,
            "two hidden Gemm layers feed another: {layers:?}"
        );
        for (l, (w, next)) in layers
            .iter()
            .zip([("0.weight", "2.weight"), ("2.weight", "4.weight")])
        {
            let (incoming, outgoing) = expected("mlp_torch_pruned", w, next, t);
            assert_eq!(l["kind"], "Gemm");
            assert_eq!(l["units"], incoming.len());
            assert_eq!(l["lookups_per_unit"], 1);
            assert_close(
                &floats(&l["zero_incoming_fraction"]),
                &incoming,
                &l["layer"],
            );
            assert_close(
                &floats(&l["zero_outgoing_fraction"]),
                &outgoing,
                &l["layer"],
            );
        }
    }
    // The fixture zeroes every incoming weight and bias of half the neurons of each hidden
    // layer (tests/fixtures/README.md): those are removable exactly.
    let layers = stats(&[model]);
    let units: Vec<u64> = layers
        .iter()
        .map(|l| l["units"].as_u64().unwrap())
        .collect();
    assert_eq!(units, [64, 32]);
    for l in &layers {
        let n = l["units"].as_u64().unwrap();
        assert_eq!(l["removable_exactly"], n / 2, "{}", l["layer"]);
        let all_zero = floats(&l["zero_incoming_fraction"])
            .iter()
            .filter(|&&f| f == 1.0)
            .count() as u64;
        assert_eq!(all_zero, n / 2);
        // Rates: floor(rate * units) units, one lookup each.
        let saved: Vec<(f64, u64, u64)> = l["saved_at_rate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["rate"].as_f64().unwrap(),
                    s["units"].as_u64().unwrap(),
                    s["bootstraps"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            saved,
            [
                (0.25, n / 4, n / 4),
                (0.5, n / 2, n / 2),
                (0.75, 3 * n / 4, 3 * n / 4)
            ]
        );
    }
}

#[test]
fn conv_channels_cost_their_spatial_size() {
    // cnn_torch_28 (tests/fixtures/README.md): Conv(1->4, pad 1) on 28x28, AvgPool, Conv(4->8,
    // stride 2) to 6x6, MaxPool, Flatten, Gemm: two prunable layers.
    let model = fixtures().join("cnn_torch_28.onnx");
    let layers = stats(&[model.to_str().unwrap()]);
    let got: Vec<(String, u64, u64)> = layers
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["units"].as_u64().unwrap(),
                l["lookups_per_unit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Conv".to_string(), 4, 28 * 28),
            ("Conv".to_string(), 8, 6 * 6)
        ]
    );
    assert_eq!(layers[1]["saved_at_rate"][1]["bootstraps"], 4 * 36);
}

#[test]
fn text_report_and_threshold_without_bits() {
    let model = fixtures().join("mlp_torch_pruned.onnx");
    let text = ok(&fhec([
        "inspect",
        model.to_str().unwrap(),
        "--prune-stats",
        "--prune-threshold",
        "0.01",
    ]));
    assert!(
        text.contains("a weight counts as zero when |w| <= 0.01"),
        "{text}"
    );
    assert!(
        text.contains("64 units, 1 lookup(s) each, 32 removable exactly"),
        "{text}"
    );
    assert!(
        text.contains("pruning by rate saves 0.25: 16 units, 16 bootstraps"),
        "{text}"
    );
    // Without --prune-stats, the threshold still needs --bits.
    let o = fhec([
        "inspect",
        model.to_str().unwrap(),
        "--prune-threshold",
        "0.01",
    ]);
    common::fails(&o, &["--bits"]);
}

/// `--prune-rate` removes floor(rate * units) neurons per layer (one lookup each on the MLP)
/// and says so in the report; accuracy is measured on the pruned circuit.
#[test]
fn prune_rate_removes_that_share_of_each_layer() {
    let model = fixtures().join("mlp_torch.onnx");
    let data = fixtures().join("data/breast_cancer.npz");
    let run = |rate: &str, json: bool| {
        let mut args = vec![
            "eval",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--bits",
            "6",
            "--prune-rate",
            rate,
        ];
        if json {
            args.push("--json");
        }
        fhec(args)
    };
    let eval =
        |rate: &str| -> Value { serde_json::from_str(&ok(&run(rate, true))).expect("--json") };
    // 64 and 32 hidden neurons: 0.25 removes 16 of 64, 0.5 removes 16 of 32.
    let v = eval("0.25:0.5");
    assert_eq!(v["tlu_count"], 48 + 16);
    let by_rate: Vec<(u64, u64, u64)> = v["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["before"].as_u64().unwrap(),
                p["after"].as_u64().unwrap(),
                p["by_rate"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_rate, [(64, 48, 16), (32, 16, 16)]);
    assert_eq!(
        v["quantization"]["prune_rate"],
        serde_json::json!([0.25, 0.5])
    );
    let acc = v["quantized_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // One rate for both layers.
    assert_eq!(eval("0.5")["tlu_count"], 32 + 16);
    // Rates outside [0, 1) and a wrong count of per-layer rates are refused.
    let o = run("1", false);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("not a rate in [0, 1)"));
    common::fails(
        &run("0.1:0.2:0.3", false),
        &["3 pruning rates for 2 prunable layers"],
    );
}
