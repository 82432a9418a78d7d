//! The TLU rewrite pass (`tlu_rewrite`): each rewrite on a small hand-built integer graph
//! (TLU and node counts before and after, and identical `int_interp` outputs), random integer
//! graphs (proptest), small float models quantised as the pipeline does (the patterns where the
//! pass pays and where it finds nothing), and the quantised fixture models (unchanged, on
//! purpose; IR snapshots).

use std::collections::HashMap;

use fhec_ir::print::print_graph;
use fhec_ir::quant::{QParams, Rounding, RoundingMode, Tlu};
use fhec_ir::{int_interp, BinaryOp, GemmAttrs, Graph, NodeId, Op, Tensor, TensorFact};
use fhec_passes::quantize::{calibrate, quantize, QuantOptions};
use fhec_passes::tlu_rewrite::{estimated_cost, tlu_count, PASS};
use fhec_passes::{run_pass, run_pipeline, PassContext, PassOptions};
use fhec_testkit::{data_samples, fixture_graph, Lcg};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Building integer graphs

/// An integer graph under construction, with the worst-case range of every integer node (what
/// table domains must cover, as quantisation computes them).
struct Builder {
    g: Graph,
    range: HashMap<NodeId, (i64, i64)>,
    outputs: Vec<NodeId>,
}

const IN_BITS: u32 = 3;

impl Builder {
    /// A real input of this shape, quantised on the client to `IN_BITS` unsigned bits.
    fn new(shape: &[usize]) -> (Builder, NodeId) {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorFact::f32(shape));
        let q = QParams {
            scale: 1.0,
            zero_point: 0,
            bits: IN_BITS,
            signed: false,
        };
        let range = q.range();
        let mut b = Builder {
            g,
            range: HashMap::new(),
            outputs: vec![],
        };
        let id = b.add("x.quantize", Op::Quantize(q), &[x], range);
        (b, id)
    }

    fn add(&mut self, name: &str, op: Op, ins: &[NodeId], range: (i64, i64)) -> NodeId {
        let id = self.g.add_node(name, op, ins).expect("valid node");
        self.range.insert(id, range);
        id
    }

    fn konst(&mut self, name: &str, shape: &[usize], values: &[i64]) -> NodeId {
        let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("shape");
        let r = minmax(values.iter().copied());
        self.add(name, Op::IntConst(a), &[], r)
    }

    /// `x @ w + b` with `w` of shape `[k, n]`, given row-major.
    fn gemm(&mut self, name: &str, x: NodeId, w: &[i64], b: &[i64]) -> NodeId {
        let k = self.g.node(x).fact.shape[1];
        let n = b.len();
        let (lo, hi) = self.range[&x];
        let wid = self.konst(&format!("{name}.w"), &[k, n], w);
        let bid = self.konst(&format!("{name}.b"), &[n], b);
        let (mut rlo, mut rhi) = (i64::MAX, i64::MIN);
        for j in 0..n {
            let (mut l, mut h) = (b[j], b[j]);
            for i in 0..k {
                let wij = w[i * n + j];
                l += (wij * lo).min(wij * hi);
                h += (wij * lo).max(wij * hi);
            }
            rlo = rlo.min(l);
            rhi = rhi.max(h);
        }
        let op = Op::Gemm(GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        });
        self.add(name, op, &[x, wid, bid], (rlo, rhi))
    }

    fn binary(&mut self, name: &str, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        let ((al, ah), (bl, bh)) = (self.range[&a], self.range[&b]);
        let r = match op {
            BinaryOp::Add => (al + bl, ah + bh),
            BinaryOp::Sub => (al - bh, ah - bl),
            BinaryOp::Mul => minmax([al * bl, al * bh, ah * bl, ah * bh].into_iter()),
            _ => unreachable!(),
        };
        self.add(name, Op::Binary(op), &[a, b], r)
    }

    /// A lookup of `x` covering its worst-case range: entry `i` of channel `ch` is
    /// `f(ch, v)` for the accumulator value `v = lo + i * 2^shift` it stands for; per channel
    /// along `axis`, or one table.
    fn tlu(
        &mut self,
        name: &str,
        x: NodeId,
        axis: Option<usize>,
        shift: u32,
        f: impl Fn(usize, i64) -> i64,
    ) -> NodeId {
        let rounding = (shift > 0).then_some(Rounding {
            shift,
            mode: RoundingMode::Exact,
        });
        let (lo, hi) = self.range[&x];
        let len = rounding.map_or(hi - lo, |r| r.apply(hi - lo)) + 1;
        let channels = axis.map_or(1, |a| self.g.node(x).fact.shape[a]);
        let tables: Vec<Vec<i64>> = (0..channels)
            .map(|ch| (0..len).map(|i| f(ch, lo + (i << shift))).collect())
            .collect();
        let out = minmax(tables.iter().flatten().copied());
        let t = Tlu {
            input_min: lo,
            rounding,
            tables,
            axis,
        };
        self.add(name, Op::Tlu(t), &[x], out)
    }

    /// Dequantises `x` (scale 1, so outputs are the integers themselves) as a graph output.
    fn output(&mut self, x: NodeId) {
        let q = QParams {
            scale: 1.0,
            zero_point: 0,
            bits: 16,
            signed: true,
        };
        let name = format!("{}.dequantize", self.g.node(x).name);
        let id = self.add(&name, Op::Dequantize(q), &[x], (0, 0));
        self.outputs.push(id);
    }

    fn finish(mut self) -> Graph {
        self.g.set_outputs(self.outputs);
        self.g.verify().expect("test graph verifies");
        self.g
    }
}

