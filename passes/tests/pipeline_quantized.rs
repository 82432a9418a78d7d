//! The whole pipeline with quantisation on: accuracy per bit width (with and without
//! rounding) and TLU counts, dense vs pruned.

use fhec_ir::{int_interp, interp, RoundingMode, Tensor};
use fhec_passes::bitwidth::{max_accumulator_bits, tlu_count};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{PassOptions, RoundingOptions};
use fhec_testkit::{data_samples, fixture_graph, npz_array};

struct Data {
    train: Vec<Tensor>,
    test: Vec<Tensor>,
    labels: Vec<i64>,
}

/// Every training and test sample of a fixture data file, and the test labels.
fn data(file: &str, nhwc: bool) -> Data {
    let labels = npz_array::<i64>(&format!("data/{file}"), "y_test");
    Data {
        train: data_samples(file, "x_train", nhwc, usize::MAX),
        test: data_samples(file, "x_test", nhwc, usize::MAX),
        labels: labels.iter().copied().collect(),
    }
}

fn argmax(t: &Tensor) -> i64 {
    t.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0 as i64
}

struct Run {
    accuracy: f64,
    tlus: usize,
    max_bits: u32,
}

fn compile_and_eval(stem: &str, d: &Data, bits: Option<u32>, rounding: Option<u32>) -> Run {
    let options = PassOptions {
        prune_threshold: 0.0,
        quantization: bits.map(QuantOptions::uniform),
        rounding: rounding.map(|bits| RoundingOptions {
            bits,
            mode: RoundingMode::Approximate,
        }),
        ..Default::default()
    };
    let calibration = d.train.iter().take(200).map(|x| vec![x.clone()]).collect();
    let (g, report) = fhec_passes::compile(&fixture_graph(stem), options, calibration)
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    let correct = d
        .test
        .iter()
        .zip(&d.labels)
        .filter(|(x, &l)| {
            let out = if bits.is_some() {
                int_interp::run(&g, &[(*x).clone()])
            } else {
                interp::run(&g, &[(*x).clone()])
            };
            argmax(&out.unwrap()[0]) == l
        })
        .count();
    Run {
        accuracy: correct as f64 / d.labels.len() as f64,
        tlus: tlu_count(&g),
        max_bits: max_accumulator_bits(&report.bit_widths),
    }
}

#[test]
fn mlp_meets_accuracy_targets() {
    let d = data("breast_cancer.npz", false);
    let float = compile_and_eval("mlp_torch", &d, None, None).accuracy;
    println!("mlp_torch float {float:.4}");
    for bits in 2..=8 {
        let r = compile_and_eval("mlp_torch", &d, Some(bits), None);
        let r6 = compile_and_eval("mlp_torch", &d, Some(bits), Some(6));
        println!(
            "  {bits} bits: {:.4} ({} TLUs, max acc {} bits) | rounding 6: {:.4}",
            r.accuracy, r.tlus, r.max_bits, r6.accuracy
        );
        if bits >= 4 {
            assert!(
                r.accuracy >= float - 0.01,
                "{bits} bits: {} vs float {float}",
                r.accuracy
            );
        }
    }
}

#[test]
fn cnn_meets_accuracy_targets() {
    let d = data("digits_28.npz", false);
    let float = compile_and_eval("cnn_torch_28", &d, None, None).accuracy;
    println!("cnn_torch_28 float {float:.4}");
    for bits in [4, 5, 6, 7, 8] {
        let r = compile_and_eval("cnn_torch_28", &d, Some(bits), None);
        println!(
            "  {bits} bits: {:.4} ({} TLUs, max acc {} bits)",
            r.accuracy, r.tlus, r.max_bits
        );
        if bits >= 5 {
            assert!(
                r.accuracy >= float - 0.02,
                "{bits} bits: {} vs float {float}",
                r.accuracy
            );
        }
    }
}

#[test]
fn residual_cnn_meets_accuracy_targets() {
    // Two residual Adds and a Concat of a side branch (resnet_torch_28).
    let d = data("digits_28.npz", false);
    let float = compile_and_eval("resnet_torch_28", &d, None, None).accuracy;
    println!("resnet_torch_28 float {float:.4}");
    for bits in [4, 5, 6, 7, 8] {
        let r = compile_and_eval("resnet_torch_28", &d, Some(bits), None);
        let r7 = compile_and_eval("resnet_torch_28", &d, Some(bits), Some(7));
        println!(
            "  {bits} bits: {:.4} ({} TLUs, max acc {} bits) | rounding 7: {:.4}",
            r.accuracy, r.tlus, r.max_bits, r7.accuracy
        );
        for (what, acc) in [("no rounding", r.accuracy), ("rounding 7", r7.accuracy)] {
            assert!(
                acc >= float - 0.02,
                "{bits} bits, {what}: {acc} vs float {float}"
            );
        }
    }
}

#[test]
fn per_channel_qat_fixtures_keep_their_float_accuracy() {
    // Brevitas per-output-channel weight scales, the last layer included: the model's own
    // integers and scales, so without rounding the integer graph is the QAT model.
    for (stem, file) in [
        ("mlp_brevitas_perchannel", "breast_cancer.npz"),
        ("cnn_brevitas_perchannel_28", "digits_28.npz"),
    ] {
        let d = data(file, false);
        let float = compile_and_eval(stem, &d, None, None).accuracy;
        let r = compile_and_eval(stem, &d, Some(4), None);
        println!("{stem}: float {float:.4}, integer {:.4}", r.accuracy);
        assert!(
            (r.accuracy - float).abs() <= 0.005,
            "{stem}: {} vs float {float}",
            r.accuracy
        );
    }
}

#[test]
fn pruned_model_needs_about_half_the_table_lookups() {
    let d = data("breast_cancer.npz", false);
    let dense = compile_and_eval("mlp_torch", &d, Some(6), Some(6));
    let pruned = compile_and_eval("mlp_torch_pruned", &d, Some(6), Some(6));
    println!("TLUs dense {} pruned {}", dense.tlus, pruned.tlus);
    assert_eq!(dense.tlus, 96);
    assert_eq!(pruned.tlus, 48);
}
