//! tract-onnx's float inference as a second oracle: on random inputs, fhec's import + float
//! interpreter agree with tract on every fixture model.

mod common;

use common::*;
use proptest::prelude::*;
use tract_onnx::prelude::*;

type Runnable = std::sync::Arc<TypedRunnableModel>;

fn tract_model(stem: &str, shape: &[usize]) -> Runnable {
    let path = fixtures().join(format!("{stem}.onnx"));
    tract_onnx::onnx()
        .model_for_path(&path)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load {stem}: {e:?}"))
}

fn agree_on_random_inputs(stem: &str, cases: u32) {
    let m = import_fixture(stem);
    let shape = m.graph.node(m.graph.inputs()[0]).fact.shape.clone();
    let len: usize = shape.iter().product();
    let tract = tract_model(stem, &shape);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    // Values like the standardised features and [0,1] images the models were trained on,
    // plus some outliers.
    let strategy = proptest::collection::vec(-3.0f32..3.0, len);
    runner
        .run(&strategy, |values| {
            let x = ndarray::ArrayD::from_shape_vec(shape.clone(), values).expect("shape");
            let ours = fhec_ir::interp::run(&m.graph, std::slice::from_ref(&x)).expect("fhec run");
            let theirs = tract.run(tvec!(Tensor::from(x).into())).expect("tract run");
            let theirs = theirs[0].to_plain_array_view::<f32>().expect("f32 output");
            prop_assert_eq!(ours[0].shape(), theirs.shape());
            for (a, b) in ours[0].iter().zip(theirs.iter()) {
                prop_assert!(
                    (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                    "{stem}: fhec {a} vs tract {b}"
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
}

#[test]
fn float_models_agree_with_tract() {
    for stem in fixture_models() {
        // Quantize/dequantize chains round at ties, where two float implementations may
        // legitimately land on neighbouring levels: those models are checked below.
        if stem.contains("brevitas") {
            continue;
        }
        agree_on_random_inputs(&stem, 24);
    }
}

#[test]
fn qdq_models_agree_with_tract() {
    agree_on_random_inputs("mlp_brevitas", 24);
    agree_on_random_inputs("cnn_brevitas_28", 8);
}