fn minmax(values: impl Iterator<Item = i64>) -> (i64, i64) {
    values.fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(v), h.max(v)))
}

/// A fixed pseudo-random function of (channel, value) with values in `-20..=20`.
fn scramble(seed: u64) -> impl Fn(usize, i64) -> i64 {
    move |ch, v| {
        let mut r = Lcg::with_state(seed ^ ((ch as u64) << 32) ^ v as u64);
        r.next_u64();
        r.int(-20, 20)
    }
}

// ---------------------------------------------------------------------------------------------
// Running and comparing

/// Real inputs covering the quantised range and beyond (saturation).
fn inputs(g: &Graph, n: usize, seed: u64) -> Vec<Vec<Tensor>> {
    let mut r = Lcg::with_state(seed);
    let hi = (1i64 << IN_BITS) + 1;
    (0..n)
        .map(|_| {
            g.inputs()
                .iter()
                .map(|&i| {
                    let shape = &g.node(i).fact.shape;
                    let len = shape.iter().product();
                    let data = (0..len).map(|_| r.int(-2, hi) as f32).collect();
                    ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape")
                })
                .collect()
        })
        .collect()
}

/// The graph after the pass, with the pass's notes.
fn rewrite(g: &Graph) -> (Graph, Vec<String>) {
    let mut out = g.clone();
    let mut ctx = PassContext::new(PassOptions::default());
    run_pass(&mut out, &mut ctx, &PASS).unwrap_or_else(|e| panic!("{e}"));
    let notes = ctx.report.changes(PASS.name);
    (out, notes.into_iter().map(String::from).collect())
}

