//! The float-to-integer lowering itself; see the module documentation.

use std::collections::HashMap;

use fhec_ir::op::BinaryOp;
use fhec_ir::quant::{int_bits, QParams, Tlu};
use fhec_ir::{DType, GemmAttrs, Graph, Node, NodeId, Op, PadMode, PoolAttrs, Tensor, TensorFact};
use ndarray::{ArrayD, Axis, IxDyn};

use super::Calibration;
use crate::bitwidth::node_range;

/// Bit widths of the quantisation (Concrete ML users know them as n_bits op_weights,
/// op_inputs, model_inputs and model_outputs).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantOptions {
    pub weight_bits: u32,
    pub activation_bits: u32,
    pub input_bits: u32,
    /// Requantise graph outputs to this width with a table lookup; `None` dequantises the
    /// final accumulator directly on the client (no bootstrap).
    pub output_bits: Option<u32>,
}

impl QuantOptions {
    /// Every width equal to `bits`, outputs left as accumulators.
    pub fn uniform(bits: u32) -> Self {
        QuantOptions {
            weight_bits: bits,
            activation_bits: bits,
            input_bits: bits,
            output_bits: None,
        }
    }
}

/// Why a graph cannot be quantised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("node '{node}' ({op}): {message}")]
    Unsupported {
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("node '{node}': no calibration range; calibrate on data before quantising")]
    NoRange { node: String },
    #[error("invalid quantisation options: {0}")]
    Options(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// The integer graph and its worst-case value ranges.
#[derive(Clone, Debug)]
pub struct Quantized {
    pub graph: Graph,
    /// Worst-case integer range of every integer node, from weight and input ranges.
    pub worst_ranges: HashMap<NodeId, (i64, i64)>,
}

/// Largest table domain × channel count built before rounding (tables beyond need
/// `--rounding-bits`).
const MAX_TABLE_CELLS: usize = 1 << 24;

/// How a float node is represented in the integer graph.
#[derive(Clone, Debug)]
enum Repr {
    /// A real tensor in the new graph (graph inputs before quantisation).
    Real(NodeId),
    /// A float constant.
    Const(Tensor),
    /// Dequantised QAT weights: integers with their scale and zero point.
    QConst(QConst),
    /// Integer tensor `id` meaning `scale * (q - zp)`.
    Int { id: NodeId, scale: f32, zp: i64 },
    /// Univariate float ops still to apply to an integer tensor: one table lookup.
    Chain(Chain),
}

/// An integer constant meaning `scales[c] * (q - zps[c])`, `c` the index along `axis`
/// (one entry each for per-tensor quantisation).
#[derive(Clone, Debug)]
struct QConst {
    q: ArrayD<i64>,
    scales: Vec<f32>,
    zps: Vec<i64>,
    axis: usize,
}

impl QConst {
    fn per_channel(&self, c: usize) -> (f32, i64) {
        if self.scales.len() == 1 {
            (self.scales[0], self.zps[0])
        } else {
            (self.scales[c], self.zps[c])
        }
    }

    /// `f(q, scale, zp)` per element, with the element's channel parameters.
    fn map<T>(&self, f: impl Fn(i64, f32, i64) -> T) -> ArrayD<T> {
        let per_tensor = self.scales.len() == 1 || self.axis >= self.q.ndim();
        ArrayD::from_shape_fn(self.q.raw_dim(), |idx| {
            let c = if per_tensor { 0 } else { idx[self.axis] };
            let (s, z) = self.per_channel(c);
            f(self.q[&idx], s, z)
        })
    }

    /// `q - zp` per element.
    fn centred(&self) -> ArrayD<i64> {
        self.map(|q, _, z| q - z)
    }

    /// The real values.
    fn dequantized(&self) -> Tensor {
        self.map(|q, s, z| s * (q - z) as f32)
    }
}

/// The integer grid a table writes its result on.
#[derive(Clone, Copy, Debug)]
enum OutGrid {
    /// The node's calibrated range at this width (the activation width when `None`; QAT
    /// chains ending in a `DequantizeLinear` keep the model's own grid).
    Calibrated(Option<u32>),
    /// A given scale and zero point, clamped to the node's calibrated range: brings a branch
    /// onto another tensor's grid (residual Add/Sub, Concat) inside the lookup it needs
    /// anyway.
    Fixed { scale: f32, zp: i64 },
}

/// Univariate float ops (nodes of the float graph, with the slot of their data input) still
/// to apply to the integer tensor `base` meaning `scale * (q - zp)`: they become one table
/// lookup.
#[derive(Clone, Debug)]
struct Chain {
    base: NodeId,
    scale: f32,
    zp: i64,
    /// Per-channel factors of `scale` along axis 1 (per-channel weight scales).
    ch: Option<Vec<f32>>,
    ops: Vec<(NodeId, usize)>,
}

impl Chain {
    /// No op yet: as a lookup, a requantisation of `base`.
    fn identity(base: NodeId, scale: f32, zp: i64) -> Chain {
        Chain {
            base,
            scale,
            zp,
            ch: None,
            ops: vec![],
        }
    }
}

struct Lowering<'a> {
    src: &'a Graph,
    calibration: &'a Calibration,
    opts: &'a QuantOptions,
    out: Graph,
    worst: HashMap<NodeId, (i64, i64)>,
    repr: HashMap<NodeId, Repr>,
}

