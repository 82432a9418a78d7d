//! Helpers shared by the pass tests: fixtures, random tensors, output comparison and running
//! the pipeline pass by pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fhec_ir::{interp, GemmAttrs, Graph, NodeId, Op, Tensor};
use fhec_passes::{run_pass, PassContext, PassOptions, PipelineReport, PIPELINE};
use ndarray::{ArrayD, Axis, IxDyn};
use ndarray_npy::NpzReader;

/// Outputs before and after a pass may differ by this much, relative or absolute.
pub const TOL: f32 = 1e-4;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Every fixture model's stem, sorted.
pub fn fixture_models() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "onnx" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

pub fn import_fixture(stem: &str) -> Graph {
    let path = fixtures().join(format!("{stem}.onnx"));
    fhec_frontend::import_file(&path, &Default::default())
        .unwrap_or_else(|e| panic!("importing {stem}: {e}"))
        .graph
}

/// An array from an `.npz` file under the fixtures.
pub fn npz_array(rel: &str, key: &str) -> ArrayD<f32> {
    let path = fixtures().join(rel);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut npz = NpzReader::new(file).expect("npz");
    npz.by_name(key)
        .unwrap_or_else(|e| panic!("{rel} {key}: {e}"))
}

/// The reference `inputs` of a fixture, one tensor per sample with a batch axis of 1.
pub fn reference_inputs(stem: &str) -> Vec<Tensor> {
    samples(&npz_array(&format!("reference/{stem}.npz"), "inputs"))
}

/// The samples of a batch, each with a leading batch axis of 1.
pub fn samples(batch: &ArrayD<f32>) -> Vec<Tensor> {
    batch
        .axis_iter(Axis(0))
        .map(|s| s.insert_axis(Axis(0)).to_owned())
        .collect()
}

/// Deterministic pseudo-random values in [lo, hi) (a 64-bit LCG).
pub fn random(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let data = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

/// A small deterministic generator for test graphs and data.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 33) % n as u64) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.uniform(0.0, 1.0) < p
    }

    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + u * (hi - lo)
    }

    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| self.uniform(lo, hi)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
    }
}

/// Random inputs for every graph input (values in [lo, hi)).
pub fn random_inputs(g: &Graph, seed: u64, lo: f32, hi: f32) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random(&g.node(id).fact.shape, seed.wrapping_add(i as u64), lo, hi))
        .collect()
}

/// `Err` describing the first element where `got` and `want` differ by more than
/// `TOL * max(1, |want|)`.
pub fn close(got: &[Tensor], want: &[Tensor]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape() != w.shape() {
            return Err(format!(
                "output {k}: shape {:?}, expected {:?}",
                g.shape(),
                w.shape()
            ));
        }
        for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
            let ok = (a - b).abs() <= TOL * b.abs().max(1.0);
            if !ok {
                return Err(format!("output {k} element {i}: {a} vs {b}"));
            }
        }
    }
    Ok(())
}

/// The graph after one pass, with the report so far.
pub struct Stage {
    pub pass: &'static str,
    pub graph: Graph,
    pub report: PipelineReport,
}

/// Runs the pipeline pass by pass, keeping the graph after each (verified by `run_pass`).
pub fn stages(graph: &Graph, options: PassOptions) -> Vec<Stage> {
    let mut g = graph.clone();
    g.verify().expect("input graph verifies");
    let mut ctx = PassContext::new(options);
    PIPELINE
        .iter()
        .map(|pass| {
            run_pass(&mut g, &mut ctx, pass).unwrap_or_else(|e| panic!("{e}"));
            Stage {
                pass: pass.name,
                graph: g.clone(),
                report: ctx.report.clone(),
            }
        })
        .collect()
}

/// Checks that every stage computes what `original` does on `inputs` (each stage's outputs
/// with the post-processing split off so far applied).
pub fn check_stages(original: &Graph, stages: &[Stage], inputs: &[Tensor]) -> Result<(), String> {
    let want = interp::run(original, inputs).map_err(|e| format!("original: {e}"))?;
    for s in stages {
        let got = interp::run(&s.graph, inputs).map_err(|e| format!("after {}: {e}", s.pass))?;
        let got = s.report.apply_postprocessing(got)?;
        close(&got, &want).map_err(|e| format!("after {}: {e}", s.pass))?;
    }
    Ok(())
}

/// How many nodes of the op with this name the graph has.
pub fn count(g: &Graph, op: &str) -> usize {
    g.node_ids().filter(|&n| g.node(n).op.name() == op).count()
}

/// The value of the `Const` feeding input `slot` of the first node of op `op` in topological
/// order (`nth` picks a later one).
pub fn const_of(g: &Graph, op: &str, nth: usize, slot: usize) -> Tensor {
    let id = g
        .topo_order()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == op)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {op} #{nth}"));
    let input = g.node_inputs(id)[slot];
    match &g.node(input).op {
        Op::Const(t) => t.clone(),
        other => panic!("{op} input {slot} is {}", other.name()),
    }
}

/// The single pass of the pipeline with this name.
pub fn pass(name: &str) -> &'static fhec_passes::Pass {
    PIPELINE
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pass {name}"))
}

/// The first `n` training samples of a fixture data file, each with a batch axis of 1
/// (transposed to NHWC for Keras models).
pub fn train_samples(data: &str, nhwc: bool, n: usize) -> Vec<Tensor> {
    let x = npz_array(&format!("data/{data}"), "x_train");
    let x = if nhwc {
        x.permuted_axes(vec![0, 2, 3, 1])
            .as_standard_layout()
            .into_owned()
    } else {
        x
    };
    samples(&x).into_iter().take(n).collect()
}

/// `x @ w.T + b` (ONNX Gemm with transB, as PyTorch exports Linear).
pub fn gemm_trans_b(g: &mut Graph, name: &str, x: NodeId, w: NodeId, b: NodeId) -> NodeId {
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    };
    g.add_node(name, Op::Gemm(attrs), &[x, w, b]).unwrap()
}
