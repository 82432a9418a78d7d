//! Hand-computed cases for every op of the integer interpreter (`int_interp`), the clear
//! semantics every engine is checked against. Each expected value is written out with the
//! arithmetic behind it; none comes from running the interpreter.
#![allow(clippy::cloned_ref_to_slice_refs)]

use fhec_ir::int_interp::{self, Value};
use fhec_ir::quant::{negacyclic_read, QParams, Rounding, RoundingMode, Tlu};
use fhec_ir::{
    BinaryOp, ConvAttrs, GemmAttrs, Graph, NodeId, Op, PadMode, PoolAttrs, Tensor, TensorFact,
};
use fhec_testkit::tensor as real;
use ndarray::{ArrayD, IxDyn};

fn int(shape: &[usize], data: &[i64]) -> ArrayD<i64> {
    ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap()
}

/// Client quantisation that leaves small integers as they are: `round(x / 1) + 0`, 16-bit
/// signed (exact for every value these tests use).
fn exact() -> QParams {
    QParams {
        scale: 1.0,
        zero_point: 0,
        bits: 16,
        signed: true,
    }
}

/// A one-op integer graph: every runtime input is a real input quantised by [`exact`], every
/// constant an `IntConst` (in that order after the runtime inputs), then `op`. Checks the
/// graph, runs it and returns the op's integer value.
fn eval(op: Op, inputs: &[ArrayD<i64>], consts: &[ArrayD<i64>]) -> ArrayD<i64> {
    let mut g = Graph::new();
    let mut ids: Vec<NodeId> = vec![];
    for (i, x) in inputs.iter().enumerate() {
        let r = g.add_input(format!("x{i}"), TensorFact::f32(x.shape()));
        ids.push(
            g.add_node(format!("q{i}"), Op::Quantize(exact()), &[r])
                .unwrap(),
        );
    }
    for (i, c) in consts.iter().enumerate() {
        ids.push(
            g.add_node(format!("c{i}"), Op::IntConst(c.clone()), &[])
                .unwrap(),
        );
    }
    let y = g
        .add_node("y", op, &ids)
        .expect("shape inference accepts the case");
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    let reals: Vec<Tensor> = inputs.iter().map(|x| x.mapv(|v| v as f32)).collect();
    let values = int_interp::run_trace(&g, &reals).unwrap();
    values[&y].as_int().expect("an integer output").clone()
}

/// Like [`eval`], for a case the interpreter must reject: its error message.
fn eval_err(op: Op, ins: &[Value], out_shape: &[usize]) -> String {
    let refs: Vec<&Value> = ins.iter().collect();
    int_interp::eval(&op, &refs, out_shape).expect_err("the interpreter rejects the case")
}

#[track_caller]
fn assert_ints(got: &ArrayD<i64>, shape: &[usize], want: &[i64]) {
    assert_eq!(got.shape(), shape, "shape");
    assert_eq!(got.iter().copied().collect::<Vec<_>>(), want);
}

// ---------------------------------------------------------------- quantize / dequantize

/// Runs a real tensor through `Quantize(q)` alone.
fn quantize(q: QParams, xs: &[f32]) -> Vec<i64> {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([xs.len()]));
    let y = g.add_node("q", Op::Quantize(q), &[x]).unwrap();
    g.set_outputs(vec![y]);
    let values = int_interp::run_trace(&g, &[real(&[xs.len()], xs)]).unwrap();
    values[&y].as_int().unwrap().iter().copied().collect()
}

#[test]
fn quantize_rounds_half_to_even_and_adds_the_zero_point() {
    let q = QParams {
        scale: 0.5,
        zero_point: 3,
        bits: 4,
        signed: false,
    };
    let got = quantize(q, &[-0.75, -0.25, 0.0, 0.25, 0.75, 1.25, 1.3, 5.0, 5.75]);
    // x / 0.5, round half to even, + 3:
    // -1.5 -> -2 -> 1;  -0.5 -> -0 -> 3;  0 -> 3;  0.5 -> 0 -> 3;  1.5 -> 2 -> 5;
    // 2.5 -> 2 -> 5;  2.6 -> 3 -> 6;  10 -> 13;  11.5 -> 12 -> 15.
    assert_eq!(got, [1, 3, 3, 3, 5, 5, 6, 13, 15]);
}

#[test]
fn quantize_saturates_to_the_unsigned_range() {
    let q = QParams {
        scale: 0.5,
        zero_point: 3,
        bits: 4,
        signed: false,
    };
    // Range 0..=15. -1.5 / 0.5 + 3 = 0 (edge); -2 / 0.5 + 3 = -1 -> 0; 6 / 0.5 + 3 = 15
    // (edge); 6.5 / 0.5 + 3 = 16 -> 15; 100 / 0.5 + 3 = 203 -> 15; -1e6 -> 0.
    assert_eq!(
        quantize(q, &[-1.5, -2.0, 6.0, 6.5, 100.0, -1e6]),
        [0, 0, 15, 15, 15, 0]
    );
}

