//! Rounding: keep only the top `R` bits of an accumulator wider than `R` before its table.
//!
//! A table lookup's cost grows steeply with its input precision. With `--rounding-bits R`,
//! every table whose input domain needs `B > R` bits reads `round((acc - input_min) /
//! 2^(B-R))` instead, and the table is rebuilt over that rounded domain by sampling the
//! original function at the centre of each rounding bucket.

use fhec_ir::{Graph, IrError, Op, Rounding};

use crate::context::PassContext;
use crate::Pass;

pub const PASS: Pass = Pass {
    name: "round_accumulators",
    summary: "round accumulators wider than --rounding-bits before their table lookup",
    run,
};

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let Some(opts) = ctx.options.rounding else {
        return Ok(());
    };
    if opts.bits == 0 {
        return Err(IrError::Invalid(
            "the rounding width must be at least 1 bit".into(),
        ));
    }
    let ids: Vec<_> = g.node_ids().collect();
    for id in ids {
        let Op::Tlu(t) = &g.node(id).op else { continue };
        let bits = t.input_bits();
        if bits <= opts.bits || t.rounding.is_some() {
            continue;
        }
        // Smallest shift whose rounded domain fits in 2^R entries. Rounding half up can
        // need one entry more than 2^R; moving `input_min` up by half a bucket (`delta`)
        // turns it into truncation, which fits, with each entry still sampled at the
        // centre of its bucket.
        let span = t.tables.iter().map(Vec::len).max().unwrap_or(1) as i64 - 1;
        let cap = 1i64 << opts.bits;
        let mut shift = bits - opts.bits;
        let (rounding, delta) = loop {
            let r = Rounding {
                shift,
                mode: opts.mode,
            };
            let half = 1i64 << (shift - 1);
            if r.apply(span) < cap {
                break (r, 0);
            }
            if r.apply(span - half) < cap {
                break (r, half);
            }
            shift += 1;
        };
        let tables: Vec<Vec<i64>> = t
            .tables
            .iter()
            .map(|table| {
                let last = table.len() as i64 - 1;
                let len = rounding.apply(span - delta) + 1;
                (0..len)
                    .map(|r| table[((r << shift) + delta).clamp(0, last) as usize])
                    .collect()
            })
            .collect();
        let mut t = t.clone();
        t.input_min += delta;
        t.tables = tables;
        t.rounding = Some(rounding);
        let name = g.node(id).name.clone();
        ctx.note(format!(
            "{name}: table input {bits} -> {} bits (shift {shift}, {:?})",
            t.input_bits(),
            opts.mode
        ));
        g.node_mut(id).op = Op::Tlu(t);
    }
    Ok(())
}
