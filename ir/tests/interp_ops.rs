//! Hand-computed cases for every kernel of the float interpreter.
#![allow(clippy::cloned_ref_to_slice_refs)]

use fhec_ir::interp::{self, InterpError};
use fhec_ir::{
    BinaryOp, ConvAttrs, DType, GemmAttrs, Graph, Op, PadMode, PoolAttrs, QuantAttrs, Tensor,
    TensorFact, UnaryOp,
};
use fhec_testkit::tensor as t;

fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

/// Builds a one-op graph on graph inputs, checks it and runs it.
fn eval(op: Op, inputs: &[Tensor]) -> Tensor {
    let mut g = Graph::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| g.add_input(format!("x{i}"), TensorFact::f32(x.shape())))
        .collect();
    let y = g
        .add_node("y", op, &ids)
        .expect("shape inference accepts the case");
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    let mut out = interp::run(&g, inputs).unwrap();
    let y = out.remove(0);
    assert_eq!(y.shape(), g.node(g.outputs()[0]).fact.shape.as_slice());
    y
}

#[track_caller]
fn assert_close(got: &Tensor, shape: &[usize], want: &[f32], tol: f32) {
    assert_eq!(got.shape(), shape, "shape");
    let got: Vec<f32> = got.iter().copied().collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()) || g == w;
        assert!(
            ok,
            "element {i}: got {g}, want {w}\n  got {got:?}\n want {want:?}"
        );
    }
}

#[track_caller]
fn assert_exact(got: &Tensor, shape: &[usize], want: &[f32]) {
    assert_eq!(got.shape(), shape, "shape");
    let got: Vec<f32> = got.iter().copied().collect();
    assert_eq!(got, want);
}

fn unary(u: UnaryOp, xs: &[f32]) -> Tensor {
    eval(Op::Unary(u), &[t(&[xs.len()], xs)])
}

// ---------------------------------------------------------------- unary

#[test]
fn neg_relu_leaky() {
    let x = [-2.0, -0.5, 0.0, 1.5];
    assert_exact(&unary(UnaryOp::Neg, &x), &[4], &[2.0, 0.5, -0.0, -1.5]);
    assert_exact(&unary(UnaryOp::Relu, &x), &[4], &[0.0, 0.0, 0.0, 1.5]);
    assert_exact(
        &unary(UnaryOp::LeakyRelu { alpha: 0.1 }, &x),
        &[4],
        &[-0.2, -0.05, 0.0, 1.5],
    );
}

#[test]
fn sigmoid_tanh() {
    let y = unary(UnaryOp::Sigmoid, &[0.0, 1.0, -1.0, 100.0, -100.0]);
    assert_close(
        &y,
        &[5],
        &[0.5, 0.731_058_6, 0.268_941_43, 1.0, (-100f64).exp() as f32],
        1e-6,
    );
    assert!(y.iter().all(|v| v.is_finite()));
    let y = unary(UnaryOp::Tanh, &[0.0, 0.5, -2.0, 50.0]);
    assert_close(&y, &[4], &[0.0, 0.462_117_16, -0.964_027_6, 1.0], 1e-6);
}

#[test]
fn hard_sigmoid_hard_swish() {
    let y = unary(
        UnaryOp::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        &[-3.0, 0.0, 1.0, 3.0],
    );
    assert_close(&y, &[4], &[0.0, 0.5, 0.7, 1.0], 1e-6);
    let y = unary(UnaryOp::HardSwish, &[-4.0, -3.0, 0.0, 1.0, 3.0, 4.0]);
    assert_close(&y, &[6], &[0.0, 0.0, 0.0, 0.666_666_7, 3.0, 4.0], 1e-6);
}

#[test]
fn elu_selu() {
    let y = unary(UnaryOp::Elu { alpha: 1.0 }, &[-1.0, 0.0, 2.0]);
    assert_close(&y, &[3], &[-0.632_120_56, 0.0, 2.0], 1e-6);
    let y = unary(UnaryOp::Elu { alpha: 0.5 }, &[-100.0]);
    assert_close(&y, &[1], &[-0.5], 1e-6);
    let selu = UnaryOp::Selu {
        alpha: 1.673_263_2,
        gamma: 1.050_701,
    };
    let y = unary(selu, &[1.0, -1.0, 0.0]);
    assert_close(&y, &[3], &[1.050_701, -1.111_330_7, 0.0], 1e-6);
}

#[test]
fn softplus_is_stable() {
    let y = unary(UnaryOp::Softplus, &[0.0, 1.0, 100.0, -100.0, 1000.0]);
    assert_close(
        &y,
        &[5],
        &[
            std::f32::consts::LN_2,
            1.313_261_7,
            100.0,
            (-100f64).exp() as f32,
            1000.0,
        ],
        1e-6,
    );
    assert!(y.iter().all(|v| v.is_finite()));
}

#[test]
fn erf_gelu() {
    let y = unary(UnaryOp::Erf, &[0.0, 0.5, -1.0, 4.0]);
    assert_close(&y, &[4], &[0.0, 0.520_499_9, -0.842_700_8, 1.0], 1e-6);
    let y = unary(
        UnaryOp::Gelu { tanh_approx: false },
        &[1.0, -1.0, 0.0, -10.0, 10.0],
    );
    assert_close(
        &y,
        &[5],
        &[0.841_344_7, -0.158_655_26, 0.0, -7.619_853e-23, 10.0],
        1e-6,
    );
    let y = unary(UnaryOp::Gelu { tanh_approx: true }, &[1.0, -1.0, 0.0]);
    assert_close(&y, &[3], &[0.841_192, -0.158_808, 0.0], 1e-5);
}

