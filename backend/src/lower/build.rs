//! Graph nodes to instructions, with shapes and guaranteed ranges.
//!
//! Instructions are built in the graph's topological order over "pre" value ids (no deltas,
//! no `Rescale` yet). Every value gets its inclusive integer range by interval arithmetic
//! over the instructions as built (so the ranges are exactly what the circuit relies on).
//! A table may cover less than its input's guaranteed range (tables sized from the
//! calibration-observed range): a read outside it wraps as `Lut::read` defines, so such a
//! table's output range is widened to the negated entries too.

use std::collections::{BTreeSet, HashMap};

use fhec_ir::int_interp::{self, Value};
use fhec_ir::op::pool_out_len;
use fhec_ir::quant::Tlu;
use fhec_ir::{BinaryOp, GemmAttrs, Graph, NodeId, Op, PadMode, PoolAttrs};
use fhec_runtime::circuit::{InputSpec, Instruction, IntTensor, Lut, Window};
use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use super::{LowerError, MaxPoolConflicts};

/// Largest comparison table a max-pooling may need (entries).
const MAX_RELU_ENTRIES: i128 = 1 << 24;

/// The instructions of a graph before encoding.
pub(super) struct Pre {
    pub instrs: Vec<Instruction>,
    /// `infos[i]` describes the value `instrs[i]` defines.
    pub infos: Vec<PreInfo>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<PreOutput>,
}

/// Shape, range and origin of one value.
pub(super) struct PreInfo {
    pub shape: Vec<usize>,
    pub min: i64,
    pub max: i64,
    /// The graph node the instruction came from (for messages and max-pool expansion).
    pub node: String,
    pub op: &'static str,
    pub node_id: NodeId,
}

/// A graph output: an encrypted value and how the client dequantises it.
pub(super) struct PreOutput {
    pub name: String,
    pub value: usize,
    pub scale: f32,
    pub zero_point: i64,
    pub channel_scales: Vec<f32>,
}

/// What a graph node stands for while building.
#[derive(Clone)]
enum Val {
    /// A real tensor (graph inputs, dequantised outputs): client side only.
    Real,
    /// An integer constant (weights, biases), folded into the instructions that use it.
    Const(ArrayD<i64>),
    /// An encrypted value, by pre id.
    Enc(usize),
}

/// Builds the instructions of `graph`; max-poolings of the nodes in `expand` become
/// comparison trees of one-hot convolutions and table lookups instead of `MaxPool`
/// ([`MaxPoolConflicts::Expand`]), or are followed by an identity lookup
/// ([`MaxPoolConflicts::Reencode`]).
pub(super) fn build(
    graph: &Graph,
    expand: &BTreeSet<NodeId>,
    conflicts: MaxPoolConflicts,
) -> Result<Pre, LowerError> {
    let mut b = Builder {
        pre: Pre {
            instrs: vec![],
            infos: vec![],
            inputs: vec![],
            outputs: vec![],
        },
        inputs: vec![None; graph.inputs().len()],
        node: String::new(),
        op: "",
        node_id: NodeId::new(0),
        conflicts,
    };
    let mut vals: HashMap<NodeId, Val> = HashMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        b.node.clone_from(&node.name);
        b.op = node.op.name();
        b.node_id = id;
        let ins: Vec<Val> = graph
            .node_inputs(id)
            .iter()
            .map(|i| vals.get(i).cloned().unwrap_or(Val::Real))
            .collect();
        let v = b.node(graph, id, &ins, expand)?;
        vals.insert(id, v);
    }
    for (i, input) in b.inputs.into_iter().enumerate() {
        match input {
            Some(spec) => b.pre.inputs.push(spec),
            None => {
                return Err(LowerError::Input {
                    name: graph.node(graph.inputs()[i]).name.clone(),
                    message: "is not quantised (it must feed exactly one Quantize)".into(),
                })
            }
        }
    }
    for &o in graph.outputs() {
        let node = graph.node(o);
        let fail = |message: &str| LowerError::Output {
            name: node.name.clone(),
            op: node.op.name(),
            message: message.into(),
        };
        let (q, channel_scales) = match &node.op {
            Op::Dequantize(q) => (q, vec![]),
            Op::DequantizeChannels { params, scales } => (params, scales.clone()),
            _ => {
                return Err(fail(
                    "must be the Dequantize of an encrypted integer tensor",
                ))
            }
        };
        let src = graph.node_inputs(o)[0];
        match vals.get(&src) {
            Some(Val::Enc(v)) => b.pre.outputs.push(PreOutput {
                name: node.name.clone(),
                value: *v,
                scale: q.scale,
                zero_point: q.zero_point,
                channel_scales,
            }),
            Some(Val::Const(_)) => return Err(fail("dequantises a constant")),
            _ => return Err(fail("dequantises a real tensor")),
        }
    }
    Ok(b.pre)
}

