//! Stable text form of a graph: what snapshot tests compare and `fhec inspect` shows.
//!
//! Nodes are numbered in topological order, so the text depends only on the graph's
//! structure, ops and facts, never on node handles. Large constants are summarised.

use std::collections::HashMap;
use std::fmt::Write;

use crate::graph::{Graph, NodeId};
use crate::op::{Op, PadMode, UnaryOp};
use crate::Tensor;

/// Renders the whole graph.
pub fn print_graph(graph: &Graph) -> String {
    let order = graph.topo_order();
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut out = String::from("graph {\n");
    for &id in &order {
        let node = graph.node(id);
        let args: Vec<String> = graph
            .node_inputs(id)
            .iter()
            .map(|i| format!("%{}", num[i]))
            .collect();
        let body = match &node.op {
            Op::Input => format!("input {}", node.fact),
            Op::Const(t) => format!("const {} {}", node.fact, summarize(t)),
            Op::IntConst(a) => format!("const {} {}", node.fact, summarize_ints(a.iter().copied())),
            op => format!(
                "{}{} ({}) : {}",
                op.name(),
                attrs(op),
                args.join(", "),
                node.fact
            ),
        };
        let _ = writeln!(out, "  %{} = {body}  # {}", num[&id], node.name);
    }
    let outs: Vec<String> = graph
        .outputs()
        .iter()
        .map(|o| format!("%{}", num[o]))
        .collect();
    let _ = writeln!(out, "  return {}\n}}", outs.join(", "));
    out
}

fn f(x: f32) -> String {
    // Four significant decimals, with -0 shown as 0 so the text is stable.
    let s = format!("{:.4}", x);
    if s == "-0.0000" {
        "0.0000".into()
    } else {
        s
    }
}

/// Small constants in full, large ones as min/max/mean.
pub fn summarize(t: &Tensor) -> String {
    if t.len() <= 8 {
        let vals: Vec<String> = t.iter().map(|&x| f(x)).collect();
        return format!("[{}]", vals.join(", "));
    }
    let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
    for &x in t {
        lo = lo.min(x);
        hi = hi.max(x);
        sum += x as f64;
    }
    format!(
        "{{min {}, max {}, mean {}}}",
        f(lo),
        f(hi),
        f((sum / t.len() as f64) as f32)
    )
}

/// Small integer tensors in full, large ones as min/max plus a checksum (so any change shows).
pub fn summarize_ints(values: impl ExactSizeIterator<Item = i64> + Clone) -> String {
    let len = values.len();
    if len <= 16 {
        let v: Vec<String> = values.map(|x| x.to_string()).collect();
        return format!("[{}]", v.join(", "));
    }
    let (lo, hi) = values
        .clone()
        .fold((i64::MAX, i64::MIN), |(l, h), x| (l.min(x), h.max(x)));
    // FNV-1a over the values: stable across platforms.
    let hash = values.fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{{len {len}, min {lo}, max {hi}, fnv {:08x}}}", hash as u32)
}

fn qparams(q: &crate::quant::QParams) -> Vec<String> {
    vec![
        format!("scale={:e}", q.scale),
        format!("zp={}", q.zero_point),
        format!("bits={}{}", q.bits, if q.signed { "s" } else { "u" }),
    ]
}

fn list(v: &[usize]) -> String {
    let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", s.join(","))
}

fn pads(p: &[(usize, usize)]) -> String {
    let s: Vec<String> = p.iter().map(|(a, b)| format!("{a}+{b}")).collect();
    format!("[{}]", s.join(","))
}

