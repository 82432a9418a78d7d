//! Integer interpreter: the exact semantics of a quantised graph, which the FHE circuit must
//! reproduce bit for bit.
//!
//! Graph inputs are real tensors; `Quantize` nodes turn them into integers (client side),
//! integer ops run in i64, and `Dequantize` nodes turn outputs back into reals. Any overflow
//! is an error, never a silently wrapped result. A table lookup whose input falls outside the
//! table's domain (possible when tables span the calibration-observed range rather than the
//! worst case) reads what the bootstrap reads ([`crate::quant::negacyclic_read`]); [`run_counting`]
//! counts those reads.

use std::collections::HashMap;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::graph::{Graph, NodeId};
use crate::interp::{check_inputs, InterpError};
use crate::op::{ConvAttrs, GemmAttrs, Op, PadMode, PoolAttrs};
use crate::quant::{negacyclic_read, Tlu};
use crate::Tensor;

/// A value during integer execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Real(Tensor),
    Int(ArrayD<i64>),
}

impl Value {
    pub fn as_int(&self) -> Option<&ArrayD<i64>> {
        match self {
            Value::Int(a) => Some(a),
            Value::Real(_) => None,
        }
    }
}

/// Runs a quantised graph on real inputs and returns its (dequantised) outputs.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let values = run_trace(graph, inputs)?;
    Ok(output_tensors(graph, &values))
}

fn output_tensors(graph: &Graph, values: &HashMap<NodeId, Value>) -> Vec<Tensor> {
    graph
        .outputs()
        .iter()
        .map(|o| match &values[o] {
            Value::Real(t) => t.clone(),
            Value::Int(a) => a.mapv(|v| v as f32),
        })
        .collect()
}

/// [`run`], plus the number of table lookups whose input fell outside its table's domain
/// (each read the negacyclic wrap instead of a table entry).
pub fn run_counting(graph: &Graph, inputs: &[Tensor]) -> Result<(Vec<Tensor>, u64), InterpError> {
    let values = run_trace(graph, inputs)?;
    let mut outside = 0u64;
    for id in graph.node_ids() {
        if let Op::Tlu(t) = &graph.node(id).op {
            if let Some(Value::Int(x)) = graph.node_inputs(id).first().map(|i| &values[i]) {
                outside += lookups_outside(t, x);
            }
        }
    }
    Ok((output_tensors(graph, &values), outside))
}

/// Elements of `x` outside the domain of the table `t` applies to them.
pub fn lookups_outside(t: &Tlu, x: &ArrayD<i64>) -> u64 {
    let x = x.as_standard_layout();
    let Some(data) = x.as_slice() else {
        return 0;
    };
    table_runs(t, x.shape(), data)
        .map(|(table, run)| run.iter().filter(|&&v| !t.in_domain(table, v)).count() as u64)
        .sum()
}

/// The row-major `data` of a `shape` tensor in runs of elements that read the same table of
/// `t`: `(table, run)` (per-channel tables change along `t.axis`).
fn table_runs<'a>(
    t: &Tlu,
    shape: &[usize],
    data: &'a [i64],
) -> impl Iterator<Item = (usize, &'a [i64])> {
    let (run, channels) = match t.axis {
        Some(a) if a < shape.len() => (shape[a + 1..].iter().product::<usize>(), shape[a]),
        _ => (data.len(), 1),
    };
    data.chunks(run.max(1))
        .enumerate()
        .map(move |(k, chunk)| (k % channels.max(1), chunk))
}

/// Runs the graph and returns every node's value (bit-width observation reads these).
pub fn run_trace(graph: &Graph, inputs: &[Tensor]) -> Result<HashMap<NodeId, Value>, InterpError> {
    check_inputs(graph, inputs)?;
    let mut values: HashMap<NodeId, Value> = HashMap::new();
    for (&id, x) in graph.inputs().iter().zip(inputs) {
        values.insert(id, Value::Real(x.clone()));
    }
    for id in graph.topo_order() {
        let node = graph.node(id);
        if matches!(node.op, Op::Input) {
            continue;
        }
        let ins: Vec<&Value> = graph.node_inputs(id).iter().map(|i| &values[i]).collect();
        let out = eval(&node.op, &ins, &node.fact.shape).map_err(|message| InterpError::Op {
            node: node.name.clone(),
            op: node.op.name(),
            message,
        })?;
        values.insert(id, out);
    }
    Ok(values)
}

fn ints<'a>(v: &'a Value, what: &str) -> Result<&'a ArrayD<i64>, String> {
    v.as_int()
        .ok_or_else(|| format!("{what} is a real tensor where an integer one is needed"))
}

/// Evaluates one op on integer (or, at the boundaries, real) values.
pub fn eval(op: &Op, ins: &[&Value], out_shape: &[usize]) -> Result<Value, String> {
    eval_with(op, ins, out_shape, Kernels::Exact)
}

