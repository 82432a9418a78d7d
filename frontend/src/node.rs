//! The importer vocabulary: what an importer sees of its node ([`NodeCtx`]), the values it
//! reads and returns ([`Value`]), and the [`Importer`] signature the op tables (`ops.rs`,
//! `qonnx.rs`) are made of.

use std::collections::{BTreeSet, HashMap};

use fhec_ir::{Graph, NodeId, Op, TensorFact};
use tract_onnx::pb::{AttributeProto, NodeProto};

use crate::error::FrontendError;
use crate::tensor::{decode_tensor, ConstValue};

/// What an importer returns: the values of the node's outputs in order.
pub(crate) type Res = Result<Vec<Value>, FrontendError>;

/// An importer lifts one ONNX node; it returns the values of the node's outputs in order.
pub(crate) type Importer = fn(&mut NodeCtx) -> Res;

/// What a name refers to while importing.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Node(NodeId),
    Const(ConstValue),
    /// An output we do not model (e.g. MaxPool indices); using it is an error.
    Unavailable(&'static str),
}

/// A node's name for messages: its name, else its first output, else its op type.
pub(crate) fn display_name(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        n.output
            .first()
            .cloned()
            .unwrap_or_else(|| n.op_type.clone())
    }
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