/// The op's attributes in `{k=v, ...}` form (empty when it has none).
pub fn attrs(op: &Op) -> String {
    let kv: Vec<String> = match op {
        Op::Unary(u) => match u {
            UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } => {
                vec![format!("alpha={}", f(*alpha))]
            }
            UnaryOp::HardSigmoid { alpha, beta } => {
                vec![format!("alpha={}", f(*alpha)), format!("beta={}", f(*beta))]
            }
            UnaryOp::Selu { alpha, gamma } => {
                vec![
                    format!("alpha={}", f(*alpha)),
                    format!("gamma={}", f(*gamma)),
                ]
            }
            UnaryOp::Gelu { tanh_approx: true } => vec!["approximate=tanh".into()],
            UnaryOp::Clip { min, max } => {
                vec![format!("min={}", f(*min)), format!("max={}", f(*max))]
            }
            _ => vec![],
        },
        Op::Gemm(g) => {
            let mut v = vec![];
            if g.alpha != 1.0 {
                v.push(format!("alpha={}", f(g.alpha)));
            }
            if g.beta != 1.0 {
                v.push(format!("beta={}", f(g.beta)));
            }
            if g.trans_a {
                v.push("transA".into());
            }
            if g.trans_b {
                v.push("transB".into());
            }
            v
        }
        Op::Conv(c) => vec![
            format!("strides={}", list(&c.strides)),
            format!("dilations={}", list(&c.dilations)),
            format!("pads={}", pads(&c.pads)),
            format!("group={}", c.group),
        ],
        Op::AveragePool(p) | Op::MaxPool(p) | Op::SumPool(p) => {
            let mut v = vec![
                format!("kernel={}", list(&p.kernel)),
                format!("strides={}", list(&p.strides)),
                format!("pads={}", pads(&p.pads)),
            ];
            if p.dilations.iter().any(|&d| d != 1) {
                v.push(format!("dilations={}", list(&p.dilations)));
            }
            if p.ceil_mode {
                v.push("ceil_mode".into());
            }
            if matches!(op, Op::AveragePool(_)) && p.count_include_pad {
                v.push("count_include_pad".into());
            }
            v
        }
        Op::BatchNorm { epsilon } => vec![format!("epsilon={epsilon:e}")],
        Op::Softmax { axis } | Op::Concat { axis } => vec![format!("axis={axis}")],
        Op::Reshape { shape } => vec![format!("shape={}", list(shape))],
        Op::Transpose { perm } => vec![format!("perm={}", list(perm))],
        Op::Pad {
            pads: p,
            mode,
            value,
        } => {
            let mut v = vec![format!("pads={}", pads(p))];
            match mode {
                PadMode::Constant => v.push(format!("value={}", f(*value))),
                PadMode::Reflect => v.push("mode=reflect".into()),
                PadMode::Edge => v.push("mode=edge".into()),
            }
            v
        }
        Op::Cast { to } => vec![format!("to={to}")],
        Op::Quantize(q) | Op::Dequantize(q) => qparams(q),
        Op::DequantizeChannels { params, scales } => {
            let mut v = qparams(params);
            let s: Vec<String> = scales.iter().map(|&x| f(x)).collect();
            v.push(format!("channel_scales=[{}]", s.join(",")));
            v
        }
        Op::Tlu(t) => {
            let mut v = vec![
                format!("in_min={}", t.input_min),
                format!("in_bits={}", t.input_bits()),
            ];
            if let Some(r) = t.rounding {
                v.push(format!("round={}:{:?}", r.shift, r.mode).to_lowercase());
            }
            if let Some(a) = t.axis {
                v.push(format!("axis={a}"));
            }
            for (i, table) in t.tables.iter().enumerate().take(4) {
                v.push(format!("t{i}={}", summarize_ints(table.iter().copied())));
            }
            if t.tables.len() > 4 {
                v.push(format!("+{} tables", t.tables.len() - 4));
            }
            v
        }
        Op::QuantizeLinear(q) | Op::DequantizeLinear(q) => {
            let mut v = vec![format!("dtype={}", q.dtype)];
            if let Some(a) = q.axis {
                v.push(format!("axis={a}"));
            }
            v
        }
        _ => vec![],
    };
    if kv.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", kv.join(", "))
    }
}
