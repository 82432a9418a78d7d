//! [`FheEngine`]: the [`Engine`] on tfhe-rs LWE ciphertexts under the big key.
//!
//! Linear operations are wrapping arithmetic on the raw `u64` coefficients. A table lookup
//! is, per element and in parallel batches (one batch blind rotation per [`BATCH`] elements):
//! keyswitch big→small, *centered* modulus switch to `2N`
//! (the mean of the rounding error is removed and the phase shifted by half a step, so every
//! box of the table is symmetric around its message: this is the switch the noise model
//! assumes), blind rotation of the table's accumulator and sample extraction, then, for a
//! parameter set with a big key of its own, the keyswitch back to the circuit big key. The
//! bootstrap key and the FFT plan are shared.
//!
//! Exact rounding (see [`crate::circuit::Rounding`]) removes the dropped bits one by one with
//! constant-table sign bootstraps before the table lookup itself.

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

use crate::circuit::{Lut, ValueInfo};
use crate::engine::Engine;
use crate::error::RuntimeError;
use crate::fhe::keys::{native, ServerKey, SetKey};
use crate::params::CryptoParams;

/// One element: an LWE ciphertext under the big key (dimension `k * N`).
pub type Ct = LweCiphertextOwned<u64>;

/// Executes circuits on ciphertexts with a [`ServerKey`].
pub struct FheEngine<'k> {
    key: &'k ServerKey,
}

/// `v * 2^d mod 2^64` (zero when `d >= 64`).
pub(crate) fn encode(value: i64, delta_log2: u32) -> u64 {
    (value as u64).wrapping_mul(1u64.checked_shl(delta_log2).unwrap_or(0))
}

/// Lookups bootstrapped together per blind rotation (see [`bootstrap_batch`]): measured with
/// `pbs_timing --batch` on 2 threads, batches of 16 raise throughput 1.36-1.56x over one
/// ciphertext at a time; 64 gains no more.
const BATCH: usize = 16;

/// A trivial accumulator of parameter set `set` whose body polynomial is `body`.
fn accumulator(set: &CryptoParams, body: &[u64]) -> GlweCiphertextOwned<u64> {
    let mut acc = GlweCiphertext::new(
        0,
        GlweSize(set.glwe_dimension + 1),
        PolynomialSize(set.polynomial_size),
        native(),
    );
    acc.get_mut_body().as_mut().copy_from_slice(body);
    acc
}

/// Accumulator of an `precision`-bit table in parameter set `set`: `2^precision` boxes over
/// the `N` coefficients, each centred on its message (half-box rotation, the first half box
/// negated for negacyclicity), entries encoded at `delta_log2`.
fn table_accumulator(
    set: &CryptoParams,
    table: &[i64],
    precision: u32,
    delta_log2: u32,
) -> GlweCiphertextOwned<u64> {
    let n = set.polynomial_size;
    let box_size = n >> precision;
    let half = box_size / 2;
    let mut body = vec![0u64; n];
    for (i, chunk) in body.chunks_mut(box_size).enumerate() {
        let v = table.get(i).map_or(0, |&v| encode(v, delta_log2));
        chunk.fill(v);
    }
    for a in &mut body[..half] {
        *a = a.wrapping_neg();
    }
    body.rotate_left(half);
    accumulator(set, &body)
}

/// Keyswitch to the set's small key and centered modulus switch to `2N`: what the blind
/// rotation reads.
fn switch<'s, C: Container<Element = u64>>(
    set: &SetKey,
    small: &'s mut LweCiphertextOwned<u64>,
    input: &LweCiphertext<C>,
) -> LazyStandardModulusSwitchedLweCiphertext<u64, usize, &'s [u64]> {
    keyswitch_lwe_ciphertext(&set.ksk, input, small);
    let log_modulus =
        PolynomialSize(set.params.polynomial_size).to_blind_rotation_input_modulus_log();
    lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(small.as_view(), log_modulus)
}

