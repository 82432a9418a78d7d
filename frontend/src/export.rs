//! The float IR back to ONNX (opset 20): what `fhec prune -o` writes, so a model pruned by fhec
//! can be fine-tuned in its framework and compiled again.
//!
//! Every float op has one ONNX form; the batch dimension is written symbolic (`batch`), and a
//! `Reshape` that keeps a batch of 1 in front copies it (`0`), so the file takes any batch.
//! Integer ops (a quantised graph) and QuantizeLinear/DequantizeLinear (whose zero points the
//! IR keeps as floats) have no exact ONNX form here and are refused, naming the node.

use fhec_ir::{DType, Graph, Op, PadMode, Tensor, UnaryOp};
use tract_onnx::pb;

/// Why a graph cannot be written as ONNX.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("node '{node}' ({op}) has no ONNX form in this writer: {why}")]
    Unsupported {
        node: String,
        op: String,
        why: &'static str,
    },
}

const OPSET: i64 = 20;

/// The ONNX model of `graph` (float ops only); `output_names` name the graph outputs in order
/// (the imported model's names), the rest keep their node names.
pub fn export(
    graph: &Graph,
    output_names: &[String],
    producer: &str,
) -> Result<pb::ModelProto, ExportError> {
    let names = value_names(graph, output_names);
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut inputs = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let name = names[id.index()].clone();
        let args: Vec<String> = graph
            .node_inputs(id)
            .iter()
            .map(|i| names[i.index()].clone())
            .collect();
        match &node.op {
            Op::Input => inputs.push(value_info(&name, &node.fact.shape, node.fact.dtype)),
            Op::Const(t) => initializers.push(float_tensor(&name, t)),
            op => nodes.push(
                lower(op, &node.name, args, name, &mut initializers).map_err(|why| {
                    ExportError::Unsupported {
                        node: node.name.clone(),
                        op: op.name().to_string(),
                        why,
                    }
                })?,
            ),
        }
    }
    let outputs = graph
        .outputs()
        .iter()
        .map(|&o| {
            let n = graph.node(o);
            value_info(&names[o.index()], &n.fact.shape, n.fact.dtype)
        })
        .collect();
    Ok(pb::ModelProto {
        ir_version: 9,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: producer.into(),
        graph: Some(pb::GraphProto {
            name: "fhec".into(),
            node: nodes,
            initializer: initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One unique value name per node: graph outputs get `output_names`, inputs keep their
/// names, the rest their node names (suffixed when two nodes share one).
fn value_names(graph: &Graph, output_names: &[String]) -> Vec<String> {
    let count = graph.node_ids().map(|i| i.index() + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); count];
    let mut taken = std::collections::HashSet::new();
    for (&o, name) in graph.outputs().iter().zip(output_names) {
        if taken.insert(name.clone()) {
            names[o.index()] = name.clone();
        }
    }
    for id in graph.topo_order() {
        if !names[id.index()].is_empty() {
            continue;
        }
        let base = match graph.node(id).name.as_str() {
            "" => format!("v{}", id.index()),
            n => n.to_string(),
        };
        let mut name = base.clone();
        let mut k = 1;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        names[id.index()] = name;
    }
    names
}

/// The ONNX node of one IR op writing `out` (extra initializers go to `inits`).
fn lower(
    op: &Op,
    node: &str,
    mut args: Vec<String>,
    out: String,
    inits: &mut Vec<pb::TensorProto>,
) -> Result<pb::NodeProto, &'static str> {
    let mut attrs = Vec::new();
    let op_type = match op {
        Op::Unary(u) => unary(u, &mut attrs, &mut args, &out, inits),
        Op::Binary(b) => format!("{b:?}"),
        Op::MatMul => "MatMul".into(),
        Op::Gemm(a) => {
            attrs.push(float_attr("alpha", a.alpha));
            attrs.push(float_attr("beta", a.beta));
            attrs.push(int_attr("transA", i64::from(a.trans_a)));
            attrs.push(int_attr("transB", i64::from(a.trans_b)));
            "Gemm".into()
        }
        Op::Conv(a) => {
            attrs.push(ints_attr("strides", &a.strides));
            attrs.push(ints_attr("dilations", &a.dilations));
            attrs.push(ints_attr("pads", &pads(&a.pads)));
            attrs.push(int_attr("group", a.group as i64));
            "Conv".into()
        }
        Op::AveragePool(p) | Op::MaxPool(p) => {
            attrs.push(ints_attr("kernel_shape", &p.kernel));
            attrs.push(ints_attr("strides", &p.strides));
            attrs.push(ints_attr("dilations", &p.dilations));
            attrs.push(ints_attr("pads", &pads(&p.pads)));
            attrs.push(int_attr("ceil_mode", i64::from(p.ceil_mode)));
            if matches!(op, Op::AveragePool(_)) {
                attrs.push(int_attr(
                    "count_include_pad",
                    i64::from(p.count_include_pad),
                ));
                "AveragePool".into()
            } else {
                "MaxPool".into()
            }
        }
        Op::GlobalAveragePool => "GlobalAveragePool".into(),
        Op::BatchNorm { epsilon } => {
            attrs.push(float_attr("epsilon", *epsilon));
            "BatchNormalization".into()
        }
        Op::Softmax { axis } => {
            attrs.push(int_attr("axis", *axis as i64));
            "Softmax".into()
        }
        Op::Reshape { shape: target } => {
            // A leading batch of 1 kept in place is copied from the input (0), so the file
            // takes any batch.
            let dims: Vec<i64> = target
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == 0 && d == 1 { 0 } else { d as i64 })
                .collect();
            args.push(int_initializer(inits, &format!("{out}__shape"), &dims));
            "Reshape".into()
        }
        Op::Transpose { perm } => {
            attrs.push(ints_attr("perm", perm));
            "Transpose".into()
        }
        Op::Concat { axis } => {
            attrs.push(int_attr("axis", *axis as i64));
            "Concat".into()
        }
        Op::Pad {
            pads: p,
            mode,
            value,
        } => {
            attrs.push(string_attr(
                "mode",
                match mode {
                    PadMode::Constant => "constant",
                    PadMode::Reflect => "reflect",
                    PadMode::Edge => "edge",
                },
            ));
            let p: Vec<i64> = pads(p).into_iter().map(|v| v as i64).collect();
            args.push(int_initializer(inits, &format!("{out}__pads"), &p));
            let v = Tensor::from_elem(ndarray::IxDyn(&[]), *value);
            let name = format!("{out}__value");
            inits.push(float_tensor(&name, &v));
            args.push(name);
            "Pad".into()
        }
        Op::Identity => "Identity".into(),
        Op::Cast { to } => {
            attrs.push(int_attr("to", onnx_type(*to)));
            "Cast".into()
        }
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => {
            return Err(
                "the IR keeps zero points as floats; export QAT models from their framework",
            )
        }
        Op::IntConst(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::DequantizeChannels { .. }
        | Op::Tlu(_)
        | Op::SumPool(_) => {
            return Err("it is an integer op of a quantised graph: export before quantisation")
        }
        Op::Input | Op::Const(_) => unreachable!("inputs and constants are not nodes"),
    };
    Ok(pb::NodeProto {
        name: node.into(),
        op_type,
        input: args,
        output: vec![out],
        attribute: attrs,
        ..Default::default()
    })
}

/// The ONNX op of a unary IR op (Clip's bounds become inputs).
fn unary(
    u: &UnaryOp,
    attrs: &mut Vec<pb::AttributeProto>,
    args: &mut Vec<String>,
    out: &str,
    inits: &mut Vec<pb::TensorProto>,
) -> String {
    match u {
        UnaryOp::Neg => "Neg",
        UnaryOp::Relu => "Relu",
        UnaryOp::LeakyRelu { alpha } => {
            attrs.push(float_attr("alpha", *alpha));
            "LeakyRelu"
        }
        UnaryOp::Sigmoid => "Sigmoid",
        UnaryOp::Tanh => "Tanh",
        UnaryOp::HardSigmoid { alpha, beta } => {
            attrs.push(float_attr("alpha", *alpha));
            attrs.push(float_attr("beta", *beta));
            "HardSigmoid"
        }
        UnaryOp::HardSwish => "HardSwish",
        UnaryOp::Elu { alpha } => {
            attrs.push(float_attr("alpha", *alpha));
            "Elu"
        }
        UnaryOp::Selu { alpha, gamma } => {
            attrs.push(float_attr("alpha", *alpha));
            attrs.push(float_attr("gamma", *gamma));
            "Selu"
        }
        UnaryOp::Softplus => "Softplus",
        UnaryOp::Erf => "Erf",
        UnaryOp::Gelu { tanh_approx } => {
            attrs.push(string_attr(
                "approximate",
                if *tanh_approx { "tanh" } else { "none" },
            ));
            "Gelu"
        }
        UnaryOp::Clip { min, max } => {
            for (what, v) in [("min", *min), ("max", *max)] {
                let name = format!("{out}__{what}");
                inits.push(float_tensor(
                    &name,
                    &Tensor::from_elem(ndarray::IxDyn(&[]), v),
                ));
                args.push(name);
            }
            "Clip"
        }
    }
    .into()
}

/// IR `(begin, end)` per axis to ONNX `[begins..., ends...]`.
fn pads(p: &[(usize, usize)]) -> Vec<usize> {
    p.iter().map(|x| x.0).chain(p.iter().map(|x| x.1)).collect()
}

fn onnx_type(t: DType) -> i64 {
    match t {
        DType::F32 => 1,
        DType::U8 => 2,
        DType::I8 => 3,
        DType::I32 => 6,
        DType::I64 => 7,
    }
}

/// A graph input or output: its element type and shape, the batch dimension symbolic.
fn value_info(name: &str, shape: &[usize], dtype: DType) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 && d == 1 {
                dimension::Value::DimParam("batch".into())
            } else {
                dimension::Value::DimValue(d as i64)
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: onnx_type(dtype) as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn float_tensor(name: &str, t: &Tensor) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: 1,
        raw_data: t.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int_initializer(inits: &mut Vec<pb::TensorProto>, name: &str, v: &[i64]) -> String {
    inits.push(pb::TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: 7,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    });
    name.into()
}

fn attr(name: &str, kind: pb::attribute_proto::AttributeType) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        f: v,
        ..attr(name, pb::attribute_proto::AttributeType::Float)
    }
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        i: v,
        ..attr(name, pb::attribute_proto::AttributeType::Int)
    }
}

fn ints_attr(name: &str, v: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        ints: v.iter().map(|&x| x as i64).collect(),
        ..attr(name, pb::attribute_proto::AttributeType::Ints)
    }
}

fn string_attr(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        s: v.as_bytes().to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::String)
    }
}