#[test]
fn quantize_signed_with_a_negative_zero_point() {
    let q = QParams {
        scale: 2.0,
        zero_point: -2,
        bits: 4,
        signed: true,
    };
    // Range -8..=7. x / 2 rounded half to even, then - 2:
    // -20 -> -10 - 2 = -12 -> -8;  -3 -> -1.5 -> -2 - 2 = -4;  -1 -> -0.5 -> 0 - 2 = -2;
    // 3 -> 1.5 -> 2 - 2 = 0;  9 -> 4.5 -> 4 - 2 = 2;  18 -> 9 - 2 = 7;  20 -> 10 - 2 = 8 -> 7.
    assert_eq!(
        quantize(q, &[-20.0, -3.0, -1.0, 3.0, 9.0, 18.0, 20.0]),
        [-8, -4, -2, 0, 2, 7, 7]
    );
    let q = QParams {
        scale: 1.0,
        zero_point: 0,
        bits: 3,
        signed: true,
    };
    // Range -4..=3: -5 -> -4; -3.5 -> -4 (even); -2.5 -> -2 (even); 2.5 -> 2; 3.5 -> 4 -> 3.
    assert_eq!(
        quantize(q, &[-5.0, -3.5, -2.5, 2.5, 3.5]),
        [-4, -4, -2, 2, 3]
    );
}

#[test]
fn dequantize_subtracts_the_zero_point_and_scales() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([5]));
    let q = g.add_node("q", Op::Quantize(exact()), &[x]).unwrap();
    let dq = QParams {
        scale: 0.25,
        zero_point: 3,
        bits: 4,
        signed: false,
    };
    let y = g.add_node("dq", Op::Dequantize(dq), &[q]).unwrap();
    g.set_outputs(vec![y]);
    let out = int_interp::run(&g, &[real(&[5], &[0.0, 3.0, 7.0, -1.0, 15.0])]).unwrap();
    // 0.25 * (q - 3): -0.75, 0, 1, -1, 3.
    assert_eq!(out[0].as_slice().unwrap(), [-0.75, 0.0, 1.0, -1.0, 3.0]);
}

#[test]
fn quantize_and_dequantize_reject_the_wrong_kind_of_tensor() {
    let e = eval_err(Op::Quantize(exact()), &[Value::Int(int(&[1], &[1]))], &[1]);
    assert!(e.contains("real tensor"), "{e}");
    let e = eval_err(
        Op::Dequantize(exact()),
        &[Value::Real(real(&[1], &[1.0]))],
        &[1],
    );
    assert!(
        e.contains("real tensor where an integer one is needed"),
        "{e}"
    );
}

#[test]
fn whole_graph_quantize_gemm_table_dequantize() {
    // x = [0.75, -0.5] -> Quantize(scale 0.25) -> [3, -2]
    // Gemm with W = [[2], [3]], b = [1]: 3*2 + (-2)*3 + 1 = 1
    // Tlu on -8..=8 with table max(v, 0) * 3: index 1 - (-8) = 9 -> 3
    // Dequantize(scale 0.5, zp 1): 0.5 * (3 - 1) = 1.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, 2]));
    let qp = QParams {
        scale: 0.25,
        zero_point: 0,
        bits: 4,
        signed: true,
    };
    let q = g.add_node("q", Op::Quantize(qp), &[x]).unwrap();
    let w = g
        .add_node("w", Op::IntConst(int(&[2, 1], &[2, 3])), &[])
        .unwrap();
    let b = g.add_node("b", Op::IntConst(int(&[1], &[1])), &[]).unwrap();
    let acc = g.add_node("fc", Op::Gemm(gemm_attrs(false, false)), &[q, w, b]);
    let acc = acc.unwrap();
    let t = Tlu {
        input_min: -8,
        rounding: None,
        tables: vec![(-8..=8).map(|v: i64| v.max(0) * 3).collect()],
        axis: None,
    };
    let act = g.add_node("act", Op::Tlu(t), &[acc]).unwrap();
    let dq = QParams {
        scale: 0.5,
        zero_point: 1,
        bits: 6,
        signed: false,
    };
    let y = g.add_node("dq", Op::Dequantize(dq), &[act]).unwrap();
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    let out = int_interp::run(&g, &[real(&[1, 2], &[0.75, -0.5])]).unwrap();
    assert_eq!(out[0].as_slice().unwrap(), [1.0]);
    // And x = [-0.75, -1.0] -> [-3, -4]: -3*2 + -4*3 + 1 = -17, below the table (-8..=8):
    // offset -17 - (-8) = -9; the table has 17 entries, 5 bits, so the bootstrap reads
    // -9 mod 64 = 55 >= 32: -table[55 - 32 = 23] and entry 23 is past the end: -0 = 0.
    // Dequantized: 0.5 * (0 - 1) = -0.5.
    let (out, outside) = int_interp::run_counting(&g, &[real(&[1, 2], &[-0.75, -1.0])]).unwrap();
    assert_eq!(out[0].as_slice().unwrap(), [-0.5]);
    assert_eq!(outside, 1);
}

// ---------------------------------------------------------------- Gemm / MatMul

fn gemm_attrs(trans_a: bool, trans_b: bool) -> GemmAttrs {
    GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a,
        trans_b,
    }
}

