//! Property tests on randomly generated small networks: every pass keeps the outputs.
//!
//! The generators mix the patterns the passes target (Gemm in both weight layouts with
//! alpha/beta, MatMul + Add, Conv, BatchNorm, Keras-style per-channel Mul + Add, NHWC flatten
//! transposes, Identity, transpose pairs, a final Softmax) with neurons whose incoming or
//! outgoing weights are zeroed, so pruning has work to do.

mod common;

use common::*;
use fhec_ir::{
    BinaryOp, ConvAttrs, GemmAttrs, Graph, NodeId, Op, PoolAttrs, Tensor, TensorFact, UnaryOp,
};
use fhec_passes::PassOptions;
use ndarray::Axis;
use proptest::prelude::*;

fn konst(g: &mut Graph, name: &str, t: Tensor) -> NodeId {
    g.add_node(name, Op::Const(t), &[]).unwrap()
}

fn node(g: &mut Graph, name: &str, op: Op, ins: &[NodeId]) -> NodeId {
    g.add_node(name, op, ins)
        .unwrap_or_else(|e| panic!("building {name}: {e}"))
}

fn activation(rng: &mut Lcg) -> Op {
    Op::Unary(match rng.below(6) {
        0 | 1 => UnaryOp::Relu,
        2 => UnaryOp::LeakyRelu { alpha: 0.1 },
        3 => UnaryOp::Sigmoid,
        4 => UnaryOp::Tanh,
        _ => UnaryOp::Clip {
            min: -0.5,
            max: 1.0,
        },
    })
}

/// Zeroes random output lanes of `w` (and sometimes their bias) and random input lanes.
fn zero_some(rng: &mut Lcg, w: &mut Tensor, b: &mut Tensor, out_axis: usize, in_axis: usize) {
    for j in 0..w.shape()[out_axis] {
        if rng.chance(0.3) {
            w.index_axis_mut(Axis(out_axis), j).fill(0.0);
            if rng.chance(0.5) {
                b[[j]] = 0.0;
            }
        }
    }
    for k in 0..w.shape()[in_axis] {
        if rng.chance(0.2) {
            w.index_axis_mut(Axis(in_axis), k).fill(0.0);
        }
    }
}

/// Random BatchNorm or Keras Mul + Add (or nothing) after a linear op with `c` channels of
/// output rank `rank`.
fn maybe_affine(g: &mut Graph, rng: &mut Lcg, x: NodeId, c: usize, rank: usize) -> NodeId {
    match rng.below(3) {
        0 => {
            let s = konst(g, "bn.scale", rng.tensor(&[c], 0.5, 2.0));
            let b = konst(g, "bn.bias", rng.tensor(&[c], -1.0, 1.0));
            let m = konst(g, "bn.mean", rng.tensor(&[c], -1.0, 1.0));
            let v = konst(g, "bn.var", rng.tensor(&[c], 0.2, 2.0));
            node(g, "bn", Op::BatchNorm { epsilon: 1e-3 }, &[x, s, b, m, v])
        }
        1 => {
            let mut shape = vec![1; rank];
            shape[1] = c;
            let k = konst(g, "mul.k", rng.tensor(&shape, 0.5, 2.0));
            let y = node(g, "mul", Op::Binary(BinaryOp::Mul), &[x, k]);
            let d = konst(g, "add.d", rng.tensor(&shape[1..], -1.0, 1.0));
            node(g, "add", Op::Binary(BinaryOp::Add), &[d, y])
        }
        _ => x,
    }
}

/// A random MLP of 1 to 3 layers on a [1, d] input.
fn random_mlp(seed: u64) -> Graph {
    let mut rng = Lcg::new(seed);
    let mut g = Graph::new();
    let mut k = 1 + rng.below(6);
    let mut x = g.add_input("x", TensorFact::f32([1, k]));
    let layers = 1 + rng.below(3);
    for i in 0..layers {
        let last = i + 1 == layers;
        let n = 1 + rng.below(if last { 4 } else { 7 });
        let style = rng.below(4);
        let trans_b = style == 0;
        let shape = if trans_b { [n, k] } else { [k, n] };
        let mut w = rng.tensor(&shape, -1.0, 1.0);
        let mut b = rng.tensor(&[n], -0.5, 0.5);
        let (out_axis, in_axis) = if trans_b { (0, 1) } else { (1, 0) };
        zero_some(&mut rng, &mut w, &mut b, out_axis, in_axis);
        let wn = konst(&mut g, "w", w);
        x = match style {
            0 | 1 => {
                let c = konst(&mut g, "c", b.into_shape_with_order(vec![1, n]).unwrap());
                let attrs = GemmAttrs {
                    alpha: if style == 1 {
                        rng.uniform(0.5, 1.5)
                    } else {
                        1.0
                    },
                    beta: if style == 1 {
                        rng.uniform(0.5, 1.5)
                    } else {
                        1.0
                    },
                    trans_a: false,
                    trans_b,
                };
                node(&mut g, "gemm", Op::Gemm(attrs), &[x, wn, c])
            }
            2 => {
                let m = node(&mut g, "matmul", Op::MatMul, &[x, wn]);
                let c = konst(&mut g, "bias", b);
                node(&mut g, "bias_add", Op::Binary(BinaryOp::Add), &[m, c])
            }
            _ => node(&mut g, "matmul", Op::MatMul, &[x, wn]),
        };
        x = maybe_affine(&mut g, &mut rng, x, n, 2);
        if !last {
            x = node(&mut g, "act", activation(&mut rng), &[x]);
            if rng.chance(0.2) {
                x = node(&mut g, "dropout", Op::Identity, &[x]);
            }
            if rng.chance(0.2) {
                let t = node(&mut g, "t1", Op::Transpose { perm: vec![1, 0] }, &[x]);
                x = node(&mut g, "t2", Op::Transpose { perm: vec![1, 0] }, &[t]);
            }
        }
        k = n;
    }
    if rng.chance(0.5) {
        x = node(&mut g, "softmax", Op::Softmax { axis: 1 }, &[x]);
    }
    g.set_outputs(vec![x]);
    g
}

