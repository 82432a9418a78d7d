//! The e-graph language of the integer dataflow, its side arena and the FHE cost model.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use egg::{define_language, Analysis, CostFunction, DidMerge, EGraph, Id, Language};
use fhec_ir::op::broadcast_shapes;
use fhec_ir::quant::Tlu;
use fhec_ir::NodeId;
use ndarray::ArrayD;

/// Defines a leaf payload: an index into one of the [`Arena`]'s lists, written `<prefix><n>`.
macro_rules! arena_index {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                s.strip_prefix($prefix)
                    .and_then(|n| n.parse().ok())
                    .map($name)
                    .ok_or_else(|| format!("not a {}: {s}", stringify!($name)))
            }
        }
    };
}

arena_index!(
    /// A table lookup's attributes: [`Arena::tables`]`[i]`.
    TableRef,
    "table"
);
arena_index!(
    /// An `IntConst` of the graph: [`Arena::consts`]`[i]`.
    ConstRef,
    "const"
);
arena_index!(
    /// A graph node outside the language: [`Arena::opaque`]`[i]`.
    OpaqueRef,
    "node"
);

define_language! {
    /// Integer tensors as the rewrites see them. `(tlu T x)` is `Op::Tlu` with the attributes
    /// of the `Table` leaf `T` applied to `x`; `add`/`sub`/`mul` are the integer
    /// `Op::Binary` ops; `Const` leaves are integer constants and `Opaque` leaves every other
    /// node (Gemm, Conv, Quantize, ...), whose inputs the e-graph does not see.
    pub enum IntLang {
        "tlu" = Tlu([Id; 2]),
        "add" = Add([Id; 2]),
        "sub" = Sub([Id; 2]),
        "mul" = Mul([Id; 2]),
        Table(TableRef),
        Const(ConstRef),
        Opaque(OpaqueRef),
    }
}

/// What the e-nodes' leaves point to, and what each e-class is (its tensor shape).
///
/// egg keeps the analysis inside the e-graph, so rewrites reach the arena as
/// `egraph.analysis` and can add the tables they compute.
#[derive(Debug, Default)]
pub struct Arena {
    /// Every table seen or built; equal tables share one index, so equal lookups on one
    /// input are one e-node (common subexpressions merge by hash-consing).
    pub tables: Vec<Tlu>,
    table_index: HashMap<Tlu, TableRef>,
    /// Integer constants: the graph node holding each value (equal values share one).
    pub consts: Vec<(NodeId, ArrayD<i64>)>,
    const_index: HashMap<ArrayD<i64>, ConstRef>,
    /// Outside nodes and their output shapes.
    pub opaque: Vec<(NodeId, Vec<usize>)>,
    /// The users of each e-class's value when the e-graph was built: the e-classes of the
    /// lookups and adds consuming it, and how many other nodes and graph outputs use it.
    /// See [`single_use`].
    pub users: Vec<(Id, Vec<Id>, usize)>,
}

impl Arena {
    pub fn table(&mut self, t: Tlu) -> TableRef {
        if let Some(&r) = self.table_index.get(&t) {
            return r;
        }
        let r = TableRef(self.tables.len());
        self.tables.push(t.clone());
        self.table_index.insert(t, r);
        r
    }

    pub fn constant(&mut self, node: NodeId, value: &ArrayD<i64>) -> ConstRef {
        if let Some(&r) = self.const_index.get(value) {
            return r;
        }
        let r = ConstRef(self.consts.len());
        self.consts.push((node, value.clone()));
        self.const_index.insert(value.clone(), r);
        r
    }

    pub fn opaque(&mut self, node: NodeId, shape: Vec<usize>) -> OpaqueRef {
        self.opaque.push((node, shape));
        OpaqueRef(self.opaque.len() - 1)
    }
}

/// The e-graph of this pass.
pub type IntEGraph = EGraph<IntLang, Arena>;

impl Analysis<IntLang> for Arena {
    /// The shape of the tensor an e-class stands for (`None` for `Table` leaves).
    type Data = Option<Vec<usize>>;

    fn make(egraph: &mut IntEGraph, enode: &IntLang, _id: Id) -> Self::Data {
        match enode {
            IntLang::Tlu([_, x]) => egraph[*x].data.clone(),
            IntLang::Add([a, b]) | IntLang::Sub([a, b]) | IntLang::Mul([a, b]) => {
                let (a, b) = (egraph[*a].data.as_ref()?, egraph[*b].data.as_ref()?);
                broadcast_shapes(a, b).ok()
            }
            IntLang::Table(_) => None,
            IntLang::Const(c) => Some(egraph.analysis.consts[c.0].1.shape().to_vec()),
            IntLang::Opaque(o) => Some(egraph.analysis.opaque[o.0].1.clone()),
        }
    }