/// Keyswitch, centered modulus switch, blind rotation of `accs[i]` and sample extraction of
/// every `inputs[i]`, in parameter set `set`, as ONE batch blind rotation: each GGSW of the
/// bootstrap key is applied to the whole batch before the next, so the key (hundreds of MiB)
/// streams from memory once per batch instead of once per ciphertext. A set with a big key
/// of its own then keyswitches every output back to the circuit big key. `big`: the LWE
/// size of the outputs (circuit big key).
fn bootstrap_batch<C: Container<Element = u64>>(
    set: &SetKey,
    inputs: &[LweCiphertext<C>],
    accs: &[&GlweCiphertextOwned<u64>],
    big: usize,
) -> Vec<Ct> {
    let p = &set.params;
    let glwe_size = GlweSize(p.glwe_dimension + 1);
    let poly = PolynomialSize(p.polynomial_size);
    let mut smalls: Vec<LweCiphertextOwned<u64>> = inputs
        .iter()
        .map(|_| LweCiphertext::new(0, LweSize(p.lwe_dimension + 1), native()))
        .collect();
    let msed: Vec<_> = smalls
        .iter_mut()
        .zip(inputs)
        .map(|(small, x)| switch(set, small, x))
        .collect();
    let mut list = GlweCiphertextList::new(
        0u64,
        glwe_size,
        poly,
        GlweCiphertextCount(inputs.len()),
        native(),
    );
    for (mut dst, acc) in list.iter_mut().zip(accs) {
        dst.as_mut().copy_from_slice(acc.as_ref());
    }
    let mut buffers = ComputationBuffers::new();
    buffers.resize(
        batch_blind_rotate_assign_scratch::<u64>(
            glwe_size,
            poly,
            CiphertextCount(inputs.len()),
            set.fft.as_view(),
        )
        .unaligned_bytes_required(),
    );
    set.bsk.as_view().batch_blind_rotate_assign(
        list.as_mut_view(),
        &msed,
        set.fft.as_view(),
        buffers.stack(),
    );
    let extracted_size = LweSize(p.big_lwe_dimension() + 1);
    list.iter()
        .map(|glwe| {
            let mut out = LweCiphertext::new(0, extracted_size, native());
            extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut out, MonomialDegree(0));
            match &set.ret {
                Some(ret) => {
                    let mut back = LweCiphertext::new(0, LweSize(big), native());
                    keyswitch_lwe_ciphertext(ret, &out, &mut back);
                    back
                }
                None => out,
            }
        })
        .collect()
}

impl<'k> FheEngine<'k> {
    pub fn new(key: &'k ServerKey) -> Self {
        FheEngine { key }
    }

    pub fn server_key(&self) -> &ServerKey {
        self.key
    }

    fn big_lwe_size(&self) -> LweSize {
        LweSize(self.key.params.big_lwe_dimension() + 1)
    }
}

fn add_slices(acc: &mut [u64], x: &[u64]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = a.wrapping_add(b);
    }
}

fn body_mut(x: &mut Ct) -> &mut u64 {
    // The body is the last coefficient of an LWE ciphertext.
    let data = x.as_mut();
    let last = data.len() - 1;
    &mut data[last]
}

impl Engine for FheEngine<'_> {
    type Ct = Ct;

    fn trivial(&self, value: i64, delta_log2: u32) -> Ct {
        let mut ct = LweCiphertext::new(0, self.big_lwe_size(), native());
        *body_mut(&mut ct) = encode(value, delta_log2);
        ct
    }

    fn add_assign(&self, acc: &mut Ct, x: &Ct) {
        add_slices(acc.as_mut(), x.as_ref());
    }

    fn sub_assign(&self, acc: &mut Ct, x: &Ct) {
        for (a, &b) in acc.as_mut().iter_mut().zip(x.as_ref()) {
            *a = a.wrapping_sub(b);
        }
    }

    fn mul_add_assign(&self, acc: &mut Ct, x: &Ct, weight: i64) {
        let w = weight as u64;
        for (a, &b) in acc.as_mut().iter_mut().zip(x.as_ref()) {
            *a = a.wrapping_add(b.wrapping_mul(w));
        }
    }

    fn mul_assign(&self, x: &mut Ct, weight: i64) {
        let w = weight as u64;
        for a in x.as_mut() {
            *a = a.wrapping_mul(w);
        }
    }

    fn add_const_assign(&self, x: &mut Ct, constant: i64, delta_log2: u32) {
        let b = body_mut(x);
        *b = b.wrapping_add(encode(constant, delta_log2));
    }

    fn rescale(&self, x: &mut Ct, shift: u32) {
        let w = 1u64.checked_shl(shift).unwrap_or(0);
        for a in x.as_mut() {
            *a = a.wrapping_mul(w);
        }
    }

    fn lookup(
        &self,
        lut: &Lut,
        _input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&Ct],
        tables: &[usize],
    ) -> Result<Vec<Ct>, RuntimeError> {
        Ok(self
            .lookup_impl(lut, output_delta_log2, inputs, tables, false)?
            .0)
    }
}