/// Quantises and lowers `graph`, using what [`super::calibrate`] measured.
pub fn quantize(
    graph: &Graph,
    calibration: &Calibration,
    opts: &QuantOptions,
) -> Result<Quantized, QuantError> {
    for (what, b) in [
        ("weight", opts.weight_bits),
        ("activation", opts.activation_bits),
        ("input", opts.input_bits),
        ("output", opts.output_bits.unwrap_or(8)),
    ] {
        if !(2..=16).contains(&b) {
            return Err(QuantError::Options(format!(
                "{what} bits must be within 2..=16, got {b}"
            )));
        }
    }
    let mut l = Lowering {
        src: graph,
        calibration,
        opts,
        out: Graph::new(),
        worst: HashMap::new(),
        repr: HashMap::new(),
    };
    for id in graph.topo_order() {
        let r = l.lower_node(id)?;
        l.repr.insert(id, r);
    }
    let mut outputs = vec![];
    for &o in graph.outputs() {
        outputs.push(l.lower_output(o)?);
    }
    l.out.set_outputs(outputs);
    l.out.remove_dead_nodes();
    l.worst.retain(|id, _| l.out.node_ids().any(|n| n == *id));
    l.out
        .verify()
        .map_err(|e| QuantError::Internal(format!("integer graph fails verification: {e}")))?;
    Ok(Quantized {
        graph: l.out,
        worst_ranges: l.worst,
    })
}

fn float_op_is_univariate(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::BatchNorm { .. }
            | Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
            | Op::Identity
            | Op::Cast { .. }
    )
}

impl<'a> Lowering<'a> {
    fn node_err(&self, id: NodeId, message: impl Into<String>) -> QuantError {
        let n = self.src.node(id);
        QuantError::Unsupported {
            node: n.name.clone(),
            op: n.op.name(),
            message: message.into(),
        }
    }

    /// Adds an integer node and records its worst-case range (the one interval analysis
    /// the bit-width pass also uses).
    fn add(&mut self, name: &str, op: Op, inputs: &[NodeId]) -> Result<NodeId, QuantError> {
        let id = self
            .out
            .add_node(name, op, inputs)
            .map_err(|e| QuantError::Internal(e.to_string()))?;
        if let Some(range) = node_range(&self.out, id, &self.worst)
            .map_err(|e| QuantError::Internal(e.to_string()))?
        {
            self.worst.insert(id, range);
        }
        Ok(id)
    }

    fn range_of(&self, id: NodeId) -> (i64, i64) {
        self.worst[&id]
    }

    fn calib(&self, id: NodeId) -> Result<(f32, f32), QuantError> {
        self.calibration
            .ranges
            .get(&id)
            .copied()
            .ok_or_else(|| QuantError::NoRange {
                node: self.src.node(id).name.clone(),
            })
    }

    /// Unsigned parameters for node `id` at `bits`: the calibrated min/max, or at
    /// `clip_below` bits and below the clipped range that minimises the squared quantisation error on the
    /// calibration values (a few outliers otherwise waste most of the levels).
    fn activation_params(
        &self,
        id: NodeId,
        bits: u32,
        clip_below: u32,
    ) -> Result<QParams, QuantError> {
        let (lo, hi) = self.calib(id)?;
        let full = QParams::unsigned_for_range(lo, hi, bits);
        let Some(values) = self
            .calibration
            .samples
            .get(&id)
            .filter(|v| !v.is_empty() && bits <= clip_below)
        else {
            return Ok(full);
        };
        let mse = |q: &QParams| -> f64 {
            values
                .iter()
                .map(|&v| {
                    let e = (q.dequantize(q.quantize(v)) - v) as f64;
                    e * e
                })
                .sum()
        };
        let mut best = (mse(&full), full);
        for i in 1..20 {
            let r = 1.0 - i as f32 * 0.045;
            let cand = QParams::unsigned_for_range(lo * r, hi * r, bits);
            let e = mse(&cand);
            if e < best.0 {
                best = (e, cand);
            }
        }
        Ok(best.1)
    }

