//! QONNX import (`Quant`, `BipolarQuant`, `Trunc` in the Brevitas/QONNX domains): hand-built
//! models run through the float interpreter against ports of qonnx's NumPy reference
//! implementations (`int_quant`, `trunc_v1`, `trunc_v2`, `binary_quant`), and the refusals.

use fhec_frontend::{import_bytes, scan_unsupported, FrontendError, ImportedModel};
use fhec_ir::{interp, Op, Tensor};
use fhec_testkit::{float_tensor, str_attr, value_info};
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use tract_onnx::pb;

const FLOAT: i32 = 1;
const BREVITAS: &str = "onnx.brevitas";
const QONNX: &str = "qonnx.custom_op.general";

fn scalar(name: &str, v: f32) -> pb::TensorProto {
    float_tensor(name, &[], vec![v])
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn node(
    name: &str,
    domain: &str,
    op: &str,
    inputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        domain: domain.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![format!("{name}_out")],
        attribute: attrs,
        ..Default::default()
    }
}

/// A model `x[dims] -> nodes -> <last node>_out`, with the given initializers.
fn model(dims: &[i64], nodes: Vec<pb::NodeProto>, inits: Vec<pb::TensorProto>) -> Vec<u8> {
    let out = nodes.last().expect("a node").output[0].clone();
    pb::ModelProto {
        ir_version: 8,
        producer_name: "fhec-qonnx-tests".into(),
        opset_import: vec![
            pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            },
            pb::OperatorSetIdProto {
                domain: QONNX.into(),
                version: 2,
            },
            pb::OperatorSetIdProto {
                domain: BREVITAS.into(),
                version: 1,
            },
        ],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: nodes,
            input: vec![value_info("x", FLOAT, dims)],
            output: vec![value_info(&out, FLOAT, dims)],
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn import(bytes: &[u8]) -> Result<ImportedModel, FrontendError> {
    import_bytes(bytes, "test.onnx", &Default::default())
}

fn run(bytes: &[u8], x: &[f32], dims: &[usize]) -> Vec<f32> {
    let m = import(bytes).unwrap_or_else(|e| panic!("import: {e}"));
    let x: Tensor = ArrayD::from_shape_vec(IxDyn(dims), x.to_vec()).unwrap();
    let out = interp::run(&m.graph, &[x]).unwrap_or_else(|e| panic!("run: {e}"));
    out[0].iter().copied().collect()
}

fn err(bytes: &[u8]) -> String {
    match import(bytes) {
        Ok(_) => panic!("import should fail"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// ports of qonnx's reference implementations (src/qonnx/custom_op/general/{intquant,trunc,
// bipolar_quant}.py), in f32 as NumPy computes them on float32 tensors

fn min_int(signed: bool, narrow: bool, bits: u32) -> f32 {
    match (signed, narrow) {
        (true, true) => -(2f32.powi(bits as i32 - 1)) + 1.0,
        (true, false) => -(2f32.powi(bits as i32 - 1)),
        _ => 0.0,
    }
}

fn max_int(signed: bool, narrow: bool, bits: u32) -> f32 {
    match (signed, narrow) {
        (false, false) => 2f32.powi(bits as i32) - 1.0,
        (false, true) => 2f32.powi(bits as i32) - 2.0,
        _ => 2f32.powi(bits as i32 - 1) - 1.0,
    }
}

fn resolve(mode: &str) -> fn(f32) -> f32 {
    match mode.to_ascii_uppercase().as_str() {
        "ROUND" | "HALF_EVEN" => f32::round_ties_even,
        "CEIL" => f32::ceil,
        "FLOOR" => f32::floor,
        "UP" => |x: f32| sign(x) * x.abs().ceil(),
        "DOWN" => f32::trunc,
        "HALF_UP" => |x: f32| sign(x) * (x.abs() + 0.5).floor(),
        "HALF_DOWN" => |x: f32| sign(x) * (x.abs() - 0.5).ceil(),
        m => panic!("mode {m}"),
    }
}

/// `np.sign`.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[allow(clippy::too_many_arguments)]
fn int_quant(
    x: f32,
    scale: f32,
    zp: f32,
    bits: u32,
    signed: bool,
    narrow: bool,
    mode: &str,
) -> f32 {
    let mut y = x / scale + zp;
    if bits == 1 && signed {
        y = if y >= 0.0 { 1.0 } else { -1.0 };
    } else {
        y = y.clamp(min_int(signed, narrow, bits), max_int(signed, narrow, bits));
        y = resolve(mode)(y);
    }
    (y - zp) * scale
}

fn trunc_v1(x: f32, scale: f32, in_bits: u32, out_bits: u32, mode: &str) -> f32 {
    let y = (x / scale).round_ties_even();
    let t = 2f32.powi(in_bits as i32 - out_bits as i32);
    resolve(mode)(y / t) * scale
}

#[allow(clippy::too_many_arguments)]
fn trunc_v2(
    x: f32,
    scale: f32,
    narrow: bool,
    signed: bool,
    out_scale: f32,
    out_bits: u32,
    mode: &str,
) -> f32 {
    let y = (x / scale).round_ties_even();
    let t = 2f32.powf((out_scale / scale).log2().round());
    let y = (y / t).clamp(
        min_int(signed, narrow, out_bits),
        max_int(signed, narrow, out_bits),
    );
    resolve(mode)(y) * out_scale
}

/// Values from -range to range in steps of `step`, with exact halves of the grid.
fn sweep(range: f32, step: f32) -> Vec<f32> {
    let n = (range / step) as i32;
    (-n..=n).map(|i| i as f32 * step).collect()
}

fn quant_node(domain: &str, signed: i64, narrow: i64, mode: &str) -> pb::NodeProto {
    node(
        "q",
        domain,
        "Quant",
        &["x", "s", "z", "b"],
        vec![
            int_attr("signed", signed),
            int_attr("narrow", narrow),
            str_attr("rounding_mode", mode),
        ],
    )
}

fn quant_inits(s: f32, z: f32, bits: f32) -> Vec<pb::TensorProto> {
    vec![scalar("s", s), scalar("z", z), scalar("b", bits)]
}

// ---------------------------------------------------------------------------------------------

#[test]
fn quant_on_runtime_tensors_matches_qonnx() {
    let xs = sweep(3.0, 0.0125);
    let n = xs.len();
    let mut cases = 0;
    for domain in [BREVITAS, QONNX] {
        for bits in [1u32, 2, 3, 4, 8] {
            for signed in [false, true] {
                for narrow in [false, true] {
                    for zp in [0.0, 2.0] {
                        if bits == 1 && signed && zp != 0.0 {
                            continue;
                        }
                        let s = 0.1;
                        let m = model(
                            &[1, n as i64],
                            vec![quant_node(domain, signed as i64, narrow as i64, "ROUND")],
                            quant_inits(s, zp, bits as f32),
                        );
                        let got = run(&m, &xs, &[1, n]);
                        for (i, (&x, &g)) in xs.iter().zip(&got).enumerate() {
                            // With a zero point QONNX rounds the f32 sum x / s + zp,
                            // QuantizeLinear x / s: they may differ next to a half.
                            let frac = (x / s).abs().fract();
                            if zp != 0.0 && (frac - 0.5).abs() < 1e-4 {
                                continue;
                            }
                            let want = int_quant(x, s, zp, bits, signed, narrow, "ROUND");
                            assert_eq!(
                                g, want,
                                "{domain} bits {bits} signed {signed} narrow {narrow} zp {zp}: \
                                 x[{i}] = {x}"
                            );
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases >= 70, "{cases}");
}

#[test]
fn quant_lowers_to_quantize_clip_dequantize() {
    let m = import(&model(
        &[1, 4],
        vec![quant_node(QONNX, 1, 1, "ROUND")],
        quant_inits(0.5, 0.0, 4.0),
    ))
    .unwrap();
    let ops: Vec<String> = m
        .graph
        .node_ids()
        .map(|id| m.graph.node(id).op.name().to_string())
        .filter(|o| o != "Const" && o != "Input")
        .collect();
    assert_eq!(ops, ["QuantizeLinear", "Clip", "DequantizeLinear"]);
    let clip = m
        .graph
        .node_ids()
        .find_map(|id| match &m.graph.node(id).op {
            Op::Unary(fhec_ir::UnaryOp::Clip { min, max }) => Some((*min, *max)),
            _ => None,
        })
        .unwrap();
    assert_eq!(clip, (-7.0, 7.0), "signed narrow 4 bits");
    // 8-bit unsigned is the whole uint8 range: no Clip.
    let m = import(&model(
        &[1, 4],
        vec![quant_node(QONNX, 0, 0, "ROUND")],
        quant_inits(0.5, 0.0, 8.0),
    ))
    .unwrap();
    assert!(!m
        .graph
        .node_ids()
        .any(|id| m.graph.node(id).op.name() == "Clip"));
}

/// `x + Quant(W)`: with x = 0 the output is the dequantised constant.
fn weight_model(
    w: &[f32],
    dims: &[i64],
    scale: pb::TensorProto,
    attrs: (i64, i64, &str),
    bits: f32,
) -> Vec<u8> {
    let mut q = node(
        "wq",
        QONNX,
        "Quant",
        &["w", "s", "z", "b"],
        vec![
            int_attr("signed", attrs.0),
            int_attr("narrow", attrs.1),
            str_attr("rounding_mode", attrs.2),
        ],
    );
    q.output = vec!["wq_out".into()];
    let add = node("add", "", "Add", &["x", "wq_out"], vec![]);
    model(
        dims,
        vec![q, add],
        vec![
            float_tensor("w", dims, w.to_vec()),
            scale,
            scalar("z", 0.0),
            scalar("b", bits),
        ],
    )
}

#[test]
fn quant_on_constants_every_rounding_mode() {
    let w: Vec<f32> = sweep(1.2, 0.025);
    let n = w.len();
    for mode in [
        "ROUND",
        "HALF_EVEN",
        "CEIL",
        "FLOOR",
        "UP",
        "DOWN",
        "HALF_UP",
        "HALF_DOWN",
        "floor",
    ] {
        for (signed, narrow) in [(1, 1), (1, 0), (0, 0), (0, 1)] {
            let s = 0.1;
            let m = weight_model(
                &w,
                &[1, n as i64],
                scalar("s", s),
                (signed, narrow, mode),
                4.0,
            );
            let got = run(&m, &vec![0.0; n], &[1, n]);
            for (&x, &g) in w.iter().zip(&got) {
                let want = int_quant(x, s, 0.0, 4, signed == 1, narrow == 1, mode);
                assert_eq!(g, want, "{mode} signed {signed} narrow {narrow}: w = {x}");
            }
        }
    }
    // The integers stay integers under a DequantizeLinear (what a QCDQ export holds).
    let m = import(&weight_model(
        &w,
        &[1, n as i64],
        scalar("s", 0.1),
        (1, 1, "ROUND"),
        4.0,
    ))
    .unwrap();
    let dq = m
        .graph
        .node_ids()
        .find(|&id| matches!(m.graph.node(id).op, Op::DequantizeLinear(_)))
        .expect("a DequantizeLinear");
    let ins = m.graph.node_inputs(dq);
    let Op::Const(q) = &m.graph.node(ins[0]).op else {
        panic!("integer weights")
    };
    assert!(q
        .iter()
        .all(|v| v.fract() == 0.0 && (-7.0..=7.0).contains(v)));
    assert_eq!(
        q.iter().fold(0f32, |a, &v| a.min(v)),
        -7.0,
        "narrow clamps to -7"
    );
}

#[test]
fn quant_on_constants_per_channel_and_wide() {
    // Per-output-channel scales [2,1] on W[2,3]: DequantizeLinear along axis 0.
    let w = [0.5, -0.25, 1.0, 2.0, -3.0, 0.7];
    let scale = float_tensor("s", &[2, 1], vec![0.1, 0.5]);
    let m = weight_model(&w, &[2, 3], scale, (1, 0, "ROUND"), 4.0);
    let got = run(&m, &[0.0; 6], &[2, 3]);
    for (i, (&x, &g)) in w.iter().zip(&got).enumerate() {
        let s = if i < 3 { 0.1 } else { 0.5 };
        assert_eq!(g, int_quant(x, s, 0.0, 4, true, false, "ROUND"), "w[{i}]");
    }
    let im = import(&m).unwrap();
    assert!(im.graph.node_ids().any(|id| matches!(
        &im.graph.node(id).op,
        Op::DequantizeLinear(q) if q.axis == Some(0)
    )));
    // 16 bits (an Int16 bias quantiser): folded to the dequantised float values.
    let m = weight_model(&w, &[2, 3], scalar("s", 0.001), (1, 0, "ROUND"), 16.0);
    let got = run(&m, &[0.0; 6], &[2, 3]);
    for (&x, &g) in w.iter().zip(&got) {
        assert_eq!(g, int_quant(x, 0.001, 0.0, 16, true, false, "ROUND"));
    }
    let im = import(&m).unwrap();
    assert!(!im
        .graph
        .node_ids()
        .any(|id| matches!(im.graph.node(id).op, Op::DequantizeLinear(_))));
}

#[test]
fn quant_per_channel_activations() {
    // x[1,3,2] with a scale per channel ([1,3,1], broadcast as QONNX does).
    let xs = [0.33, -0.2, 1.7, 0.26, -5.0, 0.04];
    let m = model(
        &[1, 3, 2],
        vec![quant_node(QONNX, 1, 0, "ROUND")],
        vec![
            float_tensor("s", &[1, 3, 1], vec![0.1, 0.25, 0.02]),
            scalar("z", 0.0),
            scalar("b", 4.0),
        ],
    );
    let got = run(&m, &xs, &[1, 3, 2]);
    for (i, (&x, &g)) in xs.iter().zip(&got).enumerate() {
        let s = [0.1, 0.25, 0.02][i / 2];
        assert_eq!(g, int_quant(x, s, 0.0, 4, true, false, "ROUND"), "x[{i}]");
    }
}

#[test]
fn bipolar_quant_matches_qonnx() {
    let xs = [-2.0, -0.3, -1e-12, 0.0, 1e-12, 0.4, 7.0];
    let n = xs.len();
    for domain in [BREVITAS, QONNX] {
        let m = model(
            &[1, n as i64],
            vec![node("bq", domain, "BipolarQuant", &["x", "s"], vec![])],
            vec![scalar("s", 0.75)],
        );
        let got = run(&m, &xs, &[1, n]);
        let want: Vec<f32> = xs
            .iter()
            .map(|&x| if x >= 0.0 { 0.75 } else { -0.75 })
            .collect();
        assert_eq!(got, want, "{domain}");
    }
    // A signed 1-bit Quant is bipolar too (qonnx's int_quant special case), on constants too.
    let w = [-0.5, 0.0, 0.25];
    let m = weight_model(&w, &[1, 3], scalar("s", 0.2), (1, 0, "ROUND"), 1.0);
    assert_eq!(run(&m, &[0.0; 3], &[1, 3]), [-0.2, 0.2, 0.2]);
}

/// `x[1,n] -> [Relu] -> Trunc`: version 1 when `v2` is `None`, else version 2 with
/// (output scale, signed, narrow). Unsigned truncations get a ReLU in front (so version 1
/// knows its input is non-negative).
fn trunc_model(
    n: usize,
    v2: Option<(f32, i64, i64)>,
    scale: f32,
    in_bits: f32,
    out_bits: f32,
    mode: &str,
) -> Vec<u8> {
    let signed = v2.is_some_and(|v| v.1 == 1);
    let src = if signed { "x" } else { "relu_out" };
    let mut inits = vec![
        scalar("s", scale),
        scalar("z", 0.0),
        scalar("ib", in_bits),
        scalar("ob", out_bits),
    ];
    let t = match v2 {
        None => node(
            "t",
            BREVITAS,
            "Trunc",
            &[src, "s", "z", "ib", "ob"],
            vec![str_attr("rounding_mode", mode)],
        ),
        Some((out_scale, signed, narrow)) => {
            inits.push(scalar("os", out_scale));
            node(
                "t",
                QONNX,
                "Trunc",
                &[src, "s", "z", "ib", "os", "ob"],
                vec![
                    str_attr("rounding_mode", mode),
                    int_attr("signed", signed),
                    int_attr("narrow", narrow),
                ],
            )
        }
    };
    let mut nodes = vec![t];
    if !signed {
        nodes.insert(0, node("relu", "", "Relu", &["x"], vec![]));
    }
    model(&[1, n as i64], nodes, inits)
}

fn grid(scale: f32, lo: i64, hi: i64) -> Vec<f32> {
    (lo..=hi).map(|q| q as f32 * scale).collect()
}

#[test]
fn trunc_v1_matches_qonnx() {
    // Brevitas 0.10.x: k = input_bit_width - output_bit_width, no clamp, rescaled by `scale`.
    for scale in [0.0123f32, 0.25, 0.06062469] {
        for (ib, ob) in [(6u32, 4u32), (6, 8), (6, 6), (8, 4), (10, 8)] {
            for mode in ["FLOOR", "floor", "ROUND", "round", "CEIL"] {
                // Up to what `ob` bits hold after the shift (version 1 does not clamp, fhec
                // saturates to int8/uint8).
                let t = 1i64 << (ib as i64 - ob as i64).max(0);
                let top = ((1i64 << ib) - 1).min(((1i64 << ob) - 1) * t);
                let xs = grid(scale, -3, top);
                let m = trunc_model(xs.len(), None, scale, ib as f32, ob as f32, mode);
                let got = run(&m, &xs, &[1, xs.len()]);
                for (&x, &g) in xs.iter().zip(&got) {
                    let want = trunc_v1(x.max(0.0), scale, ib, ob, mode);
                    assert_eq!(g, want, "scale {scale} {ib}->{ob} {mode}: x = {x}");
                }
            }
        }
    }
}

#[test]
fn trunc_v2_matches_qonnx() {
    // Brevitas 0.11+: k from output_scale / scale, clamp to the output bits, rescaled by
    // output_scale.
    for scale in [0.0123f32, 0.25, 0.003789] {
        for (ib, ob, k) in [
            (6u32, 4u32, 2i32),
            (6, 8, -2),
            (6, 4, 0),
            (10, 8, 2),
            (8, 3, 4),
        ] {
            for (signed, narrow) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
                for mode in ["FLOOR", "ROUND", "round", "CEIL"] {
                    let out_scale = scale * 2f32.powi(k);
                    let (lo, hi) = if signed == 1 {
                        (-(1i64 << (ib - 1)), (1i64 << (ib - 1)) - 1)
                    } else {
                        (-3, (1i64 << ib) - 1)
                    };
                    let xs = grid(scale, lo, hi);
                    let m = trunc_model(
                        xs.len(),
                        Some((out_scale, signed, narrow)),
                        scale,
                        ib as f32,
                        ob as f32,
                        mode,
                    );
                    let got = run(&m, &xs, &[1, xs.len()]);
                    for (&x, &g) in xs.iter().zip(&got) {
                        let x_in = if signed == 1 { x } else { x.max(0.0) };
                        let want =
                            trunc_v2(x_in, scale, narrow == 1, signed == 1, out_scale, ob, mode);
                        assert_eq!(
                            g, want,
                            "scale {scale} {ib}->{ob} k {k} signed {signed} narrow {narrow} \
                             {mode}: x = {x}"
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// refusals: each names the node

#[test]
fn refuses_a_runtime_scale() {
    let m = model(
        &[1, 4],
        vec![node("q_dyn", QONNX, "Quant", &["x", "x", "z", "b"], vec![])],
        vec![scalar("z", 0.0), scalar("b", 4.0)],
    );
    let e = err(&m);
    assert!(
        e.contains("q_dyn") && e.contains("scale") && e.contains("constant"),
        "{e}"
    );
    let m = model(
        &[1, 4],
        vec![node(
            "q_bits",
            QONNX,
            "Quant",
            &["x", "s", "z", "x"],
            vec![],
        )],
        vec![scalar("s", 0.1), scalar("z", 0.0)],
    );
    let e = err(&m);
    assert!(e.contains("q_bits") && e.contains("bit width"), "{e}");
}

#[test]
fn refuses_rounding_modes_it_cannot_lower() {
    // FLOOR on a runtime tensor: QuantizeLinear rounds half to even.
    let m = model(
        &[1, 4],
        vec![quant_node(QONNX, 1, 0, "FLOOR")],
        quant_inits(0.1, 0.0, 4.0),
    );
    let e = err(&m);
    assert!(
        e.contains("'q'") && e.contains("rounding_mode") && e.contains("FLOOR"),
        "{e}"
    );
    // Not a QONNX mode at all.
    let m = model(
        &[1, 4],
        vec![quant_node(QONNX, 1, 0, "STOCHASTIC")],
        quant_inits(0.1, 0.0, 4.0),
    );
    let e = err(&m);
    assert!(e.contains("'q'") && e.contains("STOCHASTIC"), "{e}");
    // HALF_UP truncation of a runtime tensor.
    let m = trunc_model(4, None, 0.1, 8.0, 4.0, "HALF_UP");
    let e = err(&m);
    assert!(e.contains("'t'") && e.contains("HALF_UP"), "{e}");
}

#[test]
fn refuses_other_unsupported_forms() {
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        // 12 bits on a runtime tensor: QuantizeLinear is int8/uint8.
        (
            model(
                &[1, 4],
                vec![quant_node(QONNX, 1, 0, "ROUND")],
                quant_inits(0.1, 0.0, 12.0),
            ),
            &["'q'", "12-bit"],
        ),
        // A non-integer zero point.
        (
            model(
                &[1, 4],
                vec![quant_node(QONNX, 0, 0, "ROUND")],
                quant_inits(0.1, 0.5, 4.0),
            ),
            &["'q'", "zero point", "integers"],
        ),
        // A zero point outside the type.
        (
            model(
                &[1, 4],
                vec![quant_node(QONNX, 1, 0, "ROUND")],
                quant_inits(0.1, 200.0, 8.0),
            ),
            &["'q'", "zero point", "does not fit i8"],
        ),
        // A non-positive scale.
        (
            model(
                &[1, 4],
                vec![quant_node(QONNX, 1, 0, "ROUND")],
                quant_inits(0.0, 0.0, 4.0),
            ),
            &["'q'", "scale", "positive"],
        ),
        // A bit width that is not an integer.
        (
            model(
                &[1, 4],
                vec![quant_node(QONNX, 1, 0, "ROUND")],
                quant_inits(0.1, 0.0, 3.5),
            ),
            &["'q'", "bit width", "3.5"],
        ),
        // A scale varying along two axes.
        (
            model(
                &[2, 2],
                vec![quant_node(QONNX, 1, 0, "ROUND")],
                vec![
                    float_tensor("s", &[2, 2], vec![0.1, 0.2, 0.3, 0.4]),
                    scalar("z", 0.0),
                    scalar("b", 4.0),
                ],
            ),
            &["'q'", "one axis"],
        ),
        // An attribute QONNX does not define.
        (
            model(
                &[1, 4],
                vec![node(
                    "q",
                    QONNX,
                    "Quant",
                    &["x", "s", "z", "b"],
                    vec![int_attr("stochastic", 1)],
                )],
                quant_inits(0.1, 0.0, 4.0),
            ),
            &["'q'", "stochastic"],
        ),
        // Version-2 attributes on a version-1 Trunc.
        (
            model(
                &[1, 4],
                vec![node(
                    "t",
                    BREVITAS,
                    "Trunc",
                    &["x", "s", "z", "ib", "ob"],
                    vec![int_attr("signed", 1)],
                )],
                vec![
                    scalar("s", 0.1),
                    scalar("z", 0.0),
                    scalar("ib", 8.0),
                    scalar("ob", 4.0),
                ],
            ),
            &["'t'", "signed"],
        ),
        // Trunc with a zero point.
        (
            model(
                &[1, 4],
                vec![node(
                    "t",
                    BREVITAS,
                    "Trunc",
                    &["x", "s", "z", "ib", "ob"],
                    vec![],
                )],
                vec![
                    scalar("s", 0.1),
                    scalar("z", 1.0),
                    scalar("ib", 8.0),
                    scalar("ob", 4.0),
                ],
            ),
            &["'t'", "zero point"],
        ),
        // Truncation to 9 bits: more than int8/uint8 hold.
        (
            model(
                &[1, 4],
                vec![node(
                    "t",
                    BREVITAS,
                    "Trunc",
                    &["x", "s", "z", "ib", "ob"],
                    vec![],
                )],
                vec![
                    scalar("s", 0.1),
                    scalar("z", 0.0),
                    scalar("ib", 12.0),
                    scalar("ob", 9.0),
                ],
            ),
            &["'t'", "output bit width is 9", "int8/uint8"],
        ),
    ];
    for (m, needles) in cases {
        let e = err(&m);
        for n in needles {
            assert!(e.contains(n), "{e} lacks {n:?}");
        }
    }
}

#[test]
fn other_custom_ops_stay_unsupported() {
    // FloatQuant is a QONNX op fhec does not import; a Quant of another domain is not QONNX's.
    for (domain, op) in [(QONNX, "FloatQuant"), ("com.example", "Quant")] {
        let m = model(
            &[1, 4],
            vec![node("n", domain, op, &["x", "s", "z", "b"], vec![])],
            quant_inits(0.1, 0.0, 4.0),
        );
        let e = err(&m);
        assert!(
            e.contains("'n'") && e.contains(domain) && e.contains("not supported"),
            "{e}"
        );
        let un = scan_unsupported(&m, "test.onnx").unwrap();
        assert_eq!(un.len(), 1, "{un:?}");
    }
    let m = model(
        &[1, 4],
        vec![quant_node(BREVITAS, 1, 0, "ROUND")],
        quant_inits(0.1, 0.0, 4.0),
    );
    assert!(scan_unsupported(&m, "test.onnx").unwrap().is_empty());
}