/// [`eval`] with Conv, Gemm and MatMul computed element by element in checked `i64`: the
/// reference the fast exact kernels are tested against.
pub fn eval_checked(op: &Op, ins: &[&Value], out_shape: &[usize]) -> Result<Value, String> {
    eval_with(op, ins, out_shape, Kernels::Checked)
}

/// How integer products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    /// `fhec_kernels::exact` where its bound holds, else checked `i64`.
    Exact,
    /// Checked `i64` element by element.
    Checked,
}

fn eval_with(op: &Op, ins: &[&Value], out_shape: &[usize], k: Kernels) -> Result<Value, String> {
    let out = match op {
        Op::Const(t) => Value::Real(t.clone()),
        Op::IntConst(a) => Value::Int(a.clone()),
        Op::Quantize(q) => match ins[0] {
            Value::Real(x) => Value::Int(x.mapv(|v| q.quantize(v))),
            Value::Int(_) => return Err("Quantize takes a real tensor".into()),
        },
        Op::Dequantize(q) => Value::Real(ints(ins[0], "the input")?.mapv(|v| q.dequantize(v))),
        Op::DequantizeChannels { params, scales } => {
            let q = ints(ins[0], "the input")?;
            let mut out = q.mapv(|v| params.dequantize(v));
            for (c, &s) in scales.iter().enumerate() {
                out.index_axis_mut(ndarray::Axis(1), c)
                    .mapv_inplace(|v| v * s);
            }
            Value::Real(out)
        }
        Op::Tlu(t) => Value::Int(tlu(t, ints(ins[0], "the input")?)?),
        Op::Identity => ins[0].clone(),
        Op::Gemm(g) => {
            let c = ins.get(2).map(|v| ints(v, "the bias")).transpose()?;
            Value::Int(gemm(g, ints(ins[0], "A")?, ints(ins[1], "B")?, c, k)?)
        }
        Op::MatMul => Value::Int(matmul(ints(ins[0], "A")?, ints(ins[1], "B")?, k)?),
        Op::Conv(c) => {
            let b = ins.get(2).map(|v| ints(v, "the bias")).transpose()?;
            let (x, w) = (ints(ins[0], "X")?, ints(ins[1], "W")?);
            Value::Int(match k {
                Kernels::Exact => conv(c, x, w, b, out_shape)?,
                Kernels::Checked => checked_conv(c, x, w, b, out_shape)?,
            })
        }
        Op::SumPool(p) => Value::Int(pool(p, ints(ins[0], "X")?, out_shape, false)?),
        Op::MaxPool(p) => Value::Int(pool(p, ints(ins[0], "X")?, out_shape, true)?),
        Op::Binary(b) => {
            let (x, y) = (ints(ins[0], "A")?, ints(ins[1], "B")?);
            let shape = crate::op::broadcast_shapes(x.shape(), y.shape()).map_err(|e| e.0)?;
            let xb = x
                .broadcast(IxDyn(&shape))
                .ok_or("operands do not broadcast")?;
            let yb = y
                .broadcast(IxDyn(&shape))
                .ok_or("operands do not broadcast")?;
            let f = match b {
                crate::op::BinaryOp::Add => i64::checked_add,
                crate::op::BinaryOp::Sub => i64::checked_sub,
                crate::op::BinaryOp::Mul => i64::checked_mul,
                other => return Err(format!("{other:?} has no integer semantics")),
            };
            let v: Option<Vec<i64>> = xb.iter().zip(yb.iter()).map(|(&p, &q)| f(p, q)).collect();
            Value::Int(
                ArrayD::from_shape_vec(IxDyn(&shape), v.ok_or("integer overflow")?)
                    .map_err(|e| e.to_string())?,
            )
        }
        Op::Reshape { shape } => Value::Int(
            ints(ins[0], "the input")?
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))
                .map_err(|e| e.to_string())?,
        ),
        Op::Transpose { perm } => Value::Int(
            ints(ins[0], "the input")?
                .clone()
                .permuted_axes(IxDyn(perm))
                .as_standard_layout()
                .into_owned(),
        ),
        Op::Concat { axis } => {
            let arrays = ins
                .iter()
                .map(|v| ints(v, "an input").map(|a| a.view()))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Int(ndarray::concatenate(Axis(*axis), &arrays).map_err(|e| e.to_string())?)
        }
        Op::Pad {
            pads,
            mode: PadMode::Constant,
            value,
        } => {
            let x = ints(ins[0], "the input")?;
            let mut out = ArrayD::from_elem(IxDyn(out_shape), *value as i64);
            let mut view = out.view_mut();
            for (ax, &(b, _)) in pads.iter().enumerate() {
                view.slice_axis_inplace(Axis(ax), ndarray::Slice::from(b..b + x.shape()[ax]));
            }
            view.assign(x);
            Value::Int(out)
        }
        other => return Err(format!("{} has no integer semantics", other.name())),
    };
    let shape = match &out {
        Value::Real(t) => t.shape(),
        Value::Int(a) => a.shape(),
    };
    if shape != out_shape {
        return Err(format!("produced shape {shape:?}, expected {out_shape:?}"));
    }
    Ok(out)
}

