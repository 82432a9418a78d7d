//! Snapshots of lowered programs in the runtime's text form: instructions with shapes,
//! ranges, deltas and noise factors (weights and tables summarised).

mod lower_common;

use fhec_backend::lower::lower;
use fhec_ir::RoundingMode;
use lower_common::*;

#[test]
fn mlp_torch_6_bits_rounding_6() {
    let graph = compile_fixture("mlp_torch", 6, Some((6, RoundingMode::Approximate)), 455);
    insta::assert_snapshot!(lower(&graph).unwrap().to_string());
}

/// Padded convolution, per-channel tables, average pooling, and a max-pooling expanded into
/// a comparison tree (one-hot pickers, rescales to the comparison delta).
#[test]
fn cnn_torch_28_6_bits_rounding_6() {
    let graph = compile_fixture("cnn_torch_28", 6, Some((6, RoundingMode::Approximate)), 100);
    insta::assert_snapshot!(lower(&graph).unwrap().to_string());
}
