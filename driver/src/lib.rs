//! `fhec-driver`: the fhec job as a library, under the `fhec` command line and anything else
//! that embeds fhec (a Python package, a server, a notebook). It imports an ONNX model
//! ([`model`]), quantises it through the pass pipeline and builds the TFHE circuit
//! ([`compile`]; the whole file-to-circuit job in [`job`]), loads datasets ([`data`],
//! [`samples`]), predicts and evaluates in four modes ([`predict`], [`eval`]), runs FHE
//! sessions ([`session`]) on inputs from `.npy` files ([`npy`], [`feed`]), and plans, writes,
//! resumes and merges sweeps ([`sweep`]) and tune searches ([`tune`]). Errors are a
//! [`DriverError`] carrying data; long operations take [`Hooks`] (progress events, a cancel
//! flag, a thread count).
//!
//! From an ONNX model to a decrypted prediction:
//!
//! ```
//! use std::path::Path;
//! use fhec_driver::config::{RoundingBits, RoundingMode};
//! use fhec_driver::{build_circuit, import_model, quantise, CryptoConfig, QuantConfig};
//! use fhec_runtime::fhe::ClientKey;
//!
//! let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mlp_brevitas.onnx"));
//! let model = import_model(path, &Default::default())?;
//! // 4 bits, accumulators rounded exactly to 4 bits before each lookup (about 10 s here);
//! // the model is quantisation-aware (Brevitas), so it needs no calibration data.
//! let quant = QuantConfig {
//!     rounding_bits: Some(RoundingBits::Keep(4)),
//!     rounding_mode: Some(RoundingMode::Exact),
//!     ..QuantConfig::bits(4)
//! };
//! let compiled = quantise(&model.graph, &quant, vec![], path)?;
//! let crypto = CryptoConfig::per_pbs(1e-6);
//! let (circuit, _) = build_circuit(&compiled, &crypto, path, &model.output_names)?;
//!
//! let (client, server) = ClientKey::generate(&circuit.params)?; // the client keeps `client`
//! let server = server.expand(); // the server gets the (compressed) evaluation key
//! let input = ndarray::ArrayD::<f32>::zeros(circuit.program.inputs[0].shape.clone());
//! let encrypted = client.encrypt(&circuit.program, &[input.clone()])?;
//! let result = fhec_runtime::fhe::run(&circuit, &server, &encrypted)?;
//! let decrypted = client.decrypt(&circuit.program, &result)?;
//! let outputs = fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, decrypted)?;
//!
//! // Bit-exact with the quantised model run in the clear (exact rounding; approximate
//! // rounding may differ by one step near a rounding boundary).
//! assert_eq!(outputs[0], compiled.run(&[input])?[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// A `DriverError` is 160 bytes (it carries its sources and paths by value). Errors are cold —
// one per failed operation, never per sample in a hot loop — so the moves cost nothing that
// matters, and boxing every source would make matching on them (as the CLI does) clumsier.
#![allow(clippy::result_large_err)]

pub mod compile;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod feed;
pub mod hooks;
pub mod job;
pub mod model;
pub mod npy;
pub mod predict;
pub mod prune_stats;
pub mod report;
pub mod samples;
pub mod session;
pub mod sweep;
pub mod tune;

pub use compile::{build_circuit, quantise, Compiled};
pub use config::{CryptoConfig, QuantConfig};
pub use error::{DriverError, Result};
pub use eval::{evaluate, EvalMode, EvalRequest};
pub use hooks::{Event, Hooks};
pub use model::import_model;
pub use session::FheSession;
