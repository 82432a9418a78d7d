//! Accumulator bit-width analysis of an integer graph.
//!
//! The worst case comes from interval arithmetic over weights and input ranges (what the
//! circuit must be able to hold without wrapping); the observed range comes from running the
//! integer interpreter on the calibration data. The accumulator width of a table lookup's
//! input sets the cost of its bootstrap, unless rounding narrows it.

use std::collections::HashMap;

use fhec_ir::quant::int_bits;
use fhec_ir::{int_interp, BinaryOp, Graph, IrError, NodeId, Op};
use ndarray::Axis;

use crate::context::PassContext;
use crate::Pass;

pub const PASS: Pass = Pass {
    name: "bit_widths",
    summary: "report worst-case and observed accumulator widths of the integer graph",
    run,
};

pub use crate::context::LayerBits;

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    if !is_integer_graph(g) {
        return Ok(());
    }
    let worst = worst_case_ranges(g)?;
    let observed = observed_ranges(g, &ctx.calibration_inputs)?;
    let mut layers = vec![];
    for id in g.topo_order() {
        let node = g.node(id);
        if !is_accumulator(&node.op) {
            continue;
        }
        let w = worst[&id];
        let tlu_input_bits = g.consumers(id).iter().find_map(|&c| match &g.node(c).op {
            Op::Tlu(t) => Some(t.input_bits()),
            _ => None,
        });
        layers.push(LayerBits {
            layer: node.name.clone(),
            op: node.op.name(),
            worst: w,
            worst_bits: int_bits(w.0, w.1),
            observed: observed.get(&id).copied(),
            observed_bits: observed.get(&id).map(|&(lo, hi)| int_bits(lo, hi)),
            tlu_input_bits,
        });
        ctx.note(format!("{}", layers.last().expect("pushed")));
    }
    ctx.report.bit_widths = layers;
    Ok(())
}

/// True once quantisation has produced integer ops.
pub fn is_integer_graph(g: &Graph) -> bool {
    g.node_ids()
        .any(|n| matches!(g.node(n).op, Op::Quantize(_)))
}

/// Linear ops whose outputs are accumulators.
pub fn is_accumulator(op: &Op) -> bool {
    matches!(
        op,
        Op::Gemm(_) | Op::MatMul | Op::Conv(_) | Op::SumPool(_) | Op::Binary(_)
    )
}

/// Worst-case integer range of every integer node.
pub fn worst_case_ranges(g: &Graph) -> Result<HashMap<NodeId, (i64, i64)>, IrError> {
    let mut r: HashMap<NodeId, (i64, i64)> = HashMap::new();
    for id in g.topo_order() {
        if let Some(range) = node_range(g, id, &r)? {
            r.insert(id, range);
        }
    }
    Ok(r)
}

