//! [`FheEngine`]: the [`Engine`] on tfhe-rs LWE ciphertexts under the big key.
//!
//! Linear operations are wrapping arithmetic on the raw `u64` coefficients. A table lookup
//! is, per element and in parallel: keyswitch big→small, *centered* modulus switch to `2N`
//! (the mean of the rounding error is removed and the phase shifted by half a step, so every
//! box of the table is symmetric around its message: this is the switch the noise model
//! assumes), blind rotation of the table's accumulator and sample extraction. Every thread
//! keeps its own computation buffers; the bootstrap key and the FFT plan are shared.
//!
//! Exact rounding (see [`crate::circuit::Rounding`]) removes the dropped bits one by one with
//! constant-table sign bootstraps before the table lookup itself.

use rayon::prelude::*;
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

/// Per-thread working memory of a bootstrap in one parameter set.
struct BootstrapScratch {
    buffers: ComputationBuffers,
    /// Keyswitch output (the set's small key).
    small: LweCiphertextOwned<u64>,
    /// The accumulator being rotated.
    glwe: GlweCiphertextOwned<u64>,
}

impl BootstrapScratch {
    fn new(set: &SetKey) -> Self {
        let p = &set.params;
        let glwe_size = GlweSize(p.glwe_dimension + 1);
        let poly = PolynomialSize(p.polynomial_size);
        let mut buffers = ComputationBuffers::new();
        buffers.resize(
            blind_rotate_assign_mem_optimized_requirement::<u64>(
                glwe_size,
                poly,
                set.fft.as_view(),
            )
            .unaligned_bytes_required(),
        );
        BootstrapScratch {
            buffers,
            small: LweCiphertext::new(0, LweSize(p.lwe_dimension + 1), native()),
            glwe: GlweCiphertext::new(0, glwe_size, poly, native()),
        }
    }
}

/// Per-thread working memory of a lookup.
struct Scratch {
    table: BootstrapScratch,
    /// For the bit extractions of exact rounding (their own parameter set).
    bits: Option<BootstrapScratch>,
    /// Input and output of the sign bootstraps of exact rounding (big key).
    shifted: LweCiphertextOwned<u64>,
    bit: LweCiphertextOwned<u64>,
}

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

/// Keyswitch, centered modulus switch, blind rotation of `acc` and sample extraction of
/// `input` into `out`, in parameter set `set`.
fn bootstrap<C: Container<Element = u64>>(
    set: &SetKey,
    s: &mut BootstrapScratch,
    input: &LweCiphertext<C>,
    acc: &GlweCiphertextOwned<u64>,
    out: &mut LweCiphertextOwned<u64>,
) {
    let msed = switch(set, &mut s.small, input);
    s.glwe.as_mut().copy_from_slice(acc.as_ref());
    blind_rotate_assign_mem_optimized(
        &msed,
        &mut s.glwe,
        &set.bsk,
        set.fft.as_view(),
        s.buffers.stack(),
    );
    extract_lwe_sample_from_glwe_ciphertext(&s.glwe, out, MonomialDegree(0));
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

        let results = inputs
            .par_iter()
            .zip(tables.par_iter())
            .map_init(
                || Scratch {
                    table: BootstrapScratch::new(table_set),
                    bits: bits_set.map(BootstrapScratch::new),
                    shifted: LweCiphertext::new(0, LweSize(big), native()),
                    bit: LweCiphertext::new(0, LweSize(big), native()),
                },
                |s, (x, &t)| {
                    let mut x = (*x).clone();
                    let b = body_mut(&mut x);
                    *b = b.wrapping_add(offset);
                    for (j, (c, acc)) in sign_accs.iter().enumerate() {
                        // Bit j of the rounded index lands on bit 63.
                        let factor = 1u64 << (bits - j as u32);
                        for (o, &i) in s.shifted.as_mut().iter_mut().zip(x.as_ref()) {
                            *o = i.wrapping_mul(factor);
                        }
                        let b = body_mut(&mut s.shifted);
                        *b = b.wrapping_add(1 << 62);
                        let (set, scratch) = (
                            bits_set.expect("sign tables exist only with a bits set"),
                            s.bits.as_mut().expect("made with the bits set"),
                        );
                        bootstrap(set, scratch, &s.shifted, acc, &mut s.bit);
                        // x += out - c: removes bit j.
                        add_slices(x.as_mut(), s.bit.as_ref());
                        let b = body_mut(&mut x);
                        *b = b.wrapping_sub(*c);
                    }
                    let mut out = LweCiphertext::new(0, LweSize(big), native());
                    let acc = accs[t].as_ref().expect("accumulator built above");
                    bootstrap(table_set, &mut s.table, &x, acc, &mut out);
                    (out, keep_inputs.then_some(x))
                },
            )
            .unzip::<_, _, Vec<Ct>, Vec<Option<Ct>>>();
        Ok((results.0, results.1.into_iter().flatten().collect()))
    }
}
