//! Each rewrite fires where it should (op counts before/after, on fixtures and on small
//! hand-built graphs), stays away where it must not, and keeps the outputs.

mod common;

use common::*;
use fhec_ir::{
    interp, BinaryOp, ConvAttrs, GemmAttrs, Graph, NodeId, Op, PoolAttrs, Tensor, TensorFact,
    UnaryOp,
};
use fhec_passes::{run_pass, run_passes, PassContext, PassOptions, PIPELINE};
use ndarray::arr1;

fn input(g: &mut Graph, shape: &[usize]) -> NodeId {
    g.add_input("x", TensorFact::f32(shape))
}

fn konst(g: &mut Graph, name: &str, t: Tensor) -> NodeId {
    g.add_node(name, Op::Const(t), &[]).unwrap()
}

fn add(g: &mut Graph, name: &str, op: Op, ins: &[NodeId]) -> NodeId {
    g.add_node(name, op, ins).unwrap()
}

fn gemm(trans_b: bool) -> Op {
    Op::Gemm(GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b,
    })
}

fn conv(pad: usize) -> Op {
    Op::Conv(ConvAttrs {
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![(pad, pad); 2],
        group: 1,
    })
}

fn relu() -> Op {
    Op::Unary(UnaryOp::Relu)
}

fn batchnorm(g: &mut Graph, x: NodeId, c: usize, seed: u64) -> NodeId {
    let mut rng = Lcg::new(seed);
    let s = konst(g, "bn.scale", rng.tensor(&[c], 0.5, 2.0));
    let b = konst(g, "bn.bias", rng.tensor(&[c], -1.0, 1.0));
    let m = konst(g, "bn.mean", rng.tensor(&[c], -1.0, 1.0));
    let v = konst(g, "bn.var", rng.tensor(&[c], 0.1, 2.0));
    add(g, "bn", Op::BatchNorm { epsilon: 1e-5 }, &[x, s, b, m, v])
}

/// Runs the named passes of the pipeline (in pipeline order) on a copy of `g`, checks the
/// outputs on random inputs, and returns the result.
fn run_named(g: &Graph, names: &[&str], options: PassOptions) -> (Graph, PassContext) {
    let mut out = g.clone();
    out.set_outputs(g.outputs().to_vec());
    let mut ctx = PassContext::new(options);
    for p in PIPELINE.iter().filter(|p| names.contains(&p.name)) {
        run_pass(&mut out, &mut ctx, p).unwrap_or_else(|e| panic!("{e}"));
    }
    for seed in 0..4 {
        let x = random_inputs(g, seed, -2.0, 2.0);
        let want = interp::run(g, &x).unwrap();
        let got = ctx
            .report
            .apply_postprocessing(interp::run(&out, &x).unwrap())
            .unwrap();
        close(&got, &want).unwrap_or_else(|e| panic!("{names:?}: {e}"));
    }
    (out, ctx)
}

fn run1(g: &Graph, name: &str) -> (Graph, PassContext) {
    run_named(g, &[name], PassOptions::default())
}

// ---- drop_identity -------------------------------------------------------------------

#[test]
fn drop_identity_removes_identities() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 4]);
    let i1 = add(&mut g, "dropout", Op::Identity, &[x]);
    let r = add(&mut g, "relu", relu(), &[i1]);
    let i2 = add(&mut g, "identity", Op::Identity, &[r]);
    g.set_outputs(vec![i2]);
    let (h, ctx) = run1(&g, "drop_identity");
    assert_eq!((count(&g, "Identity"), count(&h, "Identity")), (2, 0));
    assert_eq!(h.node(h.outputs()[0]).name, "relu");
    assert_eq!(ctx.report.changes("drop_identity").len(), 2);
}

// ---- fold_constants ------------------------------------------------------------------