#[test]
fn clip() {
    let y = unary(
        UnaryOp::Clip {
            min: -1.0,
            max: 2.0,
        },
        &[-3.0, 0.5, 5.0],
    );
    assert_exact(&y, &[3], &[-1.0, 0.5, 2.0]);
    // ONNX: min > max sets everything to max.
    let y = unary(UnaryOp::Clip { min: 2.0, max: 1.0 }, &[-3.0, 1.5, 5.0]);
    assert_exact(&y, &[3], &[1.0, 1.0, 1.0]);
}

// ---------------------------------------------------------------- binary

#[test]
fn binary_broadcasting() {
    let a = t(&[2, 1], &[1.0, 2.0]);
    let b = t(&[3], &[10.0, 20.0, 30.0]);
    let y = eval(Op::Binary(BinaryOp::Add), &[a.clone(), b.clone()]);
    assert_exact(&y, &[2, 3], &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    let y = eval(Op::Binary(BinaryOp::Sub), &[a.clone(), b.clone()]);
    assert_exact(&y, &[2, 3], &[-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]);
    let y = eval(Op::Binary(BinaryOp::Mul), &[b.clone(), a.clone()]);
    assert_exact(&y, &[2, 3], &[10.0, 20.0, 30.0, 20.0, 40.0, 60.0]);
    let y = eval(Op::Binary(BinaryOp::Div), &[b, t(&[], &[4.0])]);
    assert_exact(&y, &[3], &[2.5, 5.0, 7.5]);
    let y = eval(
        Op::Binary(BinaryOp::Div),
        &[t(&[2], &[1.0, -1.0]), t(&[2], &[0.0, 0.0])],
    );
    assert_exact(&y, &[2], &[f32::INFINITY, f32::NEG_INFINITY]);
    // Same shapes, both sides.
    let y = eval(
        Op::Binary(BinaryOp::Sub),
        &[iota(&[2, 2]), t(&[2, 2], &[1.0; 4])],
    );
    assert_exact(&y, &[2, 2], &[-1.0, 0.0, 1.0, 2.0]);
    // Scalar on the left.
    let y = eval(Op::Binary(BinaryOp::Sub), &[t(&[1], &[1.0]), iota(&[2, 2])]);
    assert_exact(&y, &[2, 2], &[1.0, 0.0, -1.0, -2.0]);
}

#[test]
fn prelu_per_channel() {
    let x = t(&[1, 2, 3], &[-1.0, 0.0, 2.0, -4.0, -0.5, 3.0]);
    let slope = t(&[2, 1], &[0.1, 0.5]);
    let y = eval(Op::Binary(BinaryOp::PRelu), &[x, slope]);
    assert_close(&y, &[1, 2, 3], &[-0.1, 0.0, 2.0, -2.0, -0.25, 3.0], 1e-7);
}

// ---------------------------------------------------------------- matmul / gemm

#[test]
fn matmul_2d_and_rank1() {
    let a = iota(&[2, 3]); // [[0,1,2],[3,4,5]]
    let b = t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let y = eval(Op::MatMul, &[a.clone(), b.clone()]);
    assert_exact(&y, &[2, 2], &[13.0, 16.0, 40.0, 52.0]);
    let v = t(&[3], &[1.0, 1.0, 1.0]);
    let y = eval(Op::MatMul, &[v.clone(), b]);
    assert_exact(&y, &[2], &[9.0, 12.0]);
    let y = eval(Op::MatMul, &[a, v.clone()]);
    assert_exact(&y, &[2], &[3.0, 12.0]);
    let y = eval(Op::MatMul, &[v.clone(), t(&[3], &[1.0, 2.0, 3.0])]);
    assert_exact(&y, &[], &[6.0]);
}

#[test]
fn matmul_batch_broadcast() {
    // [2,1,1,2] @ [3,2,1] -> [2,3,1,1]
    let a = t(&[2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = t(&[3, 2, 1], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let y = eval(Op::MatMul, &[a, b]);
    assert_exact(&y, &[2, 3, 1, 1], &[1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    // rank-1 against a batch: [2] @ [2,2,3] -> [2,3]
    let y = eval(Op::MatMul, &[t(&[2], &[1.0, -1.0]), iota(&[2, 2, 3])]);
    assert_exact(&y, &[2, 3], &[-3.0, -3.0, -3.0, -3.0, -3.0, -3.0]);
}

#[test]
fn matmul_empty_inner() {
    let y = eval(Op::MatMul, &[t(&[2, 0], &[]), t(&[0, 3], &[])]);
    assert_exact(&y, &[2, 3], &[0.0; 6]);
}

#[test]
fn gemm_transposes_alpha_beta_bias() {
    let a = iota(&[3, 2]); // A^T = [[0,2,4],[1,3,5]]
    let b = t(&[2, 3], &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]); // B^T = [[1,0],[0,1],[1,1]]
    let attrs = GemmAttrs {
        alpha: 2.0,
        beta: 0.5,
        trans_a: true,
        trans_b: true,
    };
    // A^T B^T = [[4, 6],[6, 8]]
    let c = t(&[2], &[10.0, 20.0]);
    let y = eval(Op::Gemm(attrs.clone()), &[a.clone(), b.clone(), c]);
    assert_exact(&y, &[2, 2], &[13.0, 22.0, 17.0, 26.0]);
    let c = t(&[2, 1], &[10.0, 20.0]);
    let y = eval(Op::Gemm(attrs.clone()), &[a.clone(), b.clone(), c]);
    assert_exact(&y, &[2, 2], &[13.0, 17.0, 22.0, 26.0]);
    let y = eval(
        Op::Gemm(attrs.clone()),
        &[a.clone(), b.clone(), t(&[], &[2.0])],
    );
    assert_exact(&y, &[2, 2], &[9.0, 13.0, 13.0, 17.0]);
    let y = eval(Op::Gemm(attrs), &[a, b]);
    assert_exact(&y, &[2, 2], &[8.0, 12.0, 12.0, 16.0]);
    let plain = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    };
    let y = eval(
        Op::Gemm(plain),
        &[iota(&[1, 2]), iota(&[2, 3]), t(&[1, 3], &[1.0, 1.0, 1.0])],
    );
    assert_exact(&y, &[1, 3], &[4.0, 5.0, 6.0]);
}

// ---------------------------------------------------------------- conv

fn conv(strides: &[usize], dilations: &[usize], pads: &[(usize, usize)], group: usize) -> Op {
    Op::Conv(ConvAttrs {
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads: pads.to_vec(),
        group,
    })
}

#[test]
fn conv2d_valid() {
    let x = t(
        &[1, 1, 3, 3],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    );
    let w = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let y = eval(conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1), &[x, w]);
    // 1*1+2*2+3*4+4*5 = 37, ...
    assert_exact(&y, &[1, 1, 2, 2], &[37.0, 47.0, 67.0, 77.0]);
}

#[test]
fn conv2d_pads_stride_asymmetric() {
    let x = t(
        &[1, 1, 3, 3],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    );
    let w = t(&[1, 1, 3, 3], &[1.0; 9]);
    // pads: top 1, bottom 0, left 0, right 2; strides 2 x 1.
    // padded rows: [0; 1..3; 4..6; 7..9] (4 rows), cols [x x x 0 0] (5 cols) -> out 1 x 3.
    let y = eval(conv(&[2, 1], &[1, 1], &[(1, 0), (0, 2)], 1), &[x, w]);
    // row window rows -1..1 = rows 0,1 of x
    assert_exact(&y, &[1, 1, 1, 3], &[21.0, 16.0, 9.0]);
}

#[test]
fn conv2d_dilation() {
    let x = iota(&[1, 1, 5, 5]);
    let w = t(&[1, 1, 2, 2], &[1.0; 4]);
    let y = eval(conv(&[1, 1], &[2, 2], &[(0, 0), (0, 0)], 1), &[x, w]);
    // out[i][j] = x[i][j] + x[i][j+2] + x[i+2][j] + x[i+2][j+2] = 4 (5i + j) + 24
    let want: Vec<f32> = (0..3)
        .flat_map(|i| (0..3).map(move |j| (4 * (5 * i + j) + 24) as f32))
        .collect();
    assert_exact(&y, &[1, 1, 3, 3], &want);
}

#[test]
fn conv2d_groups_with_bias() {
    let x = t(&[1, 4, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let w = t(&[2, 2, 1, 1], &[1.0, 1.0, 1.0, -1.0]);
    let b = t(&[2], &[10.0, 20.0]);
    let y = eval(conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 2), &[x, w, b]);
    assert_exact(&y, &[1, 2, 1, 1], &[13.0, 19.0]);
}

#[test]
fn conv2d_depthwise_and_multiplier() {
    let x = t(&[1, 2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let w = t(&[2, 1, 1, 2], &[1.0, 1.0, 1.0, -1.0]);
    let y = eval(
        conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 2),
        &[x.clone(), w],
    );
    assert_exact(&y, &[1, 2, 1, 2], &[3.0, 5.0, -1.0, -1.0]);
    // depth multiplier 2: channel c feeds outputs 2c and 2c+1.
    let w = t(&[4, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let y = eval(conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 2), &[x, w]);
    assert_exact(
        &y,
        &[1, 4, 1, 3],
        &[
            1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 12.0, 15.0, 18.0, 16.0, 20.0, 24.0,
        ],
    );
}

#[test]
fn conv1d_asymmetric_pad() {
    let x = t(&[1, 1, 3], &[1.0, 2.0, 3.0]);
    let w = t(&[1, 1, 3], &[1.0, 2.0, 3.0]);
    let y = eval(conv(&[1], &[1], &[(2, 0)], 1), &[x.clone(), w.clone()]);
    assert_exact(&y, &[1, 1, 3], &[3.0, 8.0, 14.0]);
    // stride 2, pads (1, 1): padded [0,1,2,3,0] -> windows at 0 and 2
    let y = eval(conv(&[2], &[1], &[(1, 1)], 1), &[x, w]);
    assert_exact(&y, &[1, 1, 2], &[8.0, 8.0]);
}

#[test]
fn conv_pointwise_and_batch() {
    // 1x1 conv (direct path), batch 2, 2 -> 3 channels.
    let x = iota(&[2, 2, 1, 2]);
    let w = t(&[3, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let b = t(&[3], &[0.0, 0.0, 100.0]);
    let y = eval(conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1), &[x, w, b]);
    assert_exact(
        &y,
        &[2, 3, 1, 2],
        &[
            0.0, 1.0, 2.0, 3.0, 102.0, 104.0, 4.0, 5.0, 6.0, 7.0, 110.0, 112.0,
        ],
    );
}

#[test]
fn conv3d_ones() {
    let x = t(&[1, 1, 2, 2, 2], &[1.0; 8]);
    let w = t(&[1, 1, 2, 2, 2], &[1.0; 8]);
    let y = eval(
        conv(&[1, 1, 1], &[1, 1, 1], &[(1, 0), (0, 0), (0, 0)], 1),
        &[x, w],
    );
    assert_exact(&y, &[1, 1, 2, 1, 1], &[4.0, 8.0]);
}

#[test]
fn conv_with_const_weights() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, 1, 2, 2]));
    let w = g
        .add_node("w", Op::Const(t(&[1, 1, 1, 1], &[3.0])), &[])
        .unwrap();
    let y = g
        .add_node("y", conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1), &[x, w])
        .unwrap();
    let z = g.add_node("z", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    g.set_outputs(vec![z, y]);
    g.verify().unwrap();
    let out = interp::run(&g, &[t(&[1, 1, 2, 2], &[1.0, -1.0, 2.0, -2.0])]).unwrap();
    assert_exact(&out[0], &[1, 1, 2, 2], &[3.0, 0.0, 6.0, 0.0]);
    assert_exact(&out[1], &[1, 1, 2, 2], &[3.0, -3.0, 6.0, -6.0]);
    let trace = interp::run_trace(&g, &[t(&[1, 1, 2, 2], &[1.0; 4])]).unwrap();
    assert_eq!(trace.len(), 4);
    assert_exact(&trace[&w], &[1, 1, 1, 1], &[3.0]);
}

// ---------------------------------------------------------------- pooling

fn pool_attrs(
    kernel: &[usize],
    strides: &[usize],
    pads: &[(usize, usize)],
    ceil_mode: bool,
    count_include_pad: bool,
) -> PoolAttrs {
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
        ceil_mode,
        count_include_pad,
    }
}

#[test]
fn maxpool_basic_and_padding_is_neg_inf() {
    let x = iota(&[1, 1, 4, 4]);
    let p = pool_attrs(&[2, 2], &[2, 2], &[(0, 0), (0, 0)], false, false);
    assert_exact(
        &eval(Op::MaxPool(p), &[x]),
        &[1, 1, 2, 2],
        &[5.0, 7.0, 13.0, 15.0],
    );
    let x = t(&[1, 1, 2, 2], &[-1.0, -2.0, -3.0, -4.0]);
    let p = pool_attrs(&[2, 2], &[1, 1], &[(1, 1), (1, 1)], false, false);
    assert_exact(
        &eval(Op::MaxPool(p), &[x]),
        &[1, 1, 3, 3],
        &[-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0],
    );
}

#[test]
fn maxpool_dilation() {
    let x = iota(&[1, 1, 4, 4]);
    let mut p = pool_attrs(&[2, 2], &[1, 1], &[(0, 0), (0, 0)], false, false);
    p.dilations = vec![2, 2];
    assert_exact(
        &eval(Op::MaxPool(p), &[x]),
        &[1, 1, 2, 2],
        &[10.0, 11.0, 14.0, 15.0],
    );
}

#[test]
fn maxpool_ceil_mode() {
    let x = iota(&[1, 1, 5, 5]);
    let p = pool_attrs(&[2, 2], &[2, 2], &[(0, 0), (0, 0)], true, false);
    assert_exact(
        &eval(Op::MaxPool(p), &[x]),
        &[1, 1, 3, 3],
        &[6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0],
    );
}

#[test]
fn avgpool_ceil_mode_excludes_overhang() {
    let x = iota(&[1, 1, 5, 5]);
    for cip in [false, true] {
        // No explicit pads: count_include_pad changes nothing, the overhang never counts.
        let p = pool_attrs(&[2, 2], &[2, 2], &[(0, 0), (0, 0)], true, cip);
        assert_exact(
            &eval(Op::AveragePool(p), &[x.clone()]),
            &[1, 1, 3, 3],
            &[3.0, 5.0, 6.5, 13.0, 15.0, 16.5, 20.5, 22.5, 24.0],
        );
    }
    // 1-D, kernel 3, stride 2, pads (1,1), ceil: padded coords [P 1 2 3 4 P | overhang].
    let x = t(&[1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
    let p = pool_attrs(&[3], &[2], &[(1, 1)], true, true);
    // PyTorch avg_pool1d(ceil_mode=True, count_include_pad=True) gives [1, 3, 2].
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 3],
        &[1.0, 3.0, 2.0],
    );
    let p = pool_attrs(&[3], &[2], &[(1, 1)], true, false);
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 3],
        &[1.5, 3.0, 4.0],
    );
    // Without ceil mode the last window is dropped.
    let p = pool_attrs(&[3], &[2], &[(1, 1)], false, true);
    assert_exact(&eval(Op::AveragePool(p), &[x]), &[1, 1, 2], &[1.0, 3.0]);
}

