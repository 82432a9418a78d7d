//! Drops `Identity` nodes (the frontend imports inference `Dropout` as `Identity` too).

use fhec_ir::{Graph, IrError, Op};

use crate::{Pass, PassContext};

pub const PASS: Pass = Pass {
    name: "drop_identity",
    summary: "drop Identity/Dropout nodes",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let mut changed = false;
    for id in g.topo_order() {
        if matches!(g.node(id).op, Op::Identity) {
            let x = g.node_inputs(id)[0];
            g.replace_uses(id, x);
            ctx.note(format!("dropped Identity '{}'", g.node(id).name));
            changed = true;
        }
    }
    if changed {
        g.remove_dead_nodes();
    }
    Ok(())
}
