//! `fhec predict`: runs a model on `.npy` inputs and writes its first output as `.npy`.
//!
//! Each `--input` holds one sample (the graph input's shape, which has batch 1, with or
//! without that leading 1) or a batch of samples stacked along axis 0. Samples are run
//! independently (in parallel) and the first graph output is written batched the same way.
//!
//! `--mode clear` compiles the model through the whole pass pipeline with quantisation on
//! (`--bits`, calibrated on `--calib`) and runs the integer graph in the clear: exactly what
//! the FHE circuit computes. The written output is dequantised, with any client-side
//! post-processing (e.g. a split-off softmax) applied.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use fhec_ir::{DType, Graph, Tensor, TensorFact};
use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use super::compile::{calibration_for, compile_circuit, CircuitReport, CryptoArgs};
use super::fhe::{FheSession, FheTimings};
use super::quant_args::{compile, load_calibration, QuantArgs};
use super::{import_model, ir_dtype_name, json_text, print_out, shape_text, ImportArgs};
use crate::data::DataKeys;
use crate::npyio::{read_npy, NpyArray, NpyKind, PendingFile};

/// How `predict` executes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The imported graph in plain floating point (no quantization, no encryption).
    Float,
    /// The quantised integer graph, executed in the clear (bit-exact with FHE; needs --bits
    /// and, unless the model is fully QAT, --calib).
    Clear,
    /// The compiled circuit with the noise its parameters predict (needs --bits).
    Simulate,
    /// Real encryption in one process: keygen, encrypt, run, decrypt (needs --bits).
    Fhe,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Float => "float",
            Mode::Clear => "clear",
            Mode::Simulate => "simulate",
            Mode::Fhe => "fhe",
        }
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The ONNX model to run.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// A .npy array (float32/float64; integers for int8/uint8 inputs) for one graph input:
    /// one sample, or a batch stacked along axis 0. Give one per graph input, in order.
    #[arg(long = "input", short = 'i', value_name = "X.npy", required = true)]
    pub inputs: Vec<PathBuf>,
    /// How to execute the model.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Where to write the first graph output (.npy, float32), batched like the inputs.
    #[arg(long, short = 'o', value_name = "OUT.npy")]
    pub output: PathBuf,
    /// Also print one JSON object (outputs, circuit, timings per phase) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seed of the simulation's noise (simulate mode).
    #[arg(long, default_value = "0")]
    pub seed: u64,
    #[command(flatten)]
    pub import: ImportArgs,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub crypto: CryptoArgs,
}

#[derive(serde::Serialize)]
struct PredictJson {
    output: String,
    mode: &'static str,
    shape: Vec<usize>,
    values: Vec<f32>,
    samples: usize,
    circuit: Option<CircuitReport>,
    #[serde(flatten)]
    fhe: Option<FheTimings>,
}

/// How the samples of one graph input are laid out in its array.
#[derive(Clone, Debug)]
pub struct Feed {
    /// `[B, ...]` (batched) or exactly the graph input's shape (one sample).
    pub data: Tensor,
    /// `Some(B)` when the file held a batch along axis 0.
    pub batch: Option<usize>,
}

impl Feed {
    pub fn samples(&self) -> usize {
        self.batch.unwrap_or(1)
    }

    /// Sample `i`, shaped like the graph input.
    pub fn sample(&self, i: usize) -> Tensor {
        match self.batch {
            Some(_) => self
                .data
                .index_axis(Axis(0), i)
                .insert_axis(Axis(0))
                .to_owned(),
            None => self.data.clone(),
        }
    }
}