#[test]
fn gemm_with_bias() {
    let a = int(&[2, 3], &[1, -2, 3, 0, 4, -1]);
    let b = int(&[3, 2], &[2, 0, 1, -1, -3, 5]);
    let c = int(&[2], &[10, -10]);
    let y = eval(Op::Gemm(gemm_attrs(false, false)), &[a], &[b, c]);
    // row 0: 1*2 + (-2)*1 + 3*(-3) = -9, + 10 = 1;   1*0 + (-2)(-1) + 3*5 = 17, - 10 = 7
    // row 1: 0*2 + 4*1 + (-1)(-3) = 7, + 10 = 17;    0*0 + 4*(-1) + (-1)*5 = -9, - 10 = -19
    assert_ints(&y, &[2, 2], &[1, 7, 17, -19]);
}

#[test]
fn gemm_transposed_operands_and_column_bias() {
    // The same product with A and B stored transposed, and a bias per row ([2, 1]).
    let at = int(&[3, 2], &[1, 0, -2, 4, 3, -1]);
    let bt = int(&[2, 3], &[2, 1, -3, 0, -1, 5]);
    let c = int(&[2, 1], &[100, -100]);
    let y = eval(Op::Gemm(gemm_attrs(true, true)), &[at], &[bt, c]);
    // A @ B = [[-9, 17], [7, -9]]; row 0 + 100, row 1 - 100.
    assert_ints(&y, &[2, 2], &[91, 117, -93, -109]);
}

#[test]
fn gemm_without_bias_and_weights_as_runtime_input() {
    let a = int(&[1, 2], &[-3, 5]);
    let b = int(&[2, 2], &[4, -1, 2, 7]);
    let y = eval(Op::Gemm(gemm_attrs(false, false)), &[a, b], &[]);
    // -3*4 + 5*2 = -2;  -3*(-1) + 5*7 = 38
    assert_ints(&y, &[1, 2], &[-2, 38]);
}

#[test]
fn gemm_needs_unit_alpha_beta() {
    let mut attrs = gemm_attrs(false, false);
    attrs.alpha = 2.0;
    let one = Value::Int(int(&[1, 1], &[1]));
    let e = eval_err(Op::Gemm(attrs), &[one.clone(), one], &[1, 1]);
    assert!(e.contains("alpha = beta = 1"), "{e}");
}

#[test]
fn matmul_two_dimensional() {
    let a = int(&[1, 2], &[3, -4]);
    let b = int(&[2, 3], &[1, 2, 3, -1, 0, 5]);
    let y = eval(Op::MatMul, &[a], &[b]);
    // 3*1 + (-4)(-1) = 7;  3*2 + (-4)*0 = 6;  3*3 + (-4)*5 = -11
    assert_ints(&y, &[1, 3], &[7, 6, -11]);
    let a3 = Value::Int(int(&[1, 1, 2], &[1, 1]));
    let b2 = Value::Int(int(&[2, 1], &[1, 1]));
    let e = eval_err(Op::MatMul, &[a3, b2], &[1, 1, 1]);
    assert!(e.contains("2-D"), "{e}");
}

#[test]
fn linear_ops_report_overflow() {
    // 2^62 + 2^62 = 2^63 does not fit an i64.
    let a = Value::Int(int(&[1, 2], &[1 << 62, 1 << 62]));
    let b = Value::Int(int(&[2, 1], &[1, 1]));
    let e = eval_err(Op::MatMul, &[a, b], &[1, 1]);
    assert!(e.contains("overflow"), "{e}");
    // 2^32 * 2^32 = 2^64.
    let a = Value::Int(int(&[1, 1], &[1 << 32]));
    let e = eval_err(Op::MatMul, &[a.clone(), a], &[1, 1]);
    assert!(e.contains("overflow"), "{e}");
    // A convolution's multiply-accumulate too.
    let x = Value::Int(int(&[1, 1, 2], &[i64::MAX, 1]));
    let w = Value::Int(int(&[1, 1, 2], &[1, 1]));
    let e = eval_err(Op::Conv(conv_attrs(1, 0, 1, 1)), &[x, w], &[1, 1, 1]);
    assert!(e.contains("overflow"), "{e}");
    // A Gemm bias added to an accumulator at i64::MAX.
    let a = Value::Int(int(&[1, 1], &[i64::MAX]));
    let b = Value::Int(int(&[1, 1], &[1]));
    let c = Value::Int(int(&[1], &[1]));
    let e = eval_err(Op::Gemm(gemm_attrs(false, false)), &[a, b, c], &[1, 1]);
    assert!(e.contains("overflow"), "{e}");
    // A sum-pooling window: i64::MAX + 1.
    let x = Value::Int(int(&[1, 1, 2], &[i64::MAX, 1]));
    let p = pool_attrs(&[2], &[1], &[(0, 0)]);
    let e = eval_err(Op::SumPool(p), &[x], &[1, 1, 1]);
    assert!(e.contains("overflow"), "{e}");
}

// ---------------------------------------------------------------- Conv

/// 1-D attributes: stride, symmetric padding, dilation, group.
fn conv_attrs(stride: usize, pad: usize, dilation: usize, group: usize) -> ConvAttrs {
    ConvAttrs {
        strides: vec![stride],
        dilations: vec![dilation],
        pads: vec![(pad, pad)],
        group,
    }
}

fn iota9() -> ArrayD<i64> {
    // [[1, 2, 3],
    //  [4, 5, 6],
    //  [7, 8, 9]]
    int(&[1, 1, 3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9])
}

