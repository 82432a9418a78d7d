//! Table ranges: with `--ranges observed[:MARGIN]`, shrink every table's input domain from the
//! guaranteed worst case to the range the calibration data reaches, plus a margin.
//!
//! Quantisation sizes each table for the worst-case accumulator (interval arithmetic over the
//! weights), which is typically 2-3 bits wider than anything real data produces. A narrower
//! domain means fewer rounded-away bits (more accuracy at the same `--rounding-bits`) and,
//! with exact rounding, fewer bit-extraction bootstraps. The price: an input outside the
//! domain does not saturate in FHE, it reads the negacyclic wrap of the table
//! ([`fhec_ir::quant::negacyclic_read`]), which every engine reproduces; `fhec eval` counts
//! the samples where that happened.
//!
//! The pass runs after quantisation and before rounding; it only cuts entries off the ends of
//! tables, so on the calibration data the graph computes exactly what it computed before.
//! Tables that a max-pooling depends on keep their domain: a wrapped value widens the
//! guaranteed range of everything computed from it, and with it the comparison tables. Without calibration data (a QAT model compiled without
//! `--calib`) every table keeps its worst-case domain, and the report says so.

use fhec_ir::{Graph, IrError, Op};

use crate::bitwidth::{is_integer_graph, observed_ranges, worst_case_ranges};
use crate::context::{NarrowedTable, PassContext, TableRanges};
use crate::Pass;

pub const PASS: Pass = Pass {
    name: "table_ranges",
    summary: "narrow table domains to the calibration-observed range plus a margin",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let TableRanges::Observed { margin } = ctx.options.table_ranges else {
        return Ok(());
    };
    if !is_integer_graph(g) {
        return Ok(());
    }
    if ctx.calibration_inputs.is_empty() {
        ctx.note("no calibration data: every table keeps its worst-case domain");
        return Ok(());
    }
    let observed = observed_ranges(g, &ctx.calibration_inputs)?;
    let worst = worst_case_ranges(g)?;
    let ids: Vec<_> = g.node_ids().collect();
    for id in ids {
        let Op::Tlu(t) = &g.node(id).op else { continue };
        if t.rounding.is_some() {
            continue;
        }
        if reaches_max_pool(g, id) {
            continue;
        }
        let input = g.node_inputs(id)[0];
        let (Some(&(lo, hi)), Some(&(worst_lo, worst_hi))) =
            (observed.get(&input), worst.get(&input))
        else {
            continue;
        };
        let len = t.tables.iter().map(Vec::len).min().unwrap_or(0) as i64;
        let (dom_lo, dom_hi) = (t.input_min, t.input_min + len - 1);
        let pad = margin_entries(lo, hi, margin);
        let new_lo = (lo - pad).max(dom_lo);
        let new_hi = (hi + pad).min(dom_hi);
        if new_lo > new_hi || (new_lo, new_hi) == (dom_lo, dom_hi) {
            continue;
        }
        let mut narrowed = t.clone();
        narrowed.input_min = new_lo;
        let (from, to) = ((new_lo - dom_lo) as usize, (new_hi - dom_lo) as usize);
        for table in &mut narrowed.tables {
            *table = table[from..=to].to_vec();
        }
        let name = g.node(id).name.clone();
        ctx.note(format!(
            "{name}: domain [{dom_lo}, {dom_hi}] ({} bits) -> [{new_lo}, {new_hi}] ({} bits); \
             observed [{lo}, {hi}], margin {pad}, worst case [{worst_lo}, {worst_hi}]",
            t.input_bits(),
            narrowed.input_bits()
        ));
        ctx.report.narrowed_tables.push(NarrowedTable {
            node: name,
            before: (dom_lo, dom_hi),
            after: (new_lo, new_hi),
            observed: (lo, hi),
            margin: pad,
            bits_before: t.input_bits(),
            bits_after: narrowed.input_bits(),
        });
        g.node_mut(id).op = Op::Tlu(narrowed);
    }
    Ok(())
}

/// Whether a max-pooling depends on `id`. A read outside a narrowed domain can return the
/// negation of an entry, so every value computed from it gets a wider guaranteed range; a
/// max-pooling's comparison tables are sized from that range, so they would grow by a bit.
fn reaches_max_pool(g: &Graph, id: fhec_ir::NodeId) -> bool {
    let mut stack = vec![id];
    let mut seen = std::collections::HashSet::new();
    while let Some(n) = stack.pop() {
        for &c in g.consumers(n).iter() {
            if matches!(g.node(c).op, Op::MaxPool(_)) {
                return true;
            }
            if seen.insert(c) {
                stack.push(c);
            }
        }
    }
    false
}

/// Entries added on each side of the observed range `[lo, hi]`: `margin` times its width,
/// rounded up (at least one entry when `margin > 0`).
pub fn margin_entries(lo: i64, hi: i64, margin: f32) -> i64 {
    if margin <= 0.0 {
        return 0;
    }
    let width = (hi - lo).max(1) as f64;
    (width * margin as f64).ceil().max(1.0) as i64
}
