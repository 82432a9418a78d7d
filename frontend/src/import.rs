//! Import driver: model decoding, graph inputs, value environment and node dispatch.

use std::collections::HashMap;
use std::path::Path;

use fhec_ir::{Graph, Op, TensorFact};
use prost::Message;
use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto};

use crate::error::FrontendError;
use crate::node::{display_name, NodeCtx, Value};
use crate::registry;
use crate::tensor::{decode_tensor, onnx_type, ConstValue};

/// A user-given shape for a graph input whose dimensions the model leaves symbolic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// Input name; `None` applies to the graph inputs in order.
    pub name: Option<String>,
    pub dims: Vec<usize>,
}

impl std::str::FromStr for InputShape {
    type Err = String;
    /// Parses `name=1,3,28,28` or `1,3,28,28`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, dims) = match s.rsplit_once('=') {
            Some((n, d)) => (Some(n.to_string()), d),
            None => (None, s),
        };
        let dims = dims
            .split([',', 'x'])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{d}' in '{s}' is not a dimension"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InputShape { name, dims })
    }
}

/// Options of the import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Shapes overriding (or resolving) those declared for graph inputs.
    pub input_shapes: Vec<InputShape>,
    /// Graph inputs to replace by constants (test suites feed weights as inputs).
    pub constant_inputs: HashMap<String, ConstValue>,
}

/// An imported model: the IR graph plus what the ONNX file said about itself.
#[derive(Clone, Debug)]
pub struct ImportedModel {
    pub graph: Graph,
    /// Default-domain opset the model was exported with.
    pub opset: i64,
    pub producer: String,
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    /// Node count of the ONNX graph before import.
    pub onnx_node_count: usize,
}

/// Reads and imports an ONNX file.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<ImportedModel, FrontendError> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io {
        path: path.display().to_string(),
        source,
    })?;
    import_bytes(&bytes, &path.display().to_string(), opts)
}

pub(crate) fn decode_model(bytes: &[u8], file: &str) -> Result<pb::ModelProto, FrontendError> {
    let model = pb::ModelProto::decode(bytes).map_err(|e| FrontendError::Decode {
        file: file.into(),
        reason: e.to_string(),
    })?;
    if model.graph.is_none() || model.ir_version == 0 {
        return Err(FrontendError::Decode {
            file: file.into(),
            reason: "it has no graph or no ir_version".into(),
        });
    }
    Ok(model)
}

fn default_opset(model: &pb::ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1)
}

/// Lists the nodes whose op has no importer, as (node, op, domain), without importing.
pub fn scan_unsupported(
    bytes: &[u8],
    file: &str,
) -> Result<Vec<(String, String, String)>, FrontendError> {
    let model = decode_model(bytes, file)?;
    let graph = model.graph.as_ref().expect("checked by decode_model");
    Ok(graph
        .node
        .iter()
        .filter(|n| registry::importer_in(&n.domain, &n.op_type).is_none())
        .map(|n| (display_name(n), n.op_type.clone(), n.domain.clone()))
        .collect())
}

/// Imports a serialised model; `file` names it in messages.
pub fn import_bytes(
    bytes: &[u8],
    file: &str,
    opts: &ImportOptions,
) -> Result<ImportedModel, FrontendError> {
    let model = decode_model(bytes, file)?;
    let opset = default_opset(&model);
    let g = model.graph.as_ref().expect("checked by decode_model");
    let model_err = |message: String| FrontendError::Model {
        file: file.into(),
        message,
    };

    let mut env: HashMap<String, Value> = HashMap::new();
    for init in &g.initializer {
        let v = decode_tensor(init).map_err(|message| FrontendError::BadTensor {
            name: init.name.clone(),
            message: format!("initializer: {message}"),
        })?;
        env.insert(init.name.clone(), Value::Const(v));
    }
    if !g.sparse_initializer.is_empty() {
        return Err(model_err(
            "sparse initializers are not supported; re-export with dense weights".into(),
        ));
    }

    let mut graph = Graph::new();
    let mut input_names = vec![];
    let runtime_inputs: Vec<&pb::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !env.contains_key(&i.name) && !opts.constant_inputs.contains_key(&i.name))
        .collect();
    for (name, v) in &opts.constant_inputs {
        env.insert(name.clone(), Value::Const(v.clone()));
    }
    for (pos, input) in runtime_inputs.iter().enumerate() {
        let fact = input_fact(input, pos, opts)?;
        let id = graph.add_input(input.name.clone(), fact);
        env.insert(input.name.clone(), Value::Node(id));
        input_names.push(input.name.clone());
    }
    for s in &opts.input_shapes {
        if let Some(n) = &s.name {
            if !input_names.contains(n) {
                return Err(FrontendError::BadInput {
                    input: n.clone(),
                    message: format!(
                        "--input-shape names no graph input; the inputs are {input_names:?}"
                    ),
                });
            }
        }
    }

    for node in &g.node {
        let mut ctx = NodeCtx {
            node,
            opset,
            graph: &mut graph,
            env: &env,
        };
        let Some(importer) = registry::importer_in(&node.domain, &node.op_type) else {
            return Err(ctx.unsupported_op());
        };
        let outputs = importer(&mut ctx)?;
        for (i, name) in node.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let v = outputs.get(i).cloned().unwrap_or(Value::Unavailable(
                "this output is not produced by fhec's import of the op",
            ));
            env.insert(name.clone(), v);
        }
    }

    let mut outputs = vec![];
    let mut output_names = vec![];
    for out in &g.output {
        let id = match env.get(&out.name) {
            Some(Value::Node(id)) => *id,
            Some(Value::Const(c)) => graph
                .add_node(out.name.clone(), Op::Const(c.to_f32()), &[])
                .map_err(|e| model_err(e.to_string()))?,
            Some(Value::Unavailable(why)) => {
                return Err(model_err(format!("graph output '{}': {why}", out.name)))
            }
            None => {
                return Err(model_err(format!(
                    "graph output '{}' is not produced by any node",
                    out.name
                )))
            }
        };
        outputs.push(id);
        output_names.push(out.name.clone());
    }
    if outputs.is_empty() {
        return Err(model_err("the graph declares no outputs".into()));
    }
    graph.set_outputs(outputs);
    graph.remove_dead_nodes();
    graph
        .verify()
        .map_err(|e| model_err(format!("imported graph is inconsistent: {e}")))?;
    Ok(ImportedModel {
        graph,
        opset,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        input_names,
        output_names,
        onnx_node_count: g.node.len(),
    })
}

