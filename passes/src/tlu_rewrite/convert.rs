//! From the graph to the e-graph, and from the extracted terms back to the graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use egg::{Extractor, Id, Language};
use fhec_ir::{BinaryOp, DType, Graph, IrError, NodeId, Op};

use super::lang::{node_cost, table_in, Arena, FheCost, IntEGraph, IntLang};

/// The graph nodes the e-graph holds.
pub struct Dataflow {
    /// Every node in the language, in topological order, with its e-class and e-node.
    pub nodes: Vec<(NodeId, Id, IntLang)>,
    /// The nodes in the language whose value is used outside it (by another op or as a
    /// graph output): what the rebuilt graph must provide.
    pub roots: Vec<NodeId>,
}

impl Dataflow {
    /// Estimated cost of these nodes as the graph has them now.
    pub fn cost(&self, egraph: &IntEGraph) -> u64 {
        self.nodes
            .iter()
            .map(|(_, _, enode)| node_cost(egraph, enode))
            .sum()
    }

    fn class_of(&self, node: NodeId) -> Option<Id> {
        self.nodes.iter().find(|n| n.0 == node).map(|n| n.1)
    }
}

/// Whether the e-graph models this node: every table lookup and integer add/sub/mul.
pub fn in_language(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    match node.op {
        Op::Tlu(_) => true,
        Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul) => node.fact.dtype == DType::I64,
        _ => false,
    }
}

/// The e-graph of the graph's integer dataflow (not yet rewritten).
pub fn build(g: &Graph) -> (IntEGraph, Dataflow) {
    let mut egraph = IntEGraph::new(Arena::default());
    // The e-class of every graph node seen so far: in the language, or a leaf.
    let mut class: HashMap<NodeId, Id> = HashMap::new();
    let mut nodes = vec![];
    for id in g.topo_order() {
        if !in_language(g, id) {
            continue;
        }
        let ins: Vec<Id> = g
            .node_inputs(id)
            .into_iter()
            .map(|i| *class.entry(i).or_insert_with(|| leaf(&mut egraph, g, i)))
            .collect();
        let enode = match &g.node(id).op {
            Op::Tlu(t) => {
                let table = egraph.analysis.table(t.clone());
                IntLang::Tlu([egraph.add(IntLang::Table(table)), ins[0]])
            }
            Op::Binary(BinaryOp::Add) => IntLang::Add([ins[0], ins[1]]),
            Op::Binary(BinaryOp::Sub) => IntLang::Sub([ins[0], ins[1]]),
            Op::Binary(BinaryOp::Mul) => IntLang::Mul([ins[0], ins[1]]),
            _ => unreachable!("in_language"),
        };
        let c = egraph.add(enode.clone());
        class.insert(id, c);
        nodes.push((id, c, enode));
    }
    // Users per e-class (identical nodes are one e-class: their users are counted once).
    let mut users: BTreeMap<Id, (BTreeSet<Id>, usize)> = BTreeMap::new();
    let mut roots = vec![];
    for &(id, c, _) in &nodes {
        let (inside, outside) = users.entry(c).or_default();
        let before = *outside;
        for consumer in g.consumers(id) {
            if in_language(g, consumer) {
                inside.insert(class[&consumer]);
            } else {
                *outside += 1;
            }
        }
        *outside += g.outputs().iter().filter(|&&o| o == id).count();
        if *outside > before {
            roots.push(id);
        }
    }
    egraph.analysis.users = users
        .into_iter()
        .map(|(c, (inside, outside))| (c, inside.into_iter().collect(), outside))
        .collect();
    egraph.rebuild();
    (egraph, Dataflow { nodes, roots })
}

fn leaf(egraph: &mut IntEGraph, g: &Graph, id: NodeId) -> Id {
    let node = g.node(id);
    let leaf = match &node.op {
        Op::IntConst(value) => IntLang::Const(egraph.analysis.constant(id, value)),
        _ => IntLang::Opaque(egraph.analysis.opaque(id, node.fact.shape.clone())),
    };
    egraph.add(leaf)
}

/// The extracted dataflow: the cheapest e-node of every e-class the roots need, children
/// before parents (each e-class once, so common subexpressions are built once).
pub struct Plan {
    pub nodes: Vec<(Id, IntLang)>,
}

impl Plan {
    pub fn extract(egraph: &IntEGraph, dataflow: &Dataflow) -> Plan {
        let extractor = Extractor::new(egraph, FheCost { egraph });
        let mut plan = Plan { nodes: vec![] };
        let mut seen = BTreeSet::new();
        for &root in &dataflow.roots {
            let class = dataflow.class_of(root).expect("roots are in the dataflow");
            plan.visit(egraph, &extractor, class, &mut seen);
        }
        plan
    }