pub fn run(args: &PredictArgs) -> Result<()> {
    match args.mode {
        Mode::Float if args.quant.any_given() => bail!(
            "the quantisation options (--bits, --calib, --rounding-bits, --prune-threshold, ...) \
             only apply to --mode clear"
        ),
        Mode::Clear | Mode::Simulate | Mode::Fhe if args.quant.bits.is_none() => bail!(
            "--mode {} needs --bits N (2..=8): the quantisation width of weights, activations \
             and inputs",
            args.mode.name()
        ),
        _ => {}
    }
    let model = import_model(&args.model, &args.import)?;
    let graph = &model.graph;
    let n_inputs = graph.inputs().len();
    if args.inputs.len() != n_inputs {
        bail!(
            "model '{}' has {n_inputs} graph input(s) {:?} but {} --input file(s) were given; pass one .npy per graph input, in this order",
            args.model.display(),
            model.input_names,
            args.inputs.len()
        );
    }
    let mut feeds = Vec::with_capacity(n_inputs);
    for (path, &id) in args.inputs.iter().zip(graph.inputs()) {
        let node = graph.node(id);
        let array = read_npy(path)?;
        feeds.push(make_feed(array, path, &node.name, &node.fact)?);
    }
    let batch = common_batch(&feeds, &args.inputs)?;
    let batched = feeds.iter().any(|f| f.batch.is_some());

    // Fail on an unwritable output before doing any work.
    let mut inputs = vec![args.model.as_path()];
    inputs.extend(args.inputs.iter().map(PathBuf::as_path));
    super::compile::check_not_an_input(&args.output, &inputs)?;
    let pending = PendingFile::new(&args.output)?;
    let mut circuit_report = None;
    let mut fhe_timings = None;
    let output = match args.mode {
        Mode::Float => run_float(graph, &feeds, batch)?,
        Mode::Simulate | Mode::Fhe => {
            let calibration = calibration_for(graph, &args.quant, &args.model)?;
            let (_, circuit, _) = compile_circuit(
                graph,
                &args.quant,
                &args.crypto,
                calibration,
                &args.model,
                &model.output_names,
                "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy)",
            )?;
            let report = CircuitReport::new(&circuit);
            eprintln!(
                "circuit: {} bootstraps, {}, predicted {:.3} s per sample",
                report.pbs_count, circuit.params, report.predicted_latency_s
            );
            circuit_report = Some(report);
            let post = |outs: Vec<Tensor>| {
                fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outs)
                    .map_err(anyhow::Error::new)
            };
            if args.mode == Mode::Simulate {
                run_samples(&feeds, batch, "simulated", |inputs| {
                    let seed = args.seed;
                    post(fhec_runtime::simulate::simulate(&circuit, inputs, seed)?)
                })?
            } else {
                let mut session = FheSession::new(&circuit)?;
                let mut outs = Vec::with_capacity(batch);
                for i in 0..batch {
                    let inputs: Vec<Tensor> = feeds.iter().map(|f| f.sample(i)).collect();
                    let o = session
                        .infer(&circuit, &inputs)
                        .with_context(|| format!("encrypted execution failed on sample {i}"))?;
                    let mut o = post(o)?;
                    if o.is_empty() {
                        bail!("the circuit produced no output");
                    }
                    outs.push(o.swap_remove(0));
                }
                fhe_timings = Some(session.timings);
                outs
            }
        }
        Mode::Clear => {
            let calibration = match &args.quant.calib {
                Some(path) => {
                    let c = load_calibration(
                        path,
                        &DataKeys::default(),
                        graph,
                        &args.model,
                        args.quant.calib_limit,
                        true,
                        &mut |line| eprintln!("{line}"),
                    )?;
                    c.samples
                }
                None => vec![],
            };
            let compiled = compile(
                graph,
                &args.quant,
                calibration,
                &args.model,
                "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy)",
            )?;
            run_samples(&feeds, batch, "quantised (clear)", |inputs| {
                compiled.run(inputs)
            })?
        }
    };
    let output = assemble(output, batched)?;
    pending.write_npy(&output)?;
    if args.json {
        return print_out(&json_text(&PredictJson {
            output: args.output.display().to_string(),
            mode: args.mode.name(),
            shape: output.shape().to_vec(),
            values: output.iter().copied().collect(),
            samples: batch,
            circuit: circuit_report,
            fhe: fhe_timings,
        })?);
    }

    let out_id = graph.outputs()[0];
    let out_name = &graph.node(out_id).name;
    let mut text = format!(
        "wrote '{}': output '{}' float32 {} ({batch} sample{}, mode {})\n",
        args.output.display(),
        model.output_names.first().unwrap_or(out_name),
        shape_text(output.shape()),
        if batch == 1 { "" } else { "s" },
        args.mode.name(),
    );
    if output.len() <= 16 {
        let vals: Vec<String> = output.iter().map(|v| format!("{v:.6}")).collect();
        text.push_str(&format!("  [{}]\n", vals.join(", ")));
    }
    if graph.outputs().len() > 1 {
        text.push_str(&format!(
            "note: the model has {} outputs {:?}; only the first is written\n",
            graph.outputs().len(),
            model.output_names
        ));
    }
    print_out(&text)
}