    fn merge(&mut self, a: &mut Self::Data, b: Self::Data) -> DidMerge {
        // Equal values have equal shapes: merging never changes what is known.
        debug_assert_eq!(*a, b, "merged e-classes of different shapes");
        DidMerge(false, false)
    }
}

/// The table of a `Table` leaf's e-class.
pub fn table_in(egraph: &IntEGraph, class: Id) -> Option<&Tlu> {
    egraph[class].nodes.iter().find_map(|n| match n {
        IntLang::Table(t) => Some(&egraph.analysis.tables[t.0]),
        _ => None,
    })
}

/// The value of a `Const` leaf's e-class.
pub fn const_in(egraph: &IntEGraph, class: Id) -> Option<&ArrayD<i64>> {
    egraph[class].nodes.iter().find_map(|n| match n {
        IntLang::Const(c) => Some(&egraph.analysis.consts[c.0].1),
        _ => None,
    })
}

/// The shape of a tensor e-class.
pub fn shape_of(egraph: &IntEGraph, class: Id) -> Option<&[usize]> {
    egraph[class].data.as_deref()
}

/// Whether the value of `class` has exactly one user in the graph. Folding a producer into
/// its consumer pays only then: with another user the producer stays, and the consumer's
/// new table would be computed on top of it (often from a wider input) for nothing.
///
/// Users are counted on the current e-classes: consumers merged into one count once, and a
/// consumer merged with the value itself (an identity lookup) no longer counts.
pub fn single_use(egraph: &IntEGraph, class: Id) -> bool {
    let class = egraph.find(class);
    let mut inside = BTreeSet::new();
    let mut outside = 0;
    for (c, users, others) in &egraph.analysis.users {
        if egraph.find(*c) == class {
            inside.extend(
                users
                    .iter()
                    .map(|&u| egraph.find(u))
                    .filter(|&u| u != class),
            );
            outside += others;
        }
    }
    inside.len() + outside == 1
}

/// Cost units of one programmable bootstrap of a 0-bit table; a `p`-bit table costs
/// `PBS_UNIT * 2^p` (the bootstrap's polynomial, hence its work, doubles with each bit).
pub const PBS_UNIT: u64 = 1000;
/// Cost units of one element of an integer add, subtract or multiply by a constant.
pub const LINEAR_UNIT: u64 = 1;

/// Estimated FHE cost of one e-node (its children not included):
///
/// - a TLU: one bootstrap per element at its input precision, plus one unit per table (a
///   tie-breaker that prefers one shared table to equal per-channel copies);
/// - an add/sub/mul: [`LINEAR_UNIT`] per element;
/// - leaves: free (outside nodes cost the same whatever the rewrites do).
pub fn node_cost(egraph: &IntEGraph, enode: &IntLang) -> u64 {
    let elements = |class: &Id| -> u64 {
        shape_of(egraph, *class).map_or(1, |s| s.iter().product::<usize>() as u64)
    };
    match enode {
        IntLang::Tlu([t, x]) => {
            let t = table_in(egraph, *t).expect("a tlu's first child is a table");
            tlu_cost(t, elements(x))
        }
        IntLang::Add([a, b]) | IntLang::Sub([a, b]) | IntLang::Mul([a, b]) => {
            let out = match (shape_of(egraph, *a), shape_of(egraph, *b)) {
                (Some(a), Some(b)) => broadcast_shapes(a, b).map_or(1, |s| s.iter().product()),
                _ => 1,
            };
            LINEAR_UNIT * out as u64
        }
        IntLang::Table(_) | IntLang::Const(_) | IntLang::Opaque(_) => 0,
    }
}

/// Estimated FHE cost of a TLU applied to `elements` values (see [`node_cost`]).
pub fn tlu_cost(t: &Tlu, elements: u64) -> u64 {
    let per_element = PBS_UNIT.saturating_mul(1u64 << t.input_bits().min(40));
    per_element
        .saturating_mul(elements)
        .saturating_add(t.tables.len() as u64)
}

/// Extraction cost: [`node_cost`] summed over the term.
pub struct FheCost<'a> {
    pub egraph: &'a IntEGraph,
}

impl CostFunction<IntLang> for FheCost<'_> {
    type Cost = u64;

    fn cost<C>(&mut self, enode: &IntLang, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        enode.fold(node_cost(self.egraph, enode), |sum, child| {
            sum.saturating_add(costs(child))
        })
    }
}
