//! Evaluates every node whose inputs are all constants into a `Const`.
//!
//! Quantize/dequantize ops stay: a `DequantizeLinear` of constant integer weights is how QCDQ
//! models (Brevitas) say their weights lie on a quantisation grid, which the quantisation
//! pass reads. Nodes of a non-float type stay too (a `Const` is always f32).

use fhec_ir::interp::eval_op;
use fhec_ir::{DType, Graph, IrError, Op};

use crate::{Pass, PassContext};

pub const PASS: Pass = Pass {
    name: "fold_constants",
    summary: "evaluate ops whose inputs are all constants",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let mut changed = false;
    for id in g.topo_order() {
        let node = g.node(id);
        let foldable = !matches!(
            node.op,
            Op::Input | Op::Const(_) | Op::QuantizeLinear(_) | Op::DequantizeLinear(_)
        ) && node.fact.dtype == DType::F32;
        let ins = g.node_inputs(id);
        if !foldable || ins.is_empty() {
            continue;
        }
        let Some(args) = ins
            .iter()
            .map(|&i| g.const_value(i))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        // An op the interpreter rejects is left for the backend to report.
        let Ok(value) = eval_op(&node.op, &args, &node.fact) else {
            continue;
        };
        ctx.note(format!("folded {} '{}'", node.op.name(), node.name));
        g.node_mut(id).op = Op::Const(value);
        g.set_node_inputs(id, &[])?;
        changed = true;
    }
    if changed {
        g.remove_dead_nodes();
    }
    Ok(())
}