#[test]
fn avgpool_ceil_mode_drops_window_starting_in_padding() {
    // ceil_mode keeps a partial last window only if it starts inside the input or the begin
    // padding (ONNX / PyTorch rule).
    let x = t(&[1, 1, 3], &[1.0, 2.0, 3.0]);
    let p = pool_attrs(&[2], &[3], &[(1, 1)], true, true);
    // padded [P 1 2 3 P]: span 2, steps 3 -> ceil(3/3)+1 = 2; (2-1)*3 = 3 < 3+1 -> 2 windows:
    // [P 1] -> (0+1)/2, [3 P] -> (3+0)/2
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 2],
        &[0.5, 1.5],
    );
    let p = pool_attrs(&[2], &[2], &[(0, 1)], true, false);
    // padded [1 2 3 P]: span 2, steps 2 -> 2 windows [1 2], [3 P]
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 2],
        &[1.5, 3.0],
    );
    let p = pool_attrs(&[1], &[2], &[(0, 1)], true, true);
    // padded [1 2 3 P]: span 1, steps 3 -> ceil(3/2)+1 = 3 windows at 0, 2, 4; the last
    // starts at 4 >= 3 + 0 and is dropped.
    assert_exact(&eval(Op::AveragePool(p), &[x]), &[1, 1, 2], &[1.0, 3.0]);
}

