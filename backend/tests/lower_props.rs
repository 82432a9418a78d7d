//! Property tests: on random graphs, the lowered program run by the clear engine gives
//! exactly the integer interpreter's outputs.
//!
//! Two generators: float models (MLPs and small CNNs with padded, strided and ceil-mode
//! pooling, NHWC flattens) compiled by the pipeline, and integer graphs built directly,
//! which reach what the pipeline never emits (sums of two encrypted tensors, constants on
//! either side of Add/Sub/Mul, Concat, Pad, per-channel and rounded tables, max-pooling
//! feeding outputs and tables).

mod lower_common;

use std::collections::HashMap;

use fhec_backend::lower::lower;
use fhec_ir::{
    BinaryOp, ConvAttrs, Graph, NodeId, Op, PadMode, PoolAttrs, QParams, Rounding, RoundingMode,
    Tensor, TensorFact, Tlu, UnaryOp,
};
use fhec_passes::bitwidth::node_range;
use lower_common::*;
use proptest::prelude::*;

fn pool_attrs(r: &mut Lcg, hw: usize, ceil: bool) -> Option<PoolAttrs> {
    let k = 2 + r.below(2);
    let pad = r.below(k.min(2));
    if hw + 2 * pad < k {
        return None;
    }
    Some(PoolAttrs {
        kernel: vec![k, k],
        strides: vec![1 + r.below(2); 2],
        dilations: vec![1, 1],
        pads: vec![(pad, pad); 2],
        ceil_mode: ceil && r.chance(0.5),
        count_include_pad: true,
    })
}

/// A random float MLP or CNN.
fn float_model(seed: u64) -> Graph {
    let mut r = Lcg::new(seed);
    let mut g = Graph::new();
    let konst = |g: &mut Graph, r: &mut Lcg, name: &str, shape: &[usize], s: f32| {
        g.add_node(name, Op::Const(r.tensor(shape, -s, s)), &[])
            .unwrap()
    };
    let act = |r: &mut Lcg| {
        if r.chance(0.75) {
            UnaryOp::Relu
        } else {
            UnaryOp::Sigmoid
        }
    };
    let mut x;
    let mut width;
    if r.chance(0.5) {
        let mut c = 1 + r.below(2);
        let mut hw = 5 + r.below(4);
        x = g.add_input("x", TensorFact::f32([1, c, hw, hw]));
        for b in 0..1 + r.below(2) {
            let o = 1 + r.below(3);
            let pad = r.below(2);
            let k = 1 + r.below(3.min(hw + 2 * pad));
            let w = konst(&mut g, &mut r, &format!("w{b}"), &[o, c, k, k], 1.0);
            let bias = konst(&mut g, &mut r, &format!("b{b}"), &[o], 0.5);
            let attrs = ConvAttrs {
                strides: vec![1 + r.below(2); 2],
                dilations: vec![1, 1],
                pads: vec![(pad, pad); 2],
                group: 1,
            };
            x = g
                .add_node(format!("conv{b}"), Op::Conv(attrs), &[x, w, bias])
                .unwrap();
            x = g
                .add_node(format!("act{b}"), Op::Unary(act(&mut r)), &[x])
                .unwrap();
            c = o;
            hw = g.node(x).fact.shape[2];
            let pooled = match r.below(3) {
                0 => pool_attrs(&mut r, hw, true).map(Op::MaxPool),
                1 => pool_attrs(&mut r, hw, false).map(|mut p| {
                    p.pads = vec![(0, 0); 2];
                    Op::AveragePool(p)
                }),
                _ => None,
            };
            if let Some(op) = pooled {
                if let Ok(p) = g.add_node(format!("pool{b}"), op, &[x]) {
                    x = p;
                    hw = g.node(x).fact.shape[2];
                }
            }
        }
        if r.chance(0.4) {
            x = g
                .add_node(
                    "nhwc",
                    Op::Transpose {
                        perm: vec![0, 2, 3, 1],
                    },
                    &[x],
                )
                .unwrap();
        }
        width = c * hw * hw;
        x = g
            .add_node(
                "flatten",
                Op::Reshape {
                    shape: vec![1, width],
                },
                &[x],
            )
            .unwrap();
    } else {
        width = 2 + r.below(8);
        x = g.add_input("x", TensorFact::f32([1, width]));
    }
    for l in 0..r.below(3) {
        let out = 2 + r.below(8);
        let w = konst(&mut g, &mut r, &format!("fc{l}.w"), &[out, width], 1.0);
        let b = konst(&mut g, &mut r, &format!("fc{l}.b"), &[out], 0.5);
        x = g
            .add_node(format!("fc{l}"), Op::Gemm(GEMM_TRANS_B), &[x, w, b])
            .unwrap();
        x = g
            .add_node(format!("fc{l}.act"), Op::Unary(act(&mut r)), &[x])
            .unwrap();
        width = out;
    }
    let w = konst(&mut g, &mut r, "out.w", &[3, width], 1.0);
    x = g.add_node("out", Op::Gemm(GEMM_TRANS_B), &[x, w]).unwrap();
    g.set_outputs(vec![x]);
    g.verify().unwrap();
    g
}