/// Checks an array against a graph input and converts it to the interpreter's `f32` form.
pub fn make_feed(array: NpyArray, path: &Path, input: &str, fact: &TensorFact) -> Result<Feed> {
    let gs = fact.shape.as_slice();
    let s = array.data.shape().to_vec();
    let expects = || {
        let mut forms = vec![format!("{} (one sample)", shape_text(gs))];
        if gs.first() == Some(&1) {
            let mut b: Vec<String> = vec!["B".into()];
            b.extend(gs[1..].iter().map(|d| d.to_string()));
            forms.push(format!("[{}] (a batch of B samples)", b.join(",")));
            forms.push(format!(
                "{} (one sample without the batch axis)",
                shape_text(&gs[1..])
            ));
        }
        forms.join(", ")
    };
    let (target, batch): (Vec<usize>, Option<usize>) = if s == gs {
        (gs.to_vec(), None)
    } else if gs.first() == Some(&1) && s.len() == gs.len() && s[1..] == gs[1..] {
        if s[0] == 0 {
            bail!(
                "'{}' holds an empty batch (shape {}); graph input '{input}' needs at least one sample",
                path.display(),
                shape_text(&s)
            );
        }
        (s.clone(), Some(s[0]))
    } else if gs.first() == Some(&1) && s == gs[1..] {
        (gs.to_vec(), None)
    } else {
        bail!(
            "'{}' has shape {}, which does not fit graph input '{input}' ({} {}); it takes {}",
            path.display(),
            shape_text(&s),
            ir_dtype_name(fact.dtype),
            shape_text(gs),
            expects()
        );
    };
    let data = convert(&array, path, input, fact.dtype, batch)?;
    let data = data
        .into_shape_with_order(IxDyn(&target))
        .map_err(|e| anyhow!("'{}': cannot reshape: {e}", path.display()))?;
    Ok(Feed { data, batch })
}

/// Where flat element `flat` of an array is, as `sample S, element [i,j,...]`.
fn locate(flat: usize, shape: &[usize], batch: Option<usize>) -> String {
    let mut idx = vec![0; shape.len()];
    let mut rest = flat;
    for (i, &d) in idx.iter_mut().zip(shape).rev() {
        if d > 0 {
            *i = rest % d;
            rest /= d;
        }
    }
    match batch {
        Some(_) if !idx.is_empty() => {
            format!("sample {}, element {}", idx[0], shape_text(&idx[1..]))
        }
        _ => format!("element {}", shape_text(&idx)),
    }
}

