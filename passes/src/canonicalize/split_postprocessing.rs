//! Splits client-side post-processing off the graph outputs.
//!
//! A `Softmax` at the end of an output (possibly followed by layout ops: `Reshape`,
//! `Transpose`, `Identity`) is removed from the graph and recorded in
//! [`PipelineReport::postprocessing`](crate::PipelineReport), for the client to apply to the
//! decrypted output. Softmax is monotone along its axis, so the argmax (the prediction) is
//! the same with or without it, and it costs a lot under FHE.

use fhec_ir::{Graph, IrError, NodeId, Op};

use crate::{Pass, PassContext, PostOp};

pub const PASS: Pass = Pass {
    name: "split_postprocessing",
    summary: "move a final Softmax chain from the graph outputs to the client",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let mut outputs = g.outputs().to_vec();
    let mut changed = false;
    for (k, out) in outputs.iter_mut().enumerate() {
        let chain = tail_chain(g, *out);
        // The split part must start (in execution order) with a Softmax.
        let Some(first) = chain
            .iter()
            .rposition(|&n| matches!(g.node(n).op, Op::Softmax { .. }))
        else {
            continue;
        };
        for &n in chain[..=first].iter().rev() {
            let node = g.node(n);
            ctx.note(format!(
                "output {k}: moved {} '{}' to the client",
                node.op.name(),
                node.name
            ));
            ctx.report.postprocessing.push(PostOp {
                output: k,
                node: node.name.clone(),
                op: node.op.clone(),
            });
        }
        *out = g.node_inputs(chain[first])[0];
        changed = true;
    }
    if changed {
        g.set_outputs(outputs);
        g.remove_dead_nodes();
    }
    Ok(())
}

/// The nodes ending at output `out`, last first, that only feed that output: Softmax and
/// layout ops, each the sole input of the next.
fn tail_chain(g: &Graph, out: NodeId) -> Vec<NodeId> {
    let is_post = |n: NodeId| {
        matches!(
            g.node(n).op,
            Op::Softmax { .. } | Op::Reshape { .. } | Op::Transpose { .. } | Op::Identity
        )
    };
    let mut chain = vec![];
    if !g.consumers(out).is_empty() || g.outputs().iter().filter(|&&o| o == out).count() != 1 {
        return chain;
    }
    let mut cur = out;
    while is_post(cur) {
        chain.push(cur);
        let x = g.node_inputs(cur)[0];
        if g.outputs().contains(&x) || g.consumers(x).len() != 1 {
            break;
        }
        cur = x;
    }
    chain
}
