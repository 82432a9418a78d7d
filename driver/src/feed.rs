//! Model inputs from `.npy` arrays: checking an array against a graph input (one sample or
//! a batch along axis 0, dtype and range), the batch size shared by all inputs, and stacking
//! per-sample outputs back into one array. What `fhec predict` and the FHE commands feed a
//! model or a circuit.

use std::path::{Path, PathBuf};

use fhec_ir::{DType, Tensor, TensorFact};
use fhec_runtime::Program;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::error::{shape_text, DriverError, Result};
use crate::npy::{read_npy, NpyArray, NpyKind};
use crate::samples::dtype_name as ir_dtype_name;

/// A refused input array: `path` and what is wrong with it (the message names both).
fn refuse(path: &Path, problem: String) -> DriverError {
    DriverError::Input {
        path: path.to_path_buf(),
        problem,
    }
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
            return Err(refuse(path, format!(
                "'{}' holds an empty batch (shape {}); graph input '{input}' needs at least one sample",
                path.display(),
                shape_text(&s)
            )));
        }
        (s.clone(), Some(s[0]))
    } else if gs.first() == Some(&1) && s == gs[1..] {
        (gs.to_vec(), None)
    } else {
        return Err(refuse(
            path,
            format!(
                "'{}' has shape {}, which does not fit graph input '{input}' ({} {}); it takes {}",
                path.display(),
                shape_text(&s),
                ir_dtype_name(fact.dtype),
                shape_text(gs),
                expects()
            ),
        ));
    };
    let data = convert(&array, path, input, fact.dtype, batch)?;
    let data = data
        .into_shape_with_order(IxDyn(&target))
        .map_err(|e| refuse(path, format!("'{}': cannot reshape: {e}", path.display())))?;
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
                return Err(refuse(path, format!(
                    "'{file}' holds {} values but graph input '{input}' is {}; convert the data to float32 (with whatever scaling the model was trained on)",
                    array.kind.name(),
                    ir_dtype_name(dtype)
                )));
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
                return Err(refuse(
                    path,
                    format!(
                        "'{file}' (graph input '{input}'): {} {why}; inputs must be finite numbers",
                        at(flat)
                    ),
                ));
            }
            Ok(data)
        }
        Some((lo, hi)) => {
            if array.kind == NpyKind::Bool {
                return Err(refuse(
                    path,
                    format!(
                        "'{file}' holds bool values but graph input '{input}' is {}",
                        ir_dtype_name(dtype)
                    ),
                ));
            }
            let bad = array.data.iter().enumerate().find(|(_, &v)| {
                !v.is_finite() || v.fract() != 0.0 || v < lo as f64 || v > hi as f64
            });
            if let Some((flat, v)) = bad {
                return Err(refuse(path, format!(
                    "'{file}' (graph input '{input}', {}): {} is {v}, which is not an integer in [{lo}, {hi}]",
                    ir_dtype_name(dtype),
                    at(flat)
                )));
            }
            Ok(array.data.mapv(|v| v as f32))
        }
    }
}

/// The number of samples shared by all inputs.
pub fn common_batch(feeds: &[Feed], paths: &[PathBuf]) -> Result<usize> {
    let first = feeds.first().map(Feed::samples).unwrap_or(1);
    for (f, p) in feeds.iter().zip(paths) {
        if f.samples() != first {
            let sizes: Vec<String> = feeds
                .iter()
                .zip(paths)
                .map(|(f, p)| format!("'{}': {}", p.display(), f.samples()))
                .collect();
            return Err(refuse(
                p,
                format!(
                "the inputs hold different numbers of samples ({}); '{}' disagrees with the first",
                sizes.join(", "),
                p.display()
            ),
            ));
        }
    }
    Ok(first)
}

/// The `.npy` inputs of a circuit, one file per circuit input.
pub struct Inputs {
    /// One entry per sample, each one array per circuit input (shaped like that input).
    pub samples: Vec<Vec<ArrayD<f32>>>,
    /// Whether the files held a batch along axis 0 (else one sample each).
    pub batched: bool,
}

/// Reads one sample or a batch of samples per circuit input from `.npy` files.
pub fn read_inputs(program: &Program, paths: &[PathBuf]) -> Result<Inputs> {
    let specs = &program.inputs;
    if paths.len() != specs.len() {
        return Err(DriverError::Invalid(format!(
            "the circuit has {} input(s) ({}) but {} input file(s) were given",
            specs.len(),
            specs
                .iter()
                .map(|s| format!("'{}' {}", s.name, shape_text(&s.shape)))
                .collect::<Vec<_>>()
                .join(", "),
            paths.len()
        )));
    }
    let mut feeds = Vec::with_capacity(paths.len());
    for (path, spec) in paths.iter().zip(specs) {
        feeds.push(make_feed(
            read_npy(path)?,
            path,
            &spec.name,
            &TensorFact::f32(spec.shape.clone()),
        )?);
    }
    let n = common_batch(&feeds, paths)?;
    let samples = (0..n)
        .map(|i| feeds.iter().map(|f| f.sample(i)).collect())
        .collect();
    Ok(Inputs {
        samples,
        batched: feeds.iter().any(|f| f.batch.is_some()),
    })
}

/// Stacks per-sample outputs: `[B, ...]` without the per-sample leading 1 when batched, the
/// model's own output shape for a single unbatched sample.
pub fn assemble(mut outs: Vec<Tensor>, batched: bool) -> Result<Tensor> {
    if !batched && outs.len() == 1 {
        return outs.pop().ok_or(DriverError::NoOutput);
    }
    let views: Vec<_> = outs.iter().map(|t| t.view()).collect();
    let leading_one = outs.first().is_some_and(|t| t.shape().first() == Some(&1));
    let stacked = if leading_one {
        ndarray::concatenate(Axis(0), &views)
    } else {
        ndarray::stack(Axis(0), &views)
    };
    stacked.map_err(|e| DriverError::Invalid(format!("cannot batch the per-sample outputs: {e}")))
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
