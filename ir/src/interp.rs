//! Float interpreter: executes a graph with the ONNX semantics of each op.
//!
//! Every kernel computes in `f32` the way the ONNX reference implementation does (element-wise
//! arithmetic in `f32`; transcendental functions and reductions are evaluated in `f64` and
//! rounded once, which is at least as accurate).
//!
//! # Integer tensors
//!
//! A value whose fact has an integer type (`i8`, `u8`, `i32`, `i64`: integer graph inputs,
//! casts, quantized tensors and what is computed from them) is held in `f32` too. The rule:
//!
//! - **Every integer value lies within ±(2^24 - 1)** ([`crate::fact::F32_EXACT_INT`]), where
//!   `f32` represents each integer exactly. Integer graph inputs outside it (or not integers)
//!   are refused ([`InterpError::NotInteger`]); all of int8 and uint8 is inside.
//! - **A node with an integer-typed output runs its `f32` kernel, then the result is truncated
//!   toward zero and wrapped modulo 2^bits into its type** (two's complement), which is what
//!   ONNX defines: Div of integers truncates toward zero (`-7 / 2 = -3`), Add/Sub/Mul/Neg
//!   wrap on overflow like numpy (`int8 100 + 100 = -56`), Cast between integer types
//!   discards the high bits (`int32 200 -> int8 -56`), and Cast from float truncates toward
//!   zero (ONNX leaves float sources beyond the target's range undefined; fhec wraps them
//!   like numpy's `astype`, so `200.7 -> int8 -56`).
//! - This is exact: for integer operands within ±(2^24 - 1) the `f32` sum, difference and
//!   product are correctly rounded, hence exact whenever the true result is below 2^24 in
//!   magnitude, and at least 2^24 in magnitude otherwise (so refused, next point). The `f32`
//!   quotient truncates to the true integer quotient: a non-integer `a / b > 0` lies at least
//!   `1 / b` below the next integer `n`, while half the `f32` spacing below `n` is at most
//!   `2^-24 max(n - 1, 1/2) < 1 / b` (as `n - 1 < a / b` and `a, b < 2^24`), so rounding
//!   cannot reach `n`.
//! - **Where exactness cannot be guaranteed the node is refused**, with an error naming it: a
//!   result (before wrapping) of magnitude 2^24 or more, a non-finite one (integer division by
//!   zero, casting NaN or infinity: undefined in ONNX). So int8/uint8 arithmetic always
//!   computes (`|255 * 255| < 2^24`) and int32/int64 arithmetic is exact or refused, never
//!   silently rounded.
//! - Ops defined only on floats (Sigmoid, Softmax, Conv, Gemm, MatMul, average pooling,
//!   BatchNorm, ...) refuse integer inputs ([`eval_node`]): Cast to float first.
//!
//! Kernels live in submodules: [`elementwise`] (unary, binary, cast, quantization, batch norm,
//! softmax), [`linalg`] (MatMul, Gemm, Conv), [`pool`] (average, max and global pooling) and
//! [`layout`] (reshape, transpose, concat, pad).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::fact::{DType, TensorFact, F32_EXACT_INT};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, Op, UnaryOp};
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
    #[error(
        "input '{input}' is {dtype} but holds {value} at flat index {index}: it takes integers \
         in [{}, {}]{}",
        dtype.exact_range().map_or(0, |r| r.0),
        dtype.exact_range().map_or(0, |r| r.1),
        if matches!(dtype, DType::I32 | DType::I64) {
            " (fhec holds integers in f32, exact up to 2^24 - 1 in magnitude)"
        } else {
            ""
        }
    )]
    NotInteger {
        input: String,
        dtype: DType,
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
                let in_facts: Vec<&TensorFact> = ins.iter().map(|&i| &graph.node(i).fact).collect();
                let out = eval_node(op, &args, &in_facts, &node.fact).map_err(|message| {
                    InterpError::Op {
                        node: node.name.clone(),
                        op: op.name(),
                        message,
                    }
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
        if let Some((lo, hi)) = node.fact.dtype.exact_range() {
            let (lo, hi) = (lo as f32, hi as f32);
            let bad = x
                .iter()
                .enumerate()
                .find(|(_, &v)| v.fract() != 0.0 || v < lo || v > hi);
            if let Some((index, &value)) = bad {
                return Err(InterpError::NotInteger {
                    input: node.name.clone(),
                    dtype: node.fact.dtype,
                    value,
                    index,
                });
            }
        }
    }
    Ok(())
}

/// Whether the float interpreter evaluates `op` on integer tensors (see the module doc): ops
/// that only move or compare values, integer arithmetic, casts and quantization.
fn takes_integers(op: &Op) -> bool {
    matches!(
        op,
        Op::Identity
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::MaxPool(_)
            | Op::Unary(UnaryOp::Neg | UnaryOp::Relu | UnaryOp::Clip { .. })
            | Op::Binary(_)
            | Op::Cast { .. }
            | Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
    )
}

/// [`eval_op`] for a node whose input facts are known: refuses integer inputs or outputs of
/// ops that [`takes_integers`] does not list (the error names the type), then evaluates.
pub fn eval_node(
    op: &Op,
    inputs: &[&Tensor],
    in_facts: &[&TensorFact],
    out: &TensorFact,
) -> Result<Tensor, String> {
    let int = in_facts
        .iter()
        .map(|f| f.dtype)
        .chain([out.dtype])
        .find(|d| d.is_int());
    if let Some(dtype) = int {
        if !takes_integers(op) {
            return Err(format!(
                "{} is evaluated on floats only, and this node has an {dtype} tensor; cast it \
                 to float first",
                op.name()
            ));
        }
    }
    eval_op(op, inputs, out)
}

/// Evaluates one op. `out` is the node's inferred fact (already checked by the verifier).
///
/// The shapes of `inputs` are checked against the op's shape inference first and the result
/// must have `out.shape`, so a mismatched call yields `Err`, never a panic. When `out.dtype`
/// is an integer type the kernel's result is truncated toward zero and wrapped into the type,
/// or refused where that could not be exact (the module doc states the rule).
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
        Op::Cast { .. } => elementwise::cast(inputs[0]),
        Op::QuantizeLinear(q) => elementwise::quantize(q, inputs[0], inputs[1], inputs[2])?,
        Op::DequantizeLinear(q) => elementwise::dequantize(q, inputs[0], inputs[1], inputs[2])?,
        Op::IntConst(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::DequantizeChannels { .. }
        | Op::Tlu(_)
        | Op::SumPool(_) => {
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
    if out.dtype.is_int() {
        return to_integer(result, out.dtype, op);
    }
    Ok(result)
}

/// The integer-typed result of `op`: each value truncated toward zero and wrapped into
/// `dtype`; a non-finite value or one of magnitude 2^24 or more (not exact in `f32`) is an
/// error.
fn to_integer(mut t: Tensor, dtype: DType, op: &Op) -> Result<Tensor, String> {
    for (index, v) in t.iter_mut().enumerate() {
        let r = v.trunc();
        // NaN fails the range test too.
        if r.is_nan() || r.abs() > F32_EXACT_INT as f32 {
            return Err(match op {
                Op::Binary(BinaryOp::Div) if !v.is_finite() => {
                    format!("integer division by zero at flat index {index} (undefined in ONNX)")
                }
                Op::Cast { .. } if !v.is_finite() => format!(
                    "cannot cast {v} (flat index {index}) to {dtype}: ONNX leaves it undefined"
                ),
                _ => format!(
                    "the {dtype} result at flat index {index} is {v}, beyond 2^24 - 1 in \
                     magnitude, where f32 (which fhec holds integers in) stops being exact"
                ),
            });
        }
        *v = dtype.wrap(r as i64) as f32;
    }
    Ok(t)
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