#[test]
fn avgpool_count_include_pad() {
    let x = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let p = pool_attrs(&[2, 2], &[1, 1], &[(1, 1), (1, 1)], false, true);
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 3, 3],
        &[0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0],
    );
    let p = pool_attrs(&[2, 2], &[1, 1], &[(1, 1), (1, 1)], false, false);
    assert_exact(
        &eval(Op::AveragePool(p), &[x]),
        &[1, 1, 3, 3],
        &[1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
    );
}

#[test]
fn avgpool_dilated_with_pads() {
    // 1-D, kernel 2, dilation 2, pads (1, 0): padded [P 0 1 2 3], windows {P,1}, {0,2}, {1,3}
    let x = iota(&[1, 1, 4]);
    let mut p = pool_attrs(&[2], &[1], &[(1, 0)], false, true);
    p.dilations = vec![2];
    assert_exact(
        &eval(Op::AveragePool(p.clone()), &[x.clone()]),
        &[1, 1, 3],
        &[0.5, 1.0, 2.0],
    );
    p.count_include_pad = false;
    assert_exact(
        &eval(Op::AveragePool(p), &[x]),
        &[1, 1, 3],
        &[1.0, 1.0, 2.0],
    );
}

#[test]
fn global_average_pool() {
    let x = iota(&[1, 2, 2, 2]);
    assert_exact(
        &eval(Op::GlobalAveragePool, &[x]),
        &[1, 2, 1, 1],
        &[1.5, 5.5],
    );
    let x = iota(&[2, 1, 3]);
    assert_exact(&eval(Op::GlobalAveragePool, &[x]), &[2, 1, 1], &[1.0, 4.0]);
}

