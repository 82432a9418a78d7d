//! Float interpreter: executes a graph with the ONNX semantics of each op.
//!
//! Every kernel computes in `f32` the way the ONNX reference implementation does (element-wise
//! arithmetic in `f32`; transcendental functions and reductions are evaluated in `f64` and
//! rounded once, which is at least as accurate). Integer-typed values (casts, quantized
//! tensors) are held exactly in `f32`.
//!
//! Kernels live in submodules: [`elementwise`] (unary, binary, cast, quantization, batch norm,
//! softmax), [`linalg`] (MatMul, Gemm, Conv), [`pool`] (average, max and global pooling) and
//! [`layout`] (reshape, transpose, concat, pad).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::fact::TensorFact;
use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::Tensor;

mod elementwise;
mod layout;
mod linalg;
mod pool;

/// Why a graph could not be executed on the given inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("expected {expected} input tensor(s), got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("input '{input}' has shape {got:?}, the model expects {expected:?}")]
    InputShape {
        input: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("input '{input}' contains a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        input: String,
        value: f32,
        index: usize,
    },
    #[error("node '{node}' ({op}): {message}")]
    Op {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// Runs the graph and returns its outputs.
///
/// Intermediate values are dropped as soon as their last consumer has run, and constants are
/// read in place rather than copied, so this is cheaper than [`run_trace`].
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let mut values = execute(graph, inputs, false)?;
    let outs = graph.outputs();
    let mut result = Vec::with_capacity(outs.len());
    for (k, o) in outs.iter().enumerate() {
        // The last mention of an output moves its value out; earlier ones copy it.
        let value = if outs[k + 1..].contains(o) {
            values.get(o).map(|v| v.as_ref().clone())
        } else {
            values.remove(o).map(Cow::into_owned)
        };
        result.push(value.ok_or_else(|| not_evaluated(graph, *o))?);
    }
    Ok(result)
}

/// Runs the graph and returns the value of every node (calibration reads these).
pub fn run_trace(graph: &Graph, inputs: &[Tensor]) -> Result<HashMap<NodeId, Tensor>, InterpError> {
    let values = execute(graph, inputs, true)?;
    Ok(values
        .into_iter()
        .map(|(id, v)| (id, v.into_owned()))
        .collect())
}

fn not_evaluated(graph: &Graph, id: NodeId) -> InterpError {
    if graph.node_ids().any(|n| n == id) {
        let node = graph.node(id);
        InterpError::Op {
            node: node.name.clone(),
            op: node.op.name(),
            message: "was never evaluated (is the graph cyclic?)".into(),
        }
    } else {
        InterpError::Op {
            node: format!("{id:?}"),
            op: "?",
            message: "the node does not exist".into(),
        }
    }
}

/// Evaluates every node in topological order. With `keep_all` false, values nothing needs any
/// more (not a graph output, all consumers evaluated) are dropped on the way.
fn execute<'a>(
    graph: &'a Graph,
    inputs: &'a [Tensor],
    keep_all: bool,
) -> Result<HashMap<NodeId, Cow<'a, Tensor>>, InterpError> {
    check_inputs(graph, inputs)?;
    let order = graph.topo_order();
    let node_inputs: Vec<Vec<NodeId>> = order.iter().map(|&id| graph.node_inputs(id)).collect();
    // Remaining consumer slots of each value; graph outputs are never dropped.
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    if !keep_all {
        for &i in node_inputs.iter().flatten() {
            *uses.entry(i).or_default() += 1;
        }
        for o in graph.outputs() {
            uses.remove(o);
        }
    }
    let mut values: HashMap<NodeId, Cow<'a, Tensor>> = HashMap::new();
    for (&id, x) in graph.inputs().iter().zip(inputs) {
        values.insert(id, Cow::Borrowed(x));
    }
    for (&id, ins) in order.iter().zip(&node_inputs) {
        let node = graph.node(id);
        let out = match &node.op {
            Op::Input => continue,
            Op::Const(t) if t.shape() == node.fact.shape.as_slice() => Cow::Borrowed(t),
            op => {
                let mut args: Vec<&Tensor> = Vec::with_capacity(ins.len());
                for i in ins {
                    match values.get(i) {
                        Some(v) => args.push(v.as_ref()),
                        None => return Err(not_evaluated(graph, *i)),
                    }
                }
                let out = eval_op(op, &args, &node.fact).map_err(|message| InterpError::Op {
                    node: node.name.clone(),
                    op: op.name(),
                    message,
                })?;
                Cow::Owned(out)
            }
        };
        values.insert(id, out);
        if !keep_all {
            for i in ins {
                if let Some(u) = uses.get_mut(i) {
                    *u -= 1;
                    if *u == 0 {
                        values.remove(i);
                    }
                }
            }
        }
    }
    Ok(values)
}

/// Checks count, shapes and finiteness of the inputs.
pub fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<(), InterpError> {
    if inputs.len() != graph.inputs().len() {
        return Err(InterpError::InputCount {
            expected: graph.inputs().len(),
            got: inputs.len(),
        });
    }
    for (&id, x) in graph.inputs().iter().zip(inputs) {
        let node = graph.node(id);
        if x.shape() != node.fact.shape.as_slice() {
            return Err(InterpError::InputShape {
                input: node.name.clone(),
                expected: node.fact.shape.clone(),
                got: x.shape().to_vec(),
            });
        }
        if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(InterpError::NonFinite {
                input: node.name.clone(),
                value,
                index,
            });
        }
    }
    Ok(())
}