    fn lower_node(&mut self, id: NodeId) -> Result<Repr, QuantError> {
        let node = self.src.node(id);
        let ins = self.src.node_inputs(id);
        match &node.op {
            Op::Input => {
                let nid = self.out.add_input(node.name.clone(), node.fact.clone());
                return Ok(Repr::Real(nid));
            }
            Op::Const(t) => return Ok(Repr::Const(t.clone())),
            _ => {}
        }
        // Univariate ops with constant side inputs extend a pending chain.
        if float_op_is_univariate(&node.op) {
            let data_slots: Vec<usize> = ins
                .iter()
                .enumerate()
                .filter(|(_, i)| !matches!(self.repr[i], Repr::Const(_) | Repr::QConst(_)))
                .map(|(s, _)| s)
                .collect();
            match data_slots.as_slice() {
                [] => return self.fold_const_node(id),
                [slot] => return self.extend_chain(id, *slot),
                _ => {}
            }
        }
        match &node.op {
            Op::Gemm(_) | Op::MatMul | Op::Conv(_) => self.lower_linear(id),
            Op::AveragePool(p) => self.lower_sum_pool(id, p.clone(), true),
            Op::GlobalAveragePool => {
                let x = &self.src.node(ins[0]).fact.shape;
                let sp = x.len() - 2;
                let p = PoolAttrs {
                    kernel: x[2..].to_vec(),
                    strides: vec![1; sp],
                    dilations: vec![1; sp],
                    pads: vec![(0, 0); sp],
                    ceil_mode: false,
                    count_include_pad: true,
                };
                self.lower_sum_pool(id, p, false)
            }
            Op::MaxPool(p) => self.lower_max_pool(id, p.clone()),
            Op::Reshape { .. } | Op::Transpose { .. } => {
                let (x, scale, zp) = self.int_input(id, ins[0])?;
                let nid = self.add(&node.name, node.op.clone(), &[x])?;
                Ok(Repr::Int { id: nid, scale, zp })
            }
            Op::Pad { pads, mode, value } => {
                let (x, scale, zp) = self.int_input(id, ins[0])?;
                let q = if *mode == PadMode::Constant {
                    (*value / scale).round() as i64 + zp
                } else {
                    return Err(self.node_err(id, "only constant padding can be quantised"));
                };
                let nid = self.add(
                    &node.name,
                    Op::Pad {
                        pads: pads.clone(),
                        mode: PadMode::Constant,
                        value: q as f32,
                    },
                    &[x],
                )?;
                Ok(Repr::Int { id: nid, scale, zp })
            }
            Op::Concat { axis } => self.lower_concat(id, *axis),
            Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub)) => self.lower_residual(id, *op),
            Op::Binary(_) => Err(self.node_err(
                id,
                "the product or quotient of two runtime tensors needs a ciphertext multiplication, which fhec does not do",
            )),
            other => Err(self.node_err(id, format!("{} cannot be quantised", other.name()))),
        }
    }

    /// An op whose inputs are all constants (left by the frontend around QAT weights).
    fn fold_const_node(&mut self, id: NodeId) -> Result<Repr, QuantError> {
        let node = self.src.node(id);
        let ins = self.src.node_inputs(id);
        if let Op::DequantizeLinear(q) = &node.op {
            // Dequantised integer weights: keep the integers and the scale.
            let (Repr::Const(x), Repr::Const(s), Repr::Const(z)) = (
                &self.repr[&ins[0]],
                &self.repr[&ins[1]],
                &self.repr[&ins[2]],
            ) else {
                return Err(self.node_err(id, "unexpected dequantize inputs"));
            };
            let scales: Vec<f32> = s.iter().copied().collect();
            let zps: Vec<i64> = z.iter().map(|&v| v as i64).collect();
            let axis = match q.axis {
                Some(a) if scales.len() > 1 => a,
                _ => 0,
            };
            if scales.is_empty()
                || zps.len() != scales.len()
                || (scales.len() > 1 && x.shape().get(axis) != Some(&scales.len()))
            {
                return Err(self.node_err(
                    id,
                    format!(
                        "{} scales and {} zero points for integers of shape {:?} along axis {axis}",
                        scales.len(),
                        zps.len(),
                        x.shape()
                    ),
                ));
            }
            return Ok(Repr::QConst(QConst {
                q: x.mapv(|v| v as i64),
                scales,
                zps,
                axis,
            }));
        }
        let vals: Vec<Tensor> = ins
            .iter()
            .map(|i| match &self.repr[i] {
                Repr::Const(t) => Ok(t.clone()),
                Repr::QConst(c) => Ok(c.dequantized()),
                _ => Err(QuantError::Internal("not a constant".into())),
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Tensor> = vals.iter().collect();
        let t = fhec_ir::interp::eval_op(&node.op, &refs, &node.fact)
            .map_err(|e| self.node_err(id, e))?;
        Ok(Repr::Const(t))
    }

    fn extend_chain(&mut self, id: NodeId, slot: usize) -> Result<Repr, QuantError> {
        let data = self.src.node_inputs(id)[slot];
        let node = self.src.node(id);
        match self.repr[&data].clone() {
            Repr::Int {
                id: base,
                scale,
                zp,
            } => {
                // QAT at the input: Clip / Dequantize straight on the client's quantised input
                // change its parameters instead of costing a table lookup.
                if let Some(r) = self.fold_into_client_quantize(id, base, scale, zp)? {
                    return Ok(r);
                }
                let mut chain = Chain::identity(base, scale, zp);
                chain.ops.push((id, slot));
                Ok(Repr::Chain(chain))
            }
            Repr::Chain(mut chain) => {
                chain.ops.push((id, slot));
                Ok(Repr::Chain(chain))
            }
            Repr::Real(x) => match &node.op {
                // A QAT model quantises its own input: that is the client's Quantize.
                Op::QuantizeLinear(q) if slot == 0 => {
                    let ins = self.src.node_inputs(id);
                    let (Repr::Const(s), Repr::Const(z)) =
                        (&self.repr[&ins[1]], &self.repr[&ins[2]])
                    else {
                        return Err(self.node_err(id, "scale and zero point must be constants"));
                    };
                    if q.axis.is_some() && s.len() > 1 {
                        return Err(
                            self.node_err(id, "per-channel input quantisation is not supported")
                        );
                    }
                    let params = QParams {
                        scale: *s.iter().next().unwrap_or(&1.0),
                        zero_point: *z.iter().next().unwrap_or(&0.0) as i64,
                        bits: 8,
                        signed: q.dtype == DType::I8,
                    };
                    let nid = self.add(&node.name, Op::Quantize(params), &[x])?;
                    // The QuantizeLinear output *is* the integer: scale 1, zero point 0.
                    Ok(Repr::Int {
                        id: nid,
                        scale: 1.0,
                        zp: 0,
                    })
                }
                _ => {
                    let q = self.quantize_input(data, x)?;
                    self.repr.insert(data, q);
                    self.extend_chain(id, slot)
                }
            },
            Repr::Const(_) | Repr::QConst(_) => {
                Err(QuantError::Internal("constant data input".into()))
            }
        }
    }

    /// Folds Clip / DequantizeLinear applied directly to a client `Quantize` into it.
    fn fold_into_client_quantize(
        &mut self,
        id: NodeId,
        base: NodeId,
        scale: f32,
        zp: i64,
    ) -> Result<Option<Repr>, QuantError> {
        let Op::Quantize(params) = self.out.node(base).op.clone() else {
            return Ok(None);
        };
        let node = self.src.node(id);
        match &node.op {
            Op::Unary(fhec_ir::UnaryOp::Clip { min, max }) if scale == 1.0 && zp == 0 => {
                let (lo, hi) = (min.ceil() as i64, max.floor() as i64);
                for signed in [false, true] {
                    for bits in 1..=params.bits {
                        let p = QParams {
                            bits,
                            signed,
                            ..params.clone()
                        };
                        let (plo, phi) = p.range();
                        if (plo, phi) == (lo, hi) {
                            self.out.node_mut(base).op = Op::Quantize(p);
                            self.worst.insert(base, (lo, hi));
                            return Ok(Some(Repr::Int {
                                id: base,
                                scale,
                                zp,
                            }));
                        }
                    }
                }
                Ok(None)
            }
            Op::DequantizeLinear(q) if scale == 1.0 && zp == 0 && q.axis.is_none() => {
                let ins = self.src.node_inputs(id);
                let (Repr::Const(s), Repr::Const(z)) = (&self.repr[&ins[1]], &self.repr[&ins[2]])
                else {
                    return Ok(None);
                };
                Ok(Some(Repr::Int {
                    id: base,
                    scale: *s.iter().next().unwrap_or(&1.0),
                    zp: *z.iter().next().unwrap_or(&0.0) as i64,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Client-side quantisation of a real graph input (PTQ, calibration range).
    fn quantize_input(&mut self, src_id: NodeId, x: NodeId) -> Result<Repr, QuantError> {
        // Tabular features (rank 2) get the clipping search like activations; images (mostly
        // background, where it would clip the strokes) keep their full range down to 4 bits.
        let clip_below = if self.src.node(src_id).fact.rank() <= 2 {
            4
        } else {
            3
        };
        let params = self.activation_params(src_id, self.opts.input_bits, clip_below)?;
        let name = format!("{}.quantize", self.src.node(src_id).name);
        let (scale, zp) = (params.scale, params.zero_point);
        let nid = self.add(&name, Op::Quantize(params), &[x])?;
        Ok(Repr::Int { id: nid, scale, zp })
    }

    /// The integer form of input `src` of node `user`, materialising pending chains.
    fn int_input(&mut self, user: NodeId, src: NodeId) -> Result<(NodeId, f32, i64), QuantError> {
        match self.repr[&src].clone() {
            Repr::Int { id, scale, zp } => Ok((id, scale, zp)),
            Repr::Chain(_) => self.materialize(src, OutGrid::Calibrated(None)),
            Repr::Real(x) => {
                let r = self.quantize_input(src, x)?;
                self.repr.insert(src, r.clone());
                let Repr::Int { id, scale, zp } = r else {
                    unreachable!()
                };
                Ok((id, scale, zp))
            }
            Repr::Const(_) | Repr::QConst(_) => {
                Err(self.node_err(user, "a constant where a runtime tensor is expected"))
            }
        }
    }

    /// Turns the pending chain of `src` into one table lookup writing on `grid`, and records
    /// the result as `src`'s representation.
    fn materialize(
        &mut self,
        src: NodeId,
        grid: OutGrid,
    ) -> Result<(NodeId, f32, i64), QuantError> {
        let Repr::Chain(chain) = self.repr[&src].clone() else {
            return Err(QuantError::Internal("materialize without a chain".into()));
        };
        let (id, scale, zp) = self.lookup(src, chain, grid)?;
        self.repr.insert(src, Repr::Int { id, scale, zp });
        Ok((id, scale, zp))
    }

    /// One table lookup computing `chain` (the value of float node `src`) on `grid`.
    fn lookup(
        &mut self,
        src: NodeId,
        chain: Chain,
        grid: OutGrid,
    ) -> Result<(NodeId, f32, i64), QuantError> {
        let Chain {
            base,
            scale,
            zp,
            ch,
            ops,
        } = chain;
        let (lo, hi) = self.range_of(base);
        // An empty chain is a requantisation of `src` itself.
        let last = ops.last().map_or(src, |o| o.0);
        let fact = self.src.node(last).fact.clone();
        let rank = fact.rank().max(1);
        // Per-channel when some side input varies (along axis 1), else one table.
        let channels = if rank >= 2 && (ch.is_some() || self.chain_is_per_channel(&ops, &fact)?) {
            fact.shape[1]
        } else {
            1
        };
        let domain = (hi - lo + 1) as usize;
        if domain.saturating_mul(channels) > MAX_TABLE_CELLS {
            return Err(self.node_err(
                last,
                format!(
                    "its input accumulator spans {} bits ({domain} values): too wide for a table; quantise to fewer bits or round accumulators before their lookups",
                    int_bits(lo, hi)
                ),
            ));
        }
        // Evaluate the chain on every accumulator value at once: X[d, c, 1, ...].
        let mut shape = vec![domain, channels];
        shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
        if rank == 1 {
            shape = vec![domain];
        }
        let mut x = ArrayD::<f32>::zeros(IxDyn(&shape));
        for (idx, v) in x.indexed_iter_mut() {
            let factor = ch.as_ref().map_or(1.0, |c| c[idx[1]]);
            *v = scale * factor * ((lo + idx[0] as i64) - zp) as f32;
        }
        // A final DequantizeLinear (QAT) fixes the output grid: the table returns the
        // integers before it.
        let qat_grid = match &self.src.node(last).op {
            Op::DequantizeLinear(q)
                if q.axis.is_none() && ops.len() >= 2 && matches!(grid, OutGrid::Calibrated(_)) =>
            {
                let ins = self.src.node_inputs(last);
                match (&self.repr[&ins[1]], &self.repr[&ins[2]]) {
                    (Repr::Const(s), Repr::Const(z)) => Some((
                        *s.iter().next().unwrap_or(&1.0),
                        *z.iter().next().unwrap_or(&0.0) as i64,
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        let eval_ops = if qat_grid.is_some() {
            &ops[..ops.len() - 1]
        } else {
            &ops[..]
        };
        for &(op_id, slot) in eval_ops {
            x = self.eval_univariate(op_id, slot, x)?;
        }
        let (tables, out_scale, out_zp) = match (qat_grid, grid) {
            (Some((s, z)), _) => (self.split_tables(&x, channels, |v| v.round() as i64), s, z),
            (None, OutGrid::Calibrated(bits)) => {
                let params =
                    self.activation_params(last, bits.unwrap_or(self.opts.activation_bits), 4)?;
                let tables = self.split_tables(&x, channels, |v| params.quantize(v));
                (tables, params.scale, params.zero_point)
            }
            (None, OutGrid::Fixed { scale, zp }) => {
                let clamp = self.fixed_grid_range(last, scale, zp)?;
                let tables = self.split_tables(&x, channels, |v| {
                    fhec_kernels::quant::quantize(v, scale, zp, clamp)
                });
                (tables, scale, zp)
            }
        };
        let tlu = Tlu {
            input_min: lo,
            rounding: None,
            tables,
            axis: (channels > 1).then_some(1),
        };
        let name = self.src.node(last).name.clone();
        let nid = self.add(&name, Op::Tlu(tlu), &[base])?;
        Ok((nid, out_scale, out_zp))
    }

    /// The integers of node `id`'s calibrated range (and real 0) on the grid `scale`, `zp`.
    fn fixed_grid_range(&self, id: NodeId, scale: f32, zp: i64) -> Result<(i64, i64), QuantError> {
        let (lo, hi) = self.calib(id)?;
        let q = |v: f32| (v / scale).round() as i64 + zp;
        Ok((q(lo).min(zp), q(hi).max(zp)))
    }

    fn split_tables(
        &self,
        y: &ArrayD<f32>,
        channels: usize,
        f: impl Fn(f32) -> i64,
    ) -> Vec<Vec<i64>> {
        let domain = y.shape()[0];
        let flat = y.as_standard_layout();
        let flat = flat.as_slice().expect("standard layout");
        (0..channels)
            .map(|c| (0..domain).map(|d| f(flat[d * channels + c])).collect())
            .collect()
    }

    fn chain_is_per_channel(
        &self,
        ops: &[(NodeId, usize)],
        fact: &TensorFact,
    ) -> Result<bool, QuantError> {
        let mut per_channel = false;
        for &(op_id, slot) in ops {
            let node = self.src.node(op_id);
            if matches!(node.op, Op::BatchNorm { .. }) {
                per_channel = true;
            }
            for (s, i) in self.src.node_inputs(op_id).iter().enumerate() {
                if s == slot {
                    continue;
                }
                let shape = self.src.node(*i).fact.shape.clone();
                let n: usize = shape.iter().product();
                if n <= 1 {
                    continue;
                }
                // The constant must vary along the channel axis (1) only.
                let aligned = fhec_ir::op::broadcast_shapes(&shape, &fact.shape).ok();
                let mut probe = vec![1; fact.rank()];
                if fact.rank() >= 2 {
                    probe[1] = fact.shape[1];
                }
                if matches!(
                    node.op,
                    Op::BatchNorm { .. } | Op::QuantizeLinear(_) | Op::DequantizeLinear(_)
                ) {
                    continue;
                }
                let fits = aligned.as_deref() == Some(fact.shape.as_slice())
                    && fhec_ir::op::broadcast_shapes(&shape, &probe)
                        .ok()
                        .as_deref()
                        == Some(probe.as_slice());
                if !fits {
                    return Err(self.node_err(op_id, format!("constant of shape {shape:?} varies along more than the channel axis of {:?}", fact.shape)));
                }
                per_channel = true;
            }
        }
        Ok(per_channel)
    }

    /// Applies one univariate float op to the probe tensor (side inputs are constants).
    fn eval_univariate(
        &self,
        op_id: NodeId,
        slot: usize,
        x: ArrayD<f32>,
    ) -> Result<ArrayD<f32>, QuantError> {
        let node = self.src.node(op_id);
        let ins = self.src.node_inputs(op_id);
        let mut vals: Vec<Tensor> = vec![];
        for (s, i) in ins.iter().enumerate() {
            if s == slot {
                vals.push(x.clone());
            } else {
                match &self.repr[i] {
                    Repr::Const(t) => vals.push(t.clone()),
                    Repr::QConst(c) => vals.push(c.dequantized()),
                    _ => return Err(self.node_err(op_id, "side input is not constant")),
                }
            }
        }
        // Per-channel side inputs of rank-N ops written for [C] need the probe's channel axis.
        let facts: Vec<TensorFact> = vals.iter().map(|t| TensorFact::f32(t.shape())).collect();
        let refs: Vec<&TensorFact> = facts.iter().collect();
        let out = node
            .op
            .infer(&refs)
            .map_err(|e| self.node_err(op_id, e.0))?;
        let trefs: Vec<&Tensor> = vals.iter().collect();
        fhec_ir::interp::eval_op(&node.op, &trefs, &out).map_err(|e| self.node_err(op_id, e))
    }

    fn lower_linear(&mut self, id: NodeId) -> Result<Repr, QuantError> {
        let node = self.src.node(id).clone();
        let ins = self.src.node_inputs(id);
        let (x, s_x, z_x) = self.linear_input(id, ins[0])?;
        // Weights with output channels first ([out, in] or [out, in/group, k...]) and their
        // per-output-channel scales: the model's own integers (QAT) or symmetric PTQ, per
        // channel when a table follows anyway (it absorbs the per-channel scale for free).
        let trans_b = match &node.op {
            Op::Gemm(g) if g.trans_a => {
                return Err(self.node_err(id, "transposed A operands cannot be quantised"))
            }
            Op::Gemm(g) => g.trans_b,
            _ => false,
        };
        let stored_out_first = matches!(node.op, Op::Conv(_)) || trans_b;
        let (w_q, s_w) = match &self.repr[&ins[1]] {
            Repr::QConst(c) => self.qat_weights(id, c, stored_out_first)?,
            Repr::Const(w) => self.ptq_weights(id, w, x, stored_out_first),
            _ => return Err(self.node_err(id, "weights must be constant (a product of two runtime tensors needs a ciphertext multiplication)")),
        };
        let bias: Option<Tensor> = match ins.get(2).map(|b| &self.repr[b]) {
            None => None,
            Some(Repr::Const(b)) => Some(b.clone()),
            Some(Repr::QConst(c)) => Some(c.dequantized()),
            Some(_) => return Err(self.node_err(id, "the bias must be constant")),
        };
        let (alpha, beta) = match &node.op {
            Op::Gemm(g) => (g.alpha, g.beta),
            _ => (1.0, 1.0),
        };
        let n_out = w_q.shape()[0];
        let (op, x_in) = self.integer_linear_op(id, &node, x, z_x, w_q.ndim())?;
        // Integer bias per output: the real bias at the accumulator's scale, minus the
        // input zero point times the weights' sum.
        let b_int: Vec<i64> = (0..n_out)
            .map(|j| {
                let filt = w_q.index_axis(Axis(0), j);
                let b = bias.as_ref().map_or(0.0, |b| beta * bias_at(b, j, n_out));
                (b / (s_x * s_w[j] * alpha)).round() as i64 - z_x * filt.sum()
            })
            .collect();
        let w_node = self.add(&format!("{}.weight", node.name), Op::IntConst(w_q), &[])?;
        let b_arr = ArrayD::from_shape_vec(IxDyn(&[n_out]), b_int).expect("one bias per output");
        let b_node = self.add(&format!("{}.bias", node.name), Op::IntConst(b_arr), &[])?;
        let nid = self.add(&node.name, op, &[x_in, w_node, b_node])?;
        if s_w.iter().all(|&v| v == s_w[0]) {
            return Ok(Repr::Int {
                id: nid,
                scale: s_x * s_w[0] * alpha,
                zp: 0,
            });
        }
        Ok(Repr::Chain(Chain {
            ch: Some(s_w),
            ..Chain::identity(nid, s_x * alpha, 0)
        }))
    }

    /// The integer data input `src` of linear node `user`. An accumulator feeding a linear
    /// op directly is requantised to activation width first (an identity table), or
    /// accumulators would grow layer after layer.
    fn linear_input(
        &mut self,
        user: NodeId,
        src: NodeId,
    ) -> Result<(NodeId, f32, i64), QuantError> {
        let (x, s_x, z_x) = self.int_input(user, src)?;
        let (lo, hi) = self.range_of(x);
        if int_bits(lo, hi) > self.opts.activation_bits.max(self.opts.input_bits) + 1 {
            self.repr
                .insert(src, Repr::Chain(Chain::identity(x, s_x, z_x)));
            return self.materialize(src, OutGrid::Calibrated(None));
        }
        Ok((x, s_x, z_x))
    }

    /// The model's own (QAT) weights of linear node `id`, output channels first, with one
    /// scale per output channel. `stored_out_first`: the model stores them output channels
    /// first (Conv, or Gemm with `transB`), rather than `[in, out]`.
    fn qat_weights(
        &self,
        id: NodeId,
        c: &QConst,
        stored_out_first: bool,
    ) -> Result<(ArrayD<i64>, Vec<f32>), QuantError> {
        let w = out_channels_first(&c.centred(), stored_out_first);
        let n = w.shape()[0];
        // The output-channel axis of the weights as the model stores them.
        let out_axis = if stored_out_first { 0 } else { c.q.ndim() - 1 };
        if c.scales.len() == 1 {
            Ok((w, vec![c.scales[0]; n]))
        } else if c.axis == out_axis {
            Ok((w, c.scales.clone()))
        } else {
            Err(self.node_err(id, format!("weight scales vary along axis {} (input channels); only per-output-channel scales (axis {out_axis}) can be quantised", c.axis)))
        }
    }

    /// Float weights `w` of linear node `id` quantised symmetrically at the weight width,
    /// output channels first, with one scale per output channel: per channel when a table
    /// follows anyway and the per-channel tables stay small enough, else one scale for all.
    /// `x` is the (integer) data input; `stored_out_first` as for [`Self::qat_weights`].
    fn ptq_weights(
        &self,
        id: NodeId,
        w: &Tensor,
        x: NodeId,
        stored_out_first: bool,
    ) -> (ArrayD<i64>, Vec<f32>) {
        let is_output = self.src.outputs().contains(&id);
        let consumers = self.src.consumers(id);
        let per_channel_ok = !is_output
            && !consumers.is_empty()
            && consumers
                .iter()
                .all(|&c| float_op_is_univariate(&self.src.node(c).op));
        let wf = out_channels_first(w, stored_out_first);
        let qmax = ((1i64 << (self.opts.weight_bits - 1)) - 1) as f32;
        let n = wf.shape()[0];
        let absmax = |v: ndarray::ArrayViewD<f32>| v.iter().fold(0f32, |a, &x| a.max(x.abs()));
        // Per-channel tables multiply the table size by the channel count: only when
        // the worst-case accumulator domain stays small enough.
        let (xl, xh) = self.range_of(x);
        let fan_in = (wf.len() / n.max(1)) as i64;
        let worst_span = 2 * fan_in * (qmax as i64) * xl.abs().max(xh.abs()) + 1;
        let per_channel_ok =
            per_channel_ok && (worst_span as usize).saturating_mul(n) <= MAX_TABLE_CELLS / 4;
        let scales: Vec<f32> = if per_channel_ok {
            (0..n).map(|j| absmax(wf.index_axis(Axis(0), j))).collect()
        } else {
            vec![absmax(wf.view()); n]
        };
        let scales: Vec<f32> = scales
            .iter()
            .map(|&m| if m > 0.0 { m / qmax } else { 1.0 })
            .collect();
        let mut q = ArrayD::<i64>::zeros(wf.raw_dim());
        for (j, &sj) in scales.iter().enumerate() {
            q.index_axis_mut(Axis(0), j)
                .zip_mut_with(&wf.index_axis(Axis(0), j), |o, &v| {
                    *o = (v / sj).round_ties_even() as i64
                });
        }
        (q, scales)
    }

    /// The integer op replacing linear node `id` (`node`), and its data input: a Gemm with
    /// `transB` for matrix products (`w_rank`: rank of the weights), or the Conv itself,
    /// its padding made explicit with the input zero point `z_x` on `x`.
    fn integer_linear_op(
        &mut self,
        id: NodeId,
        node: &Node,
        x: NodeId,
        z_x: i64,
        w_rank: usize,
    ) -> Result<(Op, NodeId), QuantError> {
        let mut x_in = x;
        let mut op = node.op.clone();
        match &mut op {
            Op::Gemm(_) | Op::MatMul => {
                if w_rank != 2 || self.out.node(x).fact.rank() != 2 {
                    return Err(self.node_err(id, "only 2-D matrix products can be quantised"));
                }
                op = Op::Gemm(GemmAttrs {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                });
            }
            Op::Conv(c) => {
                // Pad with the zero point (real 0) explicitly so every window sees the same
                // zero-point offset, which folds into the bias below.
                if c.pads.iter().any(|&(a, b)| a > 0 || b > 0) {
                    let mut pads = vec![(0, 0), (0, 0)];
                    pads.extend(c.pads.iter().copied());
                    let pad = Op::Pad {
                        pads,
                        mode: PadMode::Constant,
                        value: z_x as f32,
                    };
                    x_in = self.add(&format!("{}.pad", node.name), pad, &[x])?;
                    c.pads = vec![(0, 0); c.pads.len()];
                }
            }
            _ => return Err(QuantError::Internal("not a linear op".into())),
        }
        Ok((op, x_in))
    }

    /// Add/Sub of two runtime tensors (residual connections). Both operands must stand on
    /// one scale; their zero points simply add (subtract). The common scale is chosen so
    /// that as few lookups as possible are added:
    ///
    /// - an operand that is a pending chain gets its lookup anyway: it writes its result
    ///   directly at the common scale (no extra bootstrap, possibly a wider sum);
    /// - an operand that is already an integer tensor keeps its own scale when it can (the
    ///   common scale is then that scale) and otherwise needs a requantising lookup.
    ///
    /// With one integer operand of scale `s` and one chain, the chain writes at `s` unless
    /// that makes the sum more than 2 bits wider than writing both at the Add's own
    /// calibrated scale (activation width), which costs one lookup on the integer operand;
    /// with two integer operands of different scales, the finer one is requantised onto the
    /// coarser one; with two chains, both write at the Add's calibrated scale.
    fn lower_residual(&mut self, id: NodeId, op: BinaryOp) -> Result<Repr, QuantError> {
        let ins = self.src.node_inputs(id);
        let (sa, sb) = (
            &self.src.node(ins[0]).fact.shape,
            &self.src.node(ins[1]).fact.shape,
        );
        if sa != sb {
            return Err(self.node_err(
                id,
                format!("runtime tensors of different shapes {sa:?} and {sb:?} (broadcasting) cannot be combined in FHE"),
            ));
        }
        self.quantize_real_inputs(&ins)?;
        let scale = self.residual_scale(id, ins[0], ins[1])?;
        let (a, za) = self.onto_grid(ins[0], scale, None)?;
        let (b, zb) = self.onto_grid(ins[1], scale, None)?;
        let nid = self.add(&self.src.node(id).name.clone(), Op::Binary(op), &[a, b])?;
        let zp = if op == BinaryOp::Add {
            za + zb
        } else {
            za - zb
        };
        Ok(Repr::Int { id: nid, scale, zp })
    }

    /// The scale both operands of residual node `id` are brought to (rule on
    /// [`Self::lower_residual`]).
    fn residual_scale(&self, id: NodeId, a: NodeId, b: NodeId) -> Result<f32, QuantError> {
        let own = |this: &Self| -> Result<f32, QuantError> {
            Ok(this
                .activation_params(id, this.opts.activation_bits, 4)?
                .scale)
        };
        match (&self.repr[&a], &self.repr[&b]) {
            (Repr::Int { scale: s1, .. }, Repr::Int { scale: s2, .. }) => Ok(s1.max(*s2)),
            (Repr::Int { id: x, scale, .. }, Repr::Chain(_)) => {
                self.int_or_own_scale(id, *x, *scale, b, own(self)?)
            }
            (Repr::Chain(_), Repr::Int { id: x, scale, .. }) => {
                self.int_or_own_scale(id, *x, *scale, a, own(self)?)
            }
            _ => own(self),
        }
    }

    /// Integer operand `x` (scale `s_int`) plus chain `chain`: `s_int` unless the sum gets
    /// more than 2 bits wider than at the Add's own scale `s_own`.
    fn int_or_own_scale(
        &self,
        id: NodeId,
        x: NodeId,
        s_int: f32,
        chain: NodeId,
        s_own: f32,
    ) -> Result<f32, QuantError> {
        let (clo, chi) = self.calib(chain)?;
        let (xlo, xhi) = self.range_of(x);
        let at_int = int_bits(
            (clo / s_int).round() as i64 + xlo.min(0),
            (chi / s_int).round() as i64 + xhi.max(0),
        );
        let (lo, hi) = self.calib(id)?;
        let at_own = int_bits(
            (lo / s_own).round() as i64 - 1,
            (hi / s_own).round() as i64 + 1,
        );
        Ok(if at_int <= at_own + 2 { s_int } else { s_own })
    }

    /// Concatenation: every input on one grid (scale and zero point). The grid is that of the
    /// integer input with the most elements, so only inputs on other grids pay a requantising
    /// lookup (pending chains write on it for free); with no integer input, the Concat's own
    /// calibrated grid at activation width.
    fn lower_concat(&mut self, id: NodeId, axis: usize) -> Result<Repr, QuantError> {
        let ins = self.src.node_inputs(id);
        self.quantize_real_inputs(&ins)?;
        let mut grid: Option<(usize, f32, i64)> = None;
        for &i in &ins {
            if let Repr::Int { scale, zp, .. } = self.repr[&i] {
                let n = self.src.node(i).fact.len();
                if grid.is_none_or(|(m, _, _)| n > m) {
                    grid = Some((n, scale, zp));
                }
            }
        }
        let (scale, zp) = match grid {
            Some((_, s, z)) => (s, z),
            None => {
                let p = self.activation_params(id, self.opts.activation_bits, 4)?;
                (p.scale, p.zero_point)
            }
        };
        let mut ids = vec![];
        for &i in &ins {
            ids.push(self.onto_grid(i, scale, Some(zp))?.0);
        }
        let nid = self.add(&self.src.node(id).name.clone(), Op::Concat { axis }, &ids)?;
        Ok(Repr::Int { id: nid, scale, zp })
    }

    /// Client-side quantisation of the graph inputs among `ins` that are still real.
    fn quantize_real_inputs(&mut self, ins: &[NodeId]) -> Result<(), QuantError> {
        for &i in ins {
            if let Repr::Real(x) = self.repr[&i] {
                let q = self.quantize_input(i, x)?;
                self.repr.insert(i, q);
            }
        }
        Ok(())
    }

    /// Float node `src` as integers at `scale` (and zero point `zp` when given; else any):
    /// a pending chain writes there in its own lookup, an integer tensor on another grid is
    /// requantised by an identity lookup (kept local: other consumers keep the original).
    fn onto_grid(
        &mut self,
        src: NodeId,
        scale: f32,
        zp: Option<i64>,
    ) -> Result<(NodeId, i64), QuantError> {
        let same = |s: f32| (s - scale).abs() <= 1e-6 * s.abs().max(scale.abs());
        match self.repr[&src].clone() {
            Repr::Int {
                id,
                scale: s,
                zp: z,
            } if same(s) && zp.is_none_or(|zp| zp == z) => Ok((id, z)),
            Repr::Int {
                id,
                scale: s,
                zp: z,
            } => {
                let chain = Chain::identity(id, s, z);
                let grid = OutGrid::Fixed {
                    scale,
                    zp: zp.unwrap_or(0),
                };
                let (nid, _, z) = self.lookup(src, chain, grid)?;
                Ok((nid, z))
            }
            Repr::Chain(_) => {
                let grid = OutGrid::Fixed {
                    scale,
                    zp: zp.unwrap_or(0),
                };
                let (nid, _, z) = self.materialize(src, grid)?;
                Ok((nid, z))
            }
            Repr::Real(_) | Repr::Const(_) | Repr::QConst(_) => Err(QuantError::Internal(
                "onto_grid on a constant or unquantised input".into(),
            )),
        }
    }

    fn lower_sum_pool(
        &mut self,
        id: NodeId,
        p: PoolAttrs,
        check_pads: bool,
    ) -> Result<Repr, QuantError> {
        let node = self.src.node(id).clone();
        let ins = self.src.node_inputs(id);
        let (x, s, z) = self.int_input(id, ins[0])?;
        let padded = p.pads.iter().any(|&(a, b)| a > 0 || b > 0);
        if check_pads && padded && !p.count_include_pad {
            return Err(self.node_err(id, "average pooling over padding without count_include_pad divides by a varying count; it cannot be quantised"));
        }
        if p.ceil_mode {
            return Err(self.node_err(id, "average pooling with ceil_mode cannot be quantised"));
        }
        let mut x_in = x;
        let mut attrs = p.clone();
        if padded {
            let mut pads = vec![(0, 0), (0, 0)];
            pads.extend(p.pads.iter().copied());
            x_in = self.add(
                &format!("{}.pad", node.name),
                Op::Pad {
                    pads,
                    mode: PadMode::Constant,
                    value: z as f32,
                },
                &[x],
            )?;
            attrs.pads = vec![(0, 0); p.pads.len()];
        }
        let k: i64 = p.kernel.iter().product::<usize>() as i64;
        attrs.count_include_pad = true;
        let nid = self.add(&node.name, Op::SumPool(attrs), &[x_in])?;
        Ok(Repr::Int {
            id: nid,
            scale: s / k as f32,
            zp: z * k,
        })
    }

    fn lower_max_pool(&mut self, id: NodeId, p: PoolAttrs) -> Result<Repr, QuantError> {
        let node = self.src.node(id).clone();
        let ins = self.src.node_inputs(id);
        let (x, s, z) = self.int_input(id, ins[0])?;
        let nid = self.add(&node.name, Op::MaxPool(p), &[x])?;
        Ok(Repr::Int {
            id: nid,
            scale: s,
            zp: z,
        })
    }

    /// The dequantised form of a graph output.
    fn lower_output(&mut self, o: NodeId) -> Result<NodeId, QuantError> {
        let (x, scale, zp) = match (self.repr[&o].clone(), self.opts.output_bits) {
            // Per-channel weight scales on the last layer: the client applies them.
            (
                Repr::Chain(Chain {
                    base,
                    scale,
                    zp,
                    ch: Some(ch),
                    ops,
                }),
                None,
            ) if ops.is_empty() => {
                let (lo, hi) = self.range_of(base);
                let params = QParams {
                    scale,
                    zero_point: zp,
                    bits: int_bits(lo, hi),
                    signed: lo < 0,
                };
                let name = format!("{}.dequantize", self.src.node(o).name);
                return self.add(
                    &name,
                    Op::DequantizeChannels { params, scales: ch },
                    &[base],
                );
            }
            (Repr::Chain(_), bits) => self.materialize(o, OutGrid::Calibrated(bits))?,
            (Repr::Int { id, scale, zp }, Some(bits)) => {
                // Requantise the accumulator through an identity table.
                self.repr
                    .insert(o, Repr::Chain(Chain::identity(id, scale, zp)));
                self.materialize(o, OutGrid::Calibrated(Some(bits)))?
            }
            _ => self.int_input(o, o)?,
        };
        let (lo, hi) = self.range_of(x);
        let bits = int_bits(lo, hi);
        let params = QParams {
            scale,
            zero_point: zp,
            bits,
            signed: lo < 0,
        };
        let name = format!("{}.dequantize", self.src.node(o).name);
        self.add(&name, Op::Dequantize(params), &[x])
    }
}

/// `w` with its output-channel axis first: as stored when `stored_out_first`, else the
/// `[in, out]` matrix transposed (standard layout).
fn out_channels_first<T: Clone>(w: &ArrayD<T>, stored_out_first: bool) -> ArrayD<T> {
    if stored_out_first {
        w.clone()
    } else {
        w.clone().reversed_axes().as_standard_layout().into_owned()
    }
}

fn bias_at(b: &Tensor, j: usize, n: usize) -> f32 {
    if b.len() == n {
        b.iter().nth(j).copied().unwrap_or(0.0)
    } else {
        b.iter().next().copied().unwrap_or(0.0)
    }
}