#[test]
fn fold_constants_evaluates_constant_subgraphs() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 3]);
    let a = konst(&mut g, "a", tensor(&[3], &[1.0, 2.0, 3.0]));
    let b = konst(&mut g, "b", tensor(&[3], &[0.5, 0.5, 0.5]));
    let s = add(&mut g, "s", Op::Binary(BinaryOp::Mul), &[a, b]);
    let t = add(&mut g, "t", Op::Unary(UnaryOp::Neg), &[s]);
    let y = add(&mut g, "y", Op::Binary(BinaryOp::Add), &[x, t]);
    g.set_outputs(vec![y]);
    let (h, _) = run1(&g, "fold_constants");
    assert_eq!((count(&g, "Mul"), count(&h, "Mul")), (1, 0));
    assert_eq!((count(&g, "Neg"), count(&h, "Neg")), (1, 0));
    assert_eq!(count(&h, "Const"), 1);
    assert_eq!(const_of(&h, "Add", 0, 1), tensor(&[3], &[-0.5, -1.0, -1.5]));
}

#[test]
fn fold_constants_keeps_dequantized_weights() {
    // Brevitas weights are DequantizeLinear(const int weights): the grid is kept for the
    // quantiser.
    let g = fixture_graph("mlp_brevitas");
    let (h, _) = run1(&g, "fold_constants");
    assert_eq!(count(&g, "DequantizeLinear"), 6);
    assert_eq!(count(&h, "DequantizeLinear"), 6);
}

// ---- split_postprocessing ------------------------------------------------------------

#[test]
fn split_postprocessing_moves_final_softmax_chain() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 3]);
    let w = konst(&mut g, "w", random(&[4, 3], 1, -1.0, 1.0));
    let l = add(&mut g, "fc", gemm(true), &[x, w]);
    let s = add(&mut g, "softmax", Op::Softmax { axis: 1 }, &[l]);
    let r = add(&mut g, "reshape", Op::Reshape { shape: vec![4] }, &[s]);
    g.set_outputs(vec![r]);
    let (h, ctx) = run1(&g, "split_postprocessing");
    assert_eq!((count(&g, "Softmax"), count(&h, "Softmax")), (1, 0));
    assert_eq!(count(&h, "Reshape"), 0);
    assert_eq!(h.node(h.outputs()[0]).name, "fc");
    let ops: Vec<&str> = ctx
        .report
        .postprocessing
        .iter()
        .map(|p| p.op.name())
        .collect();
    assert_eq!(ops, ["Softmax", "Reshape"]);
}

#[test]
fn split_postprocessing_keeps_inner_softmax_and_layout_before_it() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 4]);
    let r = add(
        &mut g,
        "reshape",
        Op::Reshape {
            shape: vec![1, 2, 2],
        },
        &[x],
    );
    let s = add(&mut g, "softmax", Op::Softmax { axis: 2 }, &[r]);
    g.set_outputs(vec![s]);
    let (h, ctx) = run1(&g, "split_postprocessing");
    assert_eq!(count(&h, "Reshape"), 1);
    assert_eq!(ctx.report.postprocessing.len(), 1);

    // A Softmax feeding more layers is part of the model.
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 4]);
    let s = add(&mut g, "softmax", Op::Softmax { axis: 1 }, &[x]);
    let y = add(&mut g, "relu", relu(), &[s]);
    g.set_outputs(vec![y]);
    let (h, ctx) = run1(&g, "split_postprocessing");
    assert_eq!(count(&h, "Softmax"), 1);
    assert!(ctx.report.postprocessing.is_empty());
}

// ---- matmul_to_gemm ------------------------------------------------------------------

#[test]
fn matmul_to_gemm_on_tf2onnx_mlps() {
    for stem in ["mlp_keras", "mlp_tf2onnx_13", "mlp_tf2onnx_17"] {
        let g = fixture_graph(stem);
        let (h, _) = run1(&g, "matmul_to_gemm");
        assert_eq!((count(&g, "MatMul"), count(&h, "MatMul")), (3, 0), "{stem}");
        assert_eq!((count(&g, "Add"), count(&h, "Add")), (3, 0), "{stem}");
        assert_eq!((count(&g, "Gemm"), count(&h, "Gemm")), (0, 3), "{stem}");
    }
}

