//! fhec runtime: loads a compiled circuit, generates keys, encrypts, executes on ciphertexts,
//! decrypts and simulates. It depends on neither the frontend nor the passes, so an
//! application that only runs circuits embeds this crate alone.
//!
//! - [`circuit`]: the program format the backend emits;
//! - [`params`] and [`noise`]: TFHE parameters and the noise model shared with the optimizer;
//! - [`execute`] runs a program on any [`Engine`]: [`ClearEngine`] (exact integers),
//!   [`SimulationEngine`] (integers plus predicted noise) or [`FheEngine`] (tfhe-rs);
//! - [`artifact`]: versioned, checksummed files for circuits, keys and ciphertexts, written by
//!   [`atomic`], the one atomic file writer (everything fhec writes goes through it).

pub mod artifact;
pub mod atomic;
pub mod circuit;
pub mod clear;
pub mod client;
pub mod engine;
pub mod error;
pub mod exec;
pub mod fhe;
pub mod noise;
pub mod params;
pub mod print;
pub mod simulate;
pub mod validate;

pub use circuit::{Circuit, Program};
pub use clear::ClearEngine;
pub use engine::Engine;
pub use error::RuntimeError;
pub use exec::execute;
pub use fhe::{ClientKey, CompressedServerKey, FheEngine, ServerKey};
pub use params::{CryptoParams, ParamSets, ReturnKeyswitch};
pub use simulate::SimulationEngine;

/// Version of the serialised artifacts (circuit, keys, ciphertexts).
/// 2: output specs carry per-channel scales.
/// 3: parameter sets per lookup class (circuits, keys and ciphertexts of version 2 are refused).
/// 4: parameter sets may have a big key of their own with a return keyswitch (keys carry
///    those keys; version 3 files are refused).
pub const FORMAT_VERSION: u32 = 4;
