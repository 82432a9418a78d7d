//! Removes layout work that does not move data or that the next linear layer can absorb:
//!
//! * a `Transpose` with the identity permutation, or two that compose to it, disappears;
//!   consecutive `Transpose`s become one;
//! * a `Transpose` that only moves size-1 axes keeps row-major order: it becomes a `Reshape`;
//! * consecutive `Reshape`s become one, and a `Reshape` to its input's shape disappears;
//! * `Transpose -> Reshape [1, K] -> Gemm` (Keras flattening NHWC) becomes
//!   `Reshape [1, K] -> Gemm` with the Gemm's weight rows permuted to match.

use fhec_ir::{Graph, IrError, NodeId, Op};
use ndarray::Axis;

use crate::util::{const_input, exists, set_const_inputs, sole_consumer};
use crate::{Pass, PassContext};

pub const PASS: Pass = Pass {
    name: "simplify_layout",
    summary: "cancel, merge and drop Transpose/Reshape; fold a flatten's transpose into the Gemm",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    loop {
        let mut changed = false;
        for id in g.topo_order() {
            if exists(g, id) && rewrite(g, id, ctx)? {
                g.remove_dead_nodes();
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

/// Applies the first rule that matches `id`; whether one did.
fn rewrite(g: &mut Graph, id: NodeId, ctx: &mut PassContext) -> Result<bool, IrError> {
    let name = g.node(id).name.clone();
    let ins = g.node_inputs(id);
    let Some(&x) = ins.first() else {
        return Ok(false);
    };
    match g.node(id).op.clone() {
        Op::Transpose { perm } => {
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                g.replace_uses(id, x);
                ctx.note(format!("dropped identity Transpose '{name}'"));
                return Ok(true);
            }
            if let Op::Transpose { perm: inner } = &g.node(x).op {
                let composed: Vec<usize> = perm.iter().map(|&p| inner[p]).collect();
                let x2 = g.node_inputs(x)[0];
                ctx.note(format!(
                    "merged Transpose '{}' into Transpose '{name}'",
                    g.node(x).name
                ));
                g.node_mut(id).op = Op::Transpose { perm: composed };
                g.set_node_inputs(id, &[x2])?;
                return Ok(true);
            }
            let shape = &g.node(x).fact.shape;
            let moved: Vec<usize> = perm.iter().copied().filter(|&a| shape[a] != 1).collect();
            if moved.windows(2).all(|w| w[0] < w[1]) {
                let out = g.node(id).fact.shape.clone();
                g.node_mut(id).op = Op::Reshape { shape: out };
                ctx.note(format!(
                    "Transpose '{name}' only moves size-1 axes -> Reshape"
                ));
                return Ok(true);
            }
            fold_into_gemm(g, id, &perm, ctx)
        }
        Op::Reshape { .. } => {
            if g.node(id).fact.shape == g.node(x).fact.shape {
                g.replace_uses(id, x);
                ctx.note(format!("dropped no-op Reshape '{name}'"));
                return Ok(true);
            }
            if matches!(g.node(x).op, Op::Reshape { .. }) {
                let x2 = g.node_inputs(x)[0];
                ctx.note(format!(
                    "merged Reshape '{}' into Reshape '{name}'",
                    g.node(x).name
                ));
                g.set_node_inputs(id, &[x2])?;
                return Ok(true);
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// `Transpose(x) -> Reshape [1, K] -> Gemm(A, W)`: with one row, the flattened vector is a
/// permutation of `x`'s elements, so permuting `W`'s K axis lets the Gemm read `x` flattened
/// directly.
fn fold_into_gemm(
    g: &mut Graph,
    t: NodeId,
    perm: &[usize],
    ctx: &mut PassContext,
) -> Result<bool, IrError> {
    let Some(r) = sole_consumer(g, t) else {
        return Ok(false);
    };
    let Op::Reshape { shape } = &g.node(r).op else {
        return Ok(false);
    };
    if shape.len() != 2 || shape[0] != 1 {
        return Ok(false);
    }
    let Some(gm) = sole_consumer(g, r) else {
        return Ok(false);
    };
    let Op::Gemm(a) = &g.node(gm).op else {
        return Ok(false);
    };
    let (trans_b, trans_a) = (a.trans_b, a.trans_a);
    if trans_a || g.node_inputs(gm)[0] != r {
        return Ok(false);
    }
    let Some(w) = const_input(g, gm, 1) else {
        return Ok(false);
    };
    let x = g.node_inputs(t)[0];
    let src = g.node(x).fact.shape.clone();
    let dst = g.node(t).fact.shape.clone();
    // Flat index in `x` of each flat index of the transposed tensor.
    let mut src_of = vec![0usize; shape[1]];
    let mut idx = vec![0usize; dst.len()];
    let mut xi = vec![0usize; src.len()];
    for (f, s) in src_of.iter_mut().enumerate() {
        let mut rest = f;
        for (i, &d) in idx.iter_mut().zip(&dst).rev() {
            *i = rest % d;
            rest /= d;
        }
        for (i, &p) in perm.iter().enumerate() {
            xi[p] = idx[i];
        }
        *s = xi.iter().zip(&src).fold(0, |acc, (&i, &d)| acc * d + i);
    }
    // Row e of the new weights is the row that multiplied x's element e.
    let mut rows = vec![0usize; src_of.len()];
    for (f, &e) in src_of.iter().enumerate() {
        rows[e] = f;
    }
    let k_axis = if trans_b { 1 } else { 0 };
    let w = w.select(Axis(k_axis), &rows);
    g.set_node_inputs(r, &[x])?;
    set_const_inputs(g, gm, vec![(1, w)])?;
    ctx.note(format!(
        "folded Transpose '{}' before flatten '{}' into the weights of Gemm '{}'",
        g.node(t).name,
        g.node(r).name,
        g.node(gm).name
    ));
    Ok(true)
}
