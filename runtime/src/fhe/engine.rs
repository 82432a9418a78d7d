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
use crate::fhe::keys::{native, ServerKey};

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

/// Per-thread working memory of a bootstrap.
struct BootstrapScratch {
    buffers: ComputationBuffers,
    /// Keyswitch output (small key).
    small: LweCiphertextOwned<u64>,
    /// The accumulator being rotated.
    glwe: GlweCiphertextOwned<u64>,
}

/// Per-thread working memory of a lookup.
struct Scratch {
    bs: BootstrapScratch,
    /// Input and output of the sign bootstraps of exact rounding (big key).
    shifted: LweCiphertextOwned<u64>,
    bit: LweCiphertextOwned<u64>,
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

    fn glwe_size(&self) -> GlweSize {
        GlweSize(self.key.params.glwe_dimension + 1)
    }

    fn poly_size(&self) -> PolynomialSize {
        PolynomialSize(self.key.params.polynomial_size)
    }

    fn scratch(&self) -> Scratch {
        let fft = self.key.fft.as_view();
        let mut buffers = ComputationBuffers::new();
        buffers.resize(
            blind_rotate_assign_mem_optimized_requirement::<u64>(
                self.glwe_size(),
                self.poly_size(),
                fft,
            )
            .unaligned_bytes_required(),
        );
        Scratch {
            bs: BootstrapScratch {
                buffers,
                small: LweCiphertext::new(0, LweSize(self.key.params.lwe_dimension + 1), native()),
                glwe: GlweCiphertext::new(0, self.glwe_size(), self.poly_size(), native()),
            },
            shifted: LweCiphertext::new(0, self.big_lwe_size(), native()),
            bit: LweCiphertext::new(0, self.big_lwe_size(), native()),
        }
    }

    /// A trivial accumulator whose body polynomial is `body`.
    fn accumulator(&self, body: &[u64]) -> GlweCiphertextOwned<u64> {
        let mut acc = GlweCiphertext::new(0, self.glwe_size(), self.poly_size(), native());
        acc.get_mut_body().as_mut().copy_from_slice(body);
        acc
    }

    /// Accumulator of an `precision`-bit table: `2^precision` boxes over the `N`
    /// coefficients, each centred on its message (half-box rotation, the first half box
    /// negated for negacyclicity), entries encoded at `delta_log2`.
    fn table_accumulator(
        &self,
        table: &[i64],
        precision: u32,
        delta_log2: u32,
    ) -> GlweCiphertextOwned<u64> {
        let n = self.key.params.polynomial_size;
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
        self.accumulator(&body)
    }

    /// Keyswitch, centered modulus switch, blind rotation of `acc` and sample extraction of
    /// `input` into `out`.
    fn bootstrap<C: Container<Element = u64>>(
        &self,
        s: &mut BootstrapScratch,
        input: &LweCiphertext<C>,
        acc: &GlweCiphertextOwned<u64>,
        out: &mut LweCiphertextOwned<u64>,
    ) {
        keyswitch_lwe_ciphertext(&self.key.ksk, input, &mut s.small);
        let log_modulus = self.poly_size().to_blind_rotation_input_modulus_log();
        let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(
            s.small.as_view(),
            log_modulus,
        );
        s.glwe.as_mut().copy_from_slice(acc.as_ref());
        blind_rotate_assign_mem_optimized(
            &msed,
            &mut s.glwe,
            &self.key.bsk,
            self.key.fft.as_view(),
            s.buffers.stack(),
        );
        extract_lwe_sample_from_glwe_ciphertext(&s.glwe, out, MonomialDegree(0));
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

    /// Keyswitch and centered modulus switch of `input`, as a bootstrap does before its blind
    /// rotation: the mask and body modulo `2N`.
    pub fn switched(&self, input: &Ct) -> (Vec<u64>, u64) {
        let mut small = LweCiphertext::new(0, LweSize(self.key.params.lwe_dimension + 1), native());
        keyswitch_lwe_ciphertext(&self.key.ksk, input, &mut small);
        let log_modulus = self.poly_size().to_blind_rotation_input_modulus_log();
        let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, u64, _>(
            small.as_view(),
            log_modulus,
        );
        (msed.mask().collect(), msed.body())
    }

    fn lookup_impl(
        &self,
        lut: &Lut,
        output_delta_log2: u32,
        inputs: &[&Ct],
        tables: &[usize],
        keep_inputs: bool,
    ) -> Result<(Vec<Ct>, Vec<Ct>), RuntimeError> {
        let params = &self.key.params;
        let precision = lut.precision;
        let shift = lut.shift();
        let bits = precision + shift;
        if params.polynomial_size < (2usize << precision.min(62)) {
            return Err(RuntimeError::Mismatch(format!(
                "a {precision}-bit table lookup needs a polynomial size of at least 2^{} (have {})",
                precision + 1,
                params.polynomial_size
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
        let big = params.big_lwe_dimension() + 1;
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
                *slot = Some(self.table_accumulator(&lut.tables[t], precision, output_delta_log2));
            }
        }
        let d_in = lut.input_delta_log2();
        let exact_shift = match lut.rounding {
            Some(r) if r.is_exact() => r.shift,
            _ => 0,
        };
        // Constant tables of the sign bootstraps: +c for bit 0, -c for bit 1.
        let sign_accs: Vec<(u64, GlweCiphertextOwned<u64>)> = (0..exact_shift)
            .map(|j| {
                let c = 1u64 << (d_in + j - 1);
                (c, self.accumulator(&vec![c; params.polynomial_size]))
            })
            .collect();
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
                || self.scratch(),
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
                        self.bootstrap(&mut s.bs, &s.shifted, acc, &mut s.bit);
                        // x += out - c: removes bit j.
                        add_slices(x.as_mut(), s.bit.as_ref());
                        let b = body_mut(&mut x);
                        *b = b.wrapping_sub(*c);
                    }
                    let mut out = LweCiphertext::new(0, LweSize(big), native());
                    let acc = accs[t].as_ref().expect("accumulator built above");
                    self.bootstrap(&mut s.bs, &x, acc, &mut out);
                    (out, keep_inputs.then_some(x))
                },
            )
            .unzip::<_, _, Vec<Ct>, Vec<Option<Ct>>>();
        Ok((results.0, results.1.into_iter().flatten().collect()))
    }
}
