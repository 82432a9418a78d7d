//! Execution on encrypted data with tfhe-rs (core_crypto API).
//!
//! - [`keys`]: [`ClientKey`] (secret), [`CompressedServerKey`] (what the client ships) and
//!   [`ServerKey`] (expanded, what the server computes with), with their files;
//! - [`ciphertext`]: [`EncryptedTensors`], encryption and decryption on the client;
//! - [`engine`]: [`FheEngine`], the [`crate::Engine`] on LWE ciphertexts;
//! - [`run`]: the server side of one inference; [`run_samples`]: of a file of one sample or
//!   a batch (samples in parallel);
//! - [`trace`]: a debugging run that decrypts every lookup input with the *client* key and
//!   reports the noise margin per lookup (never on a server: it needs the secret key).
//!
//! Typical use:
//! ```no_run
//! # use fhec_runtime::{Circuit, fhe::{self, ClientKey}};
//! # fn demo(circuit: &Circuit, x: ndarray::ArrayD<f32>) -> Result<(), fhec_runtime::RuntimeError> {
//! let (client, compressed) = ClientKey::generate(&circuit.params)?;   // client
//! let server_key = compressed.expand();                               // server, once
//! let encrypted = client.encrypt(&circuit.program, &[x])?;            // client
//! let result = fhe::run(circuit, &server_key, &encrypted)?;           // server
//! let y = client.decrypt(&circuit.program, &result)?;                 // client
//! # Ok(()) }
//! ```

pub mod ciphertext;
pub mod engine;
pub mod keys;
pub mod trace;

pub use ciphertext::{input_specs, output_specs, Ciphertexts, EncryptedTensor, EncryptedTensors};
pub use engine::FheEngine;
pub use keys::{insecure_test_params, ClientKey, CompressedServerKey, ServerKey, SetKey};
pub use trace::{run_traced, LookupTrace, NoiseTrace};

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::circuit::Circuit;
use crate::error::RuntimeError;
use crate::exec::execute;
use crate::fhe::engine::Ct;

/// Fails unless `server_key` was generated for the parameters of `circuit`.
pub fn check_server_key(circuit: &Circuit, server_key: &ServerKey) -> Result<(), RuntimeError> {
    if server_key.params.fingerprint() != circuit.params.fingerprint() {
        return Err(RuntimeError::Mismatch(format!(
            "the server key was generated for other TFHE parameters ({}) than the circuit ({}): generate a key pair for this circuit",
            server_key.params.fingerprint_hex(),
            circuit.params.fingerprint_hex()
        )));
    }
    Ok(())
}

/// Runs `circuit` on encrypted inputs with `server_key` (the server side of an inference).
///
/// Checks that key, circuit and ciphertexts belong together and that the input shapes match,
/// decompresses seeded inputs and executes the program on an [`FheEngine`]. The outputs are
/// full LWE ciphertexts under the same key.
pub fn run(
    circuit: &Circuit,
    server_key: &ServerKey,
    inputs: &EncryptedTensors,
) -> Result<EncryptedTensors, RuntimeError> {
    let arrays = expand_inputs(circuit, server_key, inputs)?;
    let engine = FheEngine::new(server_key);
    let outputs = execute(&circuit.program, &engine, arrays)?;
    Ok(pack_outputs(circuit, server_key, outputs.iter()))
}

/// Runs `circuit` on a file of one sample or a batch (see [`EncryptedTensors::samples`]):
/// each sample exactly as [`run`] runs it alone, several samples in parallel (each run also
/// parallelises its own bootstraps; rayon shares the threads). The outputs have the layout
/// of the inputs (one sample, or a batch of as many samples); returns them with the number
/// of samples.
pub fn run_samples(
    circuit: &Circuit,
    server_key: &ServerKey,
    inputs: &EncryptedTensors,
) -> Result<(EncryptedTensors, usize), RuntimeError> {
    check_server_key(circuit, server_key)?;
    inputs.check(&circuit.params, Some(&server_key.key_id), "the server key")?;
    let Some(samples) = inputs.split_samples(&input_specs(&circuit.program), "input")? else {
        return Ok((run(circuit, server_key, inputs)?, 1));
    };
    let outputs: Result<Vec<EncryptedTensors>, RuntimeError> = if samples.len() > 1 {
        samples
            .par_iter()
            .map(|s| run(circuit, server_key, s))
            .collect()
    } else {
        samples
            .iter()
            .map(|s| run(circuit, server_key, s))
            .collect()
    };
    Ok((EncryptedTensors::stack_samples(&outputs?)?, samples.len()))
}

/// Checks that key, circuit and ciphertexts belong together and that the input shapes
/// match, and decompresses the inputs into full ciphertexts.
pub(crate) fn expand_inputs(
    circuit: &Circuit,
    server_key: &ServerKey,
    inputs: &EncryptedTensors,
) -> Result<Vec<ArrayD<Ct>>, RuntimeError> {
    check_server_key(circuit, server_key)?;
    inputs.check(&circuit.params, Some(&server_key.key_id), "the server key")?;
    let program = &circuit.program;
    if inputs.tensors.len() != program.inputs.len() {
        return Err(RuntimeError::Mismatch(format!(
            "the circuit takes {} inputs, the ciphertext file holds {} tensors",
            program.inputs.len(),
            inputs.tensors.len()
        )));
    }
    let lwe_size = circuit.params.big_lwe_dimension() + 1;
    let mut arrays = Vec::with_capacity(inputs.tensors.len());
    for (t, spec) in inputs.tensors.iter().zip(&program.inputs) {
        if t.shape != spec.shape {
            return Err(RuntimeError::Input {
                name: spec.name.clone(),
                message: format!(
                    "encrypted tensor of shape {:?}, the circuit expects {:?}",
                    t.shape, spec.shape
                ),
            });
        }
        let cts = t.ciphertexts.expand(lwe_size)?;
        let array =
            ArrayD::from_shape_vec(IxDyn(&t.shape), cts).map_err(|e| RuntimeError::Input {
                name: spec.name.clone(),
                message: e.to_string(),
            })?;
        arrays.push(array);
    }
    Ok(arrays)
}

/// The output tensors of a run as full ciphertexts under the server key's key pair.
pub(crate) fn pack_outputs<'a>(
    circuit: &Circuit,
    server_key: &ServerKey,
    outputs: impl Iterator<Item = &'a ArrayD<Ct>>,
) -> EncryptedTensors {
    let lwe_size = circuit.params.big_lwe_dimension() + 1;
    let tensors = outputs
        .map(|a| EncryptedTensor {
            shape: a.shape().to_vec(),
            ciphertexts: Ciphertexts::from_full(lwe_size, a.iter()),
        })
        .collect();
    EncryptedTensors {
        key_id: server_key.key_id,
        fingerprint: circuit.params.fingerprint(),
        tensors,
    }
}