/// A random CNN: 1 or 2 Conv blocks (activation, optional pooling), flatten (sometimes NHWC
/// first, as Keras does) and a Gemm.
fn random_cnn(seed: u64) -> Graph {
    let mut rng = Lcg::new(seed);
    let mut g = Graph::new();
    let mut c = 1 + rng.below(3);
    let mut hw = 4 + rng.below(5);
    let mut x = g.add_input("x", TensorFact::f32([1, c, hw, hw]));
    for _ in 0..1 + rng.below(2) {
        let o = 1 + rng.below(4);
        let kernel = 1 + rng.below(3.min(hw));
        let pad = rng.below(2);
        let mut w = rng.tensor(&[o, c, kernel, kernel], -1.0, 1.0);
        let mut b = rng.tensor(&[o], -0.5, 0.5);
        zero_some(&mut rng, &mut w, &mut b, 0, 1);
        let wn = konst(&mut g, "w", w);
        let bn = konst(&mut g, "b", b);
        let attrs = ConvAttrs {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![(pad, pad); 2],
            group: 1,
        };
        x = node(&mut g, "conv", Op::Conv(attrs), &[x, wn, bn]);
        hw = hw + 2 * pad - kernel + 1;
        c = o;
        x = maybe_affine(&mut g, &mut rng, x, c, 4);
        x = node(&mut g, "act", activation(&mut rng), &[x]);
        if hw >= 2 {
            let pool_pad = rng.below(2);
            let attrs = PoolAttrs {
                kernel: vec![2, 2],
                strides: vec![2, 2],
                dilations: vec![1, 1],
                pads: vec![(pool_pad, pool_pad); 2],
                ceil_mode: false,
                count_include_pad: rng.chance(0.5),
            };
            x = match rng.below(3) {
                0 => node(&mut g, "maxpool", Op::MaxPool(attrs), &[x]),
                1 => node(&mut g, "avgpool", Op::AveragePool(attrs), &[x]),
                _ => x,
            };
            hw = g.node(x).fact.shape[2];
        }
    }
    if rng.chance(0.5) {
        x = node(
            &mut g,
            "nhwc",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            &[x],
        );
    }
    let k = c * hw * hw;
    x = node(&mut g, "flatten", Op::Reshape { shape: vec![1, k] }, &[x]);
    let n = 1 + rng.below(4);
    let mut w = rng.tensor(&[n, k], -1.0, 1.0);
    // Some conv channels feed nothing (only for the NCHW flatten, where a channel is a block).
    for j in 0..c {
        if rng.chance(0.25) {
            for l in j * hw * hw..(j + 1) * hw * hw {
                w.index_axis_mut(Axis(1), l).fill(0.0);
            }
        }
    }
    let wn = konst(&mut g, "fc.w", w);
    let bn = konst(&mut g, "fc.b", rng.tensor(&[n], -0.5, 0.5));
    x = node(&mut g, "fc", Op::Gemm(GEMM_TRANS_B), &[x, wn, bn]);
    if rng.chance(0.3) {
        x = node(&mut g, "softmax", Op::Softmax { axis: 1 }, &[x]);
    }
    g.set_outputs(vec![x]);
    g
}

fn check(g: &Graph, seed: u64) -> Result<(), TestCaseError> {
    let stages = stages(g, PassOptions::default());
    for i in 0..3 {
        let x = random_inputs(g, seed.wrapping_add(i * 7919), -2.0, 2.0);
        if let Err(e) = check_stages(g, &stages, &x) {
            let text = fhec_ir::print::print_graph(g);
            prop_assert!(false, "{}\n{}", e, text);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn passes_preserve_random_mlps(seed in any::<u64>()) {
        check(&random_mlp(seed), seed)?;
    }

    #[test]
    fn passes_preserve_random_cnns(seed in any::<u64>()) {
        check(&random_cnn(seed), seed)?;
    }
}

/// The generators do exercise the rewrites: over many seeds, each pass changes something.
#[test]
fn random_graphs_exercise_every_pass() {
    let mut changed = std::collections::BTreeMap::<&str, usize>::new();
    let mut pruned = 0;
    for seed in 0..200 {
        for g in [random_mlp(seed), random_cnn(seed)] {
            let s = stages(&g, PassOptions::default());
            let report = &s.last().unwrap().report;
            for p in &report.passes {
                *changed.entry(p.pass).or_default() += usize::from(!p.changes.is_empty());
            }
            pruned += report.pruned.len();
        }
    }
    for p in fhec_passes::PIPELINE {
        if p.name == "fold_constants" {
            continue; // the generators build no constant sub-expressions
        }
        if [
            "calibrate",
            "quantize",
            "table_ranges",
            "round_accumulators",
            "tlu_rewrite",
            "bit_widths",
        ]
        .contains(&p.name)
        {
            continue; // integer passes: off without quantisation, see integer_props.rs
        }
        assert!(changed[p.name] > 10, "{}: {changed:?}", p.name);
    }
    println!("{changed:?} pruned layers {pruned}");
    assert!(pruned > 50, "{pruned}");
}
