//! The integer graph after each integer pass (quantize, round_accumulators, tlu_rewrite,
//! bit_widths) on fixture models at 6 bits with rounding to 5 bits, and the final report;
//! and the tables on observed ranges (`table_ranges`) of two fixtures.

mod common;

use common::*;
use fhec_ir::print::print_graph;
use fhec_ir::RoundingMode;
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{run_pass, PassContext, PassOptions, RoundingOptions, TableRanges, PIPELINE};

const MODELS: &[(&str, &str)] = &[
    ("mlp_torch", "breast_cancer.npz"),
    ("mlp_torch_pruned", "breast_cancer.npz"),
    ("mlp_brevitas", "breast_cancer.npz"),
    ("cnn_torch_28", "digits_28.npz"),
    ("cnn_brevitas_28", "digits_28.npz"),
    ("cnn_keras_28", "digits_28.npz"),
];

#[test]
fn integer_ir_after_each_pass() {
    for &(stem, data) in MODELS {
        let mut g = fixture_graph(stem);
        let mut ctx = PassContext::new(PassOptions {
            prune_threshold: 0.0,
            quantization: Some(QuantOptions::uniform(6)),
            rounding: Some(RoundingOptions {
                bits: 5,
                mode: RoundingMode::Approximate,
            }),
            ..Default::default()
        });
        ctx.calibration_inputs = data_samples(data, "x_train", stem.contains("keras"), 64)
            .into_iter()
            .map(|x| vec![x])
            .collect();
        for pass in PIPELINE {
            run_pass(&mut g, &mut ctx, pass).unwrap_or_else(|e| panic!("{stem}: {e}"));
            if [
                "quantize",
                "round_accumulators",
                "tlu_rewrite",
                "bit_widths",
            ]
            .contains(&pass.name)
            {
                insta::assert_snapshot!(format!("{stem}__int_{}", pass.name), print_graph(&g));
            }
        }
        insta::assert_snapshot!(format!("{stem}__int_report"), ctx.report.to_string());
    }
}

#[test]
fn tables_on_observed_ranges() {
    for &(stem, data) in &MODELS[..4] {
        let mut g = fixture_graph(stem);
        let mut ctx = PassContext::new(PassOptions {
            quantization: Some(QuantOptions::uniform(6)),
            rounding: Some(RoundingOptions {
                bits: 6,
                mode: RoundingMode::Exact,
            }),
            table_ranges: TableRanges::Observed { margin: 0.1 },
            ..Default::default()
        });
        ctx.calibration_inputs = data_samples(data, "x_train", false, 64)
            .into_iter()
            .map(|x| vec![x])
            .collect();
        for pass in PIPELINE {
            run_pass(&mut g, &mut ctx, pass).unwrap_or_else(|e| panic!("{stem}: {e}"));
            if pass.name == "table_ranges" {
                insta::assert_snapshot!(format!("{stem}__observed_table_ranges"), print_graph(&g));
            }
        }
        insta::assert_snapshot!(format!("{stem}__observed_report"), ctx.report.to_string());
    }
}
