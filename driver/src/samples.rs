//! Dataset samples shaped for a model: fitting a file's samples to the model input (adding
//! the batch axis, transposing NCHW data for an NHWC model), the labelled test split, and
//! calibration samples (a train split, with the fallbacks each caller allows).

use std::path::Path;

use fhec_ir::{Graph, Tensor, TensorFact};
use ndarray::{Axis, IxDyn};

use crate::config::QuantConfig;
use crate::data::{load_dataset, DataError, DataKeys, Dataset, Split};
use crate::error::{DataRole, DriverError, Result};
use crate::hooks::Hooks;

/// How the samples of a dataset are turned into tensors of the model input's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// The sample shape is the input shape (batch axis included).
    AsIs,
    /// The sample shape is the input shape without its leading batch 1.
    AddBatch,
    /// The data is NCHW `[C,H,W]` and the model takes NHWC `[1,H,W,C]`.
    NchwToNhwc,
}

/// How samples of shape `sample` fit a model input of shape `input`; `None` if they do not.
pub fn fit(sample: &[usize], input: &[usize]) -> Option<Fit> {
    if sample == input {
        Some(Fit::AsIs)
    } else if input.first() == Some(&1) && sample == &input[1..] {
        Some(Fit::AddBatch)
    } else if input.len() == 4
        && input[0] == 1
        && sample.len() == 3
        && sample == [input[3], input[1], input[2]]
    {
        Some(Fit::NchwToNhwc)
    } else {
        None
    }
}

/// Numpy-style name of an IR element type.
pub fn dtype_name(d: fhec_ir::DType) -> &'static str {
    use fhec_ir::DType;
    match d {
        DType::F32 => "float32",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::I32 => "int32",
        DType::I64 => "int64",
    }
}

/// Dataset features as one model-input-shaped tensor per sample, with a note when they were
/// transposed. `role` names the data's role ("data", "calibration data").
pub fn model_samples(
    ds: &Dataset,
    input: &str,
    fact: &TensorFact,
    file: &Path,
    role: &'static str,
) -> Result<(Vec<Tensor>, Option<String>)> {
    let sample = ds.sample_shape();
    let gs = fact.shape.as_slice();
    let Some(how) = fit(sample, gs) else {
        return Err(DriverError::SampleShape {
            role,
            path: file.to_path_buf(),
            sample: sample.to_vec(),
            array: ds.x.shape().to_vec(),
            input: input.into(),
            dtype: dtype_name(fact.dtype),
            input_shape: gs.to_vec(),
        });
    };
    if let Some((lo, hi)) = fact.dtype.exact_range() {
        if let Some((i, &v)) =
            ds.x.iter().enumerate().find(|(_, &v)| {
                v.fract() != 0.0 || (v as f64) < lo as f64 || (v as f64) > hi as f64
            })
        {
            let per = sample.iter().product::<usize>().max(1);
            return Err(DriverError::SampleValue {
                role,
                path: file.to_path_buf(),
                sample: i / per,
                value: v,
                input: input.into(),
                dtype: dtype_name(fact.dtype),
                lo,
                hi,
            });
        }
    }
    let note = (how == Fit::NchwToNhwc).then(|| {
        format!(
            "{role} '{}' is NCHW {} per sample but model input '{input}' is NHWC {}: \
             transposing the samples (0,2,3,1)",
            file.display(),
            crate::error::shape_text(sample),
            crate::error::shape_text(gs)
        )
    });
    let samples =
        ds.x.axis_iter(Axis(0))
            .map(|s| match how {
                Fit::AsIs => s.to_owned(),
                Fit::AddBatch => s.insert_axis(Axis(0)).to_owned(),
                Fit::NchwToNhwc => s
                    .permuted_axes(IxDyn(&[1, 2, 0]))
                    .insert_axis(Axis(0))
                    .as_standard_layout()
                    .into_owned(),
            })
            .collect();
    Ok((samples, note))
}