#[test]
fn conv_2d_plain_with_bias() {
    // w = [[1, 2], [0, -1]]: x[i][j] + 2 x[i][j+1] - x[i+1][j+1] + bias 5, no padding.
    let w = int(&[1, 1, 2, 2], &[1, 2, 0, -1]);
    let attrs = ConvAttrs {
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![(0, 0), (0, 0)],
        group: 1,
    };
    let y = eval(Op::Conv(attrs), &[iota9()], &[w, int(&[1], &[5])]);
    // (0,0): 1 + 2*2 - 5 + 5 = 5;   (0,1): 2 + 2*3 - 6 + 5 = 7
    // (1,0): 4 + 2*5 - 8 + 5 = 11;  (1,1): 5 + 2*6 - 9 + 5 = 13
    assert_ints(&y, &[1, 1, 2, 2], &[5, 7, 11, 13]);
}

#[test]
fn conv_2d_asymmetric_padding_reads_zeros() {
    // One row of zeros on top, one column of zeros on the right:
    //   0 0 0 0
    //   1 2 3 0
    //   4 5 6 0
    //   7 8 9 0
    // y[i][j] = P[i][j] - P[i+1][j+1]; out 3x3.
    let w = int(&[1, 1, 2, 2], &[1, 0, 0, -1]);
    let attrs = ConvAttrs {
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![(1, 0), (0, 1)],
        group: 1,
    };
    let y = eval(Op::Conv(attrs), &[iota9()], &[w]);
    // row 0: 0-2 = -2, 0-3 = -3, 0-0 = 0
    // row 1: 1-5 = -4, 2-6 = -4, 3-0 = 3
    // row 2: 4-8 = -4, 5-9 = -4, 6-0 = 6
    assert_ints(&y, &[1, 1, 3, 3], &[-2, -3, 0, -4, -4, 3, -4, -4, 6]);
}

#[test]
fn conv_2d_padding_and_stride() {
    // Padded by one on every side (5x5), stride 2, y = P[2i][2j] - P[2i+1][2j+1] + 5:
    //   0 0 0 0 0
    //   0 1 2 3 0
    //   0 4 5 6 0
    //   0 7 8 9 0
    //   0 0 0 0 0
    let w = int(&[1, 1, 2, 2], &[1, 0, 0, -1]);
    let attrs = ConvAttrs {
        strides: vec![2, 2],
        dilations: vec![1, 1],
        pads: vec![(1, 1), (1, 1)],
        group: 1,
    };
    let y = eval(Op::Conv(attrs), &[iota9()], &[w, int(&[1], &[5])]);
    // (0,0): 0 - 1 + 5 = 4;  (0,1): P[0][2] - P[1][3] + 5 = 0 - 3 + 5 = 2
    // (1,0): P[2][0] - P[3][1] + 5 = 0 - 7 + 5 = -2;  (1,1): 5 - 9 + 5 = 1
    assert_ints(&y, &[1, 1, 2, 2], &[4, 2, -2, 1]);
}

#[test]
fn conv_1d_dilation() {
    // y[i] = x[i] + 10 * x[i + 2] (kernel [1, 10], dilation 2): out length 5 - 2 = 3.
    let x = int(&[1, 1, 5], &[1, 2, 3, 4, -5]);
    let w = int(&[1, 1, 2], &[1, 10]);
    let y = eval(Op::Conv(conv_attrs(1, 0, 2, 1)), &[x], &[w]);
    // 1 + 30 = 31;  2 + 40 = 42;  3 - 50 = -47
    assert_ints(&y, &[1, 1, 3], &[31, 42, -47]);
}

#[test]
fn conv_groups_see_only_their_channels() {
    // 4 input channels of length 2, group 2: output channel 0 sees inputs 0-1, output
    // channel 1 inputs 2-3, both with the 1x1 weights [1, 10].
    let x = int(&[1, 4, 2], &[1, 2, 3, 4, -1, 0, 2, -2]);
    let w = int(&[2, 2, 1], &[1, 10, 1, 10]);
    let b = int(&[2], &[0, -7]);
    let y = eval(
        Op::Conv(conv_attrs(1, 0, 1, 2)),
        &[x.clone()],
        &[w, b.clone()],
    );
    // oc 0: [1 + 10*3, 2 + 10*4] = [31, 42]
    // oc 1: [-1 + 10*2 - 7, 0 + 10*(-2) - 7] = [12, -27]
    assert_ints(&y, &[1, 2, 2], &[31, 42, 12, -27]);
    // Group 1 with the same weights padded with zeros gives the same result.
    let w1 = int(&[2, 4, 1], &[1, 10, 0, 0, 0, 0, 1, 10]);
    let y1 = eval(Op::Conv(conv_attrs(1, 0, 1, 1)), &[x.clone()], &[w1, b]);
    assert_eq!(y1, y);
    // Depthwise (group 4, one output channel per input channel, weight [c + 1]).
    let wd = int(&[4, 1, 1], &[1, 2, 3, 4]);
    let yd = eval(Op::Conv(conv_attrs(1, 0, 1, 4)), &[x], &[wd]);
    // [1, 2]*1, [3, 4]*2, [-1, 0]*3, [2, -2]*4
    assert_ints(&yd, &[1, 4, 2], &[1, 2, 6, 8, -3, 0, 8, -8]);
}

