//! Every pass keeps the float semantics of every fixture model: on the fixtures' reference
//! inputs and on random inputs, the outputs after each pass (with the split-off
//! post-processing applied) match the imported model's.

mod common;

use std::sync::OnceLock;

use common::*;
use fhec_ir::Graph;
use proptest::prelude::*;

/// Each fixture's imported graph and its graphs after each pass, computed once.
fn pipelines() -> &'static Vec<(String, Graph, Vec<Stage>)> {
    static P: OnceLock<Vec<(String, Graph, Vec<Stage>)>> = OnceLock::new();
    P.get_or_init(|| {
        fixture_models()
            .into_iter()
            .map(|stem| {
                let g = fixture_graph(&stem);
                let s = stages(&g, Default::default());
                (stem, g, s)
            })
            .collect()
    })
}

#[test]
fn passes_preserve_outputs_on_reference_inputs() {
    for (stem, g, stages) in pipelines() {
        for (i, x) in reference_inputs(stem).into_iter().enumerate() {
            check_stages(g, stages, &[x]).unwrap_or_else(|e| panic!("{stem} sample {i}: {e}"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn passes_preserve_outputs_on_random_inputs(seed in any::<u64>()) {
        for (stem, g, stages) in pipelines() {
            // Images are in [0, 1]; tabular data is standardised.
            let (lo, hi) = if stem.starts_with("cnn") { (0.0, 1.0) } else { (-3.0, 3.0) };
            let x = random_inputs(g, seed, lo, hi);
            if let Err(e) = check_stages(g, stages, &x) {
                prop_assert!(false, "{}: {}", stem, e);
            }
        }
    }
}