/// Static fact of a graph input: declared dims, symbolic batch resolved to 1, overrides applied.
fn input_fact(
    input: &pb::ValueInfoProto,
    pos: usize,
    opts: &ImportOptions,
) -> Result<TensorFact, FrontendError> {
    let bad = |message: String| FrontendError::BadInput {
        input: input.name.clone(),
        message,
    };
    let Some(type_proto::Value::TensorType(tt)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad(
            "it is not a tensor (sequences, maps and optionals are not supported)".into(),
        ));
    };
    let dtype = match tt.elem_type {
        onnx_type::FLOAT | onnx_type::DOUBLE | onnx_type::FLOAT16 => fhec_ir::DType::F32,
        onnx_type::UINT8 => fhec_ir::DType::U8,
        onnx_type::INT8 => fhec_ir::DType::I8,
        // Held in f32: exact up to 2^24 - 1 in magnitude, larger values are refused.
        onnx_type::INT32 => fhec_ir::DType::I32,
        onnx_type::INT64 => fhec_ir::DType::I64,
        other => {
            return Err(bad(format!(
                "element type {} is not supported; fhec models take float, int8, uint8, int32 or \
                 int64 inputs (not 16-bit, unsigned 32/64-bit, bool or other types)",
                onnx_type::name(other)
            )))
        }
    };
    let override_dims = opts
        .input_shapes
        .iter()
        .find(|s| s.name.as_deref() == Some(input.name.as_str()))
        .or_else(|| {
            opts.input_shapes
                .iter()
                .filter(|s| s.name.is_none())
                .nth(pos)
        });
    let declared = tt.shape.as_ref().map(|s| s.dim.as_slice());
    if let Some(o) = override_dims {
        if let Some(decl) = declared {
            if decl.len() != o.dims.len() {
                return Err(bad(format!(
                    "--input-shape gives rank {} but the model declares rank {}",
                    o.dims.len(),
                    decl.len()
                )));
            }
            for (axis, (d, &want)) in decl.iter().zip(&o.dims).enumerate() {
                if let Some(dimension::Value::DimValue(v)) = d.value {
                    if v > 0 && v as usize != want {
                        return Err(bad(format!(
                            "--input-shape sets dimension {axis} to {want} but the model fixes it to {v}"
                        )));
                    }
                }
            }
        }
        return Ok(TensorFact::new(dtype, o.dims.clone()));
    }
    let Some(decl) = declared else {
        return Err(bad("the model declares no shape; pass --input-shape".into()));
    };
    let mut dims = vec![];
    for (axis, d) in decl.iter().enumerate() {
        let dim = match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => *v as usize,
            // A symbolic, zero or missing leading dimension is the batch: fixed to 1.
            _ if axis == 0 => 1,
            Some(dimension::Value::DimParam(p)) => {
                return Err(FrontendError::UnresolvedDim {
                    input: input.name.clone(),
                    axis,
                    dim: p.clone(),
                })
            }
            other => {
                return Err(FrontendError::UnresolvedDim {
                    input: input.name.clone(),
                    axis,
                    dim: match other {
                        Some(dimension::Value::DimValue(v)) => v.to_string(),
                        _ => "?".into(),
                    },
                })
            }
        };
        dims.push(dim);
    }
    Ok(TensorFact::new(dtype, dims))
}
