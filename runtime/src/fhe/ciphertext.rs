//! Encrypted tensors and their files, plus the client's encryption and decryption.
//!
//! Client inputs are *seeded* LWE ciphertexts: only the bodies are stored, the masks are
//! regenerated from one seed per tensor, so an input element costs 8 bytes instead of
//! `8 * (k*N + 1)`. The server decompresses them before computing; its outputs are full LWE
//! ciphertexts. Every file carries the parameter fingerprint and the key id, and whoever uses
//! a ciphertext checks both against the key or circuit it is used with.
//!
//! A file holds one sample or a batch of samples:
//!
//! - **one sample** (what `fhec encrypt` writes for one sample, byte for byte the format of
//!   fhec before batches): one tensor per circuit input (or output), each of exactly the
//!   circuit's shape;
//! - **a batch of N samples**: each tensor has a leading axis N in front of the circuit's
//!   shape, samples stacked along it. Inputs are [`Ciphertexts::SeededBatch`], one seed per
//!   sample (every sample is its own encryption, as if encrypted alone), outputs
//!   [`Ciphertexts::Full`]. [`EncryptedTensors::split_samples`] and
//!   [`EncryptedTensors::stack_samples`] go between a batch and its samples.
//!
//! The rank tells the two apart (the circuit's shape, or one more axis), so the file format
//! and its version are unchanged: files of either kind written before batches load as they
//! did.

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
use crate::params::ParamSets;
use crate::FORMAT_VERSION;

/// The ciphertexts of one tensor (row-major).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ciphertexts {
    /// Fresh encryptions under the big key: one body per element, the masks are regenerated
    /// from `seed`.
    Seeded { seed: u128, bodies: Vec<u64> },
    /// Full LWE ciphertexts of size `lwe_size`, concatenated.
    Full { lwe_size: usize, data: Vec<u64> },
    /// Fresh encryptions of a batch of samples (a tensor whose leading axis is the sample):
    /// the bodies of sample `i` are the `i`-th of `seeds.len()` equal chunks of `bodies`,
    /// their masks are regenerated from `seeds[i]`. Variant index 2, added after the others,
    /// so files without it decode as before.
    SeededBatch { seeds: Vec<u128>, bodies: Vec<u64> },
}

