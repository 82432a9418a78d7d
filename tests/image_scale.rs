//! The image-scale fixture (`tests/fixtures/scale/cnn_torch_rgb_128.onnx`, 3x128x128 input,
//! 51,512 lookups, kept apart from the fixture-wide tests) works end to end: the float
//! interpreter reproduces the framework's logits, and compiling it with its 300 calibration
//! images and evaluating it in the clear and simulated keeps the float accuracy within a
//! few points. Its timings are the `image_scale` benchmark's business.

mod common;

use common::{fhec, fixtures, ok};
use ndarray::Axis;
use ndarray_npy::NpzReader;

const MODEL: &str = "scale/cnn_torch_rgb_128.onnx";
const DATA: &str = "data/digits_medmnist_rgb_128.npz";

#[test]
fn float_interpreter_matches_the_framework() {
    let imported =
        fhec_frontend::import_file(&fixtures().join(MODEL), &Default::default()).expect("import");
    let path = fixtures().join("reference/cnn_torch_rgb_128.npz");
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let x: ndarray::ArrayD<f32> = npz.by_name("inputs").unwrap();
    let y: ndarray::ArrayD<f32> = npz.by_name("outputs").unwrap();
    for i in 0..x.shape()[0] {
        let xi = x.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
        let got = fhec_ir::interp::run(&imported.graph, &[xi]).expect("float run");
        let want = y.index_axis(Axis(0), i);
        let diff = got[0]
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "sample {i}: max |fhec - torch| = {diff}");
    }
}

#[test]
fn compiles_with_300_calibration_images_and_keeps_accuracy() {
    let model = fixtures().join(MODEL);
    let data = fixtures().join(DATA);
    let dir = tempfile::tempdir().unwrap();
    let circuit = dir.path().join("m.fhec");
    let quant = "--bits 6 --rounding-bits 6 --calib-limit 300";
    let args = |first: &[&std::ffi::OsStr], last: &str| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = first.iter().map(|s| s.into()).collect();
        v.extend(quant.split(' ').chain(last.split(' ')).map(Into::into));
        v
    };
    let out = ok(&fhec(args(
        &[
            "compile".as_ref(),
            model.as_os_str(),
            "--calib".as_ref(),
            data.as_os_str(),
            "-o".as_ref(),
            circuit.as_os_str(),
        ],
        "--json",
    )));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["tlu_count"], 51512, "{out}");
    let phases: Vec<&str> = json["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in ["calibrate", "bit_widths", "lowering", "parameter search"] {
        assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
    }

    let out = ok(&fhec(args(
        &[
            "eval".as_ref(),
            model.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
        ],
        "--mode simulate --json",
    )));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["calibration_samples"], 300, "{out}");
    let float = json["float_accuracy"].as_f64().unwrap();
    assert!(float >= 0.95, "float accuracy {float}");
    for key in ["clear_accuracy", "accuracy"] {
        let acc = json[key].as_f64().unwrap();
        assert!(acc >= float - 0.05, "{key} {acc} vs float {float}");
    }
}