/// Torus value the ciphertext fed to a lookup's (final) bootstrap should hold for an input
/// of clear value `acc`: `index * 2^(63-R)` plus, without exact rounding, the dropped low bits
/// (and the half unit of approximate rounding) at the input delta. `None` outside the table.
pub fn expected_bootstrap_input(lut: &Lut, acc: i64) -> Option<u64> {
    let d_in = lut.input_delta_log2();
    match lut.rounding {
        Some(r) if r.is_exact() && r.shift > 0 => {
            let index = lut.index(acc)? as i64;
            Some(encode(index, 63 - lut.precision))
        }
        _ => {
            lut.index(acc)?;
            let offset = acc.wrapping_sub(lut.input_min);
            let half = if lut.shift() > 0 {
                1u64 << (d_in - 1)
            } else {
                0
            };
            Some(encode(offset, d_in).wrapping_add(half))
        }
    }
}

impl FheEngine<'_> {
    /// [`Engine::lookup`] that also returns, per element, the ciphertext its final bootstrap
    /// read (after the offset and, with exact rounding, the bit extractions): what the
    /// noise trace keyswitches and decrypts. A debugging aid; it keeps one extra ciphertext
    /// per element.
    pub fn lookup_with_inputs(
        &self,
        lut: &Lut,
        output_delta_log2: u32,
        inputs: &[&Ct],
        tables: &[usize],
    ) -> Result<(Vec<Ct>, Vec<Ct>), RuntimeError> {
        self.lookup_impl(lut, output_delta_log2, inputs, tables, true)
    }

    /// Keyswitch and centered modulus switch of `input` in parameter set `set`, as a
    /// bootstrap does before its blind rotation: the mask and body modulo `2N`.
    pub fn switched(&self, set: usize, input: &Ct) -> Result<(Vec<u64>, u64), RuntimeError> {
        let set = self.key.set(set)?;
        let mut small = LweCiphertext::new(0, LweSize(set.params.lwe_dimension + 1), native());
        let msed = switch(set, &mut small, input);
        Ok((msed.mask().map(|m| m as u64).collect(), msed.body() as u64))
    }

    fn lookup_impl(
        &self,
        lut: &Lut,
        output_delta_log2: u32,
        inputs: &[&Ct],
        tables: &[usize],
        keep_inputs: bool,
    ) -> Result<(Vec<Ct>, Vec<Ct>), RuntimeError> {
        let table_set = self.key.set(lut.sets.table)?;
        let precision = lut.precision;
        let shift = lut.shift();
        let bits = precision + shift;
        if table_set.params.polynomial_size < (2usize << precision.min(62)) {
            return Err(RuntimeError::Mismatch(format!(
                "a {precision}-bit table lookup needs a polynomial size of at least 2^{} (have {})",
                precision + 1,
                table_set.params.polynomial_size
            )));
        }
        if bits > 62 {
            return Err(RuntimeError::Mismatch(format!(
                "a lookup reading {bits} bits does not fit a 64-bit ciphertext"
            )));
        }
        if inputs.len() != tables.len() {
            return Err(RuntimeError::Mismatch(format!(
                "lookup called with {} inputs and {} table indices",
                inputs.len(),
                tables.len()
            )));
        }
        let big = self.key.params.big_lwe_dimension() + 1;
        if let Some(x) = inputs.iter().find(|x| x.as_ref().len() != big) {
            return Err(RuntimeError::Mismatch(format!(
                "a ciphertext of size {} does not match the server key (LWE size {big})",
                x.as_ref().len()
            )));
        }
        // One accumulator per table used.
        let mut accs: Vec<Option<GlweCiphertextOwned<u64>>> = vec![None; lut.tables.len()];
        for &t in tables {
            let count = accs.len();
            let slot = accs
                .get_mut(t)
                .ok_or(RuntimeError::NoSuchTable { table: t, count })?;
            if slot.is_none() {
                *slot = Some(table_accumulator(
                    &table_set.params,
                    &lut.tables[t],
                    precision,
                    output_delta_log2,
                ));
            }
        }
        let d_in = lut.input_delta_log2();
        let exact_shift = match lut.rounding {
            Some(r) if r.is_exact() => r.shift,
            _ => 0,
        };
        let bits_set = if exact_shift > 0 {
            Some(self.key.set(lut.sets.bits)?)
        } else {
            None
        };
        // Constant tables of the sign bootstraps: +c for bit 0, -c for bit 1.
        let sign_accs: Vec<(u64, GlweCiphertextOwned<u64>)> = bits_set
            .map(|set| {
                (0..exact_shift)
                    .map(|j| {
                        let c = 1u64 << (d_in + j - 1);
                        (
                            c,
                            accumulator(&set.params, &vec![c; set.params.polynomial_size]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // x = acc - input_min (+ 2^(s-1) for exact rounding), at the input delta.
        let offset = if exact_shift > 0 {
            encode(
                (1i64 << (exact_shift - 1)).wrapping_sub(lut.input_min),
                d_in,
            )
        } else if lut.shift() > 0 {
            // Approximate rounding: half an input unit more, so that an accumulator exactly
            // on a rounding boundary (which the clear rule rounds up) sits half a unit inside
            // its box instead of on the edge.
            encode(lut.input_min.wrapping_neg(), d_in).wrapping_add(1u64 << (d_in - 1))
        } else {
            encode(lut.input_min.wrapping_neg(), d_in)
        };

        // Batches of up to BATCH elements, at least one per thread.
        let threads = rayon::current_num_threads().max(1);
        let chunk = inputs.len().div_ceil(threads).clamp(1, BATCH);
        let results: Vec<(Vec<Ct>, Vec<Ct>)> = inputs
            .par_chunks(chunk)
            .zip(tables.par_chunks(chunk))
            .map(|(xs, ts)| {
                let mut xs: Vec<Ct> = xs
                    .iter()
                    .map(|x| {
                        let mut x = (*x).clone();
                        let b = body_mut(&mut x);
                        *b = b.wrapping_add(offset);
                        x
                    })
                    .collect();
                for (j, (c, acc)) in sign_accs.iter().enumerate() {
                    // Bit j of the rounded index lands on bit 63.
                    let factor = 1u64 << (bits - j as u32);
                    let shifted: Vec<Ct> = xs
                        .iter()
                        .map(|x| {
                            let mut t = x.clone();
                            for v in t.as_mut() {
                                *v = v.wrapping_mul(factor);
                            }
                            let b = body_mut(&mut t);
                            *b = b.wrapping_add(1 << 62);
                            t
                        })
                        .collect();
                    let set = bits_set.expect("sign tables exist only with a bits set");
                    let bits_out = bootstrap_batch(set, &shifted, &vec![acc; xs.len()], big);
                    // x += out - c: removes bit j.
                    for (x, bit) in xs.iter_mut().zip(&bits_out) {
                        add_slices(x.as_mut(), bit.as_ref());
                        let b = body_mut(x);
                        *b = b.wrapping_sub(*c);
                    }
                }
                let table_accs: Vec<&GlweCiphertextOwned<u64>> = ts
                    .iter()
                    .map(|&t| accs[t].as_ref().expect("accumulator built above"))
                    .collect();
                let outs = bootstrap_batch(table_set, &xs, &table_accs, big);
                (outs, if keep_inputs { xs } else { Vec::new() })
            })
            .collect();
        let mut outs = Vec::with_capacity(inputs.len());
        let mut fed = Vec::new();
        for (o, f) in results {
            outs.extend(o);
            fed.extend(f);
        }
        Ok((outs, fed))
    }
}
