//! The fixture models and data under `tests/fixtures` (at the workspace root).

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis, IxDyn};
use ndarray_npy::{NpzReader, ReadableElement};

/// The fixture directory, `<workspace>/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("tests/fixtures")
}

/// Every fixture model's stem (`tests/fixtures/<stem>.onnx`), sorted.
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

/// Array `key` of an `.npz` file under the fixtures (`rel` relative to `tests/fixtures`).
pub fn npz_array<T: ReadableElement>(rel: &str, key: &str) -> ArrayD<T> {
    let path = fixtures().join(rel);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut npz = NpzReader::new(file).expect("npz");
    npz.by_name(key)
        .unwrap_or_else(|e| panic!("{rel} {key}: {e}"))
}

/// Reference `inputs` and framework `outputs` of a fixture (`reference/<stem>.npz`), batched
/// along axis 0.
pub fn reference(stem: &str) -> (ArrayD<f32>, ArrayD<f32>) {
    let rel = format!("reference/{stem}.npz");
    (npz_array(&rel, "inputs"), npz_array(&rel, "outputs"))
}

/// The reference `inputs` of a fixture, one tensor per sample with a batch axis of 1.
pub fn reference_inputs(stem: &str) -> Vec<ArrayD<f32>> {
    samples(&npz_array(&format!("reference/{stem}.npz"), "inputs"))
}

/// Sample `i` of a batch, with a leading batch axis of 1.
pub fn sample(batch: &ArrayD<f32>, i: usize) -> ArrayD<f32> {
    batch.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned()
}

/// The samples of a batch, each with a leading batch axis of 1.
pub fn samples(batch: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    batch
        .axis_iter(Axis(0))
        .map(|s| s.insert_axis(Axis(0)).to_owned())
        .collect()
}

/// The first `n` samples (all of them if fewer) of split `key` (`x_train`, `x_test`) of
/// fixture data file `file` (`tests/fixtures/data/<file>`), each with a batch axis of 1;
/// transposed from NCHW to NHWC when `nhwc` (for Keras models).
pub fn data_samples(file: &str, key: &str, nhwc: bool, n: usize) -> Vec<ArrayD<f32>> {
    let x: ArrayD<f32> = npz_array(&format!("data/{file}"), key);
    let x = if nhwc {
        x.permuted_axes(IxDyn(&[0, 2, 3, 1]))
            .as_standard_layout()
            .into_owned()
    } else {
        x
    };
    x.axis_iter(Axis(0))
        .take(n)
        .map(|s| s.insert_axis(Axis(0)).to_owned())
        .collect()
}
