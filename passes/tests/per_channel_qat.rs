//! QAT weights with one scale per output channel (`DequantizeLinear` with `axis`), on a
//! hidden layer (its table absorbs the scales) and on the last layer (the client applies
//! them: `DequantizeChannels`, no table).

mod common;

use common::{gemm_trans_b, Lcg};
use fhec_ir::{int_interp, interp, DType, Graph, NodeId, Op, QuantAttrs, Tensor, TensorFact};
use fhec_passes::quantize::{calibrate, quantize, QuantError, QuantOptions};
use ndarray::{ArrayD, IxDyn};

const IN: usize = 6;
const HIDDEN: usize = 5;
const OUT: usize = 3;

fn constant(g: &mut Graph, name: &str, shape: &[usize], data: Vec<f32>) -> NodeId {
    let t = ArrayD::from_shape_vec(IxDyn(shape), data).unwrap();
    g.add_node(name, Op::Const(t), &[]).unwrap()
}

/// `DequantizeLinear(int8 weights [out, in], scales[out], zero points 0, axis)`: seeded
/// integers in [-7, 7], output channel `j` scaled by `0.01 * (j + 1)^2` (very different).
fn qat_weights(
    g: &mut Graph,
    name: &str,
    out: usize,
    inp: usize,
    seed: u64,
    axis: usize,
) -> NodeId {
    let mut rng = Lcg::new(seed);
    let ints: Vec<f32> = (0..out * inp).map(|_| rng.below(15) as f32 - 7.0).collect();
    let w = constant(g, &format!("{name}.q"), &[out, inp], ints);
    let n = if axis == 0 { out } else { inp };
    let scales: Vec<f32> = (0..n).map(|j| 0.01 * ((j + 1) * (j + 1)) as f32).collect();
    let s = constant(g, &format!("{name}.scale"), &[n], scales);
    let z = constant(g, &format!("{name}.zp"), &[n], vec![0.0; n]);
    let attrs = QuantAttrs {
        axis: Some(axis),
        dtype: DType::I8,
    };
    g.add_node(name, Op::DequantizeLinear(attrs), &[w, s, z])
        .unwrap()
}

fn gemm(g: &mut Graph, name: &str, x: NodeId, w: NodeId, out: usize, seed: u64) -> NodeId {
    let mut rng = Lcg::new(seed);
    let b = rng.tensor(&[out], -0.1, 0.1);
    let b = g.add_node(format!("{name}.b"), Op::Const(b), &[]).unwrap();
    gemm_trans_b(g, name, x, w, b)
}

/// x -> Gemm(per-channel) -> Relu -> Gemm(per-channel, the output).
fn model(last_axis: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, IN]));
    let w1 = qat_weights(&mut g, "w1", HIDDEN, IN, 1, 0);
    let h = gemm(&mut g, "fc1", x, w1, HIDDEN, 2);
    let r = g
        .add_node("relu", Op::Unary(fhec_ir::UnaryOp::Relu), &[h])
        .unwrap();
    let w2 = qat_weights(&mut g, "w2", OUT, HIDDEN, 3, last_axis);
    let y = gemm(&mut g, "fc2", r, w2, OUT, 4);
    g.set_outputs(vec![y]);
    g
}

fn samples(n: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg::new(seed);
    (0..n).map(|_| rng.tensor(&[1, IN], -1.0, 1.0)).collect()
}

fn quantised(g: &Graph) -> Result<Graph, QuantError> {
    let cal: Vec<Vec<Tensor>> = samples(100, 5).into_iter().map(|x| vec![x]).collect();
    let calibration = calibrate(g, &cal).unwrap();
    quantize(g, &calibration, &QuantOptions::uniform(8)).map(|q| q.graph)
}

#[test]
fn per_channel_weight_scales_on_the_last_layer_are_applied_by_the_client() {
    let g = model(0);
    let q = quantised(&g).unwrap_or_else(|e| panic!("quantise: {e}"));
    let ops: Vec<&str> = q.node_ids().map(|n| q.node(n).op.name()).collect();
    // One table (the hidden ReLU with its per-channel scales), none on the output.
    assert_eq!(ops.iter().filter(|&&o| o == "Tlu").count(), 1, "{ops:?}");
    let out = q.node(q.outputs()[0]);
    let Op::DequantizeChannels { scales, .. } = &out.op else {
        panic!("output is {}, not DequantizeChannels", out.op.name());
    };
    let want: Vec<f32> = (0..OUT)
        .map(|j| 0.01 * ((j + 1) * (j + 1)) as f32)
        .collect();
    assert_eq!(scales, &want);
    // The model's own integer weights are kept: the only error is the hidden activation's
    // 8-bit quantisation (and the input's), far below the spread of the channel scales.
    let (mut worst, mut span) = (0f32, 0f32);
    for x in samples(100, 5) {
        let want = interp::run(&g, std::slice::from_ref(&x)).unwrap();
        let got = int_interp::run(&q, std::slice::from_ref(&x)).unwrap();
        for (a, b) in want[0].iter().zip(got[0].iter()) {
            worst = worst.max((a - b).abs());
            span = span.max(a.abs());
        }
    }
    assert!(
        worst <= 0.03 * span,
        "largest error {worst} against outputs up to {span}"
    );
}

#[test]
fn scales_along_the_input_axis_are_refused_naming_the_layer() {
    let err = quantised(&model(1)).unwrap_err();
    match err {
        QuantError::Unsupported { node, message, .. } => {
            assert_eq!(node, "fc2");
            assert!(message.contains("input channels"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
}
