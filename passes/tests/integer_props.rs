//! Property tests of the integer passes on random MLPs and CNNs:
//! - the quantised graph runs on ANY input (outliers included) without leaving a table's
//!   domain, and every value stays inside the worst-case range the bit-width analysis gives
//!   (what the FHE circuit relies on to never wrap);
//! - at 8 bits the quantised outputs track the float outputs;
//! - rounding that is not needed changes nothing, and rounding never leaves the domain;
//! - tables on observed ranges compute exactly what worst-case tables compute on the
//!   calibration data, inside the worst-case domain, and are narrower on most graphs.

mod common;

use common::{Lcg, GEMM_TRANS_B};
use fhec_ir::{
    int_interp, interp, ConvAttrs, Graph, Op, RoundingMode, Tensor, TensorFact, UnaryOp,
};
use fhec_passes::bitwidth::{observed_ranges, worst_case_ranges};
use fhec_passes::quantize::QuantOptions;
use fhec_passes::{PassOptions, RoundingOptions, TableRanges};
use proptest::prelude::*;

/// A random MLP (Gemm + ReLU/Sigmoid layers) or small CNN (Conv + ReLU + pooling + Gemm).
fn random_model(seed: u64, conv: bool) -> Graph {
    let mut r = Lcg::new(seed);
    let mut g = Graph::new();
    let mut x;
    let mut width;
    if conv {
        let c_in = 1 + r.below(2);
        x = g.add_input("x", TensorFact::f32([1, c_in, 8, 8]));
        let c_out = 2 + r.below(3);
        let w = g
            .add_node(
                "w",
                Op::Const(r.tensor(&[c_out, c_in, 3, 3], -1.0, 1.0)),
                &[],
            )
            .unwrap();
        let b = g
            .add_node("b", Op::Const(r.tensor(&[c_out], -0.5, 0.5)), &[])
            .unwrap();
        let attrs = ConvAttrs {
            strides: vec![1 + r.below(2); 2],
            dilations: vec![1, 1],
            pads: vec![(r.below(2), r.below(2)); 2],
            group: 1,
        };
        x = g.add_node("conv", Op::Conv(attrs), &[x, w, b]).unwrap();
        x = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[x]).unwrap();
        let n = g.node(x).fact.len();
        x = g
            .add_node("flatten", Op::Reshape { shape: vec![1, n] }, &[x])
            .unwrap();
        width = n;
    } else {
        width = 3 + r.below(8);
        x = g.add_input("x", TensorFact::f32([1, width]));
    }
    for layer in 0..(1 + r.below(3)) {
        let out = 2 + r.below(10);
        let w = g
            .add_node(
                format!("w{layer}"),
                Op::Const(r.tensor(&[out, width], -1.0, 1.0)),
                &[],
            )
            .unwrap();
        let b = g
            .add_node(
                format!("b{layer}"),
                Op::Const(r.tensor(&[out], -0.5, 0.5)),
                &[],
            )
            .unwrap();
        x = g
            .add_node(format!("fc{layer}"), Op::Gemm(GEMM_TRANS_B), &[x, w, b])
            .unwrap();
        let act = if r.chance(0.7) {
            UnaryOp::Relu
        } else {
            UnaryOp::Sigmoid
        };
        x = g
            .add_node(format!("act{layer}"), Op::Unary(act), &[x])
            .unwrap();
        width = out;
    }
    let w = g
        .add_node("wout", Op::Const(r.tensor(&[3, width], -1.0, 1.0)), &[])
        .unwrap();
    x = g.add_node("out", Op::Gemm(GEMM_TRANS_B), &[x, w]).unwrap();
    g.set_outputs(vec![x]);
    g.verify().unwrap();
    g
}

fn compile(g: &Graph, seed: u64, bits: u32, rounding: Option<u32>) -> (Graph, Vec<Vec<Tensor>>) {
    compile_with(g, seed, bits, rounding, TableRanges::WorstCase)
}