#[test]
fn conv_multi_channel_1d_with_padding() {
    // 2 input channels, 2 output channels, kernel 3, padding 1, stride 2.
    // x0 = [1, -1, 2, 0], x1 = [3, 1, -2, 1]; padded: [0, 1, -1, 2, 0, 0], [0, 3, 1, -2, 1, 0]
    // windows start at padded 0 and 2 (out length (4 + 2 - 3) / 2 + 1 = 2).
    let x = int(&[1, 2, 4], &[1, -1, 2, 0, 3, 1, -2, 1]);
    // oc 0: w0 = [1, 1, 1] on x0, w1 = [0, 1, 0] on x1
    // oc 1: w0 = [-1, 0, 2] on x0, w1 = [1, -1, 1] on x1
    let w = int(&[2, 2, 3], &[1, 1, 1, 0, 1, 0, -1, 0, 2, 1, -1, 1]);
    let y = eval(Op::Conv(conv_attrs(2, 1, 1, 1)), &[x], &[w]);
    // oc 0, t 0: (0 + 1 - 1) + 3 = 3;     t 1: (-1 + 2 + 0) + (-2) = -1
    // oc 1, t 0: (0 + 0 - 2) + (0 - 3 + 1) = -4;  t 1: (1 + 0 + 0) + (1 + 2 + 1) = 5
    assert_ints(&y, &[1, 2, 2], &[3, -1, -4, 5]);
}

// ---------------------------------------------------------------- pooling

fn pool_attrs(kernel: &[usize], strides: &[usize], pads: &[(usize, usize)]) -> PoolAttrs {
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
        ceil_mode: false,
        count_include_pad: true,
    }
}

#[test]
fn sum_pool_windows() {
    let p = pool_attrs(&[2, 2], &[1, 1], &[(0, 0), (0, 0)]);
    let y = eval(Op::SumPool(p), &[iota9()], &[]);
    // 1+2+4+5 = 12; 2+3+5+6 = 16; 4+5+7+8 = 24; 5+6+8+9 = 28
    assert_ints(&y, &[1, 1, 2, 2], &[12, 16, 24, 28]);
}

#[test]
fn sum_pool_padding_adds_nothing() {
    // Padded by one on every side, 2x2 windows at stride 2 (see conv_2d_padding_and_stride):
    let p = pool_attrs(&[2, 2], &[2, 2], &[(1, 1), (1, 1)]);
    let y = eval(Op::SumPool(p), &[iota9()], &[]);
    // {1} = 1;  {2, 3} = 5;  {4, 7} = 11;  {5, 6, 8, 9} = 28
    assert_ints(&y, &[1, 1, 2, 2], &[1, 5, 11, 28]);
}

#[test]
fn sum_pool_negative_values_per_channel() {
    // Two channels, 1-D windows of 2 at stride 2.
    let x = int(&[1, 2, 4], &[-3, 1, 4, -4, 0, -2, 7, 7]);
    let p = pool_attrs(&[2], &[2], &[(0, 0)]);
    let y = eval(Op::SumPool(p), &[x], &[]);
    // -3+1 = -2; 4-4 = 0; 0-2 = -2; 7+7 = 14
    assert_ints(&y, &[1, 2, 2], &[-2, 0, -2, 14]);
}

#[test]
fn max_pool_of_negative_values() {
    // [[-5, -3,  2, -1],
    //  [-4, -6, -7, -8]], 2x2 windows at stride 2.
    let x = int(&[1, 1, 2, 4], &[-5, -3, 2, -1, -4, -6, -7, -8]);
    let p = pool_attrs(&[2, 2], &[2, 2], &[(0, 0), (0, 0)]);
    let y = eval(Op::MaxPool(p), &[x], &[]);
    // max(-5, -3, -4, -6) = -3;  max(2, -1, -7, -8) = 2
    assert_ints(&y, &[1, 1, 1, 2], &[-3, 2]);
}

#[test]
fn max_pool_padding_is_not_a_zero() {
    // 1-D x = [-3, -1, -2], one padding element in front, windows of 2 at stride 2:
    // [pad, -3] -> -3 (a zero pad would give 0), [-1, -2] -> -1.
    let x = int(&[1, 1, 3], &[-3, -1, -2]);
    let y = eval(
        Op::MaxPool(pool_attrs(&[2], &[2], &[(1, 0)])),
        &[x.clone()],
        &[],
    );
    assert_ints(&y, &[1, 1, 2], &[-3, -1]);
    // A window entirely in the padding has no maximum.
    let p = pool_attrs(&[1], &[1], &[(1, 0)]);
    let e = eval_err(Op::MaxPool(p), &[Value::Int(x)], &[1, 1, 4]);
    assert!(e.contains("entirely in padding"), "{e}");
}

#[test]
fn max_pool_ceil_mode_keeps_the_partial_window() {
    // x = [1, 5, 2], windows of 2 at stride 2 with ceil_mode: [1, 5] -> 5, [2] -> 2.
    let mut p = pool_attrs(&[2], &[2], &[(0, 0)]);
    p.ceil_mode = true;
    let y = eval(Op::MaxPool(p), &[int(&[1, 1, 3], &[1, 5, 2])], &[]);
    assert_ints(&y, &[1, 1, 2], &[5, 2]);
}