impl Ciphertexts {
    /// Number of ciphertexts.
    pub fn len(&self) -> usize {
        match self {
            Ciphertexts::Seeded { bodies, .. } | Ciphertexts::SeededBatch { bodies, .. } => {
                bodies.len()
            }
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
            Ciphertexts::SeededBatch { seeds, bodies } => {
                let per_sample = seeded_chunk(seeds.len(), bodies.len())?;
                let mut out = Vec::with_capacity(bodies.len());
                for (i, &seed) in seeds.iter().enumerate() {
                    let sample = Ciphertexts::Seeded {
                        seed,
                        bodies: bodies[i * per_sample..(i + 1) * per_sample].to_vec(),
                    };
                    out.extend(sample.expand(lwe_size)?);
                }
                Ok(out)
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

/// Bodies per sample of a [`Ciphertexts::SeededBatch`] of `samples` seeds and `bodies`
/// bodies.
fn seeded_chunk(samples: usize, bodies: usize) -> Result<usize, RuntimeError> {
    if samples == 0 || !bodies.is_multiple_of(samples) {
        return Err(RuntimeError::Mismatch(format!(
            "a seeded batch of {bodies} ciphertexts cannot be split into {samples} samples"
        )));
    }
    Ok(bodies / samples)
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
    /// [`ParamSets::fingerprint`] of the parameters.
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
                // One seed per sample, at least one sample.
                Ciphertexts::SeededBatch { seeds, bodies } => {
                    elements == Some(bodies.len())
                        && !seeds.is_empty()
                        && t.shape.first() == Some(&seeds.len())
                }
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
        params: &ParamSets,
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

/// Where a tensor of a file stands against the circuit's shape `shape`: one sample (`None`),
/// a batch (`Some(n)`), or neither.
fn tensor_samples(t: &EncryptedTensor, shape: &[usize]) -> Option<Option<usize>> {
    if t.shape == shape {
        Some(None)
    } else if t.shape.len() == shape.len() + 1 && t.shape[1..] == *shape {
        Some(Some(t.shape[0]))
    } else {
        None
    }
}

fn samples_text(n: Option<usize>) -> String {
    match n {
        None => "one sample".into(),
        Some(1) => "a batch of 1 sample".into(),
        Some(n) => format!("a batch of {n} samples"),
    }
}

impl EncryptedTensors {
    /// How many samples these tensors hold for the circuit's inputs (or outputs) `specs`
    /// (name and shape of each): `None` for one sample (every tensor exactly its shape),
    /// `Some(n)` for a batch (every tensor `[n, ...shape]`, `n >= 1`). `what` is "input" or
    /// "output".
    pub fn samples(
        &self,
        specs: &[(&str, &[usize])],
        what: &str,
    ) -> Result<Option<usize>, RuntimeError> {
        if self.tensors.len() != specs.len() {
            return Err(RuntimeError::Mismatch(format!(
                "the circuit has {} {what}(s), the ciphertext file holds {} tensors",
                specs.len(),
                self.tensors.len()
            )));
        }
        // Bad inputs are the client's input errors; bad outputs mean another circuit's file.
        let bad = |name: &str, message: String| {
            if what == "input" {
                RuntimeError::Input {
                    name: name.to_string(),
                    message,
                }
            } else {
                RuntimeError::Mismatch(format!(
                    "{what} '{name}': {message}; the file is not a result of this circuit"
                ))
            }
        };
        let mut found = Vec::with_capacity(specs.len());
        for (t, (name, shape)) in self.tensors.iter().zip(specs) {
            let Some(n) = tensor_samples(t, shape) else {
                let mut batch = vec!["N".to_string()];
                batch.extend(shape.iter().map(|d| d.to_string()));
                return Err(bad(
                    name,
                    format!(
                        "encrypted tensor of shape {:?}, the circuit's {what} is {:?} (one sample) or [{}] (a batch of N samples)",
                        t.shape,
                        shape,
                        batch.join(", ")
                    ),
                ));
            };
            if n == Some(0) {
                return Err(bad(name, format!("an empty batch (shape {:?})", t.shape)));
            }
            // Samples without ciphertexts: refused, so that the number of samples is bounded
            // by the size of the file (a few bytes could declare 2^60 empty samples).
            if n.is_some_and(|n| t.ciphertexts.len() < n) {
                return Err(bad(
                    name,
                    format!("a batch of empty samples (shape {:?})", t.shape),
                ));
            }
            found.push(n);
        }
        let first = found.first().copied().flatten();
        if found.iter().any(|&n| n != first) {
            let list: Vec<String> = specs
                .iter()
                .zip(&found)
                .map(|((name, _), &n)| format!("'{name}': {}", samples_text(n)))
                .collect();
            return Err(RuntimeError::Mismatch(format!(
                "the {what} tensors of this file hold different numbers of samples ({}); fhec writes every {what} of a file with the same number: encrypt the inputs again with `fhec encrypt`",
                list.join(", ")
            )));
        }
        Ok(first)
    }

    /// The samples of a batch, each as a one-sample file (what encrypting or running that
    /// sample alone gives); `None` when the file holds one sample. See
    /// [`EncryptedTensors::samples`] for `specs` and `what`.
    pub fn split_samples(
        &self,
        specs: &[(&str, &[usize])],
        what: &str,
    ) -> Result<Option<Vec<EncryptedTensors>>, RuntimeError> {
        let Some(n) = self.samples(specs, what)? else {
            return Ok(None);
        };
        let mut samples: Vec<EncryptedTensors> = (0..n)
            .map(|_| EncryptedTensors {
                key_id: self.key_id,
                fingerprint: self.fingerprint,
                tensors: Vec::with_capacity(self.tensors.len()),
            })
            .collect();
        for (t, (name, _)) in self.tensors.iter().zip(specs) {
            let shape = t.shape[1..].to_vec();
            let per_sample = t.ciphertexts.len() / n;
            // What `from_bytes` checks, again for tensors built in memory.
            let broken = || RuntimeError::Input {
                name: name.to_string(),
                message: format!(
                    "{} ciphertexts do not make a batch of shape {:?}",
                    t.ciphertexts.len(),
                    t.shape
                ),
            };
            let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if elements != Some(per_sample) || per_sample * n != t.ciphertexts.len() {
                return Err(broken());
            }
            for (i, sample) in samples.iter_mut().enumerate() {
                let range = i * per_sample..(i + 1) * per_sample;
                let ciphertexts = match &t.ciphertexts {
                    Ciphertexts::SeededBatch { seeds, bodies } => Ciphertexts::Seeded {
                        seed: *seeds.get(i).ok_or_else(broken)?,
                        bodies: bodies.get(range).ok_or_else(broken)?.to_vec(),
                    },
                    Ciphertexts::Full { lwe_size, data } => Ciphertexts::Full {
                        lwe_size: *lwe_size,
                        data: data
                            .get(range.start * lwe_size..range.end * lwe_size)
                            .ok_or_else(broken)?
                            .to_vec(),
                    },
                    Ciphertexts::Seeded { .. } => {
                        return Err(RuntimeError::Input {
                            name: name.to_string(),
                            message: "a batch under a single seed, which cannot be split into samples; encrypt the inputs again with `fhec encrypt`".into(),
                        })
                    }
                };
                sample.tensors.push(EncryptedTensor {
                    shape: shape.clone(),
                    ciphertexts,
                });
            }
        }
        Ok(Some(samples))
    }

    /// Stacks one-sample files into a batch (the inverse of
    /// [`EncryptedTensors::split_samples`]): tensor `j` of the result is tensor `j` of every
    /// sample with a leading sample axis; seeded samples keep their own seeds.
    pub fn stack_samples(samples: &[EncryptedTensors]) -> Result<EncryptedTensors, RuntimeError> {
        let mismatch = |m: String| Err(RuntimeError::Mismatch(m));
        let Some(first) = samples.first() else {
            return mismatch("a batch needs at least one sample".into());
        };
        for (i, s) in samples.iter().enumerate() {
            if s.key_id != first.key_id || s.fingerprint != first.fingerprint {
                return mismatch(format!(
                    "sample {i} was made under other keys or parameters than sample 0"
                ));
            }
            if s.tensors.len() != first.tensors.len() {
                return mismatch(format!(
                    "sample {i} holds {} tensors, sample 0 {}",
                    s.tensors.len(),
                    first.tensors.len()
                ));
            }
        }
        let mut tensors = Vec::with_capacity(first.tensors.len());
        for (j, t0) in first.tensors.iter().enumerate() {
            let mut shape = vec![samples.len()];
            shape.extend_from_slice(&t0.shape);
            let column = samples.iter().map(|s| &s.tensors[j]);
            if let Some((i, _)) = column
                .clone()
                .enumerate()
                .find(|(_, t)| t.shape != t0.shape)
            {
                return mismatch(format!(
                    "tensor {j} of sample {i} has shape {:?}, of sample 0 {:?}",
                    samples[i].tensors[j].shape, t0.shape
                ));
            }
            let ciphertexts = match &t0.ciphertexts {
                Ciphertexts::Seeded { .. } => {
                    let mut seeds = Vec::with_capacity(samples.len());
                    let mut all = Vec::with_capacity(t0.ciphertexts.len() * samples.len());
                    for t in column {
                        let Ciphertexts::Seeded { seed, bodies } = &t.ciphertexts else {
                            return mismatch(format!("tensor {j}: samples of different kinds"));
                        };
                        seeds.push(*seed);
                        all.extend_from_slice(bodies);
                    }
                    Ciphertexts::SeededBatch { seeds, bodies: all }
                }
                Ciphertexts::Full { lwe_size, .. } => {
                    let mut all = Vec::new();
                    for t in column {
                        match &t.ciphertexts {
                            Ciphertexts::Full { lwe_size: l, data } if l == lwe_size => {
                                all.extend_from_slice(data)
                            }
                            _ => {
                                return mismatch(format!(
                                    "tensor {j}: samples of different kinds or LWE sizes"
                                ))
                            }
                        }
                    }
                    Ciphertexts::Full {
                        lwe_size: *lwe_size,
                        data: all,
                    }
                }
                Ciphertexts::SeededBatch { .. } => {
                    return mismatch(format!("tensor {j} of sample 0 is already a batch"))
                }
            };
            tensors.push(EncryptedTensor { shape, ciphertexts });
        }
        Ok(EncryptedTensors {
            key_id: first.key_id,
            fingerprint: first.fingerprint,
            tensors,
        })
    }
}

/// Names and shapes of a program's inputs.
pub fn input_specs(program: &Program) -> Vec<(&str, &[usize])> {
    program
        .inputs
        .iter()
        .map(|s| (s.name.as_str(), s.shape.as_slice()))
        .collect()
}

/// Names and shapes of a program's outputs (an output whose value the program lacks gets
/// an empty shape; [`ClientKey::decrypt_integers`] reports it).
pub fn output_specs(program: &Program) -> Vec<(&str, &[usize])> {
    program
        .outputs
        .iter()
        .map(|s| {
            let shape = program.values.get(s.value).map_or(&[][..], |v| &v.shape);
            (s.name.as_str(), shape)
        })
        .collect()
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
    fn check_params_of(&self, program_params: Option<&ParamSets>) -> Result<(), RuntimeError> {
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
        for (x, spec) in inputs.iter().zip(&program.inputs) {
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
        }
        let lwe_size = LweSize(self.params.big_lwe_dimension() + 1);
        let tensors = self.with_encryption_seeder(|seeder| {
            let mut tensors = Vec::with_capacity(inputs.len());
            for (i, (x, spec)) in inputs.iter().zip(&program.inputs).enumerate() {
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
                    gaussian(self.params.glwe_noise_std()),
                    seeder,
                );
                tensors.push(EncryptedTensor {
                    shape: spec.shape.clone(),
                    ciphertexts: Ciphertexts::Seeded {
                        seed,
                        bodies: list.into_container(),
                    },
                });
            }
            tensors
        });
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

    /// Encrypts a batch: each sample (one array per circuit input) is quantised and
    /// encrypted on its own, with its own seed, and the samples are stacked into one file
    /// (see [`EncryptedTensors::stack_samples`]), whatever their number.
    pub fn encrypt_samples(
        &self,
        program: &Program,
        samples: &[Vec<ArrayD<f32>>],
    ) -> Result<EncryptedTensors, RuntimeError> {
        let each: Result<Vec<EncryptedTensors>, RuntimeError> = samples
            .par_iter()
            .map(|inputs| self.encrypt(program, inputs))
            .collect();
        EncryptedTensors::stack_samples(&each?)
    }

    /// Decrypts and dequantises a file of one sample or a batch: the outputs of each sample,
    /// and whether the file was a batch.
    #[allow(clippy::type_complexity)]
    pub fn decrypt_samples(
        &self,
        program: &Program,
        outputs: &EncryptedTensors,
    ) -> Result<(Vec<Vec<ArrayD<f32>>>, bool), RuntimeError> {
        outputs.check(&self.params, Some(&self.key_id), "this client key")?;
        match outputs.split_samples(&output_specs(program), "output")? {
            None => Ok((vec![self.decrypt(program, outputs)?], false)),
            Some(samples) => {
                let each: Result<Vec<_>, RuntimeError> =
                    samples.iter().map(|s| self.decrypt(program, s)).collect();
                Ok((each?, true))
            }
        }
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
        self.with_encryption_seeder(|seeder| {
            let mut generator =
                EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder);
            allocate_and_encrypt_new_lwe_ciphertext(
                &self.big_lwe(),
                Plaintext(encode(value, delta_log2)),
                gaussian(self.params.glwe_noise_std()),
                native(),
                &mut generator,
            )
        })
    }

    /// Checks `params` against this key (used when a circuit is paired with the key).
    pub fn check_circuit_params(&self, params: &ParamSets) -> Result<(), RuntimeError> {
        self.check_params_of(Some(params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: Vec<EncryptedTensor>) -> Vec<u8> {
        let header = Header {
            kind: ArtifactKind::Ciphertext,
            version: FORMAT_VERSION,
            fingerprint: [1; 32],
            key_id: [2; 16],
        };
        crate::artifact::encode(&header, &tensors).unwrap()
    }

    fn batch(seeds: Vec<u128>, shape: Vec<usize>) -> EncryptedTensor {
        let n: usize = shape.iter().product();
        EncryptedTensor {
            shape,
            ciphertexts: Ciphertexts::SeededBatch {
                seeds,
                bodies: (0..n as u64).collect(),
            },
        }
    }

    #[test]
    fn seeded_batches_need_one_seed_per_sample() {
        assert!(EncryptedTensors::from_bytes(&file(vec![batch(vec![5, 6], vec![2, 3])])).is_ok());
        for bad in [
            batch(vec![5, 6, 7], vec![2, 3]),
            batch(vec![], vec![0, 3]),
            batch(vec![5], vec![]),
        ] {
            let err = EncryptedTensors::from_bytes(&file(vec![bad.clone()])).unwrap_err();
            assert!(err.to_string().contains("does not match"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn split_and_stack_are_inverses() {
        let full = EncryptedTensor {
            shape: vec![3, 1, 2],
            ciphertexts: Ciphertexts::Full {
                lwe_size: 4,
                data: (0..24).collect(),
            },
        };
        let tensors =
            EncryptedTensors::from_bytes(&file(vec![batch(vec![7, 8, 9], vec![3, 2, 2]), full]))
                .unwrap();
        let specs: [(&str, &[usize]); 2] = [("a", &[2, 2]), ("b", &[1, 2])];
        assert_eq!(tensors.samples(&specs, "input").unwrap(), Some(3));
        let samples = tensors.split_samples(&specs, "input").unwrap().unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[1].tensors[0].ciphertexts,
            Ciphertexts::Seeded {
                seed: 8,
                bodies: vec![4, 5, 6, 7]
            }
        );
        assert_eq!(
            samples[2].tensors[1].ciphertexts,
            Ciphertexts::Full {
                lwe_size: 4,
                data: (16..24).collect()
            }
        );
        assert_eq!(samples[0].tensors[1].shape, [1, 2]);
        assert_eq!(EncryptedTensors::stack_samples(&samples).unwrap(), tensors);
        // One sample is not split; a shape that fits neither way is refused.
        let one = &samples[0];
        assert_eq!(one.samples(&specs, "input").unwrap(), None);
        assert!(one.split_samples(&specs, "input").unwrap().is_none());
        let err = one
            .samples(&[("a", &[4]), ("b", &[1, 2])], "input")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[2, 2]") && err.contains("[N, 4]"), "{err}");
        // Empty samples are refused before anything is allocated per sample.
        let empty = EncryptedTensors {
            tensors: vec![EncryptedTensor {
                shape: vec![1 << 60, 0],
                ciphertexts: Ciphertexts::Full {
                    lwe_size: 4,
                    data: vec![],
                },
            }],
            ..tensors.clone()
        };
        let err = empty
            .split_samples(&[("a", &[0])], "input")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty samples"), "{err}");
        // A batch next to one sample.
        let mixed = EncryptedTensors {
            tensors: vec![tensors.tensors[0].clone(), one.tensors[1].clone()],
            ..tensors.clone()
        };
        let err = mixed.samples(&specs, "input").unwrap_err().to_string();
        assert!(
            err.contains("'a': a batch of 3 samples, 'b': one sample"),
            "{err}"
        );
    }

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
