//! The IR after each pass of the pipeline, for every fixture model, and the pipeline report.

mod common;

use common::*;
use fhec_ir::print::print_graph;

const INTEGER_PASSES: &[&str] = &[
    "calibrate",
    "quantize",
    "table_ranges",
    "round_accumulators",
    "tlu_rewrite",
    "bit_widths",
];

#[test]
fn ir_after_each_pass() {
    for stem in fixture_models() {
        let g = fixture_graph(&stem);
        let stages = stages(&g, Default::default());
        for (i, s) in stages.iter().enumerate() {
            // The integer passes do nothing without quantisation options; they have their
            // own snapshots in snapshots_quantized.rs.
            if INTEGER_PASSES.contains(&s.pass) {
                continue;
            }
            insta::assert_snapshot!(
                format!("{stem}__{}_{}", i + 1, s.pass),
                print_graph(&s.graph)
            );
        }
        let report = &stages.last().expect("pipeline is not empty").report;
        insta::assert_snapshot!(format!("{stem}__report"), report.to_string());
    }
}