#[test]
fn average_pool_has_no_integer_semantics() {
    // Quantisation lowers it to SumPool plus a table; the float op is rejected.
    let p = pool_attrs(&[1], &[1], &[(0, 0)]);
    let e = eval_err(
        Op::AveragePool(p),
        &[Value::Int(int(&[1, 1, 1], &[1]))],
        &[1, 1, 1],
    );
    assert!(e.contains("no integer semantics"), "{e}");
}

// ---------------------------------------------------------------- table lookups

fn tlu(input_min: i64, shift: u32, mode: RoundingMode, tables: Vec<Vec<i64>>) -> Tlu {
    Tlu {
        input_min,
        rounding: (shift > 0).then_some(Rounding { shift, mode }),
        tables,
        axis: None,
    }
}

/// Runs the lookup on a 1-D tensor; the values and how many fell outside the domain.
fn lookup(t: Tlu, xs: &[i64]) -> (Vec<i64>, u64) {
    let x = int(&[xs.len()], xs);
    let y = eval(Op::Tlu(t.clone()), &[x.clone()], &[]);
    (
        y.iter().copied().collect(),
        int_interp::lookups_outside(&t, &x),
    )
}

#[test]
fn tlu_inside_the_domain() {
    // input_min -2: acc -2, -1, 0 read entries 0, 1, 2.
    let t = tlu(-2, 0, RoundingMode::Exact, vec![vec![10, -11, 12]]);
    assert_eq!(
        lookup(t, &[-2, -1, 0, 0, -2]),
        (vec![10, -11, 12, 12, 10], 0)
    );
}

#[test]
fn tlu_outside_the_domain_reads_the_negacyclic_wrap() {
    // 3 entries -> a 2-bit table: the bootstrap reads the offset acc + 2 modulo 8; 0..=3 is
    // table[i] (0 past the end), 4..=7 is -table[i - 4].
    let t = tlu(-2, 0, RoundingMode::Exact, vec![vec![10, -11, 12]]);
    let (y, outside) = lookup(t, &[0, 1, 2, 3, 4, 5, 6, -3, -4, -5]);
    // acc 0: offset 2, last entry, 12 (inside)
    // acc 1: offset 3, past the end: 0
    // acc 2: offset 4: -table[0] = -10;  acc 3: 5: -table[1] = 11;  acc 4: 6: -12
    // acc 5: offset 7: -(past the end) = 0;  acc 6: offset 8 = 0 mod 8: table[0] = 10
    // acc -3: offset -1 = 7 mod 8: 0;  acc -4: -2 = 6: -12;  acc -5: -3 = 5: 11
    assert_eq!(y, [12, 0, -10, 11, -12, 0, 10, 0, -12, 11]);
    assert_eq!(outside, 9, "everything but acc 0 is outside");
    // The same numbers straight from the rule.
    assert_eq!(negacyclic_read(&[10, -11, 12], 2, 0, 4), -10);
    assert_eq!(negacyclic_read(&[10, -11, 12], 2, 0, -2), -12);
}

#[test]
fn tlu_rounding_ties_go_up() {
    // shift 2: index = (acc - input_min + 2) >> 2 = floor(offset / 4 + 1/2), ties upward.
    // input_min -4, 3 entries: offsets -2..=9 are in the domain.
    for mode in [RoundingMode::Exact, RoundingMode::Approximate] {
        let t = tlu(-4, 2, mode, vec![vec![100, 101, 102]]);
        let (y, outside) = lookup(t, &[-4, -3, -2, -1, 1, 2, 5, -5, -6]);
        // acc -4: offset 0 -> (0+2)>>2 = 0 -> 100
        // acc -3: offset 1 -> 3>>2 = 0 -> 100
        // acc -2: offset 2 = 0.5 buckets, a tie -> 4>>2 = 1 -> 101 (half to even: 0)
        // acc -1: offset 3 -> 5>>2 = 1 -> 101
        // acc  1: offset 5 -> 7>>2 = 1 -> 101
        // acc  2: offset 6 = 1.5 buckets, a tie -> 8>>2 = 2 -> 102
        // acc  5: offset 9 -> 11>>2 = 2 -> 102 (last value of the domain)
        // acc -5: offset -1 -> 1>>2 = 0 -> 100
        // acc -6: offset -2 = -0.5 buckets, a tie -> upward to 0 -> 100 (away from zero: -1)
        assert_eq!(y, [100, 100, 101, 101, 101, 102, 102, 100, 100], "{mode:?}");
        assert_eq!(outside, 0, "{mode:?}");
    }
}

#[test]
fn tlu_rounding_outside_the_domain() {
    let t = tlu(-4, 2, RoundingMode::Exact, vec![vec![100, 101, 102]]);
    let (y, outside) = lookup(t, &[6, 9, 10, 13, 14, -7, -10, -11]);
    // 2-bit table, index modulo 8 after rounding:
    // acc  6: offset 10 -> 12>>2 = 3: past the end, 0
    // acc  9: offset 13 -> 15>>2 = 3: 0
    // acc 10: offset 14 -> 16>>2 = 4: -table[0] = -100
    // acc 13: offset 17 -> 19>>2 = 4: -100;  acc 14: offset 18 -> 20>>2 = 5: -101
    // acc -7: offset -3 -> -1>>2 = -1 = 7 mod 8: -(past the end) = 0
    // acc -10: offset -6 -> -4>>2 = -1: 0;  acc -11: offset -7 -> -5>>2 = -2 = 6: -102
    assert_eq!(y, [0, 0, -100, -100, -101, 0, 0, -102]);
    assert_eq!(outside, 8);
}