    fn visit(
        &mut self,
        egraph: &IntEGraph,
        extractor: &Extractor<FheCost, IntLang, Arena>,
        class: Id,
        seen: &mut BTreeSet<Id>,
    ) {
        let class = egraph.find(class);
        if !seen.insert(class) {
            return;
        }
        let best = extractor.find_best_node(class).clone();
        if matches!(best, IntLang::Table(_)) {
            return;
        }
        for &child in best.children() {
            self.visit(egraph, extractor, child, seen);
        }
        self.nodes.push((class, best));
    }

    /// Estimated cost of the extracted dataflow.
    pub fn cost(&self, egraph: &IntEGraph) -> u64 {
        self.nodes.iter().map(|(_, n)| node_cost(egraph, n)).sum()
    }

    /// Rewrites the graph to the plan: builds the nodes it does not have yet (an unchanged
    /// node is kept), points every use of a root at its new value and drops what became
    /// dead. Returns one line per root that changed.
    pub fn apply(
        &self,
        g: &mut Graph,
        egraph: &IntEGraph,
        dataflow: &Dataflow,
    ) -> Result<Vec<String>, IrError> {
        // The graph's own nodes per e-class: candidates for reuse, and the names to keep.
        let mut originals: BTreeMap<Id, Vec<NodeId>> = BTreeMap::new();
        for &(id, class, _) in &dataflow.nodes {
            originals.entry(egraph.find(class)).or_default().push(id);
        }
        let mut built: HashMap<Id, NodeId> = HashMap::new();
        for (class, enode) in &self.nodes {
            let input = |c: &Id| built[&egraph.find(*c)];
            let (op, inputs) = match enode {
                IntLang::Opaque(o) => {
                    built.insert(*class, egraph.analysis.opaque[o.0].0);
                    continue;
                }
                IntLang::Const(c) => {
                    built.insert(*class, egraph.analysis.consts[c.0].0);
                    continue;
                }
                IntLang::Table(_) => unreachable!("tables are not planned"),
                IntLang::Tlu([t, x]) => {
                    let t = table_in(egraph, *t).expect("a tlu's first child is a table");
                    (Op::Tlu(t.clone()), vec![input(x)])
                }
                IntLang::Add([a, b]) => (Op::Binary(BinaryOp::Add), vec![input(a), input(b)]),
                IntLang::Sub([a, b]) => (Op::Binary(BinaryOp::Sub), vec![input(a), input(b)]),
                IntLang::Mul([a, b]) => (Op::Binary(BinaryOp::Mul), vec![input(a), input(b)]),
            };
            let same = originals
                .get(class)
                .into_iter()
                .flatten()
                .find(|&&n| g.node(n).op == op && g.node_inputs(n) == inputs);
            let id = match same {
                Some(&n) => n,
                None => {
                    let name = originals
                        .get(class)
                        .and_then(|ns| ns.first())
                        .map_or_else(|| "tlu_rewrite".to_string(), |&n| g.node(n).name.clone());
                    g.add_node(name, op, &inputs)?
                }
            };
            built.insert(*class, id);
        }
        let mut changes = vec![];
        for &root in &dataflow.roots {
            let class = dataflow.class_of(root).expect("roots are in the dataflow");
            let new = built[&egraph.find(class)];
            if new != root {
                changes.push(format!(
                    "'{}': {} -> {}",
                    g.node(root).name,
                    term(g, root, TERM_DEPTH),
                    term(g, new, TERM_DEPTH)
                ));
                g.replace_uses(root, new);
            }
        }
        g.remove_dead_nodes();
        Ok(changes)
    }
}

/// How deep [`term`] writes a node's dataflow.
const TERM_DEPTH: usize = 6;

/// A node's dataflow in the language as a term, e.g. `Tlu(Add(fc1, fc1.bias))`; nodes
/// outside the language by name, and `...` below `depth` levels.
fn term(g: &Graph, id: NodeId, depth: usize) -> String {
    if !in_language(g, id) {
        return g.node(id).name.clone();
    }
    if depth == 0 {
        return "...".into();
    }
    let args: Vec<String> = g
        .node_inputs(id)
        .into_iter()
        .map(|i| term(g, i, depth - 1))
        .collect();
    format!("{}({})", g.node(id).op.name(), args.join(", "))
}
