//! Table arithmetic behind the rewrites: pure functions from [`Tlu`]s to [`Tlu`]s, no e-graph.
//!
//! Every function returns a table that computes exactly what its inputs computed on every
//! value they could look up, or `None` when it cannot (the rewrite then does not fire).

use fhec_ir::quant::Tlu;

/// Longest table (entries per channel) a rewrite may build.
pub const MAX_TABLE_LEN: i64 = 1 << 16;

/// A constant added to a TLU's input: one value, or one per index of `axis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offset {
    Scalar(i64),
    PerChannel { axis: usize, values: Vec<i64> },
}

/// The table of `t` used for channel `ch` (a per-tensor TLU has one table for all).
fn table_of(t: &Tlu, ch: usize) -> usize {
    if t.axis.is_some() {
        ch
    } else {
        0
    }
}

/// Whether `t` returns its (unrounded) input for every value of its domain.
pub fn is_identity(t: &Tlu) -> bool {
    t.rounding.is_none_or(|r| r.shift == 0)
        && t.tables.iter().all(|table| {
            (t.input_min..)
                .zip(table)
                .all(|(expected, &v)| v == expected)
        })
}

/// `outer ∘ inner`: one table on the inner table's domain (and rounding) whose entries are
/// the outer table's lookups (with its rounding) of the inner table's entries.
///
/// Per-tensor and per-channel tables combine freely; two per-channel tables must share their
/// axis. `None` when an inner entry falls outside the outer domain (the chain would fail
/// there, which one table cannot express).
pub fn compose(inner: &Tlu, outer: &Tlu) -> Option<Tlu> {
    let axis = match (inner.axis, outer.axis) {
        (a, None) | (None, a) => a,
        (Some(a), Some(b)) if a == b => Some(a),
        _ => return None,
    };
    let channels = inner.tables.len().max(outer.tables.len());
    let tables = (0..channels)
        .map(|ch| {
            inner.tables[table_of(inner, ch)]
                .iter()
                .map(|&y| outer.lookup(table_of(outer, ch), y))
                .collect::<Option<Vec<i64>>>()
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Tlu {
        input_min: inner.input_min,
        rounding: inner.rounding,
        tables,
        axis,
    })
}

/// A per-channel TLU whose tables are all equal, as one per-tensor table.
pub fn share(t: &Tlu) -> Option<Tlu> {
    let first = t.tables.first()?;
    (t.axis.is_some() && t.tables.iter().all(|table| table == first)).then(|| Tlu {
        axis: None,
        tables: vec![first.clone()],
        ..t.clone()
    })
}

/// `t` applied to `x + d`, as a table on `x`.
///
/// A lookup indexes its table with `round((acc - input_min) / 2^shift)`, so a scalar offset
/// only moves `input_min`, with or without rounding. Per-channel offsets `d[k]` share the
/// largest one's `input_min`; channel `k` then looks up `(max d - d[k]) / 2^shift` entries
/// further, so its table is shifted by that many entries (which must be whole: the offsets
/// must agree modulo `2^shift`), padded in front with its first entry (offsets the original
/// lookup rejected) and at the end with its last, to one common length.
pub fn fold_offset(t: &Tlu, d: &Offset) -> Option<Tlu> {
    let (axis, values) = match d {
        Offset::Scalar(v) => {
            return Some(Tlu {
                input_min: t.input_min.checked_sub(*v)?,
                ..t.clone()
            })
        }
        Offset::PerChannel { axis, values } => (*axis, values),
    };
    if t.axis.is_some_and(|a| a != axis) {
        return None;
    }
    let step = 1i64 << t.rounding.map_or(0, |r| r.shift);
    let top = *values.iter().max()?;
    // Entries channel k's table moves by.
    let lead: Vec<usize> = values
        .iter()
        .map(|&dk| {
            let gap = top - dk;
            (gap % step == 0).then_some((gap / step) as usize)
        })
        .collect::<Option<_>>()?;
    let channel = |k: usize| &t.tables[table_of(t, k)];
    let len = (0..values.len())
        .map(|k| channel(k).len() + lead[k])
        .max()?;
    if len as i64 > MAX_TABLE_LEN {
        return None;
    }
    let tables = lead
        .iter()
        .enumerate()
        .map(|(k, &j)| {
            let table = channel(k);
            (0..len)
                .map(|i| table[i.saturating_sub(j).min(table.len() - 1)])
                .collect()
        })
        .collect();
    Some(Tlu {
        input_min: t.input_min.checked_sub(top)?,
        rounding: t.rounding,
        tables,
        axis: Some(axis),
    })
}

/// `t` applied to `x * k` (`k > 0`), as a table without rounding on `x`: each channel's
/// domain is exactly the `x` whose product `t` can look up, so nothing that failed before
/// succeeds and nothing that succeeded fails.
pub fn fold_scale(t: &Tlu, k: i64) -> Option<Tlu> {
    if k <= 0 {
        return None;
    }
    let ranges: Vec<(i64, i64)> = (0..t.tables.len())
        .map(|ch| {
            let (lo, hi) = accepted(t, ch)?;
            // ceil(lo / k) ..= floor(hi / k)
            Some((-((-lo).div_euclid(k)), hi.div_euclid(k)))
        })
        .collect::<Option<_>>()?;
    let (input_min, tables) = resample(&ranges, |ch, x| t.lookup(ch, x.checked_mul(k)?))?;
    Some(Tlu {
        input_min,
        rounding: None,
        tables,
        axis: t.axis,
    })
}

/// The accumulator values table `ch` of `t` accepts: from `input_min` to the last one whose
/// rounded offset still indexes the table.
fn accepted(t: &Tlu, ch: usize) -> Option<(i64, i64)> {
    let len = t.tables[ch].len() as i64;
    let span = match t.rounding {
        // (v + h) >> s <= len - 1  iff  v <= len * 2^s - h - 1
        Some(r) if r.shift > 0 => {
            let h = 1i64 << (r.shift - 1);
            len.checked_mul(1i64.checked_shl(r.shift)?)? - h - 1
        }
        _ => len - 1,
    };
    Some((t.input_min, t.input_min.checked_add(span)?))
}

/// Per-channel tables on one shared domain: channel `k` is `f(k, x)` on its range
/// `lo_k ..= hi_k`, extended by its edge values to the union of all ranges. `None` when a
/// range is empty, the union is longer than [`MAX_TABLE_LEN`] or `f` fails.
fn resample(
    ranges: &[(i64, i64)],
    f: impl Fn(usize, i64) -> Option<i64>,
) -> Option<(i64, Vec<Vec<i64>>)> {
    let lo = ranges.iter().map(|r| r.0).min()?;
    let hi = ranges.iter().map(|r| r.1).max()?;
    if ranges.iter().any(|r| r.0 > r.1) || hi.checked_sub(lo)? >= MAX_TABLE_LEN {
        return None;
    }
    let tables = ranges
        .iter()
        .enumerate()
        .map(|(k, &(a, b))| (lo..=hi).map(|x| f(k, x.clamp(a, b))).collect())
        .collect::<Option<_>>()?;
    Some((lo, tables))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhec_ir::quant::{Rounding, RoundingMode};

    fn tlu(input_min: i64, tables: Vec<Vec<i64>>, axis: Option<usize>) -> Tlu {
        Tlu {
            input_min,
            rounding: None,
            tables,
            axis,
        }
    }

    fn rounding(shift: u32) -> Option<Rounding> {
        Some(Rounding {
            shift,
            mode: RoundingMode::Exact,
        })
    }

    #[test]
    fn identity_needs_every_entry_and_no_rounding() {
        assert!(is_identity(&tlu(-2, vec![vec![-2, -1, 0, 1]], None)));
        assert!(!is_identity(&tlu(-2, vec![vec![-2, -1, 0, 2]], None)));
        let mut t = tlu(0, vec![vec![0, 1]], None);
        t.rounding = rounding(1);
        assert!(!is_identity(&t));
    }

    #[test]
    fn compose_equals_both_lookups() {
        let inner = tlu(-1, vec![vec![0, 4, 9], vec![1, 2, 3]], Some(1));
        let mut outer = tlu(0, vec![vec![10, 11, 12, 13, 14, 15]], None);
        outer.rounding = rounding(1);
        let c = compose(&inner, &outer).unwrap();
        for ch in 0..2 {
            for acc in -1..=1 {
                let want = outer.lookup(0, inner.lookup(ch, acc).unwrap());
                assert_eq!(c.lookup(ch, acc), want);
            }
        }
        // 9 rounds to 5, inside; an entry of 12 would round to 6, outside.
        let bad = tlu(0, vec![vec![12]], None);
        assert!(compose(&bad, &outer).is_none());
    }

    #[test]
    fn offsets_fold_exactly() {
        let mut t = tlu(-5, vec![vec![5, 6, 7, 8], vec![1, 2, 3, 4]], Some(1));
        for (shift, values, folds) in [
            (0, vec![0, 2], true),
            (1, vec![3, -1], true),
            (1, vec![3, 0], false),
        ] {
            t.rounding = rounding(shift);
            let d = Offset::PerChannel { axis: 1, values };
            let Some(f) = fold_offset(&t, &d) else {
                assert!(!folds, "{d:?}");
                continue;
            };
            assert!(folds, "{d:?}");
            let Offset::PerChannel { values, .. } = d else {
                unreachable!()
            };
            for (ch, dk) in values.into_iter().enumerate() {
                for x in -20..20 {
                    if let Some(want) = t.lookup(ch, x + dk) {
                        assert_eq!(f.lookup(ch, x), Some(want), "x = {x}, d = {dk}");
                    }
                }
            }
        }
        let f = fold_offset(&t, &Offset::Scalar(3)).unwrap();
        for x in -20..20 {
            assert_eq!(f.lookup(0, x), t.lookup(0, x + 3));
        }
    }

    #[test]
    fn scale_keeps_exactly_the_accepted_inputs() {
        let mut t = tlu(-3, vec![(0..8).map(|i| i * i).collect()], None);
        t.rounding = rounding(2);
        let f = fold_scale(&t, 3).unwrap();
        for x in -40..40 {
            assert_eq!(f.lookup(0, x), t.lookup(0, 3 * x), "x = {x}");
        }
    }
}