#[test]
fn tlu_per_channel_tables_follow_the_axis() {
    // x of shape [1, 2, 3]; channel c (axis 1) uses table c; input_min 0.
    let t = Tlu {
        input_min: 0,
        rounding: None,
        tables: vec![vec![0, 1, 2], vec![10, 20, 30]],
        axis: Some(1),
    };
    let x = int(&[1, 2, 3], &[0, 1, 2, 2, 1, 0]);
    let y = eval(Op::Tlu(t.clone()), &[x], &[]);
    // channel 0: [0, 1, 2] -> [0, 1, 2];  channel 1: [2, 1, 0] -> [30, 20, 10]
    assert_ints(&y, &[1, 2, 3], &[0, 1, 2, 30, 20, 10]);
    // Along the last axis of a [2, 2] tensor, with an out-of-domain read in channel 1
    // (2-bit tables, acc 3 is past the end: 0) and below the domain in channel 0 (acc -1:
    // offset 7 mod 8 -> -(past the end) = 0; acc -2: 6 mod 8 -> -table[2] = -2).
    let t = Tlu { axis: Some(1), ..t };
    let x = int(&[2, 2], &[-1, 3, -2, 2]);
    let y = eval(Op::Tlu(t.clone()), &[x.clone()], &[]);
    assert_ints(&y, &[2, 2], &[0, 0, -2, 30]);
    assert_eq!(int_interp::lookups_outside(&t, &x), 3);
}

#[test]
fn tlu_per_channel_with_rounding() {
    // shift 1, input_min 1, per channel along axis 0: index = (acc - 1 + 1) >> 1 = acc >> 1.
    let t = Tlu {
        input_min: 1,
        rounding: Some(Rounding {
            shift: 1,
            mode: RoundingMode::Exact,
        }),
        tables: vec![vec![-1, -2, -3], vec![7, 8, 9]],
        axis: Some(0),
    };
    let x = int(&[2, 3], &[0, 3, 5, 1, 2, 4]);
    let y = eval(Op::Tlu(t), &[x], &[]);
    // channel 0: 0 >> 1 = 0 -> -1 (offset -1 = -1/2 bucket, a tie, rounds up into the
    //            domain); 3 >> 1 = 1 -> -2; 5 >> 1 = 2 -> -3
    // channel 1: 1 >> 1 = 0 -> 7; 2 >> 1 = 1 -> 8; 4 >> 1 = 2 -> 9
    assert_ints(&y, &[2, 3], &[-1, -2, -3, 7, 8, 9]);
}

#[test]
fn tlu_errors() {
    let t = Tlu {
        input_min: 0,
        rounding: None,
        tables: vec![vec![0]],
        axis: Some(0),
    };
    // Two channels along axis 0, one table.
    let e = eval_err(Op::Tlu(t.clone()), &[Value::Int(int(&[2], &[0, 0]))], &[2]);
    assert!(e.contains("table 1 of 1 does not exist"), "{e}");
    let e = eval_err(Op::Tlu(t), &[Value::Real(real(&[1], &[0.0]))], &[1]);
    assert!(e.contains("integer one is needed"), "{e}");
}

// ---------------------------------------------------------------- element-wise arithmetic

#[test]
fn add_sub_mul_by_constants_broadcast() {
    let a = int(&[2, 2], &[1, -2, 3, 4]);
    let y = eval(
        Op::Binary(BinaryOp::Add),
        &[a.clone()],
        &[int(&[2], &[10, -10])],
    );
    // [[1+10, -2-10], [3+10, 4-10]]
    assert_ints(&y, &[2, 2], &[11, -12, 13, -6]);
    let y = eval(
        Op::Binary(BinaryOp::Sub),
        &[a.clone()],
        &[int(&[2, 1], &[1, -1])],
    );
    // [[1-1, -2-1], [3+1, 4+1]]
    assert_ints(&y, &[2, 2], &[0, -3, 4, 5]);
    let y = eval(Op::Binary(BinaryOp::Mul), &[a], &[int(&[], &[-3])]);
    // [[-3, 6], [-9, -12]]
    assert_ints(&y, &[2, 2], &[-3, 6, -9, -12]);
}

#[test]
fn constant_on_the_left_and_two_runtime_operands() {
    // c - x with c = [5] broadcast over x = [[1, 7]]: [4, -2].
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, 2]));
    let q = g.add_node("q", Op::Quantize(exact()), &[x]).unwrap();
    let c = g.add_node("c", Op::IntConst(int(&[1], &[5])), &[]).unwrap();
    let d = g.add_node("d", Op::Binary(BinaryOp::Sub), &[c, q]).unwrap();
    // (c - x) * x: [4 * 1, -2 * 7] = [4, -14]; + x: [5, -7].
    let m = g.add_node("m", Op::Binary(BinaryOp::Mul), &[d, q]).unwrap();
    let s = g.add_node("s", Op::Binary(BinaryOp::Add), &[m, q]).unwrap();
    g.set_outputs(vec![d, m, s]);
    let out = int_interp::run(&g, &[real(&[1, 2], &[1.0, 7.0])]).unwrap();
    assert_eq!(out[0].as_slice().unwrap(), [4.0, -2.0]);
    assert_eq!(out[1].as_slice().unwrap(), [4.0, -14.0]);
    assert_eq!(out[2].as_slice().unwrap(), [5.0, -7.0]);
}