fn tlu(t: &Tlu, x: &ArrayD<i64>) -> Result<ArrayD<i64>, String> {
    let x = x.as_standard_layout();
    let data = x
        .as_slice()
        .ok_or("a standard-layout array is contiguous")?;
    let (precision, shift) = (t.input_bits(), t.rounding.map_or(0, |r| r.shift));
    let mut out = Vec::with_capacity(data.len());
    for (index, run) in table_runs(t, x.shape(), data) {
        let table = t
            .tables
            .get(index)
            .ok_or_else(|| format!("table {index} of {} does not exist", t.tables.len()))?;
        out.extend(
            run.iter()
                .map(|&v| negacyclic_read(table, precision, shift, v.wrapping_sub(t.input_min))),
        );
    }
    ArrayD::from_shape_vec(x.raw_dim(), out).map_err(|e| e.to_string())
}

fn mac(acc: i64, a: i64, b: i64) -> Result<i64, String> {
    a.checked_mul(b)
        .and_then(|p| acc.checked_add(p))
        .ok_or_else(|| "integer overflow".to_string())
}

fn gemm(
    g: &GemmAttrs,
    a: &ArrayD<i64>,
    b: &ArrayD<i64>,
    c: Option<&ArrayD<i64>>,
    k: Kernels,
) -> Result<ArrayD<i64>, String> {
    if g.alpha != 1.0 || g.beta != 1.0 {
        return Err("integer Gemm needs alpha = beta = 1".into());
    }
    let a2 = a
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| e.to_string())?;
    let b2 = b
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| e.to_string())?;
    let a2 = if g.trans_a { a2.reversed_axes() } else { a2 };
    let b2 = if g.trans_b { b2.reversed_axes() } else { b2 };
    let exact = match k {
        Kernels::Exact => fhec_kernels::exact::matmul_exact(&a2, &b2),
        Kernels::Checked => None,
    };
    let mut out = match exact {
        Some(out) => out,
        None => checked_matmul(&a2, &b2)?,
    }
    .into_dyn();
    if let Some(c) = c {
        let cb = c
            .broadcast(out.raw_dim())
            .ok_or("bias does not broadcast")?;
        let mut overflow = false;
        out.zip_mut_with(&cb, |o, &b| match o.checked_add(b) {
            Some(v) => *o = v,
            None => overflow = true,
        });
        if overflow {
            return Err("integer overflow".into());
        }
    }
    Ok(out)
}

/// `a @ b` in checked `i64`, element by element: where the fast exact kernel cannot prove
/// exactness.
fn checked_matmul(
    a: &ndarray::ArrayView2<'_, i64>,
    b: &ndarray::ArrayView2<'_, i64>,
) -> Result<ndarray::Array2<i64>, String> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut out = ndarray::Array2::<i64>::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i64;
            for p in 0..k {
                acc = mac(acc, a[(i, p)], b[(p, j)])?;
            }
            out[(i, j)] = acc;
        }
    }
    Ok(out)
}

fn matmul(a: &ArrayD<i64>, b: &ArrayD<i64>, k: Kernels) -> Result<ArrayD<i64>, String> {
    if a.ndim() != 2 || b.ndim() != 2 {
        return Err(format!(
            "integer MatMul supports 2-D operands, got {:?} @ {:?}",
            a.shape(),
            b.shape()
        ));
    }
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    };
    gemm(&attrs, a, b, None, k)
}

/// Visits every window position: `f(out_index, in_index_or_None_for_padding)`.
fn for_each_window(
    in_spatial: &[usize],
    out_spatial: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[(usize, usize)],
    mut f: impl FnMut(&[usize], &[usize], Option<&[usize]>),
) {
    let sp = kernel.len();
    let mut o = vec![0usize; sp];
    let mut k = vec![0usize; sp];
    let mut pos = vec![0usize; sp];
    let total_out: usize = out_spatial.iter().product();
    let total_k: usize = kernel.iter().product();
    for oi in 0..total_out {
        let mut r = oi;
        for d in (0..sp).rev() {
            o[d] = r % out_spatial[d];
            r /= out_spatial[d];
        }
        for ki in 0..total_k {
            let mut r = ki;
            for d in (0..sp).rev() {
                k[d] = r % kernel[d];
                r /= kernel[d];
            }
            let mut inside = true;
            for d in 0..sp {
                let p = (o[d] * strides[d] + k[d] * dilations[d]) as i64 - pads[d].0 as i64;
                if p < 0 || p >= in_spatial[d] as i64 {
                    inside = false;
                    break;
                }
                pos[d] = p as usize;
            }
            f(&o, &k, inside.then_some(pos.as_slice()));
        }
    }
}

