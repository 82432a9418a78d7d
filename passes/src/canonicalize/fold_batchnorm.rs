//! Folds per-output-channel affine ops into the `Conv`/`Gemm` they follow.
//!
//! * Inference `BatchNorm`: per channel `k = scale / sqrt(var + eps)`, so
//!   `W' = W * k` and `b' = (b - mean) * k + beta`.
//! * Keras BatchNorm as tf2onnx exports it, `Mul(x, k)` then `Add(x, d)`, and more generally
//!   any `Mul`/`Add`/`Sub`/`Div` by a constant that is uniform within each output channel.
//!
//! The linear op must have constant weights and no other consumer. A BatchNorm that cannot be
//! folded stays: it is a per-channel affine op that a later pass fuses into a TLU.

use fhec_ir::{BinaryOp, Graph, IrError, NodeId, Op};

use crate::util::{const_input, exists, per_channel, sole_consumer, Linear};
use crate::{Pass, PassContext};

pub const PASS: Pass = Pass {
    name: "fold_batchnorm",
    summary: "fold BatchNorm and per-channel Mul/Add into the preceding Conv/Gemm",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    for id in g.topo_order() {
        if !exists(g, id) {
            continue;
        }
        let ins = g.node_inputs(id);
        // The linear producer among the inputs, and the per-channel affine map `x*k + d`
        // (`k` None: 1) that this node applies to it.
        let (lin_id, k, d) = match g.node(id).op {
            Op::BatchNorm { epsilon } => {
                let Some(p) = (1..5)
                    .map(|s| const_input(g, id, s).map(|t| t.iter().copied().collect()))
                    .collect::<Option<Vec<Vec<f32>>>>()
                else {
                    continue;
                };
                let k: Vec<f32> = p[3]
                    .iter()
                    .zip(&p[0])
                    .map(|(&v, &s)| {
                        (f64::from(s) / (f64::from(v) + f64::from(epsilon)).sqrt()) as f32
                    })
                    .collect();
                let d = (0..k.len()).map(|c| p[1][c] - p[2][c] * k[c]).collect();
                (ins[0], Some(k), d)
            }
            Op::Binary(op) if ins.len() == 2 && ins[0] != ins[1] => {
                let Some((x, slot)) = [(ins[0], 1), (ins[1], 0)]
                    .into_iter()
                    .find(|&(x, s)| is_linear(g, x) && const_input(g, id, s).is_some())
                else {
                    continue;
                };
                let c = const_input(g, id, slot).expect("checked");
                let Some(c) = per_channel(c, &g.node(x).fact.shape) else {
                    continue;
                };
                let n = c.len();
                let x_first = slot == 1;
                match (op, x_first) {
                    (BinaryOp::Mul, _) => (x, Some(c), vec![0.0; n]),
                    (BinaryOp::Add, _) => (x, None, c),
                    (BinaryOp::Sub, true) => (x, None, c.iter().map(|v| -v).collect()),
                    (BinaryOp::Sub, false) => (x, Some(vec![-1.0; n]), c),
                    (BinaryOp::Div, true) if c.iter().all(|&v| v != 0.0) => {
                        (x, Some(c.iter().map(|v| 1.0 / v).collect()), vec![0.0; n])
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        if sole_consumer(g, lin_id) != Some(id) || g.node(id).fact != g.node(lin_id).fact {
            continue;
        }
        let Some(mut lin) = Linear::read(g, lin_id) else {
            continue;
        };
        if lin.outputs() != d.len() {
            continue;
        }
        if let Some(k) = &k {
            lin.scale_outputs(k);
        }
        lin.shift_outputs(&d);
        lin.write(g)?;
        g.replace_uses(id, lin_id);
        ctx.note(format!(
            "folded {} '{}' into {} '{}'",
            g.node(id).op.name(),
            g.node(id).name,
            g.node(lin_id).op.name(),
            g.node(lin_id).name
        ));
        // Drop the folded node now, so the linear op's next consumer sees it as sole user.
        g.remove_dead_nodes();
    }
    Ok(())
}

fn is_linear(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Gemm(_) | Op::Conv(_))
}