/// Worst-case range of one node from the ranges of its inputs (`None` for real-valued
/// nodes). The quantisation lowering sizes its tables with this same function.
pub fn node_range(
    g: &Graph,
    id: NodeId,
    r: &HashMap<NodeId, (i64, i64)>,
) -> Result<Option<(i64, i64)>, IrError> {
    let unsupported = |message: String| IrError::Unsupported {
        node: g.node(id).name.clone(),
        op: g.node(id).op.name(),
        message,
    };
    let ins = g.node_inputs(id);
    let get = |i: usize| r.get(&ins[i]).copied();
    let first = || get(0).ok_or_else(|| unsupported("input has no integer range".into()));
    let range = match &g.node(id).op {
        Op::Input | Op::Const(_) | Op::Dequantize(_) | Op::DequantizeChannels { .. } => {
            return Ok(None)
        }
        Op::IntConst(a) => a
            .iter()
            .fold((i64::MAX, i64::MIN), |(l, h), &v| (l.min(v), h.max(v))),
        Op::Quantize(q) => q.range(),
        Op::Tlu(t) => {
            let (l, h) = t
                .tables
                .iter()
                .flatten()
                .fold((i64::MAX, i64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let covered = get(0).is_none_or(|(lo, hi)| {
                (0..t.tables.len()).all(|k| t.in_domain(k, lo) && t.in_domain(k, hi))
            });
            if covered {
                (l, h)
            } else {
                // A table narrower than its input (observed ranges): a read outside the
                // domain returns an entry, its negation or 0 (`Tlu::read`).
                let m = l.saturating_abs().max(h.saturating_abs());
                (-m, m)
            }
        }
        Op::Identity | Op::Reshape { .. } | Op::Transpose { .. } | Op::MaxPool(_) => first()?,
        Op::Pad { value, .. } => {
            let (lo, hi) = first()?;
            (lo.min(*value as i64), hi.max(*value as i64))
        }
        Op::Concat { .. } => (0..ins.len())
            .filter_map(get)
            .fold((i64::MAX, i64::MIN), |(l, h), (a, b)| (l.min(a), h.max(b))),
        Op::SumPool(p) => {
            let (lo, hi) = first()?;
            let k = p.kernel.iter().product::<usize>() as i64;
            let padded = p.pads.iter().any(|&(a, b)| a > 0 || b > 0);
            let (lo, hi) = if padded {
                (lo.min(0), hi.max(0))
            } else {
                (lo, hi)
            };
            (k * lo, k * hi)
        }
        Op::Binary(b) => {
            let (Some((a0, a1)), Some((b0, b1))) = (get(0), get(1)) else {
                return Err(unsupported("operand has no integer range".into()));
            };
            match b {
                BinaryOp::Add => (a0 + b0, a1 + b1),
                BinaryOp::Sub => (a0 - b1, a1 - b0),
                BinaryOp::Mul => {
                    let p = [a0 * b0, a0 * b1, a1 * b0, a1 * b1];
                    (*p.iter().min().expect("4"), *p.iter().max().expect("4"))
                }
                _ => return Err(unsupported("no integer semantics".into())),
            }
        }
        Op::Gemm(_) | Op::MatMul | Op::Conv(_) => linear_range(g, id, r).map_err(unsupported)?,
        other => {
            return Err(unsupported(format!(
                "{} has no integer semantics",
                other.name()
            )))
        }
    };
    Ok(Some(range))
}

/// Per output channel: sum of min/max of w * [lo, hi] over its weights, plus the bias.
fn linear_range(
    g: &Graph,
    id: NodeId,
    r: &HashMap<NodeId, (i64, i64)>,
) -> Result<(i64, i64), String> {
    let ins = g.node_inputs(id);
    let (mut lo, mut hi) = r
        .get(&ins[0])
        .copied()
        .ok_or("input has no integer range")?;
    let Op::IntConst(w) = &g.node(ins[1]).op else {
        return Err("weights are not an integer constant".into());
    };
    let bias = ins.get(2).and_then(|&b| match &g.node(b).op {
        Op::IntConst(a) => Some(a.clone()),
        _ => None,
    });
    // Weights with output channels first.
    let w = match &g.node(id).op {
        Op::Gemm(a) if !a.trans_b => w.clone().reversed_axes(),
        Op::MatMul => w.clone().reversed_axes(),
        Op::Conv(c) => {
            if c.pads.iter().any(|&(a, b)| a > 0 || b > 0) {
                lo = lo.min(0);
                hi = hi.max(0);
            }
            w.clone()
        }
        _ => w.clone(),
    };
    let mut out = (i64::MAX, i64::MIN);
    for (j, filt) in w.axis_iter(Axis(0)).enumerate() {
        let b = bias.as_ref().map_or(0, |b| {
            if b.len() == 1 {
                b.iter().next().copied().unwrap_or(0)
            } else {
                b.iter().nth(j).copied().unwrap_or(0)
            }
        });
        let (mut l, mut h) = (b, b);
        for &wv in filt.iter() {
            l += (wv * lo).min(wv * hi);
            h += (wv * lo).max(wv * hi);
        }
        out = (out.0.min(l), out.1.max(h));
    }
    Ok(out)
}

/// Range every integer node took on the calibration samples.
pub fn observed_ranges(
    g: &Graph,
    samples: &[Vec<fhec_ir::Tensor>],
) -> Result<HashMap<NodeId, (i64, i64)>, IrError> {
    let mut r: HashMap<NodeId, (i64, i64)> = HashMap::new();
    for s in samples {
        let values = int_interp::run_trace(g, s).map_err(|e| IrError::Unsupported {
            node: "(calibration)".into(),
            op: "run",
            message: e.to_string(),
        })?;
        for (id, v) in values {
            if let int_interp::Value::Int(a) = v {
                let (lo, hi) = a
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                let e = r.entry(id).or_insert((lo, hi));
                *e = (e.0.min(lo), e.1.max(hi));
            }
        }
    }
    Ok(r)
}

/// Table lookups one inference performs (one programmable bootstrap each in FHE): every
/// element of every `Tlu`, plus `k - 1` comparisons per max-pooling output over `k` inputs.
pub fn tlu_count(g: &Graph) -> usize {
    g.node_ids()
        .map(|id| {
            let node = g.node(id);
            match &node.op {
                Op::Tlu(_) => node.fact.len(),
                Op::MaxPool(p) if node.fact.dtype == fhec_ir::DType::I64 => {
                    node.fact.len() * (p.kernel.iter().product::<usize>().saturating_sub(1))
                }
                _ => 0,
            }
        })
        .sum()
}

/// Largest worst-case accumulator width in the report.
pub fn max_accumulator_bits(layers: &[LayerBits]) -> u32 {
    layers.iter().map(|l| l.worst_bits).max().unwrap_or(0)
}