/// Converts to `f32`, checking finiteness (float inputs) or range (integer inputs).
fn convert(
    array: &NpyArray,
    path: &Path,
    input: &str,
    dtype: DType,
    batch: Option<usize>,
) -> Result<ArrayD<f32>> {
    let shape = array.data.shape();
    let at = |flat: usize| locate(flat, shape, batch);
    let file = path.display();
    // Integer inputs: within the type and within what f32 holds exactly (2^24 - 1).
    match dtype.exact_range() {
        None => {
            if !array.kind.is_float() {
                bail!(
                    "'{file}' holds {} values but graph input '{input}' is {}; convert the data to float32 (with whatever scaling the model was trained on)",
                    array.kind.name(),
                    ir_dtype_name(dtype)
                );
            }
            let data = array.data.mapv(|v| v as f32);
            if let Some((flat, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let why = if array.data.iter().nth(flat).is_some_and(|x| x.is_finite()) {
                    format!(
                        "{} overflows float32",
                        array.data.iter().nth(flat).unwrap_or(&0.0)
                    )
                } else {
                    format!("is {v}")
                };
                bail!(
                    "'{file}' (graph input '{input}'): {} {why}; inputs must be finite numbers",
                    at(flat)
                );
            }
            Ok(data)
        }
        Some((lo, hi)) => {
            if array.kind == NpyKind::Bool {
                bail!(
                    "'{file}' holds bool values but graph input '{input}' is {}",
                    ir_dtype_name(dtype)
                );
            }
            let bad = array.data.iter().enumerate().find(|(_, &v)| {
                !v.is_finite() || v.fract() != 0.0 || v < lo as f64 || v > hi as f64
            });
            if let Some((flat, v)) = bad {
                bail!(
                    "'{file}' (graph input '{input}', {}): {} is {v}, which is not an integer in [{lo}, {hi}]",
                    ir_dtype_name(dtype),
                    at(flat)
                );
            }
            Ok(array.data.mapv(|v| v as f32))
        }
    }
}

/// The number of samples shared by all inputs.
pub(crate) fn common_batch(feeds: &[Feed], paths: &[PathBuf]) -> Result<usize> {
    let first = feeds.first().map(Feed::samples).unwrap_or(1);
    for (f, p) in feeds.iter().zip(paths) {
        if f.samples() != first {
            let sizes: Vec<String> = feeds
                .iter()
                .zip(paths)
                .map(|(f, p)| format!("'{}': {}", p.display(), f.samples()))
                .collect();
            bail!(
                "the inputs hold different numbers of samples ({}); '{}' disagrees with the first",
                sizes.join(", "),
                p.display()
            );
        }
    }
    Ok(first)
}

/// Runs every sample through the float interpreter; returns the first output of each.
fn run_float(graph: &Graph, feeds: &[Feed], batch: usize) -> Result<Vec<Tensor>> {
    run_samples(feeds, batch, "float", |inputs| {
        fhec_ir::interp::run(graph, inputs).map_err(anyhow::Error::new)
    })
}

/// Runs `f` on every sample in parallel; returns the first output of each.
fn run_samples<F>(feeds: &[Feed], batch: usize, what: &str, f: F) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>> + Sync,
{
    let results: Vec<Result<Tensor>> = (0..batch)
        .into_par_iter()
        .map(|i| {
            let inputs: Vec<Tensor> = feeds.iter().map(|f| f.sample(i)).collect();
            let mut outs =
                f(&inputs).with_context(|| format!("{what} execution failed on sample {i}"))?;
            if outs.is_empty() {
                bail!("the model produced no output on sample {i}");
            }
            Ok(outs.swap_remove(0))
        })
        .collect();
    results.into_iter().collect()
}

/// Stacks per-sample outputs: `[B, ...]` without the per-sample leading 1 when batched, the
/// model's own output shape for a single unbatched sample.
pub(crate) fn assemble(mut outs: Vec<Tensor>, batched: bool) -> Result<Tensor> {
    if !batched && outs.len() == 1 {
        return outs.pop().ok_or_else(|| anyhow!("no output"));
    }
    let views: Vec<_> = outs.iter().map(|t| t.view()).collect();
    let leading_one = outs.first().is_some_and(|t| t.shape().first() == Some(&1));
    let stacked = if leading_one {
        ndarray::concatenate(Axis(0), &views)
    } else {
        ndarray::stack(Axis(0), &views)
    };
    stacked.map_err(|e| anyhow!("cannot batch the per-sample outputs: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], kind: NpyKind) -> NpyArray {
        let n = shape.iter().product();
        NpyArray {
            kind,
            data: ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|v| v as f64).collect()).unwrap(),
        }
    }

    #[test]
    fn feed_layouts() {
        let fact = TensorFact::f32(vec![1, 3]);
        let p = Path::new("x.npy");
        let one = make_feed(arr(&[1, 3], NpyKind::Float32), p, "x", &fact).unwrap();
        assert_eq!((one.batch, one.data.shape()), (None, &[1, 3][..]));
        let flat = make_feed(arr(&[3], NpyKind::Float64), p, "x", &fact).unwrap();
        assert_eq!((flat.batch, flat.data.shape()), (None, &[1, 3][..]));
        let many = make_feed(arr(&[5, 3], NpyKind::Float32), p, "x", &fact).unwrap();
        assert_eq!(many.batch, Some(5));
        assert_eq!(many.sample(4).shape(), &[1, 3]);
        assert_eq!(many.sample(4).as_slice().unwrap(), &[12.0, 13.0, 14.0]);
        let err = make_feed(arr(&[5, 4], NpyKind::Float32), p, "x", &fact).unwrap_err();
        assert!(err.to_string().contains("[5,4]"), "{err}");
        let err = make_feed(arr(&[0, 3], NpyKind::Float32), p, "x", &fact).unwrap_err();
        assert!(err.to_string().contains("empty batch"), "{err}");
    }

    #[test]
    fn dtype_rules() {
        let p = Path::new("x.npy");
        let float = TensorFact::f32(vec![1, 3]);
        let err = make_feed(arr(&[1, 3], NpyKind::Int("int64")), p, "x", &float).unwrap_err();
        assert!(err.to_string().contains("int64"), "{err}");
        let u8fact = TensorFact::new(DType::U8, vec![1, 3]);
        assert!(make_feed(arr(&[1, 3], NpyKind::Int("uint8")), p, "x", &u8fact).is_ok());
        let mut a = arr(&[1, 3], NpyKind::Float32);
        a.data[[0, 1]] = 0.5;
        let err = make_feed(a, p, "x", &u8fact).unwrap_err();
        assert!(err.to_string().contains("sample") || err.to_string().contains("element"));
        // int32 inputs beyond f32's exact integers are refused, not rounded.
        let i32fact = TensorFact::new(DType::I32, vec![1, 3]);
        let mut a = arr(&[1, 3], NpyKind::Int("int32"));
        a.data[[0, 2]] = 16_777_217.0;
        let err = make_feed(a, p, "x", &i32fact).unwrap_err().to_string();
        assert!(err.contains("[-16777215, 16777215]"), "{err}");
        let mut a = arr(&[2, 3], NpyKind::Float32);
        a.data[[1, 2]] = f64::NAN;
        let err = make_feed(a, p, "x", &float).unwrap_err().to_string();
        assert!(
            err.contains("sample 1, element [2]") && err.contains("NaN"),
            "{err}"
        );
        let mut a = arr(&[1, 3], NpyKind::Float64);
        a.data[[0, 0]] = 1e300;
        let err = make_feed(a, p, "x", &float).unwrap_err().to_string();
        assert!(err.contains("overflows float32"), "{err}");
    }

    #[test]
    fn assemble_shapes() {
        let t = |s: &[usize]| Tensor::zeros(IxDyn(s));
        assert_eq!(assemble(vec![t(&[1, 2])], false).unwrap().shape(), &[1, 2]);
        assert_eq!(
            assemble(vec![t(&[1, 2]), t(&[1, 2]), t(&[1, 2])], true)
                .unwrap()
                .shape(),
            &[3, 2]
        );
        assert_eq!(
            assemble(vec![t(&[4]), t(&[4])], true).unwrap().shape(),
            &[2, 4]
        );
        assert_eq!(assemble(vec![t(&[1, 2])], true).unwrap().shape(), &[1, 2]);
    }
}
