//! Graph-editing helpers shared by the passes, and [`Linear`], the weight view of a
//! `Gemm`/`Conv` with constant weights.

use fhec_ir::{Graph, IrError, NodeId, Op, Tensor};
use ndarray::{Array1, Axis, IxDyn};

/// The constant feeding input `slot` of `id`, if that input is a `Const`.
pub fn const_input(g: &Graph, id: NodeId, slot: usize) -> Option<&Tensor> {
    g.node_inputs(id).get(slot).and_then(|&i| g.const_value(i))
}

/// Whether `id` is (still) a node of `g`.
pub fn exists(g: &Graph, id: NodeId) -> bool {
    g.node_ids().any(|n| n == id)
}

/// The one node consuming `id`, when `id` feeds exactly one input slot of one node and is
/// not a graph output (so rewriting `id` affects nothing else).
pub fn sole_consumer(g: &Graph, id: NodeId) -> Option<NodeId> {
    if g.outputs().contains(&id) {
        return None;
    }
    match g.consumers(id).as_slice() {
        [c] if g.node_inputs(*c).iter().filter(|&&i| i == id).count() == 1 => Some(*c),
        _ => None,
    }
}

/// Replaces the constant inputs of `id` at the given slots (a slot equal to the input count
/// appends one) and re-infers `id`. A `Const` used only there is updated in place; a shared
/// one is left to its other users and a new `Const` takes its place.
pub fn set_const_inputs(
    g: &mut Graph,
    id: NodeId,
    values: Vec<(usize, Tensor)>,
) -> Result<(), IrError> {
    let mut inputs = g.node_inputs(id);
    let mut rewired = false;
    for (slot, value) in values {
        let old = inputs.get(slot).copied();
        match old {
            Some(c) if g.const_value(c).is_some() && sole_consumer(g, c) == Some(id) => {
                g.node_mut(c).op = Op::Const(value);
                g.reinfer(c)?;
            }
            _ => {
                let name = match old {
                    Some(c) => g.node(c).name.clone(),
                    None => format!("{}.bias", g.node(id).name),
                };
                let c = g.add_node(name, Op::Const(value), &[])?;
                if slot < inputs.len() {
                    inputs[slot] = c;
                } else {
                    inputs.push(c);
                }
                rewired = true;
            }
        }
    }
    if rewired {
        g.set_node_inputs(id, &inputs)
    } else {
        g.reinfer(id)
    }
}

/// Whether a `Gemm`/`Conv` node's attributes fit [`Linear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearKind {
    Gemm { trans_b: bool },
    Conv { group: usize },
}

fn out_axis(kind: LinearKind) -> usize {
    match kind {
        LinearKind::Gemm { trans_b: false } => 1,
        _ => 0,
    }
}

/// A `Gemm` or `Conv` whose weights (and bias, if any) are constants, with the weights in
/// effective form: a Gemm's `alpha` is multiplied into `w` and `beta * C` is `bias`, so
/// writing it back leaves `alpha = beta = 1`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub id: NodeId,
    pub kind: LinearKind,
    pub w: Tensor,
    /// One entry per output neuron (zeros when the node has no bias).
    pub bias: Array1<f32>,
    pub has_bias: bool,
}

impl Linear {
    /// The weight view of `id`, or `None` if it is not a `Gemm`/`Conv` with constant weights
    /// and a bias that is constant per output neuron.
    pub fn read(g: &Graph, id: NodeId) -> Option<Linear> {
        let node = g.node(id);
        let w = const_input(g, id, 1)?.clone();
        let c = g.node_inputs(id).get(2).copied();
        let c = match c {
            Some(c) => Some(g.const_value(c)?),
            None => None,
        };
        let (kind, w, bias) = match &node.op {
            Op::Gemm(a) => {
                let n = node.fact.shape[1];
                let w = if a.alpha != 1.0 { w * a.alpha } else { w };
                let bias = match c {
                    Some(c) => {
                        let row = c.broadcast(IxDyn(&[1, n]))?;
                        Some(row.iter().map(|&v| v * a.beta).collect::<Array1<f32>>())
                    }
                    None => None,
                };
                (LinearKind::Gemm { trans_b: a.trans_b }, w, bias)
            }
            Op::Conv(a) => {
                let bias = c.map(|c| c.iter().copied().collect::<Array1<f32>>());
                (LinearKind::Conv { group: a.group }, w, bias)
            }
            _ => return None,
        };
        let n = w.shape()[out_axis(kind)];
        Some(Linear {
            id,
            kind,
            w,
            has_bias: bias.is_some(),
            bias: bias.unwrap_or_else(|| Array1::zeros(n)),
        })
    }

    /// Axis of `w` indexing the output neurons.
    pub fn out_axis(&self) -> usize {
        out_axis(self.kind)
    }

    /// Axis of `w` indexing the inputs (a Gemm's K, a Conv's input channels per group).
    pub fn in_axis(&self) -> usize {
        1 - self.out_axis()
    }

    /// Number of output neurons.
    pub fn outputs(&self) -> usize {
        self.w.shape()[self.out_axis()]
    }

    /// Multiplies neuron `j`'s weights and bias by `k[j]`.
    pub fn scale_outputs(&mut self, k: &[f32]) {
        let axis = Axis(self.out_axis());
        for (mut lane, &kj) in self.w.axis_iter_mut(axis).zip(k) {
            lane.mapv_inplace(|v| v * kj);
        }
        self.bias.iter_mut().zip(k).for_each(|(b, &kj)| *b *= kj);
    }

    /// Adds `d[j]` to neuron `j`'s bias.
    pub fn shift_outputs(&mut self, d: &[f32]) {
        self.bias.iter_mut().zip(d).for_each(|(b, &dj)| *b += dj);
        self.has_bias = true;
    }

    /// Writes weights and bias back into the graph (a Gemm ends with `alpha = beta = 1`).
    /// A bias is added only when the node had one or it became non-zero.
    pub fn write(&self, g: &mut Graph) -> Result<(), IrError> {
        if let Op::Gemm(a) = &mut g.node_mut(self.id).op {
            a.alpha = 1.0;
            a.beta = 1.0;
        }
        let mut values = vec![(1, self.w.clone())];
        if self.has_bias || self.bias.iter().any(|&b| b != 0.0) {
            values.push((2, self.bias.clone().into_dyn()));
        }
        set_const_inputs(g, self.id, values)
    }
}

/// The per-channel values of a constant `c` combined element-wise with a tensor of shape
/// `out` whose channels lie along axis 1, or `None` if `c` varies along another axis or would
/// broadcast `out` to a larger shape.
pub fn per_channel(c: &Tensor, out: &[usize]) -> Option<Vec<f32>> {
    let (r, channels) = (out.len(), *out.get(1)?);
    if c.ndim() > r {
        return None;
    }
    let mut shape = vec![1; r - c.ndim()];
    shape.extend_from_slice(c.shape());
    let ok = shape
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || (i == 1 && d == channels));
    if !ok {
        return None;
    }
    if shape[1] == channels {
        Some(c.iter().copied().collect())
    } else {
        Some(vec![*c.iter().next()?; channels])
    }
}
