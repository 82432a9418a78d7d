//! Test helpers shared by the integration tests of the fhec workspace's crates: a seeded
//! pseudo-random generator, the fixture models and data under `tests/fixtures`, small tensor,
//! graph and ONNX builders. Dev-only (a `[dev-dependencies]` entry, `publish = false`);
//! helpers used by one crate's tests stay in that crate's `tests/common`.
//!
//! Features: `graph` (helpers on fhec graphs, fixture import: fhec-ir and fhec-frontend) and
//! `onnx` (ONNX protobuf builders: tract-onnx). fhec-ir's and fhec-frontend's own tests use
//! this crate without `graph`.

mod fixture;
#[cfg(feature = "graph")]
mod graph;
#[cfg(feature = "onnx")]
mod onnx;
mod rng;

pub use fixture::*;
#[cfg(feature = "graph")]
pub use graph::*;
#[cfg(feature = "onnx")]
pub use onnx::*;
pub use rng::*;

use ndarray::{ArrayD, IxDyn};

/// A float tensor (`fhec_ir::Tensor`) of this shape holding `data`, row-major.
pub fn tensor(shape: &[usize], data: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap()
}