/// Builds an integer graph node by node, keeping the worst-case range of every node.
struct IntGraph {
    g: Graph,
    ranges: HashMap<NodeId, (i64, i64)>,
    r: Lcg,
    n: usize,
}

impl IntGraph {
    /// Adds a node; `None` when shape inference rejects it.
    fn add(&mut self, op: Op, ins: &[NodeId]) -> Option<NodeId> {
        self.n += 1;
        let name = format!("n{}.{}", self.n, op.name());
        let id = self.g.add_node(name, op, ins).ok()?;
        if let Some(range) = node_range(&self.g, id, &self.ranges).ok()? {
            self.ranges.insert(id, range);
        }
        Some(id)
    }

    fn konst(&mut self, shape: &[usize], lo: i64, hi: i64) -> NodeId {
        let a = self.r.ints(shape, lo, hi);
        self.add(Op::IntConst(a), &[]).expect("constant")
    }

    fn shape(&self, id: NodeId) -> Vec<usize> {
        self.g.node(id).fact.shape.clone()
    }

    /// A table covering the range of `x` (rounded when wide), per channel or not.
    fn tlu(&mut self, x: NodeId) -> Option<NodeId> {
        let (lo, hi) = self.ranges[&x];
        let span = (hi - lo) as u64;
        let bits = 64 - span.leading_zeros();
        let extra = self.r.below(3) as u32;
        let shift = if bits > 6 {
            bits - 6 + extra.min(1)
        } else if self.r.chance(0.3) {
            1 + extra.min(1)
        } else {
            0
        };
        let rounding = (shift > 0).then(|| Rounding {
            shift,
            mode: if self.r.chance(0.5) {
                RoundingMode::Exact
            } else {
                RoundingMode::Approximate
            },
        });
        // With rounding the domain may start up to half a step above the minimum.
        let input_min = if shift > 0 {
            lo + self.r.int(0, 1 << (shift - 1))
        } else {
            lo
        };
        let mut t = Tlu {
            input_min,
            rounding,
            tables: vec![],
            axis: None,
        };
        let len = t.index(hi)? + 1 + self.r.below(2);
        let shape = self.shape(x);
        let count = if shape.len() >= 2 && self.r.chance(0.4) {
            t.axis = Some(1);
            shape[1]
        } else {
            1
        };
        t.tables = (0..count)
            .map(|_| (0..len).map(|_| self.r.int(-6, 20)).collect())
            .collect();
        self.add(Op::Tlu(t), &[x])
    }
}