#[test]
fn matmul_to_gemm_handles_bias_order_and_missing_bias() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 3]);
    let w = konst(&mut g, "w", random(&[3, 4], 2, -1.0, 1.0));
    let m = add(&mut g, "mm", Op::MatMul, &[x, w]);
    let b = konst(&mut g, "b", random(&[1, 4], 3, -1.0, 1.0));
    let a = add(&mut g, "bias", Op::Binary(BinaryOp::Add), &[b, m]);
    let w2 = konst(&mut g, "w2", random(&[4, 2], 4, -1.0, 1.0));
    let m2 = add(&mut g, "mm2", Op::MatMul, &[a, w2]);
    // A MatMul of two activations is not a linear layer.
    let t = add(&mut g, "t", Op::Transpose { perm: vec![1, 0] }, &[m2]);
    let m4 = add(&mut g, "mm4", Op::MatMul, &[m2, t]);
    g.set_outputs(vec![m4]);
    let (h, _) = run1(&g, "matmul_to_gemm");
    assert_eq!(
        (count(&h, "Gemm"), count(&h, "MatMul"), count(&h, "Add")),
        (2, 1, 0)
    );
    assert_eq!(const_of(&h, "Gemm", 0, 2).shape(), [4]);
}

// ---- fold_batchnorm ------------------------------------------------------------------

#[test]
fn fold_batchnorm_into_torch_convs() {
    for stem in ["cnn_torch_28", "cnn_torch_64", "cnn_torch_rgb_28"] {
        let g = fixture_graph(stem);
        let (h, _) = run1(&g, "fold_batchnorm");
        assert_eq!(
            (count(&g, "BatchNorm"), count(&h, "BatchNorm")),
            (1, 0),
            "{stem}"
        );
        assert_eq!(
            g.node_count() - h.node_count(),
            5,
            "{stem}: BN and its 4 constants"
        );
    }
}

#[test]
fn fold_keras_batchnorm_mul_add() {
    for stem in ["cnn_keras_28", "cnn_keras_export_28"] {
        let g = fixture_graph(stem);
        let (h, _) = run_named(
            &g,
            &["matmul_to_gemm", "fold_batchnorm"],
            Default::default(),
        );
        assert_eq!((count(&g, "Mul"), count(&h, "Mul")), (1, 0), "{stem}");
        assert_eq!((count(&g, "Add"), count(&h, "Add")), (2, 0), "{stem}");
    }
}

#[test]
fn fold_batchnorm_into_gemm_respects_alpha_beta_and_layout() {
    for trans_b in [false, true] {
        let mut g = Graph::new();
        let x = input(&mut g, &[1, 3]);
        let wshape = if trans_b { [4, 3] } else { [3, 4] };
        let w = konst(&mut g, "w", random(&wshape, 5, -1.0, 1.0));
        let c = konst(&mut g, "c", random(&[1, 4], 6, -1.0, 1.0));
        let l = add(
            &mut g,
            "fc",
            Op::Gemm(GemmAttrs {
                alpha: 0.5,
                beta: 2.0,
                trans_a: false,
                trans_b,
            }),
            &[x, w, c],
        );
        let bn = batchnorm(&mut g, l, 4, 7);
        g.set_outputs(vec![bn]);
        let (h, _) = run1(&g, "fold_batchnorm");
        assert_eq!(count(&h, "BatchNorm"), 0);
        assert_eq!(count(&h, "Gemm"), 1);
    }
}

#[test]
fn fold_batchnorm_adds_a_bias_to_a_conv_without_one() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 2, 5, 5]);
    let w = konst(&mut g, "w", random(&[3, 2, 3, 3], 8, -1.0, 1.0));
    let l = add(&mut g, "conv", conv(1), &[x, w]);
    let bn = batchnorm(&mut g, l, 3, 9);
    g.set_outputs(vec![bn]);
    let (h, _) = run1(&g, "fold_batchnorm");
    assert_eq!(count(&h, "BatchNorm"), 0);
    assert_eq!(const_of(&h, "Conv", 0, 2).shape(), [3]);
}

#[test]
fn fold_per_channel_mul_sub_div() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 2, 4, 4]);
    let w = konst(&mut g, "w", random(&[3, 2, 3, 3], 10, -1.0, 1.0));
    let b = konst(&mut g, "b", random(&[3], 11, -1.0, 1.0));
    let l = add(&mut g, "conv", conv(0), &[x, w, b]);
    let k = konst(&mut g, "k", tensor(&[1, 3, 1, 1], &[2.0, -1.0, 0.5]));
    let m = add(&mut g, "mul", Op::Binary(BinaryOp::Mul), &[k, l]);
    let d = konst(&mut g, "d", tensor(&[3, 1, 1], &[0.1, 0.2, 0.3]));
    let s = add(&mut g, "sub", Op::Binary(BinaryOp::Sub), &[d, m]);
    let q = konst(&mut g, "q", tensor(&[], &[4.0]));
    let v = add(&mut g, "div", Op::Binary(BinaryOp::Div), &[s, q]);
    g.set_outputs(vec![v]);
    let (h, ctx) = run1(&g, "fold_batchnorm");
    assert_eq!(h.node_count(), 4, "input, weights, bias, conv");
    assert_eq!(ctx.report.changes("fold_batchnorm").len(), 3);
}

