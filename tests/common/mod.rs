//! Helpers shared by the integration tests: fixture paths and loading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fhec_ir::Tensor;
use ndarray::{ArrayD, Axis};
use ndarray_npy::NpzReader;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
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

pub fn import_fixture(stem: &str) -> fhec_frontend::ImportedModel {
    let path = fixtures().join(format!("{stem}.onnx"));
    fhec_frontend::import_file(&path, &Default::default())
        .unwrap_or_else(|e| panic!("importing {stem}: {e}"))
}

/// Reference `inputs` and framework `outputs` of a fixture, batched along axis 0.
pub fn reference(stem: &str) -> (ArrayD<f32>, ArrayD<f32>) {
    let path = fixtures().join("reference").join(format!("{stem}.npz"));
    let mut npz = NpzReader::new(std::fs::File::open(&path).expect("reference npz")).expect("npz");
    let x: ArrayD<f32> = npz.by_name("inputs").expect("inputs");
    let y: ArrayD<f32> = npz.by_name("outputs").expect("outputs");
    (x, y)
}

/// Sample `i` of a batch, with a leading batch axis of 1.
pub fn sample(batch: &ArrayD<f32>, i: usize) -> Tensor {
    batch.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned()
}
