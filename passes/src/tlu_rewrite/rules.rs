//! The rewrites as egg [`Rewrite`]s: a pattern to search for and an applier that adds the
//! equivalent, cheaper term to the matched e-class. Which term ends in the graph is left to
//! extraction.

use egg::{rewrite, Applier, Id, PatternAst, Rewrite, Subst, Symbol, Var};
use fhec_ir::quant::Tlu;
use ndarray::ArrayD;

use super::lang::{const_in, shape_of, single_use, table_in, Arena, IntEGraph, IntLang};
use super::tables::{self, Offset};

/// Every rewrite of the pass (the module documentation says why each holds).
pub fn rules() -> Vec<Rewrite<IntLang, Arena>> {
    vec![
        rewrite!("merge-chain"; "(tlu ?t2 (tlu ?t1 ?x))" => { NewTable(merge_chain) }),
        rewrite!("drop-identity"; "(tlu ?t ?x)" => "?x" if is_identity_table),
        rewrite!("fold-add"; "(tlu ?t (add ?x ?c))" => { NewTable(fold_add) }),
        rewrite!("fold-sub"; "(tlu ?t (sub ?x ?c))" => { NewTable(fold_sub) }),
        rewrite!("fold-mul"; "(tlu ?t (mul ?x ?c))" => { NewTable(fold_mul) }),
        rewrite!("share-tables"; "(tlu ?t ?x)" => { NewTable(share_tables) }),
        // So that the folds also see `c + x` and `c * x`.
        rewrite!("add-commute"; "(add ?a ?b)" => "(add ?b ?a)"),
        rewrite!("mul-commute"; "(mul ?a ?b)" => "(mul ?b ?a)"),
    ]
}

fn var(name: &str) -> Var {
    name.parse().expect("a pattern variable")
}

/// An applier adding `(tlu T x)` to the matched e-class, where the rule function computes
/// the table `T` and picks `x` from the match (or returns `None`: the rewrite does not apply).
struct NewTable(fn(&IntEGraph, &Subst) -> Option<(Tlu, Id)>);

impl Applier<IntLang, Arena> for NewTable {
    fn apply_one(
        &self,
        egraph: &mut IntEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<IntLang>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let Some((table, x)) = (self.0)(egraph, subst) else {
            return vec![];
        };
        let table = egraph.analysis.table(table);
        let table = egraph.add(IntLang::Table(table));
        let tlu = egraph.add(IntLang::Tlu([table, x]));
        if egraph.union(eclass, tlu) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// `Tlu(Tlu(x, t1), t2)` → `Tlu(x, t2 ∘ t1)` when the inner lookup has no other user.
fn merge_chain(egraph: &IntEGraph, s: &Subst) -> Option<(Tlu, Id)> {
    let (t1, t2, x) = (s[var("?t1")], s[var("?t2")], s[var("?x")]);
    let inner = egraph.lookup(IntLang::Tlu([t1, x]))?;
    if !single_use(egraph, inner) {
        return None;
    }
    Some((
        tables::compose(table_in(egraph, t1)?, table_in(egraph, t2)?)?,
        x,
    ))
}

/// `Tlu(x, id) → x` for an identity table (no rounding, every entry equal to its input).
fn is_identity_table(egraph: &mut IntEGraph, _eclass: Id, s: &Subst) -> bool {
    table_in(egraph, s[var("?t")]).is_some_and(tables::is_identity)
}

/// `Tlu(x + c)` → `Tlu'(x)`.
fn fold_add(egraph: &IntEGraph, s: &Subst) -> Option<(Tlu, Id)> {
    fold_offset(egraph, s, IntLang::Add, false)
}

/// `Tlu(x - c)` → `Tlu'(x)`.
fn fold_sub(egraph: &IntEGraph, s: &Subst) -> Option<(Tlu, Id)> {
    fold_offset(egraph, s, IntLang::Sub, true)
}

/// The operand `x` of a single-use `op(x, c)` whose constant `c` does not broadcast `x` to a
/// larger shape (so the table can take `x` in its place), with the constant's value.
fn foldable_operand<'a>(
    egraph: &'a IntEGraph,
    s: &Subst,
    op: fn([Id; 2]) -> IntLang,
) -> Option<(Id, &'a ArrayD<i64>)> {
    let (x, c) = (s[var("?x")], s[var("?c")]);
    let inner = egraph.lookup(op([x, c]))?;
    let same_shape = shape_of(egraph, inner)? == shape_of(egraph, x)?;
    (single_use(egraph, inner) && same_shape).then_some((x, const_in(egraph, c)?))
}

fn fold_offset(
    egraph: &IntEGraph,
    s: &Subst,
    op: fn([Id; 2]) -> IntLang,
    negate: bool,
) -> Option<(Tlu, Id)> {
    let (x, c) = foldable_operand(egraph, s, op)?;
    let offset = offset_of(c, shape_of(egraph, x)?.len(), negate)?;
    Some((
        tables::fold_offset(table_in(egraph, s[var("?t")])?, &offset)?,
        x,
    ))
}

/// `Tlu(x * k)` → `Tlu'(x)` for a positive integer scalar `k`.
fn fold_mul(egraph: &IntEGraph, s: &Subst) -> Option<(Tlu, Id)> {
    let (x, c) = foldable_operand(egraph, s, IntLang::Mul)?;
    let k = *c.iter().next()?;
    if c.iter().any(|&v| v != k) {
        return None;
    }
    Some((tables::fold_scale(table_in(egraph, s[var("?t")])?, k)?, x))
}

/// A per-channel TLU whose tables are all equal → one table.
fn share_tables(egraph: &IntEGraph, s: &Subst) -> Option<(Tlu, Id)> {
    Some((
        tables::share(table_in(egraph, s[var("?t")])?)?,
        s[var("?x")],
    ))
}

/// The constant `c` (negated for a subtraction) added to a tensor of rank `rank`: one value,
/// or values varying along a single axis (per channel); `None` otherwise.
fn offset_of(c: &ArrayD<i64>, rank: usize, negate: bool) -> Option<Offset> {
    let values: Vec<i64> = c
        .iter()
        .map(|&v| if negate { v.checked_neg() } else { Some(v) })
        .collect::<Option<_>>()?;
    let first = *values.first()?;
    if values.iter().all(|&v| v == first) {
        return Some(Offset::Scalar(first));
    }
    let varying: Vec<usize> = (0..c.ndim()).filter(|&a| c.shape()[a] > 1).collect();
    match varying[..] {
        // Broadcasting aligns the constant's axes with the last ones of the tensor.
        [axis] => Some(Offset::PerChannel {
            axis: (axis + rank).checked_sub(c.ndim())?,
            values,
        }),
        _ => None,
    }
}
