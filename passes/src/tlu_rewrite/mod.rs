//! TLU rewrites with egg: fewer and cheaper table lookups in an integer graph.
//!
//! In FHE every element of a table lookup (`Op::Tlu`) is one programmable bootstrap, the
//! expensive operation, and a bootstrap's cost roughly doubles with each bit of the table's
//! input. Integer adds, subtracts and multiplications by constants are nearly free. This
//! pass rewrites the integer dataflow around the lookups so the circuit needs fewer
//! bootstraps, or narrower ones, and computes exactly what
//! [`int_interp`](fhec_ir::int_interp) computed before, bit for bit, on every input it
//! accepted. It does nothing to a float graph.
//!
//! # How
//!
//! 1. `convert::build` puts the integer dataflow into an [e-graph](egg) of the small language
//!    `lang::IntLang`: `(tlu T x)`, `(add x y)`, `(sub x y)`, `(mul x y)`, and leaves:
//!    `Table` (the attributes of a lookup), `Const` (an `IntConst`) and `Opaque` (any other
//!    node: Gemm, Conv, Quantize, ...; its inputs are not seen). The tables and constants
//!    live in a side arena, `lang::Arena`, which is also the e-graph analysis: it gives every
//!    e-class its tensor shape and records who uses each value.
//! 2. An egg [`Runner`] applies the rules below (`rules::rules`) until nothing new appears
//!    (or a node/iteration limit is reached). A rule never removes anything: it adds an
//!    equivalent term to the matched e-class, so the e-graph holds every combination of
//!    rewrites at once.
//! 3. `convert::Plan::extract` picks the cheapest term of every e-class the rest of the
//!    graph uses, under the cost model of `lang::node_cost`: `PBS_UNIT * 2^input_bits` per
//!    element of a lookup (plus one unit per table, to prefer a shared table), one unit per
//!    element of an add/sub/mul, leaves free.
//! 4. If that is cheaper than the graph, `convert::Plan::apply` builds the changed nodes,
//!    points their users at them and drops the dead ones.
//!
//! # Rewrites
//!
//! Each one holds exactly; `tables` has the arithmetic and says how domains are kept.
//!
//! - **merge-chain** `Tlu(Tlu(x, t1), t2) → Tlu(x, t2 ∘ t1)`: two bootstraps become one on
//!   the inner lookup's domain; the composed table applies the outer rounding to the inner
//!   entries. A per-tensor and a per-channel table compose into a per-channel one; two
//!   per-channel tables must share their axis. Only when the inner lookup has no other user
//!   (else it stays and nothing is saved) and every inner entry lies in the outer domain.
//! - **drop-identity** `Tlu(x, id) → x`: a table without rounding that maps every value of
//!   its domain to itself costs a bootstrap for nothing.
//! - **fold-add / fold-sub** `Tlu(x ± c) → Tlu'(x)` for an integer constant `c`, one value or
//!   one per channel along an axis: the table's domain moves instead of the values. A lookup
//!   indexes its table with `round((acc - input_min) / 2^shift)`, so a scalar only moves
//!   `input_min`, rounding or not. Per-channel offsets re-index each channel's table onto
//!   one `input_min` (the TLU becomes per-channel along the constant's axis); under rounding
//!   they must agree modulo `2^shift`, so each table moves by whole entries. Only when the
//!   add has no other user. The add is cheap, so this mostly shortens the graph; extraction
//!   declines it when the re-indexed tables would need a wider input.
//! - **fold-mul** `Tlu(x * k) → Tlu'(x)` for a positive integer scalar `k`: the table is
//!   resampled at the multiples of `k` over exactly the `x` it accepted, which also narrows
//!   its input by about `log2(k)` bits (a rounding table becomes a plain one; extraction
//!   declines it when that is wider).
//! - **share-tables** a per-channel TLU whose tables are all equal → one per-tensor table.
//! - **common lookups** two equal lookups of one input are one e-node (the arena gives equal
//!   tables one index and the e-graph hash-conses), so they become one node; lookups that
//!   other rewrites make equal merge the same way.
//! - **add-commute / mul-commute** let the folds find `c + x` and `c * x` too.
//!
//! The pipeline runs this pass on the integer graph, after quantisation; on graphs straight
//! from quantisation it finds few chances (quantisation already fuses each univariate chain
//! into one table), but later passes and hand-written integer graphs create them.

mod convert;
mod lang;
mod rules;
mod tables;

use std::time::Duration;

use egg::{Runner, SimpleScheduler, StopReason};
use fhec_ir::{Graph, IrError, Op};

use crate::{Pass, PassContext};

pub use lang::{LINEAR_UNIT, PBS_UNIT};

/// TLU rewrites on the integer graph.
pub const PASS: Pass = Pass {
    name: "tlu_rewrite",
    summary: "merge, fold, share and drop table lookups of the integer graph (egg e-graph)",
    run,
};

/// E-graph size at which the runner stops (the result is still exact, maybe not optimal).
const NODE_LIMIT: usize = 50_000;
const ITER_LIMIT: usize = 30;
/// A safety net only: fixture graphs saturate in milliseconds.
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let (egraph, dataflow) = convert::build(g);
    if dataflow.nodes.is_empty() {
        return Ok(());
    }
    let before = dataflow.cost(&egraph);
    let runner = Runner::default()
        .with_egraph(egraph)
        .with_scheduler(SimpleScheduler)
        .with_node_limit(NODE_LIMIT)
        .with_iter_limit(ITER_LIMIT)
        .with_time_limit(TIME_LIMIT)
        .run(&rules::rules());
    let egraph = runner.egraph;
    let plan = convert::Plan::extract(&egraph, &dataflow);
    let after = plan.cost(&egraph);
    if after >= before {
        return Ok(());
    }
    let tlus_before = tlu_count(g);
    for change in plan.apply(g, &egraph, &dataflow)? {
        ctx.note(change);
    }
    let stopped = match runner.stop_reason {
        Some(StopReason::Saturated) | None => String::new(),
        Some(reason) => format!(" (e-graph not saturated: {reason:?})"),
    };
    ctx.note(format!(
        "{tlus_before} -> {} TLU nodes, estimated cost {before} -> {after}{stopped}",
        tlu_count(g)
    ));
    Ok(())
}

/// Number of table-lookup nodes of a graph.
pub fn tlu_count(g: &Graph) -> usize {
    g.node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::Tlu(_)))
        .count()
}

/// The cost model's estimate for the graph's lookups and integer adds/subs/muls (see the
/// module documentation); 0 for a float graph.
pub fn estimated_cost(g: &Graph) -> u64 {
    let (egraph, dataflow) = convert::build(g);
    dataflow.cost(&egraph)
}
