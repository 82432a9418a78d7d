//! Encrypted tensors and their files, plus the client's encryption and decryption.
//!
//! Client inputs are *seeded* LWE ciphertexts: only the bodies are stored, the masks are
//! regenerated from one seed per tensor, so an input element costs 8 bytes instead of
//! `8 * (k*N + 1)`. The server decompresses them before computing; its outputs are full LWE
//! ciphertexts. Every file carries the parameter fingerprint and the key id, and whoever uses
//! a ciphertext checks both against the key or circuit it is used with.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::math::random::Seed;
use tfhe::core_crypto::prelude::*;

use crate::artifact::{decode_bytes, format_error, load_with, write_file, ArtifactKind, Header};
use crate::circuit::{Instruction, Program};
use crate::error::RuntimeError;
use crate::fhe::engine::{encode, Ct};
use crate::fhe::keys::{gaussian, key_id_hex, native, ClientKey};
use crate::params::CryptoParams;
use crate::FORMAT_VERSION;

/// The ciphertexts of one tensor (row-major).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ciphertexts {
    /// Fresh encryptions under the big key: one body per element, the masks are regenerated
    /// from `seed`.
    Seeded { seed: u128, bodies: Vec<u64> },
    /// Full LWE ciphertexts of size `lwe_size`, concatenated.
    Full { lwe_size: usize, data: Vec<u64> },
}

impl Ciphertexts {
    /// Number of ciphertexts.
    pub fn len(&self) -> usize {
        match self {
            Ciphertexts::Seeded { bodies, .. } => bodies.len(),
            Ciphertexts::Full { lwe_size, data } => data.len() / (*lwe_size).max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Full ciphertexts of size `lwe_size` (seeded ones are decompressed).
    pub fn expand(&self, lwe_size: usize) -> Result<Vec<Ct>, RuntimeError> {
        match self {
            Ciphertexts::Seeded { seed, bodies } => {
                let list = SeededLweCiphertextList::from_container(
                    bodies.clone(),
                    LweSize(lwe_size),
                    Seed(*seed).into(),
                    native(),
                );
                let full = list.par_decompress_into_lwe_ciphertext_list();
                Ok(full
                    .as_ref()
                    .chunks_exact(lwe_size)
                    .map(|c| LweCiphertext::from_container(c.to_vec(), native()))
                    .collect())
            }
            Ciphertexts::Full {
                lwe_size: size,
                data,
            } => {
                if *size != lwe_size || data.len() % lwe_size != 0 {
                    return Err(RuntimeError::Mismatch(format!(
                        "ciphertexts of LWE size {size} where the key expects {lwe_size}"
                    )));
                }
                Ok(data
                    .chunks_exact(lwe_size)
                    .map(|c| LweCiphertext::from_container(c.to_vec(), native()))
                    .collect())
            }
        }
    }

    /// Concatenates full ciphertexts (all of size `lwe_size`).
    pub fn from_full<'a>(
        lwe_size: usize,
        cts: impl ExactSizeIterator<Item = &'a Ct>,
    ) -> Ciphertexts {
        let mut data = Vec::with_capacity(lwe_size * cts.len());
        for c in cts {
            data.extend_from_slice(c.as_ref());
        }
        Ciphertexts::Full { lwe_size, data }
    }
}

/// One encrypted tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedTensor {
    pub shape: Vec<usize>,
    pub ciphertexts: Ciphertexts,
}

/// The encrypted inputs or outputs of one inference, with the identity of the key and the
/// parameters they were made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedTensors {
    pub key_id: [u8; 16],
    /// [`CryptoParams::fingerprint`] of the parameters.
    pub fingerprint: [u8; 32],
    pub tensors: Vec<EncryptedTensor>,
}