/// A random integer graph: quantised input, a random chain of integer ops (with side
/// branches joined by Add/Sub/Concat), flatten and a Gemm; sometimes a second output.
fn int_model(seed: u64) -> Graph {
    let mut b = IntGraph {
        g: Graph::new(),
        ranges: HashMap::new(),
        r: Lcg::new(seed),
        n: 0,
    };
    let c = 1 + b.r.below(3);
    let hw = 3 + b.r.below(4);
    let x = b.g.add_input("x", TensorFact::f32([1, c, hw, hw]));
    let q = QParams {
        scale: 0.25,
        zero_point: b.r.int(0, 2),
        bits: 2 + b.r.below(4) as u32,
        signed: b.r.chance(0.5),
    };
    let mut cur = b.add(Op::Quantize(q), &[x]).expect("quantize");
    let mut seen = vec![cur];
    for _ in 0..2 + b.r.below(7) {
        let shape = b.shape(cur);
        let (lo, hi) = b.ranges[&cur];
        let next = match b.r.below(11) {
            0 | 1 => b.tlu(cur),
            2 => {
                let cshape = match b.r.below(3) {
                    0 => vec![],
                    1 => vec![shape[1], 1, 1],
                    _ => shape.clone(),
                };
                let k = b.konst(&cshape, -4, 4);
                let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul][b.r.below(3)];
                let ins = if b.r.chance(0.5) { [cur, k] } else { [k, cur] };
                b.add(Op::Binary(op), &ins)
            }
            3 => {
                let same: Vec<NodeId> = seen
                    .iter()
                    .copied()
                    .filter(|&s| b.shape(s) == shape)
                    .collect();
                let other = same[b.r.below(same.len())];
                let op = if b.r.chance(0.5) {
                    BinaryOp::Add
                } else {
                    BinaryOp::Sub
                };
                b.add(Op::Binary(op), &[cur, other])
            }
            4 => {
                let o = 1 + b.r.below(3);
                let k = 1 + b.r.below(3);
                let pad = b.r.below(2);
                let depthwise = b.r.chance(0.3);
                let (o, cin, group) = if depthwise {
                    (shape[1], 1, shape[1])
                } else {
                    (o, shape[1], 1)
                };
                let w = b.konst(&[o, cin, k, k], -3, 3);
                let mut ins = vec![cur, w];
                if b.r.chance(0.7) {
                    ins.push(b.konst(&[o], -20, 20));
                }
                let attrs = ConvAttrs {
                    strides: vec![1 + b.r.below(2); 2],
                    dilations: vec![1, 1 + b.r.below(2)],
                    pads: vec![(pad, b.r.below(2)); 2],
                    group,
                };
                b.add(Op::Conv(attrs), &ins)
            }
            5 => {
                let p = pool_attrs(&mut b.r, shape[2].min(shape[3]), true);
                p.and_then(|p| b.add(Op::MaxPool(p), &[cur]))
            }
            6 => {
                let p = pool_attrs(&mut b.r, shape[2].min(shape[3]), false);
                p.and_then(|p| b.add(Op::SumPool(p), &[cur]))
            }
            7 => {
                let pads = vec![
                    (0, 0),
                    (b.r.below(2), 0),
                    (b.r.below(2), b.r.below(2)),
                    (0, 1),
                ];
                let value = b.r.int(-3, 3) as f32;
                b.add(
                    Op::Pad {
                        pads,
                        mode: PadMode::Constant,
                        value,
                    },
                    &[cur],
                )
            }
            8 => {
                let perm = if b.r.chance(0.5) {
                    vec![0, 1, 3, 2]
                } else {
                    vec![0, 2, 3, 1]
                };
                b.add(Op::Transpose { perm }, &[cur])
            }
            9 => {
                let same: Vec<NodeId> = seen
                    .iter()
                    .copied()
                    .filter(|&s| b.shape(s) == shape)
                    .collect();
                let other = same[b.r.below(same.len())];
                let axis = 1 + b.r.below(3);
                b.add(Op::Concat { axis }, &[cur, other])
            }
            _ => {
                let s = vec![shape[0], shape[1], shape[3], shape[2]];
                b.add(Op::Reshape { shape: s }, &[cur])
            }
        };
        if let Some(n) = next {
            cur = n;
            seen.push(n);
        }
        // Keep accumulators narrow enough for exact i64 tables and quick tests.
        let (lo2, hi2) = b.ranges[&cur];
        if hi2 - lo2 > 1 << 14 || (lo2, hi2) == (lo, hi) && b.r.chance(0.2) {
            cur = b.tlu(cur).expect("covering table");
            seen.push(cur);
        }
    }
    let mut outputs = vec![];
    if b.r.chance(0.4) {
        let dq = QParams {
            scale: 0.5,
            zero_point: 1,
            bits: 16,
            signed: true,
        };
        outputs.push(b.add(Op::Dequantize(dq), &[cur]).expect("dequantize"));
    }
    let n: usize = b.shape(cur).iter().product();
    let flat = b
        .add(Op::Reshape { shape: vec![1, n] }, &[cur])
        .expect("flatten");
    let m = 1 + b.r.below(3);
    let w = b.konst(&[m, n], -3, 3);
    let bias = b.konst(&[m], -10, 10);
    let y = b
        .add(Op::Gemm(GEMM_TRANS_B), &[flat, w, bias])
        .expect("gemm");
    let dq = QParams {
        scale: 0.125,
        zero_point: 0,
        bits: 20,
        signed: true,
    };
    outputs.push(b.add(Op::Dequantize(dq), &[y]).expect("dequantize"));
    b.g.set_outputs(outputs);
    b.g.verify().unwrap();
    b.g
}