#[test]
fn fold_batchnorm_leaves_what_it_cannot_fold() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 2, 4, 4]);
    let w = konst(&mut g, "w", random(&[2, 2, 1, 1], 12, -1.0, 1.0));
    let l = add(&mut g, "conv", conv(0), &[x, w]);
    // Not per channel: varies over space.
    let k = konst(&mut g, "k", random(&[1, 1, 4, 4], 13, -1.0, 1.0));
    let m = add(&mut g, "mul", Op::Binary(BinaryOp::Mul), &[l, k]);
    // After an activation: a standalone BatchNorm stays.
    let r = add(&mut g, "relu", relu(), &[m]);
    let bn = batchnorm(&mut g, r, 2, 14);
    // A Conv with two consumers cannot absorb either.
    let w2 = konst(&mut g, "w2", random(&[2, 2, 1, 1], 15, -1.0, 1.0));
    let l2 = add(&mut g, "conv2", conv(0), &[bn, w2]);
    let bn2 = batchnorm(&mut g, l2, 2, 16);
    let y = add(&mut g, "y", Op::Binary(BinaryOp::Add), &[bn2, l2]);
    g.set_outputs(vec![y]);
    let (h, _) = run1(&g, "fold_batchnorm");
    assert_eq!(count(&h, "BatchNorm"), 2);
    assert_eq!(count(&h, "Mul"), 1);
}

// ---- simplify_layout -----------------------------------------------------------------

#[test]
fn simplify_layout_folds_keras_flatten_transpose() {
    for stem in ["cnn_keras_28", "cnn_keras_export_28"] {
        let g = fixture_graph(stem);
        let (h, _) = run_named(
            &g,
            &["matmul_to_gemm", "simplify_layout"],
            Default::default(),
        );
        assert_eq!(
            (count(&g, "Transpose"), count(&h, "Transpose")),
            (1, 0),
            "{stem}"
        );
    }
}

#[test]
fn simplify_layout_cancels_merges_and_drops() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 2, 3, 4]);
    // Two transposes composing to the identity.
    let t1 = add(
        &mut g,
        "t1",
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        &[x],
    );
    let t2 = add(
        &mut g,
        "t2",
        Op::Transpose {
            perm: vec![0, 3, 1, 2],
        },
        &[t1],
    );
    // Two that compose to one transpose.
    let t3 = add(
        &mut g,
        "t3",
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[t2],
    );
    let t4 = add(
        &mut g,
        "t4",
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[t3],
    );
    // Reshape chain with a no-op end.
    let r1 = add(&mut g, "r1", Op::Reshape { shape: vec![1, 24] }, &[t4]);
    let r2 = add(
        &mut g,
        "r2",
        Op::Reshape {
            shape: vec![1, 4, 6],
        },
        &[r1],
    );
    let r3 = add(
        &mut g,
        "r3",
        Op::Reshape {
            shape: vec![1, 4, 6],
        },
        &[r2],
    );
    // A transpose only moving size-1 axes is a reshape.
    let t5 = add(
        &mut g,
        "t5",
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[r3],
    );
    let y = add(&mut g, "relu", relu(), &[t5]);
    g.set_outputs(vec![y]);
    let (h, _) = run1(&g, "simplify_layout");
    assert_eq!((count(&g, "Transpose"), count(&h, "Transpose")), (5, 1));
    assert_eq!((count(&g, "Reshape"), count(&h, "Reshape")), (3, 1));
}

// ---- prune ---------------------------------------------------------------------------