/// The single graph input of a model (evaluation and calibration handle one-input models).
pub fn single_input<'g>(graph: &'g Graph, model: &Path) -> Result<(&'g str, &'g TensorFact)> {
    match graph.inputs() {
        [id] => {
            let n = graph.node(*id);
            Ok((n.name.as_str(), &n.fact))
        }
        ids => Err(DriverError::NotOneInput {
            model: model.to_path_buf(),
            count: ids.len(),
        }),
    }
}

/// A labelled test split, fitted to the model input.
#[derive(Debug, Clone)]
pub struct TestSet {
    /// One model-input-shaped tensor per sample.
    pub samples: Vec<Tensor>,
    /// Class index per sample (checked >= 0).
    pub labels: Vec<i64>,
    /// A note when the data was transposed to fit the model input.
    pub layout: Option<String>,
    /// Description of the file and arrays read.
    pub source: String,
}

/// Loads the test split of `data` (labels required, the first `limit` samples) and fits it
/// to the model input.
pub fn load_test_set(
    data: &Path,
    keys: &DataKeys,
    limit: Option<usize>,
    input: &str,
    fact: &TensorFact,
) -> Result<TestSet> {
    let ds = load_dataset(data, Split::Test, keys).map_err(|source| DriverError::Data {
        role: DataRole::Test,
        path: data.to_path_buf(),
        source,
    })?;
    let Some(labels) = ds.y.clone() else {
        return Err(DriverError::NoLabels {
            path: data.to_path_buf(),
            source_desc: ds.source,
        });
    };
    if ds.is_empty() {
        return Err(DriverError::NoSamples {
            path: data.to_path_buf(),
            what: "test",
        });
    }
    let ds = match limit {
        Some(k) => ds.head(k),
        None => ds,
    };
    let labels: Vec<i64> = labels.iter().take(ds.len()).copied().collect();
    check_labels(&labels, data)?;
    let (samples, layout) = model_samples(&ds, input, fact, data, "data")?;
    Ok(TestSet {
        samples,
        labels,
        layout,
        source: ds.source,
    })
}

/// Labels must be class indices the model can predict.
pub fn check_labels(labels: &[i64], data: &Path) -> Result<()> {
    match labels.iter().enumerate().find(|(_, &l)| l < 0) {
        Some((i, &l)) => Err(DriverError::NegativeLabel {
            path: data.to_path_buf(),
            sample: i,
            label: l,
        }),
        None => Ok(()),
    }
}

/// Calibration samples and where they came from.
#[derive(Debug, Default, Clone)]
pub struct Calibration {
    pub samples: Vec<Vec<Tensor>>,
    /// Description of the file and arrays used; `None` when there is no calibration data.
    pub source: Option<String>,
    /// Samples the file held before the limit.
    pub available: usize,
}

/// Loads calibration samples from `path`: its train split, or (for a file with no train
/// split, only when `fallback_to_test`) its test split, with a note.
pub fn load_calibration(
    path: &Path,
    keys: &DataKeys,
    graph: &Graph,
    model: &Path,
    limit: usize,
    fallback_to_test: bool,
    hooks: &Hooks,
) -> Result<Calibration> {
    let (input, fact) = single_input(graph, model)?;
    let data_error = |source| DriverError::Data {
        role: DataRole::Calibration,
        path: path.to_path_buf(),
        source,
    };
    let ds = match load_dataset(path, Split::Train, keys) {
        Ok(ds) => ds,
        Err(DataError::UnknownLayout { .. }) if fallback_to_test => {
            let ds = load_dataset(path, Split::Test, keys).map_err(data_error)?;
            hooks.note(&format!(
                "note: '{}' has no train split; calibrating on its test split",
                path.display()
            ));
            ds
        }
        Err(e) => return Err(data_error(e)),
    };
    let available = ds.len();
    let ds = ds.head(limit);
    let (tensors, note) = model_samples(&ds, input, fact, path, "calibration data")?;
    if let Some(n) = note {
        hooks.note(&format!("note: {n}"));
    }
    Ok(Calibration {
        samples: tensors.into_iter().map(|t| vec![t]).collect(),
        source: Some(ds.source.clone()),
        available,
    })
}