impl EncryptedTensors {
    /// Writes the ciphertexts to `path`.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        let header = Header {
            kind: ArtifactKind::Ciphertext,
            version: FORMAT_VERSION,
            fingerprint: self.fingerprint,
            key_id: self.key_id,
        };
        write_file(path, &header, &self.tensors, false)
    }

    /// Reads ciphertexts written by [`EncryptedTensors::save`] and checks their structure.
    pub fn load(path: &Path) -> Result<EncryptedTensors, RuntimeError> {
        load_with(path, EncryptedTensors::from_bytes)
    }

    /// Decodes the bytes of a ciphertext file and checks their structure.
    pub fn from_bytes(bytes: &[u8]) -> Result<EncryptedTensors, RuntimeError> {
        let (header, tensors): (Header, Vec<EncryptedTensor>) =
            decode_bytes(bytes, ArtifactKind::Ciphertext)?;
        for (i, t) in tensors.iter().enumerate() {
            let elements = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let ok = match &t.ciphertexts {
                Ciphertexts::Seeded { bodies, .. } => elements == Some(bodies.len()),
                Ciphertexts::Full { lwe_size, data } => {
                    *lwe_size > 0
                        && elements.and_then(|e| e.checked_mul(*lwe_size)) == Some(data.len())
                }
            };
            if !ok {
                return Err(format_error(format!(
                    "tensor {i}: the number of ciphertexts does not match its shape {:?}",
                    t.shape
                )));
            }
        }
        Ok(EncryptedTensors {
            key_id: header.key_id,
            fingerprint: header.fingerprint,
            tensors,
        })
    }

    /// Fails unless these ciphertexts were made under key `key_id` with `params`; `what`
    /// names the key or circuit they are used with.
    pub fn check(
        &self,
        params: &CryptoParams,
        key_id: Option<&[u8; 16]>,
        what: &str,
    ) -> Result<(), RuntimeError> {
        if self.fingerprint != params.fingerprint() {
            return Err(RuntimeError::Mismatch(format!(
                "these ciphertexts were made for other TFHE parameters than {what} (parameters {}): encrypt the inputs again with the client key generated for this circuit",
                params.fingerprint_hex()
            )));
        }
        if let Some(id) = key_id {
            if &self.key_id != id {
                return Err(RuntimeError::Mismatch(format!(
                    "these ciphertexts were encrypted under another client key (id {}) than {what} (id {}): use the keys of the pair that encrypted them",
                    key_id_hex(&self.key_id),
                    key_id_hex(id)
                )));
            }
        }
        Ok(())
    }
}

/// Delta of circuit input `index`: that of its `Input` instruction (0 for an unused input).
fn input_delta(program: &Program, index: usize) -> u32 {
    program
        .instructions
        .iter()
        .position(|ins| matches!(ins, Instruction::Input { index: i } if *i == index))
        .and_then(|v| program.values.get(v))
        .map_or(0, |v| v.delta_log2)
}

/// `round((plain - min*2^d) / 2^d) + min`: decodes a value known to lie in `[min, ..]`.
fn decode(plain: u64, delta_log2: u32, min: i64) -> i64 {
    let shifted = plain.wrapping_sub(encode(min, delta_log2));
    let rounded = if delta_log2 == 0 {
        shifted
    } else if delta_log2 >= 64 {
        0
    } else {
        shifted.wrapping_add(1u64 << (delta_log2 - 1)) >> delta_log2
    };
    (rounded as i64).wrapping_add(min)
}

impl ClientKey {
    fn check_params_of(&self, program_params: Option<&CryptoParams>) -> Result<(), RuntimeError> {
        if let Some(p) = program_params {
            if p.fingerprint() != self.params.fingerprint() {
                return Err(RuntimeError::Mismatch(format!(
                    "the client key was generated for other TFHE parameters ({}) than the circuit ({}): generate keys for this circuit",
                    self.params.fingerprint_hex(),
                    p.fingerprint_hex()
                )));
            }
        }
        Ok(())
    }

    /// Encrypts already quantised inputs: element `q` of input `i` becomes a seeded LWE
    /// encryption of `q * 2^d` with `d` the delta of that input's value in `program`.
    pub fn encrypt_integers(
        &self,
        program: &Program,
        inputs: &[ArrayD<i64>],
    ) -> Result<EncryptedTensors, RuntimeError> {
        if inputs.len() != program.inputs.len() {
            return Err(RuntimeError::Mismatch(format!(
                "the circuit takes {} inputs, {} were given",
                program.inputs.len(),
                inputs.len()
            )));
        }
        let mut seeder = new_seeder();
        let lwe_size = LweSize(self.params.big_lwe_dimension() + 1);
        let mut tensors = Vec::with_capacity(inputs.len());
        for (i, (x, spec)) in inputs.iter().zip(&program.inputs).enumerate() {
            if x.shape() != spec.shape.as_slice() {
                return Err(RuntimeError::Input {
                    name: spec.name.clone(),
                    message: format!(
                        "shape {:?}, the circuit expects {:?}",
                        x.shape(),
                        spec.shape
                    ),
                });
            }
            let d = input_delta(program, i);
            let plain: Vec<u64> = x.iter().map(|&q| encode(q, d)).collect();
            let seed = seeder.seed().0;
            let mut list = SeededLweCiphertextList::new(
                0u64,
                lwe_size,
                LweCiphertextCount(plain.len()),
                Seed(seed).into(),
                native(),
            );
            par_encrypt_seeded_lwe_ciphertext_list(
                &self.big_lwe(),
                &mut list,
                &PlaintextList::from_container(plain),
                gaussian(self.params.glwe_noise_std),
                seeder.as_mut(),
            );
            tensors.push(EncryptedTensor {
                shape: spec.shape.clone(),
                ciphertexts: Ciphertexts::Seeded {
                    seed,
                    bodies: list.into_container(),
                },
            });
        }
        Ok(EncryptedTensors {
            key_id: self.key_id,
            fingerprint: self.params.fingerprint(),
            tensors,
        })
    }

