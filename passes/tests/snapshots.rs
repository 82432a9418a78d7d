//! The IR after each pass of the pipeline, for every fixture model, and the pipeline report.

mod common;

use common::*;
use fhec_ir::print::print_graph;

#[test]
fn ir_after_each_pass() {
    for stem in fixture_models() {
        let g = import_fixture(&stem);
        let stages = stages(&g, Default::default());
        for (i, s) in stages.iter().enumerate() {
            insta::assert_snapshot!(
                format!("{stem}__{}_{}", i + 1, s.pass),
                print_graph(&s.graph)
            );
        }
        let report = &stages.last().expect("pipeline is not empty").report;
        insta::assert_snapshot!(format!("{stem}__report"), report.to_string());
    }
}