/// `x -> Conv(2->4, zero out-channel 1 and dead out-channel 2) -> Relu -> MaxPool -> Conv`.
#[test]
fn prune_conv_to_conv() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 2, 6, 6]);
    let mut w1 = random(&[4, 2, 3, 3], 20, -1.0, 1.0);
    let mut b1 = arr1(&[0.1, 0.0, 0.2, -0.3]).into_dyn();
    w1.index_axis_mut(ndarray::Axis(0), 1).fill(0.0);
    b1[[1]] = 0.0;
    let w1 = konst(&mut g, "w1", w1);
    let b1 = konst(&mut g, "b1", b1);
    let c1 = add(&mut g, "conv1", conv(1), &[x, w1, b1]);
    let r = add(&mut g, "relu", relu(), &[c1]);
    let p = add(
        &mut g,
        "pool",
        Op::MaxPool(PoolAttrs {
            kernel: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            pads: vec![(0, 0); 2],
            ceil_mode: false,
            count_include_pad: false,
        }),
        &[r],
    );
    let mut w2 = random(&[3, 4, 2, 2], 21, -1.0, 1.0);
    w2.index_axis_mut(ndarray::Axis(1), 2).fill(0.0);
    let w2 = konst(&mut g, "w2", w2);
    let c2 = add(&mut g, "conv2", conv(1), &[p, w2]);
    g.set_outputs(vec![c2]);
    let (h, ctx) = run1(&g, "prune");
    assert_eq!(const_of(&h, "Conv", 0, 1).shape(), [2, 2, 3, 3]);
    assert_eq!(const_of(&h, "Conv", 1, 1).shape(), [3, 2, 2, 2]);
    let l = &ctx.report.pruned[0];
    assert_eq!((l.before, l.after, l.constant, l.dead), (4, 2, 1, 1));
}

/// `Conv -> Sigmoid -> flatten -> Gemm`: a zero-weight channel outputs sigmoid(b) != 0
/// everywhere, which moves into the Gemm's bias.
#[test]
fn prune_conv_flatten_gemm_folds_nonzero_constants() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 1, 4, 4]);
    let mut w1 = random(&[3, 1, 3, 3], 30, -1.0, 1.0);
    w1.index_axis_mut(ndarray::Axis(0), 0).fill(0.0);
    let w1 = konst(&mut g, "w1", w1);
    let b1 = konst(&mut g, "b1", tensor(&[3], &[0.7, -0.2, 0.4]));
    let c1 = add(&mut g, "conv1", conv(0), &[x, w1, b1]);
    let s = add(&mut g, "sigmoid", Op::Unary(UnaryOp::Sigmoid), &[c1]);
    let f = add(&mut g, "flatten", Op::Reshape { shape: vec![1, 12] }, &[s]);
    let w2 = konst(&mut g, "w2", random(&[5, 12], 31, -1.0, 1.0));
    let fc = add(&mut g, "fc", gemm(true), &[f, w2]);
    g.set_outputs(vec![fc]);
    let (h, ctx) = run1(&g, "prune");
    assert_eq!(const_of(&h, "Gemm", 0, 1).shape(), [5, 8]);
    assert_eq!(const_of(&h, "Gemm", 0, 2).shape(), [5], "a bias was added");
    assert_eq!(ctx.report.pruned[0].constant, 1);
}

/// A non-zero constant channel cannot be folded into a padded Conv (its borders see less of
/// it); a zero one can.
#[test]
fn prune_respects_padding_of_next_conv() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 1, 4, 4]);
    let mut w1 = random(&[2, 1, 3, 3], 40, -1.0, 1.0);
    w1.fill(0.0);
    let w1 = konst(&mut g, "w1", w1);
    let b1 = konst(&mut g, "b1", tensor(&[2], &[0.5, 0.0]));
    let c1 = add(&mut g, "conv1", conv(1), &[x, w1, b1]);
    let r = add(&mut g, "relu", relu(), &[c1]);
    let w2 = konst(&mut g, "w2", random(&[2, 2, 3, 3], 41, -1.0, 1.0));
    let c2 = add(&mut g, "conv2", conv(1), &[r, w2]);
    g.set_outputs(vec![c2]);
    let (h, ctx) = run1(&g, "prune");
    assert_eq!(const_of(&h, "Conv", 0, 1).shape(), [1, 1, 3, 3]);
    assert_eq!(const_of(&h, "Conv", 0, 2), tensor(&[1], &[0.5]));
    assert_eq!(ctx.report.pruned[0].constant, 1);
}