#[test]
fn arithmetic_overflow_and_unsupported_ops() {
    let max = Value::Int(int(&[1], &[i64::MAX]));
    let two = Value::Int(int(&[1], &[2]));
    let min = Value::Int(int(&[1], &[i64::MIN]));
    for (op, a, b) in [
        (BinaryOp::Add, &max, &two),
        (BinaryOp::Mul, &max, &two),
        (BinaryOp::Sub, &min, &two),
    ] {
        let e = eval_err(Op::Binary(op), &[a.clone(), b.clone()], &[1]);
        assert!(e.contains("overflow"), "{op:?}: {e}");
    }
    for op in [BinaryOp::Div, BinaryOp::PRelu] {
        let e = eval_err(Op::Binary(op), &[two.clone(), two.clone()], &[1]);
        assert!(e.contains("no integer semantics"), "{op:?}: {e}");
    }
}

// ---------------------------------------------------------------- layout

#[test]
fn reshape_and_flatten_keep_row_major_order() {
    let x = int(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let y = eval(Op::Reshape { shape: vec![3, 2] }, &[x], &[]);
    assert_ints(&y, &[3, 2], &[1, 2, 3, 4, 5, 6]);
    // Flatten is a Reshape to [1, n] in the IR.
    let x = int(&[1, 2, 2], &[-1, 2, -3, 4]);
    let y = eval(Op::Reshape { shape: vec![1, 4] }, &[x], &[]);
    assert_ints(&y, &[1, 4], &[-1, 2, -3, 4]);
}

#[test]
fn transpose_permutes_axes() {
    // x[i][0][k] = [[[1, 2, 3]], [[4, 5, 6]]]; perm [2, 0, 1]: y[k][i][0] = x[i][0][k].
    let x = int(&[2, 1, 3], &[1, 2, 3, 4, 5, 6]);
    let y = eval(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[x],
        &[],
    );
    assert_ints(&y, &[3, 2, 1], &[1, 4, 2, 5, 3, 6]);
}

#[test]
fn transpose_then_reshape_reads_the_transposed_order() {
    // [[1, 2, 3], [4, 5, 6]] transposed is [[1, 4], [2, 5], [3, 6]]; flattened 1 4 2 5 3 6.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([2, 3]));
    let q = g.add_node("q", Op::Quantize(exact()), &[x]).unwrap();
    let t = g
        .add_node("t", Op::Transpose { perm: vec![1, 0] }, &[q])
        .unwrap();
    let r = g
        .add_node("r", Op::Reshape { shape: vec![6] }, &[t])
        .unwrap();
    g.set_outputs(vec![r]);
    let x = real(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = int_interp::run(&g, &[x]).unwrap();
    assert_eq!(out[0].as_slice().unwrap(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn concat_along_each_axis() {
    let a = int(&[2, 1], &[1, 2]);
    let b = int(&[2, 2], &[3, 4, 5, 6]);
    let y = eval(Op::Concat { axis: 1 }, &[a], &[b]);
    // [[1 | 3, 4], [2 | 5, 6]]
    assert_ints(&y, &[2, 3], &[1, 3, 4, 2, 5, 6]);
    let a = int(&[1, 2], &[-1, -2]);
    let b = int(&[2, 2], &[3, 4, 5, 6]);
    let c = int(&[1, 2], &[7, 8]);
    let y = eval(Op::Concat { axis: 0 }, &[a, b], &[c]);
    assert_ints(&y, &[4, 2], &[-1, -2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn pad_with_the_zero_point() {
    // [[7, -8]] with one row before and two columns after, filled with 3 (a zero point).
    let x = int(&[1, 2], &[7, -8]);
    let op = Op::Pad {
        pads: vec![(1, 0), (0, 2)],
        mode: PadMode::Constant,
        value: 3.0,
    };
    let y = eval(op, &[x], &[]);
    // [[3, 3, 3, 3],
    //  [7, -8, 3, 3]]
    assert_ints(&y, &[2, 4], &[3, 3, 3, 3, 7, -8, 3, 3]);
    // Only constant padding has integer semantics.
    let op = Op::Pad {
        pads: vec![(0, 1)],
        mode: PadMode::Edge,
        value: 0.0,
    };
    let e = eval_err(op, &[Value::Int(int(&[1], &[1]))], &[2]);
    assert!(e.contains("no integer semantics"), "{e}");
}

#[test]
fn identity_constants_and_shape_checks() {
    let x = int(&[3], &[-1, 0, 1]);
    assert_ints(&eval(Op::Identity, &[x], &[]), &[3], &[-1, 0, 1]);
    let c = int(&[2], &[4, -4]);
    assert_eq!(
        int_interp::eval(&Op::IntConst(c.clone()), &[], &[2]),
        Ok(Value::Int(c.clone()))
    );
    // The produced shape must be the node's inferred one.
    let e = int_interp::eval(&Op::IntConst(c), &[], &[3]).unwrap_err();
    assert!(e.contains("expected [3]"), "{e}");
}