/// Evaluates one op. `out` is the node's inferred fact (already checked by the verifier).
///
/// The shapes of `inputs` are checked against the op's shape inference first and the result
/// must have `out.shape`, so a mismatched call yields `Err`, never a panic.
pub fn eval_op(op: &Op, inputs: &[&Tensor], out: &TensorFact) -> Result<Tensor, String> {
    let facts: Vec<TensorFact> = inputs.iter().map(|t| TensorFact::f32(t.shape())).collect();
    let fact_refs: Vec<&TensorFact> = facts.iter().collect();
    let inferred = op.infer(&fact_refs).map_err(|e| e.0)?;
    if inferred.shape != out.shape {
        return Err(format!(
            "inputs of shapes {:?} give shape {:?}, but the node records {:?}",
            facts.iter().map(|f| &f.shape).collect::<Vec<_>>(),
            inferred.shape,
            out.shape
        ));
    }
    let shape = out.shape.as_slice();
    let result = match op {
        Op::Input => return Err("an Input has no kernel; its value is given".into()),
        Op::Const(t) => t.clone(),
        Op::Unary(u) => elementwise::unary(u, inputs[0]),
        Op::Binary(b) => elementwise::binary(*b, inputs[0], inputs[1], shape)?,
        Op::MatMul => linalg::matmul(inputs[0], inputs[1], shape)?,
        Op::Gemm(a) => linalg::gemm(a, inputs[0], inputs[1], inputs.get(2).copied(), shape)?,
        Op::Conv(a) => linalg::conv(a, inputs[0], inputs[1], inputs.get(2).copied(), shape)?,
        Op::AveragePool(p) => pool::pool(p, inputs[0], shape, pool::PoolKind::Average)?,
        Op::MaxPool(p) => pool::pool(p, inputs[0], shape, pool::PoolKind::Max)?,
        Op::GlobalAveragePool => pool::global_average(inputs[0], shape)?,
        Op::BatchNorm { epsilon } => elementwise::batch_norm(*epsilon, inputs)?,
        Op::Softmax { axis } => elementwise::softmax(inputs[0], *axis)?,
        Op::Reshape { shape } => layout::reshape(inputs[0], shape)?,
        Op::Transpose { perm } => layout::transpose(inputs[0], perm),
        Op::Concat { axis } => layout::concat(inputs, *axis)?,
        Op::Pad { pads, mode, value } => layout::pad(inputs[0], pads, *mode, *value)?,
        Op::Identity => inputs[0].clone(),
        Op::Cast { to } => elementwise::cast(inputs[0], *to),
        Op::QuantizeLinear(q) => elementwise::quantize(q, inputs[0], inputs[1], inputs[2])?,
        Op::DequantizeLinear(q) => elementwise::dequantize(q, inputs[0], inputs[1], inputs[2])?,
        Op::IntConst(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Tlu(_) | Op::SumPool(_) => {
            return Err(format!(
                "{} is an integer op: run quantised graphs with int_interp",
                op.name()
            ))
        }
    };
    if result.shape() != shape {
        return Err(format!(
            "kernel produced shape {:?}, expected {:?}",
            result.shape(),
            shape
        ));
    }
    Ok(result)
}

/// Row-major (C order) strides of a shape, in elements.
fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The elements of `t` in row-major order, borrowed when `t` is already laid out so.
fn row_major(t: &Tensor) -> Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.iter().copied().collect()),
    }
}

/// A tensor of the given shape from row-major data.
fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor, String> {
    Tensor::from_shape_vec(ndarray::IxDyn(shape), data).map_err(|e| e.to_string())
}

/// Copies a strided N-D gather into `dst` (row-major over the output axes).
///
/// `maps[i][j]` is the source coordinate along axis `i` for output coordinate `j`, or `None`
/// where the output takes `fill`; `strides[i]` is the source stride of axis `i` and `base`
/// the source offset so far. `dst.len()` must be the product of the map lengths.
fn gather(
    maps: &[&[Option<usize>]],
    strides: &[usize],
    src: &[f32],
    base: usize,
    fill: f32,
    dst: &mut [f32],
) {
    let Some((map, rest)) = maps.split_first() else {
        if let Some(d) = dst.first_mut() {
            *d = src[base];
        }
        return;
    };
    if dst.is_empty() || map.is_empty() {
        return;
    }
    let stride = strides[0];
    if rest.is_empty() {
        for (d, ix) in dst.iter_mut().zip(map.iter()) {
            *d = match ix {
                Some(i) => src[base + i * stride],
                None => fill,
            };
        }
        return;
    }
    let chunk = dst.len() / map.len();
    for (sub, ix) in dst.chunks_mut(chunk).zip(map.iter()) {
        match ix {
            Some(i) => gather(rest, &strides[1..], src, base + i * stride, fill, sub),
            None => sub.fill(fill),
        }
    }
}

/// Writes the row-major multi-index of flat index `flat` within `dims` into `idx`.
fn unravel(mut flat: usize, dims: &[usize], idx: &mut [usize]) {
    for (i, &d) in idx.iter_mut().zip(dims).rev() {
        if d == 0 {
            *i = 0;
            continue;
        }
        *i = flat % d;
        flat /= d;
    }
}
