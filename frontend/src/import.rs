//! Import driver: model decoding, graph inputs, value environment and node dispatch.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use fhec_ir::{Graph, NodeId, Op, TensorFact};
use prost::Message;
use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto, AttributeProto, NodeProto};

use crate::error::FrontendError;
use crate::ops;
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

/// What a name refers to while importing.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Node(NodeId),
    Const(ConstValue),
    /// An output we do not model (e.g. MaxPool indices); using it is an error.
    Unavailable(&'static str),
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
        .filter(|n| ops::importer_in(&n.domain, &n.op_type).is_none())
        .map(|n| (display_name(n), n.op_type.clone(), n.domain.clone()))
        .collect())
}

fn display_name(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        n.output
            .first()
            .cloned()
            .unwrap_or_else(|| n.op_type.clone())
    }
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
        let Some(importer) = ops::importer_in(&node.domain, &node.op_type) else {
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

/// What an importer sees: the node, the opset, the graph being built and the named values.
pub struct NodeCtx<'a> {
    pub(crate) node: &'a NodeProto,
    pub(crate) opset: i64,
    pub(crate) graph: &'a mut Graph,
    pub(crate) env: &'a HashMap<String, Value>,
}

impl NodeCtx<'_> {
    pub(crate) fn name(&self) -> String {
        display_name(self.node)
    }

    pub(crate) fn unsupported_op(&self) -> FrontendError {
        FrontendError::UnsupportedOp {
            node: self.name(),
            op: self.node.op_type.clone(),
            domain: if self.node.domain.is_empty() {
                "ai.onnx".into()
            } else {
                self.node.domain.clone()
            },
            opset: self.opset,
        }
    }

    /// An error about this node.
    pub(crate) fn err(&self, message: impl Into<String>) -> FrontendError {
        FrontendError::Node {
            node: self.name(),
            op: self.node.op_type.clone(),
            opset: self.opset,
            message: message.into(),
        }
    }

    pub(crate) fn attr_err(&self, attr: &str, problem: impl Into<String>) -> FrontendError {
        FrontendError::UnsupportedAttribute {
            node: self.name(),
            op: self.node.op_type.clone(),
            opset: self.opset,
            attr: attr.into(),
            problem: problem.into(),
        }
    }

    /// Refuses attributes the importer does not know, so none is silently ignored.
    pub(crate) fn allow_attrs(&self, known: &[&str]) -> Result<(), FrontendError> {
        let unknown: BTreeSet<&str> = self
            .node
            .attribute
            .iter()
            .map(|a| a.name.as_str())
            .filter(|n| !known.contains(n))
            .collect();
        match unknown.first() {
            Some(a) => Err(self.attr_err(a, "is not supported by fhec")),
            None => Ok(()),
        }
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub(crate) fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map(|a| a.i).unwrap_or(default)
    }

    pub(crate) fn attr_float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map(|a| a.f).unwrap_or(default)
    }

    pub(crate) fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub(crate) fn attr_floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    pub(crate) fn attr_string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub(crate) fn attr_tensor(&self, name: &str) -> Result<Option<ConstValue>, FrontendError> {
        match self.attr(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => decode_tensor(t)
                .map(Some)
                .map_err(|m| self.attr_err(name, format!("holds an invalid tensor: {m}"))),
        }
    }

    /// Number of inputs given (trailing empty names do not count).
    pub(crate) fn input_count(&self) -> usize {
        let mut n = self.node.input.len();
        while n > 0 && self.node.input[n - 1].is_empty() {
            n -= 1;
        }
        n
    }

    /// Input `i`, or `None` when absent or given as the empty name.
    pub(crate) fn opt_input(&self, i: usize) -> Result<Option<Value>, FrontendError> {
        let Some(name) = self.node.input.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        match self.env.get(name) {
            Some(Value::Unavailable(why)) => {
                Err(self.err(format!("input '{name}' cannot be used: {why}")))
            }
            Some(v) => Ok(Some(v.clone())),
            None => Err(FrontendError::MissingInput {
                node: self.name(),
                op: self.node.op_type.clone(),
                opset: self.opset,
                input: name.clone(),
            }),
        }
    }

    pub(crate) fn input(&self, i: usize) -> Result<Value, FrontendError> {
        self.opt_input(i)?
            .ok_or_else(|| self.err(format!("required input {i} is missing")))
    }

    /// Input `i` that must be known at import time.
    pub(crate) fn const_input(&self, i: usize, what: &str) -> Result<ConstValue, FrontendError> {
        match self.input(i)? {
            Value::Const(c) => Ok(c),
            _ => Err(self.err(format!(
                "{what} (input {i}, '{}') must be a constant or computable from static shapes",
                self.node.input[i]
            ))),
        }
    }

    pub(crate) fn opt_const_input(
        &self,
        i: usize,
        what: &str,
    ) -> Result<Option<ConstValue>, FrontendError> {
        match self.opt_input(i)? {
            None => Ok(None),
            Some(Value::Const(c)) => Ok(Some(c)),
            Some(_) => Err(self.err(format!(
                "{what} (input {i}, '{}') must be a constant or computable from static shapes",
                self.node.input[i]
            ))),
        }
    }

    /// Static shape of a value.
    pub(crate) fn shape_of(&self, v: &Value) -> Vec<usize> {
        match v {
            Value::Node(id) => self.graph.node(*id).fact.shape.clone(),
            Value::Const(c) => c.shape().to_vec(),
            Value::Unavailable(_) => vec![],
        }
    }

    /// Puts a value in the graph (constants become `Const` nodes).
    /// A constant is named after the node input it fills (`slot`), e.g. the initializer name.
    pub(crate) fn materialize(&mut self, v: &Value, slot: usize) -> Result<NodeId, FrontendError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(c) => {
                let name = match self.node.input.get(slot).filter(|n| !n.is_empty()) {
                    Some(n) => n.clone(),
                    None => format!("{}:in{slot}", self.name()),
                };
                self.graph
                    .add_node(name, Op::Const(c.to_f32()), &[])
                    .map_err(|e| self.err(e.to_string()))
            }
            Value::Unavailable(why) => Err(self.err(why.to_string())),
        }
    }

    /// Adds an op on the given values. When every input is a float constant (and the op is not
    /// a quantizer, whose scales later passes read), it is folded to a constant instead.
    pub(crate) fn emit(&mut self, op: Op, inputs: &[Value]) -> Result<Value, FrontendError> {
        let all_const = inputs.iter().all(|v| matches!(v, Value::Const(_)));
        let foldable = !matches!(op, Op::QuantizeLinear(_) | Op::DequantizeLinear(_));
        if all_const && foldable && !inputs.is_empty() {
            let vals: Vec<fhec_ir::Tensor> = inputs
                .iter()
                .map(|v| match v {
                    Value::Const(c) => c.to_f32(),
                    _ => unreachable!("checked all_const"),
                })
                .collect();
            let facts: Vec<TensorFact> = vals.iter().map(|t| TensorFact::f32(t.shape())).collect();
            let fact_refs: Vec<&TensorFact> = facts.iter().collect();
            let out = op.infer(&fact_refs).map_err(|e| self.err(e.0))?;
            let refs: Vec<&fhec_ir::Tensor> = vals.iter().collect();
            let t = fhec_ir::interp::eval_op(&op, &refs, &out).map_err(|e| self.err(e))?;
            return Ok(Value::Const(ConstValue::Float(t)));
        }
        let mut ids = vec![];
        for (i, v) in inputs.iter().enumerate() {
            ids.push(self.materialize(v, i)?);
        }
        let name = self.name();
        let id = self.graph.add_node(name, op, &ids).map_err(|e| match e {
            fhec_ir::IrError::Shape { source, .. } => self.err(source.0),
            other => self.err(other.to_string()),
        })?;
        Ok(Value::Node(id))
    }
}
