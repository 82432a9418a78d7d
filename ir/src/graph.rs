//! The graph container, its editing API and the verifier.

use std::collections::HashSet;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::fact::TensorFact;
use crate::op::{Op, ShapeError};

/// Handle of a node; stays valid while the node exists.
pub type NodeId = NodeIndex<u32>;

/// One operation and the fact of its single output.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name from the source model (ONNX node or tensor name), for messages and printing.
    pub name: String,
    pub op: Op,
    pub fact: TensorFact,
}

/// Violations of the graph invariants.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    #[error("node '{node}' ({op}): {source}")]
    Shape {
        node: String,
        op: &'static str,
        #[source]
        source: ShapeError,
    },
    #[error("verifier: {0}")]
    Invalid(String),
    /// A graph that is valid but that a transformation cannot handle (e.g. quantisation of
    /// an op it has no integer form for).
    #[error("node '{node}' ({op}): {message}")]
    Unsupported {
        node: String,
        op: &'static str,
        message: String,
    },
    /// Quantising node `node` needs the range its values take on calibration data, and none
    /// was measured (no calibration samples were given).
    #[error("node '{node}': no calibration range; calibrate on data before quantising")]
    NeedsCalibration { node: String },
}

/// A DAG of nodes; edges run producer → consumer and carry the consumer's input slot.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, usize>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a graph input with a known fact; inputs keep the order they are added in.
    pub fn add_input(&mut self, name: impl Into<String>, fact: TensorFact) -> NodeId {
        let id = self.g.add_node(Node {
            name: name.into(),
            op: Op::Input,
            fact,
        });
        self.inputs.push(id);
        id
    }

    /// Adds a node, inferring its output fact from its inputs.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> Result<NodeId, IrError> {
        let name = name.into();
        let facts: Vec<&TensorFact> = inputs.iter().map(|&i| &self.g[i].fact).collect();
        let fact = op.infer(&facts).map_err(|source| IrError::Shape {
            node: name.clone(),
            op: op.name(),
            source,
        })?;
        let id = self.g.add_node(Node { name, op, fact });
        for (slot, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, slot);
        }
        Ok(id)
    }

    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// The producers feeding `id`, in input-slot order.
    pub fn node_inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut ins: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        ins.sort_unstable();
        ins.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes consuming `id` (each once, even if it feeds several slots).
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Constant value of a node, if it is a `Const`.
    pub fn const_value(&self, id: NodeId) -> Option<&crate::Tensor> {
        match &self.g[id].op {
            Op::Const(t) => Some(t),
            _ => None,
        }
    }

    /// Nodes in a deterministic topological order (ties broken by insertion order).
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut indeg: std::collections::BTreeMap<NodeId, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target exists");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        order
    }

    /// Redirects every use of `old` (consumer slots and graph outputs) to `new`.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<(NodeId, usize, petgraph::stable_graph::EdgeIndex<u32>)> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight(), e.id()))
            .collect();
        for (target, slot, edge) in uses {
            self.g.remove_edge(edge);
            self.g.add_edge(new, target, slot);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Replaces the inputs of `id` and re-infers its fact.
    pub fn set_node_inputs(&mut self, id: NodeId, inputs: &[NodeId]) -> Result<(), IrError> {
        let old: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, slot);
        }
        self.reinfer(id)
    }

    /// Recomputes the fact of `id` from its inputs (after its op or inputs changed).
    pub fn reinfer(&mut self, id: NodeId) -> Result<(), IrError> {
        if matches!(self.g[id].op, Op::Input) {
            return Ok(());
        }
        let ins = self.node_inputs(id);
        let facts: Vec<&TensorFact> = ins.iter().map(|&i| &self.g[i].fact).collect();
        let node = &self.g[id];
        let fact = node.op.infer(&facts).map_err(|source| IrError::Shape {
            node: node.name.clone(),
            op: node.op.name(),
            source,
        })?;
        self.g[id].fact = fact;
        Ok(())
    }

    /// Removes nodes that no graph output depends on (graph inputs are always kept).
    pub fn remove_dead_nodes(&mut self) {
        let mut live: HashSet<NodeId> = HashSet::new();
        let mut stack: Vec<NodeId> = self.outputs.clone();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        live.extend(self.inputs.iter().copied());
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|n| !live.contains(n))
            .collect();
        for n in dead {
            self.g.remove_node(n);
        }
    }

    /// Checks the invariants every pass must keep: acyclic, input slots dense and within the
    /// op's arity, each fact equal to what its op infers, inputs are `Input` nodes, outputs
    /// exist, non-float values only where an op produces them.
    pub fn verify(&self) -> Result<(), IrError> {
        let bad = |m: String| Err(IrError::Invalid(m));
        if self.topo_order().len() != self.g.node_count() {
            return bad("the graph has a cycle".into());
        }
        for &i in &self.inputs {
            if !self.g.contains_node(i) || !matches!(self.g[i].op, Op::Input) {
                return bad(format!("graph input {i:?} is not an Input node"));
            }
        }
        if self.outputs.is_empty() {
            return bad("the graph has no outputs".into());
        }
        for &o in &self.outputs {
            if !self.g.contains_node(o) {
                return bad(format!("graph output {o:?} does not exist"));
            }
        }
        for id in self.g.node_indices() {
            let node = &self.g[id];
            if matches!(node.op, Op::Input) {
                if !self.inputs.contains(&id) {
                    return bad(format!("Input node '{}' is not a graph input", node.name));
                }
                continue;
            }
            let mut slots: Vec<usize> = self
                .g
                .edges_directed(id, Direction::Incoming)
                .map(|e| *e.weight())
                .collect();
            slots.sort_unstable();
            if slots.iter().enumerate().any(|(i, &s)| i != s) {
                return bad(format!("node '{}' has input slots {slots:?}", node.name));
            }
            let ins = self.node_inputs(id);
            let facts: Vec<&TensorFact> = ins.iter().map(|&i| &self.g[i].fact).collect();
            let fact = node.op.infer(&facts).map_err(|source| IrError::Shape {
                node: node.name.clone(),
                op: node.op.name(),
                source,
            })?;
            if fact != node.fact {
                return bad(format!(
                    "node '{}' ({}) records {} but its op infers {}",
                    node.name,
                    node.op.name(),
                    node.fact,
                    fact
                ));
            }
        }
        Ok(())
    }
}