/// Integer convolution: the shared exact kernel where its bound holds, else
/// [`checked_conv`].
fn conv(
    c: &ConvAttrs,
    x: &ArrayD<i64>,
    w: &ArrayD<i64>,
    b: Option<&ArrayD<i64>>,
    out_shape: &[usize],
) -> Result<ArrayD<i64>, String> {
    let shape = fhec_kernels::ConvShape {
        input: x.shape(),
        weight: w.shape(),
        output: out_shape,
        strides: &c.strides,
        dilations: &c.dilations,
        pads: &c.pads,
        group: c.group,
    };
    let (xs, ws) = (x.as_standard_layout(), w.as_standard_layout());
    let bs = b.map(|b| b.iter().copied().collect::<Vec<i64>>());
    let contiguous = "a standard-layout array is contiguous";
    let (xs, ws) = (
        xs.as_slice().ok_or(contiguous)?,
        ws.as_slice().ok_or(contiguous)?,
    );
    match fhec_kernels::exact::conv_exact(&shape, xs, ws, bs.as_deref())? {
        Some(out) => ArrayD::from_shape_vec(IxDyn(out_shape), out).map_err(|e| e.to_string()),
        None => checked_conv(c, x, w, b, out_shape),
    }
}

/// Integer convolution in checked `i64`, window by window.
fn checked_conv(
    c: &ConvAttrs,
    x: &ArrayD<i64>,
    w: &ArrayD<i64>,
    b: Option<&ArrayD<i64>>,
    out_shape: &[usize],
) -> Result<ArrayD<i64>, String> {
    let (n, cin, cout) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let cin_g = cin / c.group;
    let cout_g = cout / c.group;
    let kernel = &w.shape()[2..];
    let mut out = ArrayD::<i64>::zeros(IxDyn(out_shape));
    let mut err = None;
    for bn in 0..n {
        for oc in 0..cout {
            let g = oc / cout_g;
            let bias = b.map_or(0, |b| b[[oc]]);
            let mut plane = out.index_axis_mut(Axis(0), bn);
            let mut plane = plane.index_axis_mut(Axis(0), oc);
            plane.fill(bias);
            for_each_window(
                &x.shape()[2..],
                &out_shape[2..],
                kernel,
                &c.strides,
                &c.dilations,
                &c.pads,
                |o, k, pos| {
                    let Some(pos) = pos else { return };
                    let mut s = plane[IxDyn(o)];
                    for ic in 0..cin_g {
                        let mut xi = vec![bn, g * cin_g + ic];
                        xi.extend_from_slice(pos);
                        let mut wi = vec![oc, ic];
                        wi.extend_from_slice(k);
                        match mac(s, x[IxDyn(&xi)], w[IxDyn(&wi)]) {
                            Ok(v) => s = v,
                            Err(e) => err = Some(e),
                        }
                    }
                    plane[IxDyn(o)] = s;
                },
            );
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn pool(
    p: &PoolAttrs,
    x: &ArrayD<i64>,
    out_shape: &[usize],
    max: bool,
) -> Result<ArrayD<i64>, String> {
    let (n, ch) = (x.shape()[0], x.shape()[1]);
    let mut out = ArrayD::<i64>::from_elem(IxDyn(out_shape), if max { i64::MIN } else { 0 });
    let mut overflow = false;
    for bn in 0..n {
        for c in 0..ch {
            for_each_window(
                &x.shape()[2..],
                &out_shape[2..],
                &p.kernel,
                &p.strides,
                &p.dilations,
                &p.pads,
                |o, _, pos| {
                    let Some(pos) = pos else { return };
                    let mut xi = vec![bn, c];
                    xi.extend_from_slice(pos);
                    let v = x[IxDyn(&xi)];
                    let mut oi = vec![bn, c];
                    oi.extend_from_slice(o);
                    let slot = &mut out[IxDyn(&oi)];
                    match (max, slot.checked_add(v)) {
                        (true, _) => *slot = (*slot).max(v),
                        (false, Some(sum)) => *slot = sum,
                        (false, None) => overflow = true,
                    }
                },
            );
        }
    }
    if overflow {
        return Err("integer overflow".into());
    }
    if max && out.iter().any(|&v| v == i64::MIN) {
        return Err("a max-pooling window lies entirely in padding".into());
    }
    Ok(out)
}
