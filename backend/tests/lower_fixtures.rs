//! The lowered fixture models compute exactly what the integer interpreter computes: same
//! output integers, same dequantised outputs, at several bit widths, with and without
//! rounding (exact and approximate).

mod lower_common;

use fhec_backend::lower::lower;
use fhec_ir::RoundingMode;
use fhec_passes::bitwidth::tlu_count;
use fhec_runtime::circuit::Instruction;
use lower_common::*;

/// Compiles, lowers and compares `stem` on its first `n` test samples for each setting.
fn check_model(
    stem: &str,
    settings: &[(u32, Option<(u32, RoundingMode)>)],
    calib: usize,
    n: usize,
) {
    let (file, nhwc) = data_of(stem);
    let test = data_samples(file, "x_test", nhwc, n);
    for &(bits, rounding) in settings {
        let what = format!("{stem} at {bits} bits, rounding {rounding:?}");
        let graph = compile_fixture(stem, bits, rounding, calib);
        let program = lower(&graph).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_encoding(&program);
        assert_eq!(
            lookups(&program),
            tlu_count(&graph) as u64,
            "{what}: lookups"
        );
        assert_eq!(program.inputs.len(), 1, "{what}");
        assert_eq!(program.outputs.len(), 1, "{what}");
        for (i, x) in test.iter().enumerate() {
            assert_same(
                &graph,
                &program,
                std::slice::from_ref(x),
                &format!("{what}, sample {i}"),
            );
        }
    }
}

const EXACT: RoundingMode = RoundingMode::Exact;
const APPROX: RoundingMode = RoundingMode::Approximate;

#[test]
fn mlps_match_the_integer_interpreter() {
    let settings = [
        (3, None),
        (6, None),
        (8, None),
        (6, Some((6, APPROX))),
        (8, Some((5, EXACT))),
        (3, Some((4, EXACT))),
    ];
    for stem in ["mlp_torch", "mlp_torch_pruned", "mlp_keras", "mlp_brevitas"] {
        check_model(stem, &settings, 100, 20);
    }
}

#[test]
fn cnns_match_the_integer_interpreter() {
    let settings = [(3, None), (6, Some((6, APPROX))), (8, Some((5, EXACT)))];
    for stem in ["cnn_torch_28", "cnn_keras_28", "cnn_brevitas_28"] {
        check_model(stem, &settings, 40, 4);
    }
}

/// The max-poolings of the CNNs feed accumulators wider than their comparison tables, so
/// they are expanded into comparison trees of one-hot convolutions and table lookups.
#[test]
fn cnn_max_pooling_is_expanded() {
    let graph = compile_fixture("cnn_torch_28", 6, Some((6, APPROX)), 20);
    let program = lower(&graph).unwrap();
    assert!(!program
        .instructions
        .iter()
        .any(|i| matches!(i, Instruction::MaxPool { .. })));
    // Two convolutions of the model plus one one-hot picker per element of the 2x2 window.
    let convs = program
        .instructions
        .iter()
        .filter(|i| matches!(i, Instruction::Conv { .. }))
        .count();
    assert_eq!(convs, 2 + 4);
    assert_eq!(lookups(&program), tlu_count(&graph) as u64);
}

/// Lowering is deterministic: the same graph gives the same program.
#[test]
fn lowering_is_deterministic() {
    let graph = compile_fixture("cnn_brevitas_28", 4, None, 10);
    assert_eq!(lower(&graph).unwrap(), lower(&graph).unwrap());
}