/// Random real inputs covering the quantisation range and beyond (clamped values).
fn real_inputs(g: &Graph, seed: u64, n: usize, lo: f32, hi: f32) -> Vec<Vec<Tensor>> {
    let mut r = Lcg::new(seed ^ 0xfeed);
    let shape = g.node(g.inputs()[0]).fact.shape.clone();
    (0..n).map(|_| vec![r.tensor(&shape, lo, hi)]).collect()
}

fn check(g: &Graph, inputs: &[Vec<Tensor>]) -> Result<(), TestCaseError> {
    let program = match lower(g) {
        Ok(p) => p,
        Err(e) => {
            let text = fhec_ir::print::print_graph(g);
            return Err(TestCaseError::fail(format!("{e}\n{text}")));
        }
    };
    check_encoding(&program);
    for x in inputs {
        if fhec_ir::int_interp::run(g, x).is_err() {
            // Not a valid execution of the graph itself (e.g. overflow): nothing to compare.
            continue;
        }
        assert_same(g, &program, x, &fhec_ir::print::print_graph(g));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn compiled_float_models_lower_exactly(seed in any::<u64>(), bits in 2u32..=7, round in proptest::option::of((2u32..=5, any::<bool>()))) {
        let g = float_model(seed);
        let calib: Vec<Tensor> = real_inputs(&g, seed, 12, -1.0, 1.0).into_iter().map(|mut v| v.remove(0)).collect();
        let rounding = round.map(|(b, exact)| (b, if exact { RoundingMode::Exact } else { RoundingMode::Approximate }));
        let q = compile(&g, bits, rounding, &calib);
        check(&q, &real_inputs(&g, seed ^ 1, 4, -3.0, 3.0))?;
    }

    #[test]
    fn random_integer_graphs_lower_exactly(seed in any::<u64>()) {
        let g = int_model(seed);
        check(&g, &real_inputs(&g, seed, 4, -2.0, 6.0))?;
    }
}

/// The integer generator reaches the instructions the pipeline never emits.
#[test]
fn integer_generator_covers_every_instruction() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let g = int_model(seed);
        let p = lower(&g).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        seen.extend(p.instructions.iter().map(|i| i.name()));
    }
    let all = [
        "Input",
        "Dense",
        "Conv",
        "SumPool",
        "MaxPool",
        "Add",
        "Sub",
        "AddConst",
        "MulConst",
        "Reshape",
        "Transpose",
        "Pad",
        "Concat",
        "Rescale",
        "Tlu",
    ];
    let missing: Vec<_> = all.iter().filter(|n| !seen.contains(*n)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}