    /// Quantises and encrypts real inputs for `program`.
    pub fn encrypt(
        &self,
        program: &Program,
        inputs: &[ArrayD<f32>],
    ) -> Result<EncryptedTensors, RuntimeError> {
        let q = crate::exec::quantize_inputs(program, inputs)?;
        self.encrypt_integers(program, &q)
    }

    /// Decrypts the outputs of `program` to integers (decoded with each output value's delta
    /// and range).
    pub fn decrypt_integers(
        &self,
        program: &Program,
        outputs: &EncryptedTensors,
    ) -> Result<Vec<ArrayD<i64>>, RuntimeError> {
        outputs.check(&self.params, Some(&self.key_id), "this client key")?;
        if outputs.tensors.len() != program.outputs.len() {
            return Err(RuntimeError::Mismatch(format!(
                "the circuit has {} outputs, the ciphertext file holds {} tensors: it is not the result of this circuit",
                program.outputs.len(),
                outputs.tensors.len()
            )));
        }
        let lwe_size = self.params.big_lwe_dimension() + 1;
        let big = self.big_lwe();
        let mut result = Vec::with_capacity(outputs.tensors.len());
        for (t, spec) in outputs.tensors.iter().zip(&program.outputs) {
            let info = program.values.get(spec.value).ok_or_else(|| {
                RuntimeError::Mismatch(format!(
                    "output '{}' refers to value {} that the circuit lacks",
                    spec.name, spec.value
                ))
            })?;
            if t.shape != info.shape {
                return Err(RuntimeError::Mismatch(format!(
                    "output '{}' has shape {:?}, the circuit produces {:?}",
                    spec.name, t.shape, info.shape
                )));
            }
            let cts = t.ciphertexts.expand(lwe_size)?;
            let values: Vec<i64> = cts
                .par_iter()
                .map(|c| decode(decrypt_lwe_ciphertext(&big, c).0, info.delta_log2, info.min))
                .collect();
            let array = ArrayD::from_shape_vec(IxDyn(&t.shape), values)
                .map_err(|e| RuntimeError::Mismatch(format!("output '{}': {e}", spec.name)))?;
            result.push(array);
        }
        Ok(result)
    }

    /// Decrypts and dequantises the outputs of `program`.
    pub fn decrypt(
        &self,
        program: &Program,
        outputs: &EncryptedTensors,
    ) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
        let q = self.decrypt_integers(program, outputs)?;
        Ok(crate::exec::dequantize_outputs(program, &q))
    }

    /// Debugging aid: the value nearest to the decryption of `ct` at `delta_log2` and the
    /// remaining noise in units of `2^delta_log2` (|noise| < 0.5 decodes correctly).
    pub fn decrypt_raw(&self, ct: &Ct, delta_log2: u32) -> (i64, f64) {
        let plain = decrypt_lwe_ciphertext(&self.big_lwe(), ct).0;
        let d = delta_log2.min(63);
        let half = if d == 0 { 0 } else { 1u64 << (d - 1) };
        let value = (plain.wrapping_add(half) as i64) >> d;
        let noise = plain.wrapping_sub(encode(value, d)) as i64;
        (value, noise as f64 / 2f64.powi(d as i32))
    }

    /// Encrypts one value as a full ciphertext under the big key (tests and measurements).
    pub fn encrypt_value(&self, value: i64, delta_log2: u32) -> Ct {
        let mut seeder = new_seeder();
        let mut generator = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(
            seeder.seed(),
            seeder.as_mut(),
        );
        allocate_and_encrypt_new_lwe_ciphertext(
            &self.big_lwe(),
            Plaintext(encode(value, delta_log2)),
            gaussian(self.params.glwe_noise_std),
            native(),
            &mut generator,
        )
    }

    /// Checks `params` against this key (used when a circuit is paired with the key).
    pub fn check_circuit_params(&self, params: &CryptoParams) -> Result<(), RuntimeError> {
        self.check_params_of(Some(params))
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decode_rounds_around_min() {
        let d = 10;
        let enc = |v: i64, noise: i64| super::encode(v, d).wrapping_add(noise as u64);
        assert_eq!(decode(enc(-5, -511), d, -5), -5);
        assert_eq!(decode(enc(-5, 511), d, -5), -5);
        assert_eq!(decode(enc(7, -300), d, -5), 7);
        assert_eq!(decode(enc(-3, 0), d, -8), -3);
        assert_eq!(decode(12, 0, 0), 12);
        assert_eq!(decode(super::encode(-2, 0), 0, -3), -2);
    }
}