fn compile_with(
    g: &Graph,
    seed: u64,
    bits: u32,
    rounding: Option<u32>,
    table_ranges: TableRanges,
) -> (Graph, Vec<Vec<Tensor>>) {
    let shape = g.node(g.inputs()[0]).fact.shape.clone();
    let mut r = Lcg::new(seed ^ 0x5eed);
    let calib: Vec<Vec<Tensor>> = (0..16).map(|_| vec![r.tensor(&shape, -1.0, 1.0)]).collect();
    let options = PassOptions {
        prune_threshold: 0.0,
        prune_rates: vec![],
        prune_method: Default::default(),
        quantization: Some(QuantOptions::uniform(bits)),
        rounding: rounding.map(|bits| RoundingOptions {
            bits,
            mode: RoundingMode::Exact,
        }),
        table_ranges,
    };
    let (q, _) = fhec_passes::compile(g, options, calib.clone()).expect("pipeline");
    (q, calib)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn quantised_graphs_stay_in_their_tables_and_ranges(seed in any::<u64>(), conv in any::<bool>(), bits in 2u32..=8, round in proptest::option::of(3u32..=6)) {
        let g = random_model(seed, conv);
        let (q, _) = compile(&g, seed, bits, round);
        let worst = worst_case_ranges(&q).unwrap();
        let shape = g.node(g.inputs()[0]).fact.shape.clone();
        let mut r = Lcg::new(seed ^ 0xabc);
        // Inputs far outside the calibration range included.
        let inputs: Vec<Vec<Tensor>> = (0..8).map(|i| vec![r.tensor(&shape, -3.0 * i as f32, 3.0 * i as f32 + 0.1)]).collect();
        let observed = observed_ranges(&q, &inputs).unwrap();
        for (id, (lo, hi)) in observed {
            let (wlo, whi) = worst[&id];
            prop_assert!(wlo <= lo && hi <= whi, "{}: observed [{lo},{hi}] outside worst [{wlo},{whi}]", q.node(id).name);
        }
    }

    #[test]
    fn eight_bit_quantisation_tracks_float(seed in any::<u64>(), conv in any::<bool>()) {
        let g = random_model(seed, conv);
        let (q, calib) = compile(&g, seed, 8, None);
        let mut scale = 0f32;
        let mut worst = 0f32;
        for x in &calib {
            let f = interp::run(&g, x).unwrap();
            let i = int_interp::run(&q, x).unwrap();
            for (a, b) in f[0].iter().zip(i[0].iter()) {
                scale = scale.max(a.abs());
                worst = worst.max((a - b).abs());
            }
        }
        prop_assert!(worst <= 0.08 * scale + 0.02, "max error {worst} for output scale {scale}");
    }

    #[test]
    fn unneeded_rounding_changes_nothing(seed in any::<u64>(), conv in any::<bool>()) {
        let g = random_model(seed, conv);
        let (plain, calib) = compile(&g, seed, 3, None);
        let (rounded, _) = compile(&g, seed, 3, Some(24));
        prop_assert_eq!(fhec_ir::print::print_graph(&plain), fhec_ir::print::print_graph(&rounded));
        for x in &calib {
            prop_assert_eq!(int_interp::run(&plain, x).unwrap(), int_interp::run(&rounded, x).unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every rounded table has at most 2^R entries: the bootstrap precision is R bits.
    #[test]
    fn rounded_tables_fit_the_rounding_bits(seed in any::<u64>(), conv in any::<bool>(), bits in 4u32..=8, round in 2u32..=6) {
        let g = random_model(seed, conv);
        let (q, _) = compile(&g, seed, bits, Some(round));
        for id in q.node_ids() {
            if let Op::Tlu(t) = &q.node(id).op {
                prop_assert!(t.input_bits() <= round.max(1), "{}: {} input bits > {round}", q.node(id).name, t.input_bits());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Narrowing only cuts entries no calibration sample reads: on the calibration data the
    /// graph is unchanged, every domain covers the observed input range and stays inside the
    /// worst-case one.
    #[test]
    fn observed_tables_keep_calibration_results(seed in any::<u64>(), conv in any::<bool>(), bits in 3u32..=8, margin in 0f32..0.5) {
        let g = random_model(seed, conv);
        let (wide, calib) = compile(&g, seed, bits, None);
        let (narrow, _) = compile_with(&g, seed, bits, None, TableRanges::Observed { margin });
        let seen = observed_ranges(&narrow, &calib).unwrap();
        for x in &calib {
            prop_assert_eq!(int_interp::run(&wide, x).unwrap(), int_interp::run(&narrow, x).unwrap());
            let (_, outside) = int_interp::run_counting(&narrow, x).unwrap();
            prop_assert_eq!(outside, 0);
        }
        // Later passes may rebuild a node (an all-zero narrowed table loses its per-channel
        // axis), so the two graphs are matched by node name, not id.
        for id in narrow.node_ids() {
            let name = &narrow.node(id).name;
            let Some(wide_id) = wide.node_ids().find(|&w| &wide.node(w).name == name) else { continue };
            let (Op::Tlu(n), Op::Tlu(w)) = (&narrow.node(id).op, &wide.node(wide_id).op) else { continue };
            let len = |t: &fhec_ir::Tlu| t.tables[0].len() as i64;
            let (lo, hi) = seen[&narrow.node_inputs(id)[0]];
            prop_assert!(n.input_min <= lo && hi < n.input_min + len(n), "{}: domain misses [{lo}, {hi}]", narrow.node(id).name);
            prop_assert!(w.input_min <= n.input_min && n.input_min + len(n) <= w.input_min + len(w));
        }
    }
}

/// The observed-range pass does narrow tables on random graphs (the property above is not
/// vacuous), and an input far outside the calibration range leaves a domain.
#[test]
fn observed_tables_are_narrower_and_can_be_left() {
    let (mut narrowed, mut left) = (0, 0);
    for seed in 0..40 {
        for conv in [false, true] {
            let g = random_model(seed, conv);
            let (wide, _) = compile(&g, seed, 6, None);
            let (narrow, _) =
                compile_with(&g, seed, 6, None, TableRanges::Observed { margin: 0.0 });
            let size = |q: &Graph| -> usize {
                q.node_ids()
                    .filter_map(|id| match &q.node(id).op {
                        Op::Tlu(t) => Some(t.tables[0].len()),
                        _ => None,
                    })
                    .sum()
            };
            narrowed += usize::from(size(&narrow) < size(&wide));
            let shape = g.node(g.inputs()[0]).fact.shape.clone();
            let far = vec![Lcg::new(seed).tensor(&shape, -8.0, 8.0)];
            left += usize::from(int_interp::run_counting(&narrow, &far).unwrap().1 > 0);
        }
    }
    assert!(narrowed > 60, "narrowed on {narrowed} of 80 graphs");
    assert!(left > 20, "left a domain on {left} of 80 graphs");
}
