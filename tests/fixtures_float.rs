//! Fixture models: the lifted IR is snapshotted, and float execution reproduces the outputs
//! of the framework that trained each model.

mod common;

use common::*;

/// Worst absolute error allowed against the framework's own outputs.
const TOLERANCE: f32 = 2e-4;

#[test]
fn lifted_ir_snapshots() {
    for stem in fixture_models() {
        let m = import_fixture(&stem);
        insta::assert_snapshot!(
            format!("lifted_{stem}"),
            fhec_ir::print::print_graph(&m.graph)
        );
    }
}

#[test]
fn float_execution_matches_framework_outputs() {
    let mut report = vec![];
    for stem in fixture_models() {
        let m = import_fixture(&stem);
        let (xs, ys) = reference(&stem);
        let mut worst = 0f32;
        for i in 0..xs.shape()[0] {
            let out = fhec_ir::interp::run(&m.graph, &[sample(&xs, i)])
                .unwrap_or_else(|e| panic!("{stem} sample {i}: {e}"));
            let want = sample(&ys, i);
            assert_eq!(out[0].shape(), want.shape(), "{stem}: output shape");
            for (g, w) in out[0].iter().zip(want.iter()) {
                worst = worst.max((g - w).abs());
            }
        }
        report.push(format!("{stem:<24} max abs error {worst:.2e}"));
        assert!(
            worst <= TOLERANCE,
            "{stem}: max abs error {worst} > {TOLERANCE}"
        );
    }
    println!("{}", report.join("\n"));
}
