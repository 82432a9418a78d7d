//! Turns 2-D `MatMul(x, W const)` into `Gemm`, the canonical linear op, absorbing a following
//! `Add` of a constant bias (tf2onnx's Dense is `MatMul` + `Add`).

use fhec_ir::{BinaryOp, GemmAttrs, Graph, IrError, NodeId, Op, Tensor};

use crate::util::sole_consumer;
use crate::{Pass, PassContext};

pub const PASS: Pass = Pass {
    name: "matmul_to_gemm",
    summary: "MatMul(x, W) (+ bias) with constant 2-D weights becomes one Gemm",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let mut changed = false;
    for id in g.topo_order() {
        if !matches!(g.node(id).op, Op::MatMul) {
            continue;
        }
        let ins = g.node_inputs(id);
        let two_d = g.node(ins[0]).fact.rank() == 2 && g.node(ins[1]).fact.rank() == 2;
        if !two_d || g.const_value(ins[1]).is_none() {
            continue;
        }
        g.node_mut(id).op = Op::Gemm(GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        });
        changed = true;
        match bias_add(g, id) {
            Some((add, c, bias)) => {
                // The bias constant keeps its node (and name) when nothing else uses it.
                let b = if sole_consumer(g, c) == Some(add) {
                    g.node_mut(c).op = Op::Const(bias);
                    g.reinfer(c)?;
                    c
                } else {
                    g.add_node(g.node(c).name.clone(), Op::Const(bias), &[])?
                };
                g.set_node_inputs(id, &[ins[0], ins[1], b])?;
                g.replace_uses(add, id);
                ctx.note(format!(
                    "MatMul '{}' + Add '{}' -> Gemm",
                    g.node(id).name,
                    g.node(add).name
                ));
            }
            None => ctx.note(format!("MatMul '{}' -> Gemm", g.node(id).name)),
        }
    }
    if changed {
        g.remove_dead_nodes();
    }
    Ok(())
}

/// The `Add` of a constant that only follows `mm`, its constant input, and that constant as
/// a Gemm bias (one value per column when it is constant down the rows).
fn bias_add(g: &Graph, mm: NodeId) -> Option<(NodeId, NodeId, Tensor)> {
    let add = sole_consumer(g, mm)?;
    if g.node(add).op != Op::Binary(BinaryOp::Add) {
        return None;
    }
    let ins = g.node_inputs(add);
    let slot = if ins[0] == mm { 1 } else { 0 };
    let c_id = ins[slot];
    let c = g.const_value(c_id)?;
    let out = &g.node(mm).fact.shape;
    if g.node(add).fact.shape != *out {
        return None;
    }
    let n = out[1];
    Some(match c.broadcast(ndarray::IxDyn(&[1, n])) {
        Some(row) => row
            .to_owned()
            .into_shape_with_order(ndarray::IxDyn(&[n]))
            .ok()?,
        None => c.clone(),
    })
    .map(|bias| (add, c_id, bias))
}
