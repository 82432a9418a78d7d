//! Clear-quantised accuracy of the fixture models across bit widths.

use std::path::Path;

use fhec_ir::{int_interp, interp, Tensor};
use fhec_passes::quantize::{calibrate, quantize, QuantOptions};
use fhec_passes::{run_pipeline, PassContext, PassOptions};
use ndarray::{ArrayD, Axis};
use ndarray_npy::NpzReader;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn load(
    stem: &str,
    data: &str,
    nhwc: bool,
) -> (fhec_ir::Graph, Vec<Tensor>, Vec<i64>, Vec<Tensor>) {
    let m = fhec_frontend::import_file(
        &fixtures().join(format!("{stem}.onnx")),
        &Default::default(),
    )
    .expect("import");
    let mut g = m.graph;
    run_pipeline(&mut g, &mut PassContext::new(PassOptions::default())).expect("pipeline");
    let mut npz =
        NpzReader::new(std::fs::File::open(fixtures().join("data").join(data)).unwrap()).unwrap();
    let mut split = |k: &str| -> Vec<Tensor> {
        let x: ArrayD<f32> = npz.by_name(k).unwrap();
        let x = if nhwc && x.ndim() == 4 {
            x.permuted_axes(vec![0, 2, 3, 1])
                .as_standard_layout()
                .into_owned()
        } else {
            x
        };
        x.axis_iter(Axis(0))
            .map(|s| s.insert_axis(Axis(0)).to_owned())
            .collect()
    };
    let train = split("x_train");
    let test = split("x_test");
    let y: ndarray::Array1<i64> = npz.by_name("y_test").unwrap();
    (g, test, y.to_vec(), train)
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

fn accuracy(stem: &str, data: &str, nhwc: bool, bits: &[u32]) -> (f64, Vec<(u32, f64, usize)>) {
    let (g, test, y, train) = load(stem, data, nhwc);
    let float_acc = test
        .iter()
        .zip(&y)
        .filter(|(x, &l)| argmax(&interp::run(&g, &[(*x).clone()]).unwrap()[0]) == l)
        .count() as f64
        / y.len() as f64;
    let calib: Vec<Vec<Tensor>> = train.iter().take(300).map(|x| vec![x.clone()]).collect();
    let ranges = calibrate(&g, &calib).unwrap();
    let mut out = vec![];
    for &b in bits {
        let q = quantize(&g, &ranges, &QuantOptions::uniform(b))
            .unwrap_or_else(|e| panic!("{stem} {b} bits: {e}"));
        let tlus = q
            .graph
            .node_ids()
            .filter(|&n| matches!(q.graph.node(n).op, fhec_ir::Op::Tlu(_)))
            .count();
        let acc = test
            .iter()
            .zip(&y)
            .filter(|(x, &l)| argmax(&int_interp::run(&q.graph, &[(*x).clone()]).unwrap()[0]) == l)
            .count() as f64
            / y.len() as f64;
        out.push((b, acc, tlus));
    }
    (float_acc, out)
}

#[test]
fn mlp_accuracy_per_bits() {
    let (f, rows) = accuracy(
        "mlp_torch",
        "breast_cancer.npz",
        false,
        &[2, 3, 4, 5, 6, 7, 8],
    );
    println!("mlp_torch float {f:.4}");
    for (b, a, t) in &rows {
        println!("  {b} bits: {a:.4} ({t} TLU nodes)");
    }
}

#[test]
fn cnn_accuracy_per_bits() {
    for (stem, data, nhwc) in [
        ("cnn_torch_28", "digits_28.npz", false),
        ("cnn_keras_28", "digits_28.npz", true),
        ("cnn_brevitas_28", "digits_28.npz", false),
        ("mlp_brevitas", "breast_cancer.npz", false),
    ] {
        let (f, rows) = accuracy(stem, data, nhwc, &[4, 5, 6, 8]);
        println!("{stem} float {f:.4}");
        for (b, a, t) in &rows {
            println!("  {b} bits: {a:.4} ({t} TLU nodes)");
        }
    }
}