// ---------------------------------------------------------------- normalisation

#[test]
fn batch_norm() {
    let x = t(&[1, 2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let scale = t(&[2], &[2.0, 0.5]);
    let bias = t(&[2], &[1.0, -1.0]);
    let mean = t(&[2], &[1.0, 3.0]);
    let var = t(&[2], &[4.0, 0.25]);
    let y = eval(Op::BatchNorm { epsilon: 0.0 }, &[x, scale, bias, mean, var]);
    // ch0: 2 * (x - 1) / 2 + 1 = x; ch1: 0.5 * (x - 3) / 0.5 - 1 = x - 4
    assert_exact(&y, &[1, 2, 1, 2], &[1.0, 2.0, -1.0, 0.0]);
    let x = t(&[2, 1], &[0.0, 1.0]);
    let one = t(&[1], &[1.0]);
    let zero = t(&[1], &[0.0]);
    let y = eval(
        Op::BatchNorm { epsilon: 1e-5 },
        &[x, one.clone(), zero.clone(), zero, one],
    );
    assert_close(&y, &[2, 1], &[0.0, 0.999_995], 1e-6);
}

#[test]
fn softmax() {
    let y = eval(Op::Softmax { axis: 0 }, &[t(&[3], &[1.0, 2.0, 3.0])]);
    assert_close(&y, &[3], &[0.090_030_57, 0.244_728_47, 0.665_240_96], 1e-6);
    let y = eval(
        Op::Softmax { axis: 0 },
        &[t(&[2, 2], &[0.0, 1000.0, 0.0, 1000.0])],
    );
    assert_close(&y, &[2, 2], &[0.5, 0.5, 0.5, 0.5], 1e-7);
    let y = eval(
        Op::Softmax { axis: 1 },
        &[t(&[2, 2], &[1000.0, 1000.0, -1000.0, 0.0])],
    );
    assert_close(&y, &[2, 2], &[0.5, 0.5, 0.0, 1.0], 1e-7);
}

// ---------------------------------------------------------------- layout

#[test]
fn reshape_transpose_concat_identity() {
    let x = iota(&[2, 3]);
    let y = eval(Op::Reshape { shape: vec![3, 2] }, &[x.clone()]);
    assert_exact(&y, &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let y = eval(Op::Transpose { perm: vec![1, 0] }, &[x.clone()]);
    assert_exact(&y, &[3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let y = eval(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[iota(&[2, 1, 3])],
    );
    assert_exact(&y, &[3, 2, 1], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let y = eval(
        Op::Concat { axis: 1 },
        &[x.clone(), t(&[2, 1], &[9.0, 8.0])],
    );
    assert_exact(&y, &[2, 4], &[0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0, 8.0]);
    let y = eval(Op::Concat { axis: 0 }, &[x.clone(), x.clone(), x.clone()]);
    assert_eq!(y.shape(), &[6, 3]);
    assert_exact(
        &eval(Op::Identity, &[x.clone()]),
        &[2, 3],
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    );
    // Reshape of a transposed (non row-major) view reads it in logical order.
    let xt = x.t().to_owned();
    let mut g = Graph::new();
    let i = g.add_input("x", TensorFact::f32([2, 3]));
    let tr = g
        .add_node("t", Op::Transpose { perm: vec![1, 0] }, &[i])
        .unwrap();
    let r = g
        .add_node("r", Op::Reshape { shape: vec![6] }, &[tr])
        .unwrap();
    g.set_outputs(vec![r]);
    let out = interp::run(&g, &[x]).unwrap();
    assert_exact(&out[0], &[6], &xt.iter().copied().collect::<Vec<_>>());
}

#[test]
fn pad_modes() {
    let x = t(&[3], &[1.0, 2.0, 3.0]);
    let pad = |mode, value| Op::Pad {
        pads: vec![(2, 2)],
        mode,
        value,
    };
    assert_exact(
        &eval(pad(PadMode::Constant, 7.0), &[x.clone()]),
        &[7],
        &[7.0, 7.0, 1.0, 2.0, 3.0, 7.0, 7.0],
    );
    assert_exact(
        &eval(pad(PadMode::Reflect, 0.0), &[x.clone()]),
        &[7],
        &[3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0],
    );
    assert_exact(
        &eval(pad(PadMode::Edge, 0.0), &[x]),
        &[7],
        &[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0],
    );
    let x = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let op = Op::Pad {
        pads: vec![(1, 0), (0, 1)],
        mode: PadMode::Constant,
        value: 0.0,
    };
    assert_exact(
        &eval(op, &[x.clone()]),
        &[3, 3],
        &[0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0],
    );
    let op = Op::Pad {
        pads: vec![(1, 1), (1, 0)],
        mode: PadMode::Reflect,
        value: 0.0,
    };
    assert_exact(
        &eval(op, &[x.clone()]),
        &[4, 3],
        &[4.0, 3.0, 4.0, 2.0, 1.0, 2.0, 4.0, 3.0, 4.0, 2.0, 1.0, 2.0],
    );
    let op = Op::Pad {
        pads: vec![(0, 1), (2, 0)],
        mode: PadMode::Edge,
        value: 0.0,
    };
    assert_exact(
        &eval(op, &[x]),
        &[3, 4],
        &[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0, 3.0, 3.0, 3.0, 4.0],
    );
}

// ---------------------------------------------------------------- casts and quantization

#[test]
fn cast_truncates_and_wraps() {
    // Float to integer: truncation toward zero, then the two's-complement wrap-around numpy's
    // `astype` gives (ONNX leaves out-of-range float sources undefined).
    let x = t(&[6], &[-1.7, 1.7, 200.0, -200.0, 2.5, -0.5]);
    let y = eval(Op::Cast { to: DType::I8 }, &[x.clone()]);
    assert_exact(&y, &[6], &[-1.0, 1.0, -56.0, 56.0, 2.0, 0.0]);
    let y = eval(Op::Cast { to: DType::U8 }, &[x.clone()]);
    assert_exact(&y, &[6], &[255.0, 1.0, 200.0, 56.0, 2.0, 0.0]);
    let y = eval(Op::Cast { to: DType::I32 }, &[x.clone()]);
    assert_exact(&y, &[6], &[-1.0, 1.0, 200.0, -200.0, 2.0, 0.0]);
    let y = eval(Op::Cast { to: DType::F32 }, &[x.clone()]);
    assert_eq!(y, x);
    let y = eval(Op::Cast { to: DType::U8 }, &[t(&[2], &[300.0, 255.9])]);
    assert_exact(&y, &[2], &[44.0, 255.0]);
    // Integers have no negative zero.
    let y = eval(Op::Cast { to: DType::I8 }, &[t(&[1], &[-0.5])]);
    assert_eq!(y[[0]].to_bits(), 0.0f32.to_bits());
}

fn quant(axis: Option<usize>, dtype: DType) -> QuantAttrs {
    QuantAttrs { axis, dtype }
}

#[test]
fn quantize_per_tensor_rounds_half_even() {
    let x = t(&[8], &[0.25, 0.75, 1.25, -0.25, -0.75, 100.0, -100.0, 0.0]);
    for scale_shape in [&[][..], &[1][..]] {
        let s = t(scale_shape, &[0.5]);
        let z = t(scale_shape, &[0.0]);
        let y = eval(
            Op::QuantizeLinear(quant(None, DType::I8)),
            &[x.clone(), s, z],
        );
        // x/s = 0.5, 1.5, 2.5, -0.5, -1.5, 200, -200, 0
        assert_exact(&y, &[8], &[0.0, 2.0, 2.0, 0.0, -2.0, 127.0, -128.0, 0.0]);
    }
    let y = eval(
        Op::QuantizeLinear(quant(None, DType::U8)),
        &[x, t(&[], &[0.5]), t(&[], &[128.0])],
    );
    assert_exact(
        &y,
        &[8],
        &[128.0, 130.0, 130.0, 128.0, 126.0, 255.0, 0.0, 128.0],
    );
}

#[test]
fn quantize_per_axis() {
    let x = t(&[2, 3], &[0.5, 1.0, 2.0, 1.5, 3.0, -6.0]);
    let s = t(&[3], &[1.0, 2.0, 4.0]);
    let z = t(&[3], &[0.0, 1.0, -1.0]);
    let y = eval(
        Op::QuantizeLinear(quant(Some(1), DType::I8)),
        &[x.clone(), s.clone(), z.clone()],
    );
    // x/s = [[0.5, 0.5, 0.5], [1.5, 1.5, -1.5]] -> [[0, 0, 0], [2, 2, -2]] + zp
    assert_exact(&y, &[2, 3], &[0.0, 1.0, -1.0, 2.0, 3.0, -3.0]);
    let d = eval(Op::DequantizeLinear(quant(Some(1), DType::I8)), &[y, s, z]);
    assert_exact(&d, &[2, 3], &[0.0, 0.0, 0.0, 2.0, 4.0, -8.0]);
    let s0 = t(&[2], &[0.5, 10.0]);
    let z0 = t(&[2], &[10.0, 250.0]);
    let y = eval(
        Op::QuantizeLinear(quant(Some(0), DType::U8)),
        &[x.clone(), s0.clone(), z0.clone()],
    );
    // row 0: x/0.5 = 1, 2, 4 (+10); row 1: x/10 = 0.15, 0.3, -0.6 -> 0, 0, -1 (+250)
    assert_exact(&y, &[2, 3], &[11.0, 12.0, 14.0, 250.0, 250.0, 249.0]);
    let d = eval(
        Op::DequantizeLinear(quant(Some(0), DType::U8)),
        &[y, s0, z0],
    );
    assert_exact(&d, &[2, 3], &[0.5, 1.0, 2.0, 0.0, 0.0, -10.0]);
}

#[test]
fn dequantize_per_tensor() {
    let x = t(&[3], &[-128.0, 0.0, 127.0]);
    let y = eval(
        Op::DequantizeLinear(quant(None, DType::I8)),
        &[x, t(&[1], &[0.25]), t(&[1], &[-1.0])],
    );
    assert_exact(&y, &[3], &[-31.75, 0.25, 32.0]);
}

// ---------------------------------------------------------------- errors, not panics

#[test]
fn eval_op_rejects_mismatched_inputs() {
    let fact = TensorFact::f32([2, 2]);
    let a = iota(&[2, 3]);
    let b = iota(&[3, 3]);
    // MatMul of [2,3] @ [3,3] is [2,3], not the recorded [2,2].
    assert!(interp::eval_op(&Op::MatMul, &[&a, &b], &fact).is_err());
    // Wrong arity.
    assert!(interp::eval_op(&Op::MatMul, &[&a], &fact).is_err());
    // Conv with a weight of the wrong rank.
    let c = conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1);
    let x = iota(&[1, 1, 3, 3]);
    assert!(interp::eval_op(&c, &[&x, &b], &TensorFact::f32([1, 1, 3, 3])).is_err());
    assert!(interp::eval_op(&Op::Input, &[], &fact).is_err());
    // Per-axis scale of the wrong length.
    let q = Op::QuantizeLinear(quant(Some(1), DType::I8));
    let s = t(&[2], &[1.0, 1.0]);
    assert!(interp::eval_op(&q, &[&a, &s, &s], &TensorFact::new(DType::I8, [2, 3])).is_err());
    // Quantizing to f32 is not a quantization.
    let q = Op::QuantizeLinear(quant(None, DType::F32));
    let one = t(&[], &[1.0]);
    assert!(interp::eval_op(&q, &[&a, &one, &one], &TensorFact::f32([2, 3])).is_err());
    // And the happy path through eval_op directly.
    let y = interp::eval_op(&Op::Unary(UnaryOp::Neg), &[&a], &TensorFact::f32([2, 3])).unwrap();
    assert_eq!(y, a.mapv(|v| -v));
}

#[test]
fn run_checks_inputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([2]));
    let y = g.add_node("y", Op::Unary(UnaryOp::Relu), &[x]).unwrap();
    g.set_outputs(vec![y]);
    assert!(matches!(
        interp::run(&g, &[]),
        Err(InterpError::InputCount { .. })
    ));
    assert!(matches!(
        interp::run(&g, &[iota(&[3])]),
        Err(InterpError::InputShape { .. })
    ));
    assert!(matches!(
        interp::run(&g, &[t(&[2], &[0.0, f32::NAN])]),
        Err(InterpError::NonFinite { index: 1, .. })
    ));
}

#[test]
fn empty_tensors_do_not_panic() {
    let y = eval(Op::Unary(UnaryOp::Sigmoid), &[t(&[0, 3], &[])]);
    assert_eq!(y.shape(), &[0, 3]);
    let y = eval(
        Op::Binary(BinaryOp::Add),
        &[t(&[0, 3], &[]), t(&[3], &[1.0; 3])],
    );
    assert_eq!(y.shape(), &[0, 3]);
    let y = eval(Op::Softmax { axis: 1 }, &[t(&[2, 0], &[])]);
    assert_eq!(y.shape(), &[2, 0]);
    let x = t(&[0, 2, 3, 3], &[]);
    let w = iota(&[4, 2, 2, 2]);
    let y = eval(conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1), &[x, w]);
    assert_eq!(y.shape(), &[0, 4, 2, 2]);
    let x = t(&[1, 0, 3, 3], &[]);
    let w = t(&[2, 0, 2, 2], &[]);
    let y = eval(
        conv(&[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1),
        &[x, w, t(&[2], &[1.0, 2.0])],
    );
    assert_exact(&y, &[1, 2, 2, 2], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
    let p = pool_attrs(&[2, 2], &[1, 1], &[(0, 0), (0, 0)], false, false);
    let y = eval(Op::MaxPool(p), &[t(&[1, 0, 3, 3], &[])]);
    assert_eq!(y.shape(), &[1, 0, 2, 2]);
    let y = eval(
        Op::Pad {
            pads: vec![(1, 1), (0, 0)],
            mode: PadMode::Constant,
            value: 5.0,
        },
        &[t(&[0, 2], &[])],
    );
    assert_exact(&y, &[2, 2], &[5.0; 4]);
    let y = eval(Op::Reshape { shape: vec![0, 5] }, &[t(&[5, 0], &[])]);
    assert_eq!(y.shape(), &[0, 5]);
    let y = eval(Op::GlobalAveragePool, &[t(&[1, 0, 2], &[])]);
    assert_eq!(y.shape(), &[1, 0, 1]);
    let y = eval(
        Op::BatchNorm { epsilon: 1e-5 },
        &[
            t(&[1, 0], &[]),
            t(&[0], &[]),
            t(&[0], &[]),
            t(&[0], &[]),
            t(&[0], &[]),
        ],
    );
    assert_eq!(y.shape(), &[1, 0]);
}

#[test]
fn pool3d() {
    let x = iota(&[1, 1, 2, 2, 2]);
    let p = pool_attrs(&[2, 2, 2], &[1, 1, 1], &[(0, 0); 3], false, false);
    assert_exact(
        &eval(Op::MaxPool(p.clone()), &[x.clone()]),
        &[1, 1, 1, 1, 1],
        &[7.0],
    );
    assert_exact(
        &eval(Op::AveragePool(p), &[x.clone()]),
        &[1, 1, 1, 1, 1],
        &[3.5],
    );
    // Pad the first axis by one on each side: windows {P,0..3}, {0..7}, {4..7,P}.
    let p = pool_attrs(
        &[2, 2, 2],
        &[1, 1, 1],
        &[(1, 1), (0, 0), (0, 0)],
        false,
        true,
    );
    assert_exact(
        &eval(Op::AveragePool(p.clone()), &[x.clone()]),
        &[1, 1, 3, 1, 1],
        &[0.75, 3.5, 2.75],
    );
    let p = PoolAttrs {
        count_include_pad: false,
        ..p
    };
    assert_exact(
        &eval(Op::AveragePool(p.clone()), &[x.clone()]),
        &[1, 1, 3, 1, 1],
        &[1.5, 3.5, 5.5],
    );
    assert_exact(
        &eval(Op::MaxPool(p), &[x]),
        &[1, 1, 3, 1, 1],
        &[3.0, 7.0, 7.0],
    );
}

#[test]
fn pool_windows_entirely_in_padding() {
    // kernel 1 with padding: the first and last windows see only padding.
    let x = t(&[1, 1, 2], &[1.0, 2.0]);
    let p = pool_attrs(&[1], &[1], &[(1, 1)], false, false);
    let y = eval(Op::MaxPool(p.clone()), &[x.clone()]);
    assert_exact(
        &y,
        &[1, 1, 4],
        &[f32::NEG_INFINITY, 1.0, 2.0, f32::NEG_INFINITY],
    );
    let y = eval(Op::AveragePool(p.clone()), &[x.clone()]);
    assert!(y[[0, 0, 0]].is_nan() && y[[0, 0, 3]].is_nan());
    assert_exact(
        &y.slice(ndarray::s![.., .., 1..3]).to_owned().into_dyn(),
        &[1, 1, 2],
        &[1.0, 2.0],
    );
    let p = PoolAttrs {
        count_include_pad: true,
        ..p
    };
    let y = eval(Op::AveragePool(p), &[x]);
    assert_exact(&y, &[1, 1, 4], &[0.0, 1.0, 2.0, 0.0]);
}

#[test]
fn gemm_empty_inner_dimension_gives_bias() {
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 2.0,
        trans_a: false,
        trans_b: true,
    };
    let y = eval(
        Op::Gemm(attrs),
        &[t(&[2, 0], &[]), t(&[3, 0], &[]), t(&[3], &[1.0, 2.0, 3.0])],
    );
    assert_exact(&y, &[2, 3], &[2.0, 4.0, 6.0, 2.0, 4.0, 6.0]);
}

#[test]
fn run_frees_intermediates_but_keeps_outputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([3]));
    let a = g.add_node("a", Op::Unary(UnaryOp::Relu), &[x]).unwrap();
    let b = g.add_node("b", Op::Unary(UnaryOp::Neg), &[a]).unwrap();
    let c = g.add_node("c", Op::Binary(BinaryOp::Mul), &[a, b]).unwrap();
    let d = g.add_node("d", Op::Binary(BinaryOp::Add), &[c, c]).unwrap();
    let k = g
        .add_node("k", Op::Const(t(&[3], &[1.0, 2.0, 3.0])), &[])
        .unwrap();
    let e = g.add_node("e", Op::Binary(BinaryOp::Add), &[d, k]).unwrap();
    g.set_outputs(vec![e, a, e, x, k]);
    g.verify().unwrap();
    let xs = t(&[3], &[-1.0, 2.0, 3.0]);
    let out = interp::run(&g, std::slice::from_ref(&xs)).unwrap();
    assert_eq!(out.len(), 5);
    assert_exact(&out[0], &[3], &[1.0, -6.0, -15.0]);
    assert_exact(&out[1], &[3], &[0.0, 2.0, 3.0]);
    assert_eq!(out[0], out[2]);
    assert_eq!(out[3], xs);
    assert_exact(&out[4], &[3], &[1.0, 2.0, 3.0]);
    let trace = interp::run_trace(&g, &[xs]).unwrap();
    assert_eq!(trace.len(), 7);
    assert_exact(&trace[&c], &[3], &[0.0, -4.0, -9.0]);
}