/// Constant and dead neurons of Gemms, and the chain reactions: pruning a constant neuron
/// makes a neuron of the next layer constant, pruning a dead one makes one before it dead.
#[test]
fn prune_dead_and_constant_neurons_cascade() {
    let mut g = Graph::new();
    let x = input(&mut g, &[1, 3]);
    // fc1 (no transB, W [K, N]): neuron 3 has no incoming weights and no bias: constant 0.
    let mut w1 = random(&[3, 4], 50, -1.0, 1.0);
    w1.column_mut_dyn(3).fill(0.0);
    let w1 = konst(&mut g, "w1", w1);
    let l1 = add(&mut g, "fc1", gemm(false), &[x, w1]);
    let r1 = add(&mut g, "r1", relu(), &[l1]);
    // fc2: neuron 0 only reads fc1's neuron 3 (so becomes constant once that is pruned);
    // fc1's neuron 2 only feeds fc2's neuron 1 (so becomes dead once that is pruned).
    let mut w2 = random(&[4, 3], 51, -1.0, 1.0);
    w2.column_mut_dyn(0).fill(0.0);
    w2[[3, 0]] = 0.9;
    w2.row_mut_dyn(2).fill(0.0);
    w2[[2, 1]] = -0.7;
    let w2 = konst(&mut g, "w2", w2);
    let l2 = add(&mut g, "fc2", gemm(false), &[r1, w2]);
    let r2 = add(&mut g, "r2", relu(), &[l2]);
    // fc3 (transB, W [N, K]) ignores fc2's neuron 1: dead.
    let mut w3 = random(&[2, 3], 52, -1.0, 1.0);
    w3.column_mut_dyn(1).fill(0.0);
    let w3 = konst(&mut g, "w3", w3);
    let l3 = add(&mut g, "fc3", gemm(true), &[r2, w3]);
    g.set_outputs(vec![l3]);
    let (h, ctx) = run1(&g, "prune");
    let widths: Vec<usize> = h
        .topo_order()
        .into_iter()
        .filter(|&n| matches!(h.node(n).op, Op::Gemm(_)))
        .map(|n| h.node(n).fact.shape[1])
        .collect();
    assert_eq!(widths, [2, 1, 2]);
    let summary: Vec<(usize, usize, usize, usize)> = ctx
        .report
        .pruned
        .iter()
        .map(|l| (l.before, l.after, l.constant, l.dead))
        .collect();
    assert_eq!(summary, [(4, 2, 1, 1), (3, 1, 1, 1)]);
}

/// Helpers for 2-D views of a dynamic-rank tensor.
trait Rows {
    fn row_mut_dyn(&mut self, i: usize) -> ndarray::ArrayViewMutD<'_, f32>;
    fn column_mut_dyn(&mut self, j: usize) -> ndarray::ArrayViewMutD<'_, f32>;
}

impl Rows for Tensor {
    fn row_mut_dyn(&mut self, i: usize) -> ndarray::ArrayViewMutD<'_, f32> {
        self.index_axis_mut(ndarray::Axis(0), i)
    }
    fn column_mut_dyn(&mut self, j: usize) -> ndarray::ArrayViewMutD<'_, f32> {
        self.index_axis_mut(ndarray::Axis(1), j)
    }
}

// ---- the whole pipeline --------------------------------------------------------------

#[test]
fn whole_pipeline_node_counts_on_fixtures() {
    let want = [
        ("cnn_brevitas_28", 45, 45),
        ("cnn_keras_28", 22, 16),
        ("cnn_keras_export_28", 22, 16),
        ("cnn_torch_28", 20, 15),
        ("cnn_torch_64", 23, 18),
        ("cnn_torch_rgb_28", 20, 15),
        ("mlp_brevitas", 42, 42),
        ("mlp_keras", 15, 12),
        ("mlp_tf2onnx_13", 15, 12),
        ("mlp_tf2onnx_17", 15, 12),
        ("mlp_torch", 12, 12),
        ("mlp_torch_pruned", 12, 12),
    ];
    for (stem, before, after) in want {
        let mut g = fixture_graph(stem);
        assert_eq!(g.node_count(), before, "{stem}");
        let mut ctx = PassContext::default();
        run_passes(&mut g, &mut ctx, PIPELINE).unwrap();
        assert_eq!(g.node_count(), after, "{stem}");
    }
}