/// `Err` on the first input where the two graphs' outputs differ in any bit.
fn same_outputs(before: &Graph, after: &Graph, samples: &[Vec<Tensor>]) -> Result<(), String> {
    for (i, x) in samples.iter().enumerate() {
        let want = int_interp::run(before, x).map_err(|e| format!("before, input {i}: {e}"))?;
        let got = int_interp::run(after, x).map_err(|e| format!("after, input {i}: {e}"))?;
        let bits = |ts: &[Tensor]| -> Vec<Vec<u32>> {
            ts.iter()
                .map(|t| t.iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        if bits(&want) != bits(&got) {
            return Err(format!("input {i}: {got:?} instead of {want:?}"));
        }
    }
    Ok(())
}

/// TLU and node counts before and after, checked for identical outputs on many inputs.
struct Outcome {
    graph: Graph,
    notes: Vec<String>,
    tlus: (usize, usize),
    nodes: (usize, usize),
}

fn check(g: &Graph) -> Outcome {
    let (after, notes) = rewrite(g);
    same_outputs(g, &after, &inputs(g, 300, 7)).unwrap();
    assert!(estimated_cost(&after) <= estimated_cost(g));
    let o = Outcome {
        tlus: (tlu_count(g), tlu_count(&after)),
        nodes: (g.node_count(), after.node_count()),
        graph: after,
        notes,
    };
    println!(
        "TLUs {} -> {}, nodes {} -> {}\n{}\n{}",
        o.tlus.0,
        o.tlus.1,
        o.nodes.0,
        o.nodes.1,
        o.notes.join("\n"),
        print_graph(&o.graph)
    );
    o
}

fn tlus(g: &Graph) -> Vec<Tlu> {
    g.topo_order()
        .into_iter()
        .filter_map(|n| match &g.node(n).op {
            Op::Tlu(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn count(g: &Graph, op: &str) -> usize {
    g.node_ids().filter(|&n| g.node(n).op.name() == op).count()
}

/// `Quantize → Gemm` with 4 inputs and 3 outputs (accumulators in -27..=29).
fn gemm_graph() -> (Builder, NodeId) {
    let (mut b, x) = Builder::new(&[1, 4]);
    #[rustfmt::skip]
    let w = [
        1, -2, 0,
        2, 1, -1,
        0, -1, 1,
        -1, 0, 2,
    ];
    let acc = b.gemm("fc", x, &w, &[3, -6, 1]);
    (b, acc)
}

/// A requantising activation: accumulator to 4-bit unsigned.
fn relu4(_ch: usize, v: i64) -> i64 {
    (v / 2).clamp(0, 15)
}

// ---------------------------------------------------------------------------------------------
// One test per rewrite

#[test]
fn merge_chain_composes_two_lookups() {
    let (mut b, acc) = gemm_graph();
    let t1 = b.tlu("act", acc, None, 0, relu4);
    let t2 = b.tlu("act2", t1, None, 0, |_, v| 15 - v);
    b.output(t2);
    let o = check(&b.finish());
    assert_eq!(o.tlus, (2, 1));
    assert_eq!(o.nodes, (8, 7));
}

#[test]
fn merge_chain_per_channel_inner_and_rounding_outer() {
    let (mut b, acc) = gemm_graph();
    // Per-channel inner table (axis 1) with 5-bit outputs; the outer table rounds away a bit.
    let t1 = b.tlu("bn", acc, Some(1), 0, |ch, v| {
        (v + 3 * ch as i64).clamp(0, 31)
    });
    let t2 = b.tlu("act", t1, None, 1, |_, v| v * v % 7);
    b.output(t2);
    let o = check(&b.finish());
    assert_eq!(o.tlus, (2, 1));
    let t = &tlus(&o.graph)[0];
    assert_eq!((t.axis, t.rounding, t.tables.len()), (Some(1), None, 3));
}

#[test]
fn merge_chain_per_tensor_inner_per_channel_outer_and_three_long() {
    let (mut b, acc) = gemm_graph();
    let t1 = b.tlu("a", acc, None, 2, |_, v| v + 8);
    let t2 = b.tlu("b", t1, Some(1), 0, |ch, v| v * (ch as i64 + 1));
    let t3 = b.tlu("c", t2, None, 0, |_, v| v % 5);
    b.output(t3);
    let o = check(&b.finish());
    assert_eq!(o.tlus, (3, 1));
    let t = &tlus(&o.graph)[0];
    // The first table's rounding stays; the result is per channel.
    assert_eq!(t.rounding.map(|r| r.shift), Some(2));
    assert_eq!(t.axis, Some(1));
}

#[test]
fn merge_chain_keeps_an_inner_lookup_with_another_user() {
    let (mut b, acc) = gemm_graph();
    let t1 = b.tlu("act", acc, None, 0, relu4);
    let t2 = b.tlu("act2", t1, None, 0, |_, v| 15 - v);
    b.output(t2);
    b.output(t1);
    let g = b.finish();
    let o = check(&g);
    assert_eq!(o.tlus, (2, 2));
    assert_eq!(print_graph(&o.graph), print_graph(&g), "graph untouched");
    assert!(o.notes.is_empty());
}

#[test]
fn drop_identity_removes_the_lookup() {
    let (mut b, acc) = gemm_graph();
    let id = b.tlu("requant", acc, None, 0, |_, v| v);
    b.output(id);
    let o = check(&b.finish());
    assert_eq!(o.tlus, (1, 0));
    assert_eq!(o.nodes, (7, 6));
}

#[test]
fn drop_identity_needs_no_rounding() {
    let (mut b, acc) = gemm_graph();
    // Entry i is input_min + i, but the lookup rounds away a bit first.
    let t = b.tlu("requant", acc, None, 1, |_, v| -27 + (v + 27) / 2);
    b.output(t);
    let g = b.finish();
    assert_eq!(tlus(&g)[0].tables[0], (-27..=-1).collect::<Vec<i64>>());
    let o = check(&g);
    assert_eq!(o.tlus, (1, 1));
}

#[test]
fn fold_scalar_add_and_sub_into_the_table() {
    for (op, c) in [(BinaryOp::Add, 5), (BinaryOp::Sub, -7)] {
        let (mut b, acc) = gemm_graph();
        let c = b.konst("offset", &[], &[c]);
        let y = b.binary("shift", op, acc, c);
        let t = b.tlu("act", y, None, 0, relu4);
        b.output(t);
        let o = check(&b.finish());
        assert_eq!(o.tlus, (1, 1));
        assert_eq!(o.nodes, (9, 7), "{op:?} and its constant are gone");
        assert_eq!(count(&o.graph, op_name(op)), 0);
    }
}

fn op_name(op: BinaryOp) -> &'static str {
    Op::Binary(op).name()
}

#[test]
fn fold_commuted_add() {
    let (mut b, acc) = gemm_graph();
    let c = b.konst("offset", &[1], &[-3]);
    let y = b.binary("shift", BinaryOp::Add, c, acc);
    let t = b.tlu("act", y, Some(1), 0, scramble(1));
    b.output(t);
    let o = check(&b.finish());
    assert_eq!((o.tlus, o.nodes), ((1, 1), (9, 7)));
}

#[test]
fn fold_per_channel_offsets_reindexes_each_table() {
    let (mut b, acc) = gemm_graph();
    let c = b.konst("bias", &[1, 3], &[2, -1, 0]);
    let y = b.binary("shift", BinaryOp::Add, acc, c);
    let t = b.tlu("act", y, None, 0, scramble(2));
    b.output(t);
    let o = check(&b.finish());
    assert_eq!((o.tlus, o.nodes), ((1, 1), (9, 7)));
    // One table became one per channel, on a domain all three share.
    let t = &tlus(&o.graph)[0];
    assert_eq!((t.axis, t.tables.len()), (Some(1), 3));
}

#[test]
fn fold_offsets_under_rounding() {
    // A scalar always folds (input_min moves); per-channel offsets must agree modulo 2^shift
    // and are folded only if the re-indexed tables (15 entries, plus one per 4 of spread)
    // keep their 4-bit input.
    for (shape, offsets, folded) in [
        (vec![], vec![6], true),
        (vec![3], vec![4, 0, 4], true),
        (vec![3], vec![1, 0, 0], false),
        (vec![3], vec![4, 0, -4], false),
    ] {
        let (mut b, acc) = gemm_graph();
        let c = b.konst("offset", &shape, &offsets);
        let y = b.binary("shift", BinaryOp::Sub, acc, c);
        let t = b.tlu("act", y, None, 2, scramble(3));
        b.output(t);
        let o = check(&b.finish());
        let want = if folded { 7 } else { 9 };
        assert_eq!(o.nodes.1, want, "offsets {offsets:?}");
        assert_eq!(o.tlus, (1, 1));
    }
}

#[test]
fn fold_scale_resamples_and_narrows_the_table() {
    let (mut b, acc) = gemm_graph();
    let k = b.konst("k", &[], &[4]);
    let y = b.binary("scale", BinaryOp::Mul, k, acc);
    let t = b.tlu("act", y, Some(1), 0, scramble(4));
    b.output(t);
    let g = b.finish();
    let before = tlus(&g)[0].input_bits();
    let o = check(&g);
    assert_eq!((o.tlus, o.nodes), ((1, 1), (9, 7)));
    let after = tlus(&o.graph)[0].input_bits();
    assert_eq!((before, after), (8, 6), "x4 costs two bits of table input");
}

#[test]
fn fold_scale_with_rounding() {
    let (mut b, acc) = gemm_graph();
    let k = b.konst("k", &[], &[8]);
    let y = b.binary("scale", BinaryOp::Mul, acc, k);
    let t = b.tlu("act", y, None, 2, scramble(5));
    b.output(t);
    let o = check(&b.finish());
    assert_eq!((o.tlus, o.nodes), ((1, 1), (9, 7)));
    assert_eq!(tlus(&o.graph)[0].rounding, None);
}

#[test]
fn share_identical_per_channel_tables() {
    let (mut b, acc) = gemm_graph();
    let t = b.tlu("act", acc, Some(1), 0, relu4);
    b.output(t);
    let g = b.finish();
    let o = check(&g);
    assert_eq!((o.tlus, o.nodes), ((1, 1), (7, 7)));
    let t = &tlus(&o.graph)[0];
    assert_eq!((t.axis, t.tables.len()), (None, 1));
    assert!(estimated_cost(&o.graph) < estimated_cost(&g));
}

#[test]
fn dedupe_equal_lookups_of_one_input() {
    let (mut b, acc) = gemm_graph();
    let t1 = b.tlu("act", acc, None, 0, relu4);
    let t2 = b.tlu("act_copy", acc, None, 0, relu4);
    let other = b.tlu("other", acc, None, 0, scramble(6));
    let sum = b.binary("sum", BinaryOp::Add, t1, t2);
    b.output(sum);
    b.output(other);
    let o = check(&b.finish());
    assert_eq!((o.tlus, o.nodes), ((3, 2), (11, 10)));
}

#[test]
fn rewrites_combine() {
    // Gemm → -5 → table → identity → x2 → table: one lookup of the accumulator remains.
    let (mut b, acc) = gemm_graph();
    let c = b.konst("c", &[], &[5]);
    let y = b.binary("shift", BinaryOp::Sub, acc, c);
    let t1 = b.tlu("act", y, None, 0, relu4);
    let id = b.tlu("requant", t1, None, 0, |_, v| v);
    let k = b.konst("k", &[], &[2]);
    let z = b.binary("double", BinaryOp::Mul, id, k);
    let t2 = b.tlu("act2", z, Some(1), 0, scramble(7));
    b.output(t2);
    let o = check(&b.finish());
    assert_eq!((o.tlus, o.nodes), ((3, 1), (13, 7)));
    assert_eq!(o.notes.len(), 2, "{:?}", o.notes);
}

#[test]
fn float_graphs_and_graphs_without_chances_are_untouched() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::f32([1, 4]));
    let r = g
        .add_node("relu", Op::Unary(fhec_ir::UnaryOp::Relu), &[x])
        .unwrap();
    let y = g
        .add_node("add", Op::Binary(BinaryOp::Add), &[r, x])
        .unwrap();
    g.set_outputs(vec![y]);
    let (after, notes) = rewrite(&g);
    assert_eq!(print_graph(&after), print_graph(&g));
    assert!(notes.is_empty());

    let (mut b, acc) = gemm_graph();
    let t = b.tlu("act", acc, None, 0, relu4);
    b.output(t);
    let g = b.finish();
    let (after, notes) = rewrite(&g);
    assert_eq!(print_graph(&after), print_graph(&g));
    assert!(notes.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Random integer graphs

/// One step of a random graph, applied to the current tensor.
#[derive(Clone, Debug)]
enum Step {
    /// A lookup: per channel along `axis` or not, rounding shift, and what its tables hold.
    Tlu {
        axis: Option<usize>,
        shift: u32,
        tables: Tables,
    },
    /// `x + c`, `x - c` or `c + x` with a constant in -8..=8 of shape `[]`, `[channels]`,
    /// `[1, channels]` or `[rows, 1]` (`shape` 0 to 3).
    Offset { op: u8, shape: u8, seed: u64 },
    /// `x * k` or `k * x`.
    Scale { k: i64, left: bool },
    /// Also return the current tensor (a second user).
    SideOutput,
    /// The same lookup twice on the current tensor, summed.
    Twice { seed: u64 },
    /// `x + earlier` for an earlier tensor of the chain (a two-tensor add).
    Residual { back: usize },
}

#[derive(Clone, Debug)]
enum Tables {
    Random(u64),
    Identity,
    /// Per-channel tables that are all equal.
    Equal(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let tables = prop_oneof![
        3 => any::<u64>().prop_map(Tables::Random),
        1 => Just(Tables::Identity),
        1 => any::<u64>().prop_map(Tables::Equal),
    ];
    let axis = prop_oneof![Just(None), Just(Some(0)), Just(Some(1))];
    prop_oneof![
        4 => (axis, 0u32..3, tables).prop_map(|(axis, shift, tables)| Step::Tlu {
            axis,
            shift,
            tables
        }),
        2 => (0u8..3, 0u8..4, any::<u64>()).prop_map(|(op, shape, seed)| {
            Step::Offset { op, shape, seed }
        }),
        1 => (1i64..5, any::<bool>()).prop_map(|(k, left)| Step::Scale { k, left }),
        1 => Just(Step::SideOutput),
        1 => any::<u64>().prop_map(|seed| Step::Twice { seed }),
        1 => (0usize..4).prop_map(|back| Step::Residual { back }),
    ]
}

/// Applies the steps after a Gemm of a `[rows, 3]` input to `[rows, channels]`.
fn random_graph(rows: usize, channels: usize, steps: &[Step]) -> Graph {
    let (mut b, x) = Builder::new(&[rows, 3]);
    let w: Vec<i64> = (0..3 * channels).map(|i| (i as i64 * 7 % 5) - 2).collect();
    let bias: Vec<i64> = (0..channels).map(|j| j as i64 - 1).collect();
    let mut cur = b.gemm("fc", x, &w, &bias);
    let mut chain = vec![cur];
    for (i, s) in steps.iter().enumerate() {
        let name = format!("s{i}");
        // Keep table domains small: requantise a wide tensor first.
        let (lo, hi) = b.range[&cur];
        if hi - lo > 2000 {
            cur = b.tlu(&format!("{name}.narrow"), cur, None, 4, |_, v| {
                v.clamp(-30, 30)
            });
        }
        cur = match s {
            Step::Tlu {
                axis,
                shift,
                tables,
            } => match tables {
                Tables::Identity => b.tlu(&name, cur, *axis, 0, |_, v| v),
                Tables::Random(seed) => b.tlu(&name, cur, *axis, *shift, scramble(*seed)),
                Tables::Equal(seed) => {
                    let f = scramble(*seed);
                    b.tlu(&name, cur, Some(1), *shift, move |_, v| f(0, v))
                }
            },
            Step::Offset { op, shape, seed } => {
                let mut r = Lcg::with_state(*seed);
                let shape = match shape {
                    0 => vec![],
                    1 => vec![channels],
                    2 => vec![1, channels],
                    _ => vec![rows, 1],
                };
                let n = shape.iter().product();
                let values: Vec<i64> = (0..n).map(|_| r.int(-8, 8)).collect();
                let c = b.konst(&format!("{name}.c"), &shape, &values);
                match op {
                    0 => b.binary(&name, BinaryOp::Add, cur, c),
                    1 => b.binary(&name, BinaryOp::Sub, cur, c),
                    _ => b.binary(&name, BinaryOp::Add, c, cur),
                }
            }
            Step::Scale { k, left } => {
                let k = b.konst(&format!("{name}.k"), &[], &[*k]);
                if *left {
                    b.binary(&name, BinaryOp::Mul, k, cur)
                } else {
                    b.binary(&name, BinaryOp::Mul, cur, k)
                }
            }
            Step::SideOutput => {
                b.output(cur);
                cur
            }
            Step::Twice { seed } => {
                let t1 = b.tlu(&format!("{name}.a"), cur, None, 0, scramble(*seed));
                let t2 = b.tlu(&format!("{name}.b"), cur, None, 0, scramble(*seed));
                b.binary(&name, BinaryOp::Add, t1, t2)
            }
            Step::Residual { back } => {
                let earlier = chain[chain.len().saturating_sub(1 + back)];
                b.binary(&name, BinaryOp::Add, cur, earlier)
            }
        };
        chain.push(cur);
    }
    b.output(cur);
    b.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_integer_graphs_keep_their_outputs(
        rows in 1usize..3,
        channels in 1usize..4,
        steps in prop::collection::vec(step(), 1..7),
    ) {
        let g = random_graph(rows, channels, &steps);
        let (after, _) = rewrite(&g);
        same_outputs(&g, &after, &inputs(&g, 40, 11)).map_err(TestCaseError::fail)?;
        prop_assert!(tlu_count(&after) <= tlu_count(&g));
        prop_assert!(estimated_cost(&after) <= estimated_cost(&g));
        // The pass is idempotent: a second run finds nothing cheaper.
        let (again, notes) = rewrite(&after);
        prop_assert_eq!(print_graph(&again), print_graph(&after), "{:?}", notes);
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns of float models after quantisation: where the pass pays, and where it does not

/// A float graph under construction (weights are pseudo-random constants).
struct Float {
    g: Graph,
    rng: Lcg,
}

impl Float {
    fn new(shape: &[usize]) -> (Float, NodeId) {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorFact::f32(shape));
        (
            Float {
                g,
                rng: Lcg::with_state(17),
            },
            x,
        )
    }

    fn op(&mut self, name: &str, op: Op, ins: &[NodeId]) -> NodeId {
        self.g.add_node(name, op, ins).expect("valid node")
    }

    fn konst(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> NodeId {
        let t = ArrayD::from_shape_vec(IxDyn(shape), values).expect("shape");
        self.op(name, Op::Const(t), &[])
    }

    /// `x @ W + b` with weights in -1..=1 (steps of 1/8).
    fn dense(&mut self, name: &str, x: NodeId, n: usize) -> NodeId {
        let k = self.g.node(x).fact.shape[1];
        let w = (0..k * n)
            .map(|_| self.rng.int(-8, 8) as f32 / 8.0)
            .collect();
        let w = self.konst(&format!("{name}.w"), &[k, n], w);
        let b = (0..n).map(|_| self.rng.int(-4, 4) as f32 / 8.0).collect();
        let b = self.konst(&format!("{name}.b"), &[n], b);
        let op = Op::Gemm(GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        });
        self.op(name, op, &[x, w, b])
    }

    fn unary(&mut self, name: &str, u: fhec_ir::UnaryOp, x: NodeId) -> NodeId {
        self.op(name, Op::Unary(u), &[x])
    }

    /// Calibrates on 64 pseudo-random inputs in [-1, 1] and quantises with `opts`; returns
    /// the integer graph and 200 other inputs (some beyond the calibrated range).
    fn quantize(mut self, outputs: Vec<NodeId>, opts: QuantOptions) -> (Graph, Vec<Vec<Tensor>>) {
        self.g.set_outputs(outputs);
        self.g.verify().expect("float graph verifies");
        let shape = self.g.node(self.g.inputs()[0]).fact.shape.clone();
        let mut r = Lcg::with_state(5);
        let mut sample = |scale: f32| -> Vec<Tensor> {
            let len = shape.iter().product();
            let data = (0..len)
                .map(|_| r.int(-64, 64) as f32 / 64.0 * scale)
                .collect();
            vec![ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape")]
        };
        let calib: Vec<Vec<Tensor>> = (0..64).map(|_| sample(1.0)).collect();
        let test: Vec<Vec<Tensor>> = (0..200).map(|i| sample(1.0 + (i % 3) as f32)).collect();
        let ranges = calibrate(&self.g, &calib).expect("calibrate");
        let q = quantize(&self.g, &ranges, &opts).expect("quantize");
        (q.graph, test)
    }
}

fn output_bits(bits: u32) -> QuantOptions {
    QuantOptions {
        output_bits: Some(bits),
        ..QuantOptions::uniform(bits)
    }
}

/// The pass on a quantised graph: the rewritten graph, its notes, and a check that it computes
/// the same integers as before on every test input.
fn rewrite_quantized(g: &Graph, test: &[Vec<Tensor>]) -> (Graph, Vec<String>) {
    let (after, notes) = rewrite(g);
    same_outputs(g, &after, test).unwrap();
    println!(
        "TLUs {} -> {}, cost {} -> {}\n{}\n{}",
        tlu_count(g),
        tlu_count(&after),
        estimated_cost(g),
        estimated_cost(&after),
        notes.join("\n"),
        print_graph(&after)
    );
    (after, notes)
}

#[test]
fn pays_requantising_an_output_after_a_layout_op() {
    // Dense -> Relu -> Flatten (a Reshape) as the graph output, with --output-bits equal to
    // the activation bits: the output is requantised by a table after the Reshape, on the
    // same calibrated range as the Relu's table before it, so that table is the identity.
    for bits in [3, 6] {
        let (mut f, x) = Float::new(&[1, 6]);
        let h = f.dense("fc", x, 8);
        let r = f.unary("relu", fhec_ir::UnaryOp::Relu, h);
        let y = f.op(
            "flatten",
            Op::Reshape {
                shape: vec![1, 2, 4],
            },
            &[r],
        );
        let (g, test) = f.quantize(vec![y], output_bits(bits));
        assert_eq!(
            tlu_count(&g),
            2,
            "relu table, then the output's requantisation"
        );
        let (after, notes) = rewrite_quantized(&g, &test);
        assert_eq!(
            tlu_count(&after),
            1,
            "{bits} bits: the identity requantisation is gone"
        );
        assert_eq!(after.node_count(), g.node_count() - 1);
        assert!(estimated_cost(&after) < estimated_cost(&g));
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}

/// An input normalisation inside the model, `(x - mean) / std` with per-channel constants
/// (here all equal, torchvision's `Normalize((0.5,) * 3, (0.5,) * 3)`), before a Conv:
/// quantisation makes one per-channel lookup of the client's integers.
fn normalised_conv(bits: u32) -> (Graph, Vec<Vec<Tensor>>) {
    let (mut f, x) = Float::new(&[1, 3, 4, 4]);
    let mean = f.konst("mean", &[1, 3, 1, 1], vec![0.5; 3]);
    let std = f.konst("std", &[1, 3, 1, 1], vec![0.5; 3]);
    let c = f.op("center", Op::Binary(BinaryOp::Sub), &[x, mean]);
    let n = f.op("scale", Op::Binary(BinaryOp::Div), &[c, std]);
    let w: Vec<f32> = (0..2 * 3 * 9)
        .map(|i| ((i * 7) % 5) as f32 / 4.0 - 0.5)
        .collect();
    let w = f.konst("conv.w", &[2, 3, 3, 3], w);
    let conv = fhec_ir::ConvAttrs {
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![(0, 0), (0, 0)],
        group: 1,
    };
    let y = f.op("conv", Op::Conv(conv), &[n, w]);
    f.quantize(vec![y], QuantOptions::uniform(bits))
}

#[test]
fn pays_dropping_an_affine_input_normalisation() {
    // The normalisation is affine and its output is calibrated on the image of the input's
    // range, so requantising it gives back the client's integers: its table is the identity
    // (the rescale lives in the scale and zero point) and the lookup, one bootstrap per input
    // element, is dropped; the Conv reads the client's integers directly.
    for bits in [4, 6] {
        let (g, test) = normalised_conv(bits);
        let t = tlus(&g);
        assert_eq!((t.len(), t[0].axis, t[0].tables.len()), (1, Some(1), 3));
        assert!(
            t[0].rounding.is_none()
                && t[0]
                    .tables
                    .iter()
                    .all(|table| (t[0].input_min..).zip(table).all(|(i, &v)| i == v)),
            "{bits} bits: an identity table: {:?}",
            t[0]
        );
        let (after, notes) = rewrite_quantized(&g, &test);
        assert_eq!(tlu_count(&after), 0, "{bits} bits");
        assert_eq!(estimated_cost(&after), 0);
        assert_eq!(count(&after, "Conv"), 1);
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}

#[test]
fn pays_sharing_the_tables_of_a_batchnorm_with_equal_statistics() {
    // Dense -> Relu -> BatchNorm -> Dense: the BatchNorm cannot fold into the dense layer
    // (the Relu is between them), so quantisation fuses Relu and BatchNorm into one lookup,
    // per channel because of the BatchNorm. With statistics equal across channels (a layer
    // never trained, or one that normalises every feature alike) the tables are equal, and
    // the pass keeps one. Ternary weights with a 1 or -1 in every column give every channel
    // the same weight scale (unequal ones make the tables differ).
    let (mut f, x) = Float::new(&[1, 6]);
    let (k, n) = (6, 5);
    let mut w: Vec<f32> = (0..k * n).map(|_| f.rng.int(-1, 1) as f32).collect();
    for j in 0..n {
        w[(j % k) * n + j] = if j % 2 == 0 { 1.0 } else { -1.0 };
    }
    let w = f.konst("fc.w", &[k, n], w);
    let b = f.konst("fc.b", &[n], vec![0.25, -0.5, 0.0, 0.5, -0.25]);
    let op = Op::Gemm(GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    });
    let h = f.op("fc", op, &[x, w, b]);
    let r = f.unary("relu", fhec_ir::UnaryOp::Relu, h);
    let stats: Vec<NodeId> = [("gamma", 2.0), ("beta", 0.5), ("mean", 0.25), ("var", 1.0)]
        .into_iter()
        .map(|(name, v)| f.konst(name, &[n], vec![v; n]))
        .collect();
    let mut ins = vec![r];
    ins.extend(stats);
    let bn = f.op("bn", Op::BatchNorm { epsilon: 1e-5 }, &ins);
    let y = f.dense("fc2", bn, 2);
    let (g, test) = f.quantize(vec![y], QuantOptions::uniform(4));
    let before = tlus(&g);
    assert_eq!(before.len(), 1);
    assert_eq!((before[0].axis, before[0].tables.len()), (Some(1), n));
    assert!(before[0].tables.iter().all(|t| *t == before[0].tables[0]));
    let (after, notes) = rewrite_quantized(&g, &test);
    let t = &tlus(&after)[0];
    assert_eq!((t.axis, t.tables.len()), (None, 1));
    assert_eq!(t.tables[0], before[0].tables[0]);
    // As many bootstraps as before: the cost model only counts one unit per table saved.
    assert_eq!(estimated_cost(&g) - estimated_cost(&after), n as u64 - 1);
    assert_eq!(notes.len(), 2, "{notes:?}");
}

#[test]
fn nothing_to_do_where_quantisation_already_fused_the_chain() {
    // Relu -> Relu, and a scale and offset by constants, between two dense layers:
    // quantisation fuses every univariate chain into one table, and keeps no integer
    // add/sub/mul by a constant, so merge-chain and the folds find nothing.
    let (mut f, x) = Float::new(&[1, 6]);
    let h = f.dense("fc1", x, 8);
    let r = f.unary("relu", fhec_ir::UnaryOp::Relu, h);
    let r = f.unary("relu2", fhec_ir::UnaryOp::Relu, r);
    let k = f.konst("k", &[], vec![3.0]);
    let r = f.op("mul", Op::Binary(BinaryOp::Mul), &[r, k]);
    let c = f.konst("c", &[], vec![-1.0]);
    let r = f.op("add", Op::Binary(BinaryOp::Add), &[r, c]);
    let y = f.dense("fc2", r, 3);
    let (g, test) = f.quantize(vec![y], QuantOptions::uniform(4));
    assert_eq!(tlu_count(&g), 1);
    assert_eq!((count(&g, "Add"), count(&g, "Mul")), (0, 0));
    let (after, notes) = rewrite_quantized(&g, &test);
    assert_eq!(print_graph(&after), print_graph(&g));
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_layout_op_between_two_lookups_hides_the_chain() {
    // Relu -> Flatten -> Sigmoid: two tables with a Reshape between them. A lookup commutes
    // with a Reshape, so one table would do, but the e-graph sees the Reshape as an opaque
    // leaf and merge-chain never matches: the pass leaves both lookups.
    let (mut f, x) = Float::new(&[1, 6]);
    let h = f.dense("fc", x, 8);
    let r = f.unary("relu", fhec_ir::UnaryOp::Relu, h);
    let r = f.op(
        "flatten",
        Op::Reshape {
            shape: vec![1, 2, 4],
        },
        &[r],
    );
    let y = f.unary("sigmoid", fhec_ir::UnaryOp::Sigmoid, r);
    let (g, test) = f.quantize(vec![y], output_bits(4));
    assert_eq!(tlu_count(&g), 2);
    let (after, notes) = rewrite_quantized(&g, &test);
    assert_eq!(tlu_count(&after), 2);
    assert!(notes.is_empty(), "{notes:?}");
}

// ---------------------------------------------------------------------------------------------
// Quantised fixture models

/// The fixture after the float pipeline, quantised to `bits` (calibrated on 100 training
/// samples), with test samples.
fn quantized_fixture(stem: &str, data: &str, bits: u32) -> (Graph, Vec<Tensor>) {
    let mut g = fixture_graph(stem);
    run_pipeline(&mut g, &mut PassContext::new(PassOptions::default())).expect("pipeline");
    let calib: Vec<Vec<Tensor>> = data_samples(data, "x_train", false, 100)
        .into_iter()
        .map(|x| vec![x])
        .collect();
    let test = data_samples(data, "x_test", false, 20);
    let ranges = calibrate(&g, &calib).expect("calibrate");
    let q = quantize(&g, &ranges, &QuantOptions::uniform(bits)).expect("quantize");
    (q.graph, test)
}

#[test]
fn fixture_models_after_the_pass() {
    for (stem, data) in [
        ("mlp_torch", "breast_cancer.npz"),
        ("cnn_torch_28", "digits_28.npz"),
        ("cnn_brevitas_28", "digits_28.npz"),
    ] {
        let (g, test) = quantized_fixture(stem, data, 6);
        let (after, notes) = rewrite(&g);
        let samples: Vec<Vec<Tensor>> = test.into_iter().map(|x| vec![x]).collect();
        same_outputs(&g, &after, &samples).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // Deliberately "no change": quantisation fuses every univariate chain into one table
        // and emits no integer add/sub/mul by a constant, and the lookups left are separated
        // by Conv, Gemm, pooling and layout nodes, opaque to the e-graph; the per-channel
        // tables differ. So no rule matches (see
        // `nothing_to_do_where_quantisation_already_fused_the_chain`; the patterns where the
        // pass pays are the tests above). A change here is news: look at it, then update.
        assert!(notes.is_empty(), "{stem}: the pass changed {notes:?}");
        assert_eq!(tlu_count(&after), tlu_count(&g), "{stem}");
        assert_eq!(
            print_graph(&after),
            print_graph(&g),
            "{stem}: graph untouched"
        );
        let summary = format!(
            "TLU nodes: {} -> {}\nestimated cost: {} -> {}\nnodes: {} -> {}\nchanges:\n{}\n",
            tlu_count(&g),
            tlu_count(&after),
            estimated_cost(&g),
            estimated_cost(&after),
            g.node_count(),
            after.node_count(),
            notes.iter().map(|n| format!("  {n}\n")).collect::<String>()
        );
        println!("{stem} (6 bits)\n{summary}");
        insta::assert_snapshot!(
            format!("{stem}_6bits"),
            format!("{summary}\n{}", print_graph(&after))
        );
    }
}
