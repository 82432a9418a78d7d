//! fhec runtime: loads a compiled circuit, generates keys, encrypts, executes on ciphertexts,
//! decrypts and simulates. It depends on neither the frontend nor the passes, so an
//! application that only runs circuits embeds this crate alone. Execution lands with the FHE
//! work; the artifact format version is defined here because every artifact carries it.

/// Version of the serialised artifacts (circuit, keys, ciphertexts).
pub const FORMAT_VERSION: u32 = 1;
