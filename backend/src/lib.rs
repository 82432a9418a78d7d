//! fhec backend: chooses TFHE parameters for an integer graph and lowers it to the serialised
//! circuit that `fhec-runtime` executes. The lowering lands with the FHE work; the crate
//! boundary is fixed now so that its dependencies (ir in, runtime's circuit format out) are.

pub use fhec_runtime::FORMAT_VERSION;