struct Builder {
    pre: Pre,
    /// Circuit inputs by graph input position, filled by their `Quantize`.
    inputs: Vec<Option<InputSpec>>,
    /// The node being lowered.
    node: String,
    op: &'static str,
    node_id: NodeId,
    conflicts: MaxPoolConflicts,
}

impl Builder {
    fn unsupported(&self, message: impl Into<String>) -> LowerError {
        LowerError::Unsupported {
            node: self.node.clone(),
            op: self.op,
            message: message.into(),
        }
    }

    fn range_error(&self, message: impl Into<String>) -> LowerError {
        LowerError::Range {
            node: self.node.clone(),
            op: self.op,
            message: message.into(),
        }
    }

    fn enc(&self, v: &Val, what: &str) -> Result<usize, LowerError> {
        match v {
            Val::Enc(i) => Ok(*i),
            Val::Const(_) => {
                Err(self.unsupported(format!("{what} must be encrypted, not a constant")))
            }
            Val::Real => Err(self.unsupported(format!(
                "{what} is a real tensor (only Quantize may read one)"
            ))),
        }
    }

    fn konst<'a>(&self, v: &'a Val, what: &str) -> Result<&'a ArrayD<i64>, LowerError> {
        match v {
            Val::Const(a) => Ok(a),
            _ => Err(self.unsupported(format!("{what} must be an integer constant"))),
        }
    }

    fn shape(&self, v: usize) -> &[usize] {
        &self.pre.infos[v].shape
    }

    fn range(&self, v: usize) -> (i64, i64) {
        (self.pre.infos[v].min, self.pre.infos[v].max)
    }

    /// Appends an instruction defining a value of `shape`; its range comes from interval
    /// arithmetic unless `range` gives a tighter one the caller can prove.
    fn emit(
        &mut self,
        instr: Instruction,
        shape: Vec<usize>,
        range: Option<(i64, i64)>,
    ) -> Result<usize, LowerError> {
        let (min, max) = match range {
            Some(r) => r,
            None => self.value_range(&instr)?,
        };
        self.pre.instrs.push(instr);
        self.pre.infos.push(PreInfo {
            shape,
            min,
            max,
            node: self.node.clone(),
            op: self.op,
            node_id: self.node_id,
        });
        Ok(self.pre.instrs.len() - 1)
    }

    fn node(
        &mut self,
        graph: &Graph,
        id: NodeId,
        ins: &[Val],
        expand: &BTreeSet<NodeId>,
    ) -> Result<Val, LowerError> {
        let node = graph.node(id);
        let out_shape = node.fact.shape.clone();
        match &node.op {
            Op::Input => {
                let consumers = graph.consumers(id);
                let ok = consumers.len() == 1
                    && matches!(graph.node(consumers[0]).op, Op::Quantize(_))
                    && graph.node_inputs(consumers[0]).len() == 1;
                if !ok {
                    return Err(LowerError::Input {
                        name: node.name.clone(),
                        message: format!(
                            "must feed exactly one Quantize, feeds {}",
                            describe(graph, &consumers)
                        ),
                    });
                }
                return Ok(Val::Real);
            }
            Op::IntConst(a) => return Ok(Val::Const(a.clone())),
            // Real constants are only an error where an integer op reads them.
            Op::Const(_) => return Ok(Val::Real),
            Op::Quantize(q) => {
                let src = graph.node_inputs(id)[0];
                let Some(index) = graph.inputs().iter().position(|&i| i == src) else {
                    return Err(self.unsupported(
                        "quantises a computed tensor (only graph inputs are quantised, by the client)",
                    ));
                };
                if q.bits == 0 || q.bits > 62 {
                    return Err(self.unsupported(format!("{}-bit inputs", q.bits)));
                }
                self.inputs[index] = Some(InputSpec {
                    name: graph.node(src).name.clone(),
                    shape: out_shape.clone(),
                    quantization: q.clone(),
                });
                let v = self.emit(Instruction::Input { index }, out_shape, Some(q.range()))?;
                return Ok(Val::Enc(v));
            }
            Op::Dequantize(_) | Op::DequantizeChannels { .. } => {
                self.enc(&ins[0], "the dequantised tensor")?;
                return Ok(Val::Real);
            }
            Op::Identity => return Ok(ins[0].clone()),
            _ => {}
        }
        // Integer ops of constants only (left unfolded upstream): evaluate them here.
        if !ins.is_empty() && ins.iter().all(|v| matches!(v, Val::Const(_))) {
            let values: Vec<Value> = ins
                .iter()
                .map(|v| match v {
                    Val::Const(a) => Value::Int(a.clone()),
                    _ => unreachable!("all constants"),
                })
                .collect();
            let refs: Vec<&Value> = values.iter().collect();
            return match int_interp::eval(&node.op, &refs, &out_shape) {
                Ok(Value::Int(a)) => Ok(Val::Const(a)),
                Ok(Value::Real(_)) => Err(self.unsupported("a real constant in the integer graph")),
                Err(e) => Err(self.unsupported(e)),
            };
        }
        let v = match &node.op {
            Op::Gemm(g) => self.gemm(g, ins, out_shape)?,
            Op::MatMul => {
                let a = self.enc(&ins[0], "A")?;
                let b = self.konst(&ins[1], "B (the weights)")?;
                let b = b
                    .view()
                    .into_dimensionality::<Ix2>()
                    .map_err(|_| self.unsupported("B must be a 2-D constant"))?;
                self.dense(a, b.reversed_axes().to_owned(), None, out_shape)?
            }
            Op::Conv(c) => {
                let x = self.enc(&ins[0], "X")?;
                let w = self.konst(&ins[1], "W")?;
                let cout = w.shape()[0];
                let bias = match ins.get(2) {
                    Some(b) => self.konst(b, "the bias")?.iter().copied().collect(),
                    None => vec![0; cout],
                };
                let instr = Instruction::Conv {
                    input: x,
                    weights: w.iter().copied().collect(),
                    weight_shape: w.shape().to_vec(),
                    bias,
                    window: Window {
                        kernel: w.shape()[2..].to_vec(),
                        strides: c.strides.clone(),
                        dilations: c.dilations.clone(),
                        pads: c.pads.clone(),
                    },
                    group: c.group,
                };
                self.emit(instr, out_shape, None)?
            }
            Op::SumPool(p) => {
                let x = self.enc(&ins[0], "the input")?;
                let window = self.window(p, x, &out_shape)?;
                self.emit(Instruction::SumPool { input: x, window }, out_shape, None)?
            }
            Op::MaxPool(p) => self.max_pool(p, &ins[0], expand.contains(&id), out_shape)?,
            Op::Binary(op) => self.binary(*op, &ins[0], &ins[1], out_shape)?,
            Op::Reshape { .. } => {
                let x = self.enc(&ins[0], "the input")?;
                self.emit(Instruction::Reshape { input: x }, out_shape, None)?
            }
            Op::Transpose { perm } => {
                let x = self.enc(&ins[0], "the input")?;
                let instr = Instruction::Transpose {
                    input: x,
                    perm: perm.clone(),
                };
                self.emit(instr, out_shape, None)?
            }
            Op::Pad { pads, mode, value } => {
                if *mode != PadMode::Constant {
                    return Err(self.unsupported(format!("{mode:?} padding (only constant)")));
                }
                if value.fract() != 0.0 || !value.is_finite() {
                    return Err(
                        self.unsupported(format!("padding value {value} is not an integer"))
                    );
                }
                let x = self.enc(&ins[0], "the input")?;
                let instr = Instruction::Pad {
                    input: x,
                    pads: pads.clone(),
                    value: *value as i64,
                };
                self.emit(instr, out_shape, None)?
            }
            Op::Concat { axis } => {
                let inputs = ins
                    .iter()
                    .map(|v| self.enc(v, "every input"))
                    .collect::<Result<Vec<_>, _>>()?;
                let instr = Instruction::Concat {
                    inputs,
                    axis: *axis,
                };
                self.emit(instr, out_shape, None)?
            }
            Op::Tlu(t) => {
                let x = self.enc(&ins[0], "the input")?;
                let lut = self.lut(t)?;
                self.emit(Instruction::Tlu { input: x, lut }, out_shape, None)?
            }
            other => {
                let what = if node.fact.dtype == fhec_ir::DType::I64 {
                    "has no circuit instruction"
                } else {
                    "is a real-valued op inside the encrypted part of the graph"
                };
                return Err(self.unsupported(format!("{} {what}", other.name())));
            }
        };
        Ok(Val::Enc(v))
    }

    /// An integer Gemm (`alpha = beta = 1`) as a `Dense` with the weights' output features
    /// first, `A` transposed first when `transA` is set.
    fn gemm(
        &mut self,
        g: &GemmAttrs,
        ins: &[Val],
        out_shape: Vec<usize>,
    ) -> Result<usize, LowerError> {
        if g.alpha != 1.0 || g.beta != 1.0 {
            return Err(self.unsupported(format!(
                "alpha = {} and beta = {} (the integer Gemm needs 1 and 1)",
                g.alpha, g.beta
            )));
        }
        let mut a = self.enc(&ins[0], "A")?;
        let b = self.konst(&ins[1], "B (the weights)")?;
        let b = b
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| self.unsupported("B must be 2-D"))?;
        // Weights with the output features first.
        let w = if g.trans_b { b } else { b.reversed_axes() };
        if g.trans_a {
            let s = self.shape(a).to_vec();
            if s.len() != 2 {
                return Err(self.unsupported("A must be 2-D"));
            }
            a = self.emit(
                Instruction::Transpose {
                    input: a,
                    perm: vec![1, 0],
                },
                vec![s[1], s[0]],
                None,
            )?;
        }
        let bias = match ins.get(2) {
            Some(c) => Some(self.konst(c, "C (the bias)")?),
            None => None,
        };
        self.dense(a, w.to_owned(), bias, out_shape)
    }

    /// Max-pooling of `input`. With `expand` (its consumers need a smaller delta than its
    /// comparisons compute at): a tree of comparisons ([`Self::max_tree`]) when conflicts
    /// are to be expanded, else the maximum read through an identity table.
    fn max_pool(
        &mut self,
        p: &PoolAttrs,
        input: &Val,
        expand: bool,
        out_shape: Vec<usize>,
    ) -> Result<usize, LowerError> {
        let x = self.enc(input, "the input")?;
        let relu = self.relu_lut(x)?;
        let window = self.window(p, x, &out_shape)?;
        if expand && self.conflicts == MaxPoolConflicts::Expand {
            self.max_tree(x, window, relu, out_shape)
        } else if expand {
            // The maximum at the comparisons' delta, then an identity table that
            // reads it there and writes it at whatever delta the consumers need.
            let (lo, hi) = self.range(x);
            let identity = Lut {
                input_min: lo,
                precision: relu.precision,
                rounding: None,
                tables: vec![(lo..=hi).collect()],
                axis: None,
                sets: Default::default(),
            };
            let instr = Instruction::MaxPool {
                input: x,
                window,
                relu,
            };
            let max = self.emit(instr, out_shape.clone(), Some((lo, hi)))?;
            let instr = Instruction::Tlu {
                input: max,
                lut: identity,
            };
            self.emit(instr, out_shape, Some((lo, hi)))
        } else {
            let range = self.range(x);
            let instr = Instruction::MaxPool {
                input: x,
                window,
                relu,
            };
            self.emit(instr, out_shape, Some(range))
        }
    }

    /// `y = x @ w^T + bias` over the last axis of `x`; `w` is `[out, in]`. A bias that varies
    /// along the rows becomes an `AddConst` after a bias-free `Dense`.
    fn dense(
        &mut self,
        x: usize,
        w: ndarray::Array2<i64>,
        bias: Option<&ArrayD<i64>>,
        out_shape: Vec<usize>,
    ) -> Result<usize, LowerError> {
        let (n, k) = w.dim();
        if self.shape(x).last() != Some(&k) {
            return Err(self.unsupported(format!(
                "input {:?} does not end with the {k} input features",
                self.shape(x)
            )));
        }
        let mut row_bias = vec![0; n];
        let mut add = None;
        if let Some(c) = bias {
            let full = c.broadcast(IxDyn(&out_shape)).ok_or_else(|| {
                self.unsupported(format!("bias {:?} does not broadcast", c.shape()))
            })?;
            let rows = full
                .to_shape((full.len() / n.max(1), n))
                .map_err(|e| self.unsupported(e.to_string()))?;
            let first = rows.row(0).to_vec();
            if rows.axis_iter(Axis(0)).all(|r| r.iter().eq(first.iter())) {
                row_bias = first;
            } else {
                add = Some(IntTensor {
                    shape: out_shape.clone(),
                    data: full.iter().copied().collect(),
                });
            }
        }
        let instr = Instruction::Dense {
            input: x,
            weights: w.iter().copied().collect(),
            in_features: k,
            out_features: n,
            bias: row_bias,
        };
        let y = self.emit(instr, out_shape.clone(), None)?;
        match add {
            Some(constant) => self.emit(
                Instruction::AddConst { input: y, constant },
                out_shape,
                None,
            ),
            None => Ok(y),
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        a: &Val,
        b: &Val,
        out_shape: Vec<usize>,
    ) -> Result<usize, LowerError> {
        let name = format!("{op:?}");
        match (a, b) {
            (Val::Enc(x), Val::Enc(y)) => {
                let (sx, sy) = (self.shape(*x).to_vec(), self.shape(*y).to_vec());
                if sx != sy {
                    return Err(self.unsupported(format!(
                        "{name} of two encrypted tensors with different shapes {sx:?} and {sy:?}"
                    )));
                }
                let instr = match op {
                    BinaryOp::Add => Instruction::Add { a: *x, b: *y },
                    BinaryOp::Sub => Instruction::Sub { a: *x, b: *y },
                    _ => return Err(self.unsupported(format!("{name} of two encrypted tensors"))),
                };
                self.emit(instr, out_shape, None)
            }
            (Val::Enc(x), Val::Const(c)) | (Val::Const(c), Val::Enc(x)) => {
                let x = *x;
                let const_first = matches!(a, Val::Const(_));
                if self.shape(x) != out_shape.as_slice() || c.broadcast(IxDyn(&out_shape)).is_none()
                {
                    return Err(self.unsupported(format!(
                        "{name} of an encrypted {:?} and a constant {:?} does not keep the encrypted shape",
                        self.shape(x),
                        c.shape()
                    )));
                }
                let tensor = |data: Vec<i64>| IntTensor {
                    shape: c.shape().to_vec(),
                    data,
                };
                let data: Vec<i64> = c.iter().copied().collect();
                match (op, const_first) {
                    (BinaryOp::Add, _) => {
                        let constant = tensor(data);
                        self.emit(
                            Instruction::AddConst { input: x, constant },
                            out_shape,
                            None,
                        )
                    }
                    (BinaryOp::Mul, _) => {
                        let constant = tensor(data);
                        self.emit(
                            Instruction::MulConst { input: x, constant },
                            out_shape,
                            None,
                        )
                    }
                    (BinaryOp::Sub, false) => {
                        let neg = data
                            .iter()
                            .map(|v| v.checked_neg())
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| self.range_error("constant cannot be negated"))?;
                        let constant = tensor(neg);
                        self.emit(
                            Instruction::AddConst { input: x, constant },
                            out_shape,
                            None,
                        )
                    }
                    (BinaryOp::Sub, true) => {
                        let minus_one = IntTensor {
                            shape: vec![],
                            data: vec![-1],
                        };
                        let neg = self.emit(
                            Instruction::MulConst {
                                input: x,
                                constant: minus_one,
                            },
                            out_shape.clone(),
                            None,
                        )?;
                        let constant = tensor(data);
                        self.emit(
                            Instruction::AddConst {
                                input: neg,
                                constant,
                            },
                            out_shape,
                            None,
                        )
                    }
                    _ => Err(self.unsupported(format!("{name} has no integer semantics"))),
                }
            }
            (Val::Real, _) | (_, Val::Real) => Err(self.unsupported(format!(
                "{name} of a real tensor (only Quantize may read one)"
            ))),
            (Val::Const(_), Val::Const(_)) => unreachable!("constant operations are folded"),
        }
    }

    /// The circuit form of a table lookup.
    fn lut(&self, t: &Tlu) -> Result<Lut, LowerError> {
        let precision = t.input_bits();
        let shift = t.rounding.map_or(0, |r| r.shift);
        if precision + shift > 63 {
            return Err(self.range_error(format!(
                "a {precision}-bit table on an input rounded by {shift} bits needs more than 63 bits"
            )));
        }
        Ok(Lut {
            input_min: t.input_min,
            precision,
            rounding: t.rounding,
            tables: t.tables.clone(),
            axis: t.axis,
            sets: Default::default(),
        })
    }

    /// The comparison table of a max-pooling on `x`: `relu(b - a)` for `a, b` in the range of
    /// `x`.
    fn relu_lut(&self, x: usize) -> Result<Lut, LowerError> {
        let (lo, hi) = self.range(x);
        let entries = 2 * (hi as i128 - lo as i128) + 1;
        if entries > MAX_RELU_ENTRIES {
            return Err(self.range_error(format!(
                "input range [{lo}, {hi}] is too wide for the comparison table ({entries} entries)"
            )));
        }
        let input_min = lo - hi;
        Ok(Lut {
            input_min,
            precision: bits_for_entries(entries as u128).max(1),
            rounding: None,
            tables: vec![(0..entries as i64)
                .map(|i| (i + input_min).max(0))
                .collect()],
            axis: None,
            sets: Default::default(),
        })
    }

    /// The window of a pooling; ceil-mode windows get the end padding that makes the
    /// floor rule give the same output length (padded positions contribute nothing).
    fn window(&self, p: &PoolAttrs, x: usize, out_shape: &[usize]) -> Result<Window, LowerError> {
        let in_shape = self.shape(x);
        let mut pads = p.pads.clone();
        for (i, pad) in pads.iter_mut().enumerate() {
            let span = p.dilations[i] * (p.kernel[i] - 1) + 1;
            let needed = (out_shape[2 + i] - 1) * p.strides[i] + span;
            let padded = in_shape[2 + i] + pad.0 + pad.1;
            pad.1 += needed.saturating_sub(padded);
            let len = pool_out_len(
                in_shape[2 + i],
                p.kernel[i],
                p.strides[i],
                p.dilations[i],
                *pad,
                false,
            )
            .map_err(|e| self.unsupported(e.0))?;
            if len != out_shape[2 + i] {
                return Err(self.unsupported(format!(
                    "window gives {len} outputs along spatial axis {i}, the graph says {}",
                    out_shape[2 + i]
                )));
            }
        }
        Ok(Window {
            kernel: p.kernel.clone(),
            strides: p.strides.clone(),
            dilations: p.dilations.clone(),
            pads,
        })
    }

    /// Max-pooling as a tree of `max(a, b) = a + relu(b - a)` over the window elements, each
    /// element picked by a depthwise one-hot convolution; padding is filled with the smallest
    /// value of the input range, which never wins a comparison.
    fn max_tree(
        &mut self,
        x: usize,
        window: Window,
        relu: Lut,
        out_shape: Vec<usize>,
    ) -> Result<usize, LowerError> {
        let (lo, hi) = self.range(x);
        let mut x = x;
        if window.pads.iter().any(|&(b, e)| b > 0 || e > 0) {
            let mut pads = vec![(0, 0), (0, 0)];
            pads.extend_from_slice(&window.pads);
            let shape = self
                .shape(x)
                .iter()
                .zip(&pads)
                .map(|(d, p)| d + p.0 + p.1)
                .collect();
            x = self.emit(
                Instruction::Pad {
                    input: x,
                    pads,
                    value: lo,
                },
                shape,
                None,
            )?;
        }
        let channels = self.shape(x)[1];
        let k: usize = window.kernel.iter().product();
        let sp = window.kernel.len();
        let picker = Window {
            pads: vec![(0, 0); sp],
            ..window.clone()
        };
        let mut weight_shape = vec![channels, 1];
        weight_shape.extend_from_slice(&window.kernel);
        let mut level = vec![];
        for j in 0..k {
            let mut weights = vec![0; channels * k];
            for c in 0..channels {
                weights[c * k + j] = 1;
            }
            let instr = Instruction::Conv {
                input: x,
                weights,
                weight_shape: weight_shape.clone(),
                bias: vec![0; channels],
                window: picker.clone(),
                group: channels,
            };
            level.push(self.emit(instr, out_shape.clone(), None)?);
        }
        while level.len() > 1 {
            let mut next = vec![];
            for pair in level.chunks(2) {
                match *pair {
                    [a, b] => {
                        let d =
                            self.emit(Instruction::Sub { a: b, b: a }, out_shape.clone(), None)?;
                        let r = self.emit(
                            Instruction::Tlu {
                                input: d,
                                lut: relu.clone(),
                            },
                            out_shape.clone(),
                            None,
                        )?;
                        // a + relu(b - a) = max(a, b) stays in the input range.
                        next.push(self.emit(
                            Instruction::Add { a, b: r },
                            out_shape.clone(),
                            Some((lo, hi)),
                        )?);
                    }
                    [a] => next.push(a),
                    _ => unreachable!("chunks of two"),
                }
            }
            level = next;
        }
        Ok(level[0])
    }

    /// Checks that every table covers the whole range of the lookup's input.
    /// Whether every table of `lut` covers the guaranteed range of `input`.
    fn covers(&self, lut: &Lut, input: usize) -> bool {
        let (min, max) = self.range(input);
        lut.tables.iter().all(|table| {
            let inside = |v: i64| lut.index(v).is_some_and(|i| i < table.len());
            inside(min) && inside(max)
        })
    }

    /// Guaranteed range of the value `instr` defines, from the ranges of its operands.
    fn value_range(&self, instr: &Instruction) -> Result<(i64, i64), LowerError> {
        use Instruction::*;
        let r = |v: &usize| {
            let (a, b) = self.range(*v);
            (a as i128, b as i128)
        };
        let padded = |w: &Window| w.pads.iter().any(|&(b, e)| b > 0 || e > 0);
        let (lo, hi): (i128, i128) = match instr {
            Input { .. } => return Err(self.unsupported("an input's range is its quantisation's")),
            Dense {
                input,
                weights,
                in_features,
                bias,
                ..
            } => {
                let x = r(input);
                filters_range(weights, *in_features, bias, x)
            }
            Conv {
                input,
                weights,
                weight_shape,
                bias,
                window,
                ..
            } => {
                let (mut l, mut h) = r(input);
                if padded(window) {
                    (l, h) = (l.min(0), h.max(0));
                }
                let per_filter = weight_shape[1..].iter().product();
                filters_range(weights, per_filter, bias, (l, h))
            }
            SumPool { input, window } => {
                let (mut l, mut h) = r(input);
                if padded(window) {
                    (l, h) = (l.min(0), h.max(0));
                }
                let k = window.kernel.iter().product::<usize>() as i128;
                (k * l, k * h)
            }
            MaxPool { input, .. }
            | Reshape { input }
            | Transpose { input, .. }
            | Rescale { input, .. } => r(input),
            Add { a, b } => {
                let (a, b) = (r(a), r(b));
                (a.0 + b.0, a.1 + b.1)
            }
            Sub { a, b } => {
                let (a, b) = (r(a), r(b));
                (a.0 - b.1, a.1 - b.0)
            }
            AddConst { input, constant } => {
                let (l, h) = r(input);
                let (cl, ch) = min_max(&constant.data);
                (l + cl as i128, h + ch as i128)
            }
            MulConst { input, constant } => {
                let (l, h) = r(input);
                let (cl, ch) = min_max(&constant.data);
                let p = [
                    l * cl as i128,
                    l * ch as i128,
                    h * cl as i128,
                    h * ch as i128,
                ];
                (
                    p.iter().copied().min().unwrap_or(0),
                    p.iter().copied().max().unwrap_or(0),
                )
            }
            Pad { input, value, .. } => {
                let (l, h) = r(input);
                (l.min(*value as i128), h.max(*value as i128))
            }
            Concat { inputs, .. } => inputs
                .iter()
                .map(r)
                .fold((i128::MAX, i128::MIN), |(l, h), (a, b)| {
                    (l.min(a), h.max(b))
                }),
            Tlu { input, lut } => {
                let (l, h) = min_max(lut.tables.iter().flatten());
                if self.covers(lut, *input) {
                    (l as i128, h as i128)
                } else {
                    // A read outside the domain returns an entry, its negation or 0.
                    let m = (l as i128).abs().max((h as i128).abs());
                    (-m, m)
                }
            }
        };
        match (i64::try_from(lo), i64::try_from(hi)) {
            (Ok(lo), Ok(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(self.range_error(format!("range [{lo}, {hi}] does not fit 64-bit integers"))),
        }
    }
}

/// Range of `bias[o] + sum_i w[o, i] * x_i` over all filters `o` for `x_i` in `x`.
fn filters_range(
    weights: &[i64],
    per_filter: usize,
    bias: &[i64],
    x: (i128, i128),
) -> (i128, i128) {
    let mut out = (i128::MAX, i128::MIN);
    for (o, filter) in weights.chunks(per_filter.max(1)).enumerate() {
        let b = bias.get(o).copied().unwrap_or(0) as i128;
        let (mut l, mut h) = (b, b);
        for &w in filter {
            let (p, q) = (w as i128 * x.0, w as i128 * x.1);
            l += p.min(q);
            h += p.max(q);
        }
        out = (out.0.min(l), out.1.max(h));
    }
    out
}

fn min_max<'a>(v: impl IntoIterator<Item = &'a i64>) -> (i64, i64) {
    v.into_iter()
        .fold((i64::MAX, i64::MIN), |(l, h), &x| (l.min(x), h.max(x)))
}

/// Bits needed to index `entries` table entries.
pub(super) fn bits_for_entries(entries: u128) -> u32 {
    if entries <= 1 {
        0
    } else {
        128 - (entries - 1).leading_zeros()
    }
}

fn describe(graph: &Graph, nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        return "nothing".into();
    }
    nodes
        .iter()
        .map(|&n| format!("'{}' ({})", graph.node(n).name, graph.node(n).op.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