/// The calibration data of a compile without a dataset: `quant.calib` when given (its train
/// split, else its test split), else none (only a fully quantisation-aware model compiles
/// without).
pub fn calibration_for(
    graph: &Graph,
    quant: &QuantConfig,
    model: &Path,
    hooks: &Hooks,
) -> Result<Calibration> {
    match &quant.calib {
        Some(path) => load_calibration(
            path,
            &DataKeys::default(),
            graph,
            model,
            quant.calib_limit,
            true,
            hooks,
        ),
        None => Ok(Calibration::default()),
    }
}

/// Calibration data for evaluating on `data`: `quant.calib` when given, else the train split
/// of `data`, else none (with a note: only a fully quantisation-aware model compiles
/// without).
pub fn data_calibration(
    quant: &QuantConfig,
    data: &Path,
    keys: &DataKeys,
    graph: &Graph,
    model: &Path,
    hooks: &Hooks,
) -> Result<Calibration> {
    if let Some(path) = &quant.calib {
        return load_calibration(path, keys, graph, model, quant.calib_limit, true, hooks);
    }
    let quiet = Hooks {
        on_event: None,
        ..*hooks
    };
    match load_calibration(data, keys, graph, model, quant.calib_limit, false, &quiet) {
        Ok(c) => Ok(c),
        Err(DriverError::Data {
            source: DataError::UnknownLayout { .. },
            ..
        }) => {
            hooks.note(&format!(
                "note: '{}' has no train split to calibrate on; give calibration data \
                 unless the model is fully quantisation-aware",
                data.display()
            ));
            Ok(Calibration::default())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits() {
        assert_eq!(fit(&[30], &[1, 30]), Some(Fit::AddBatch));
        assert_eq!(fit(&[1, 30], &[1, 30]), Some(Fit::AsIs));
        assert_eq!(fit(&[1, 28, 28], &[1, 1, 28, 28]), Some(Fit::AddBatch));
        assert_eq!(fit(&[1, 28, 28], &[1, 28, 28, 1]), Some(Fit::NchwToNhwc));
        assert_eq!(fit(&[3, 28, 28], &[1, 28, 28, 3]), Some(Fit::NchwToNhwc));
        assert_eq!(fit(&[28, 28, 1], &[1, 28, 28, 1]), Some(Fit::AddBatch));
        assert_eq!(fit(&[31], &[1, 30]), None);
        assert_eq!(fit(&[1, 28, 28], &[1, 3, 28, 28]), None);
    }

    #[test]
    fn nchw_samples_are_transposed() {
        let x = ndarray::ArrayD::from_shape_vec(
            IxDyn(&[2, 2, 1, 3]),
            (0..12).map(|v| v as f32).collect(),
        )
        .unwrap();
        let ds = Dataset {
            x,
            y: None,
            source: "t".into(),
        };
        let fact = TensorFact::f32(vec![1, 1, 3, 2]);
        let (s, note) = model_samples(&ds, "in", &fact, Path::new("d.npz"), "data").unwrap();
        assert!(note.unwrap().contains("NHWC"));
        assert_eq!(s[1].shape(), &[1, 1, 3, 2]);
        // sample 1 is channels [6,7,8] and [9,10,11]; NHWC interleaves them.
        assert_eq!(
            s[1].iter().copied().collect::<Vec<_>>(),
            vec![6., 9., 7., 10., 8., 11.]
        );
        let bad = TensorFact::f32(vec![1, 5]);
        let e = model_samples(&ds, "in", &bad, Path::new("d.npz"), "data").unwrap_err();
        assert!(
            e.to_string().contains("[2,1,3]") && e.to_string().contains("[1,5]"),
            "{e}"
        );
    }
}
