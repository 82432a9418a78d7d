//! The element-level quantisation semantics, defined once for the integer interpreter
//! (`fhec_ir::quant`) and the runtime (`fhec_runtime::circuit`), so that the clear reference,
//! the simulator and the FHE client cannot drift apart: the quantisation parameters
//! ([`QParams`], the IR's `Quantize`/`Dequantize` and the circuit's input specs), the
//! client's rounding and the bootstrap's table read.

/// Affine quantisation of a real tensor to `bits`-bit integers.
/// Serialised in circuits (the client's input quantisation): changing the fields changes the
/// circuit format.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i64,
    pub bits: u32,
    pub signed: bool,
}

impl QParams {
    /// Inclusive integer range of the quantised values.
    pub fn range(&self) -> (i64, i64) {
        if self.signed {
            (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1)
        } else {
            (0, (1 << self.bits) - 1)
        }
    }

    /// Unsigned asymmetric parameters covering `[lo, hi]` (0 is always representable).
    pub fn unsigned_for_range(lo: f32, hi: f32, bits: u32) -> QParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let levels = ((1u64 << bits) - 1) as f32;
        let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
        let zero_point = (-lo / scale).round() as i64;
        QParams {
            scale,
            zero_point: zero_point.clamp(0, levels as i64),
            bits,
            signed: false,
        }
    }

    /// Quantises one real value (round half to even, saturating).
    pub fn quantize(&self, x: f32) -> i64 {
        quantize(x, self.scale, self.zero_point, self.range())
    }

    pub fn dequantize(&self, q: i64) -> f32 {
        self.scale * (q - self.zero_point) as f32
    }
}

/// How an accumulator wider than the table's input is reduced before the lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RoundingMode {
    /// `(acc + 2^(shift-1)) >> shift` computed exactly (extra bootstraps in FHE).
    Exact,
    /// Same nominal value as `Exact`; FHE reads the top bits directly, so an accumulator
    /// within the noise margin of a rounding boundary may land on the neighbouring value
    /// (off by one). The clear interpreter computes the nominal value.
    Approximate,
}

/// Keep the top bits of an accumulator: `round(acc / 2^shift)`, ties upward. Serialised in
/// circuits (table lookups): changing the fields changes the circuit format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rounding {
    pub shift: u32,
    pub mode: RoundingMode,
}

impl Rounding {
    /// Whether the low bits are removed exactly (extra one-bit bootstraps in FHE).
    pub fn is_exact(&self) -> bool {
        self.mode == RoundingMode::Exact
    }

    pub fn apply(&self, acc: i64) -> i64 {
        if self.shift == 0 {
            acc
        } else {
            (acc + (1 << (self.shift - 1))) >> self.shift
        }
    }
}

/// Client-side quantisation of one real: `clamp(round_ties_even(x / scale) + zero_point,
/// lo, hi)`.
pub fn quantize(x: f32, scale: f32, zero_point: i64, (lo, hi): (i64, i64)) -> i64 {
    (round_ties_even(x / scale) as i64 + zero_point).clamp(lo, hi)
}

/// `v.round_ties_even()` without the libm call it becomes on baseline x86-64 (no SSE4.1):
/// below 2^23 in magnitude, adding and subtracting 2^23 rounds to the nearest integer, ties to
/// even (the default IEEE rounding of the addition); from 2^23 on every `f32` is an integer.
/// Equal to `f32::round_ties_even` for every input, NaN and infinities included (tested).
pub fn round_ties_even(v: f32) -> f32 {
    const TWO_POW_23: f32 = 8_388_608.0;
    if v.abs() < TWO_POW_23 {
        let m = TWO_POW_23.copysign(v);
        // Rounding keeps the sign, also of a zero result (-0.4 -> -0.0).
        ((v + m) - m).copysign(v)
    } else {
        v
    }
}

/// Index of accumulator `acc` in a table whose domain starts at `input_min`, its offset
/// rounded by `shift` bits (half up): `floor((acc - input_min + 2^(shift-1)) / 2^shift)`.
/// `None` below the domain or on overflow; the caller bounds it by the table's length.
pub fn table_index(acc: i64, input_min: i64, shift: u32) -> Option<usize> {
    let offset = acc.checked_sub(input_min)?;
    let rounded = if shift == 0 {
        offset
    } else {
        offset.checked_add(1 << (shift - 1))? >> shift
    };
    usize::try_from(rounded).ok()
}

/// The value a `precision`-bit programmable bootstrap returns for the accumulator offset
/// `offset = acc - input_min` (rounded by `shift` bits, half up): the rounded offset is taken
/// modulo `2^(precision+1)` (the padding bit is part of what the bootstrap reads); the lower
/// half reads `table[i]` (0 past the table's end, as the accumulator polynomial is filled),
/// the upper half `-table[i - 2^precision]` (the negacyclic wrap). Inside the table's domain
/// this is plain `table[i]`; outside it this is what an encrypted run computes, not a
/// saturation, and every engine that claims to reproduce the circuit uses this rule.
pub fn negacyclic_read(table: &[i64], precision: u32, shift: u32, offset: i64) -> i64 {
    let rounded = if shift == 0 {
        offset
    } else {
        offset.wrapping_add(1 << (shift - 1)) >> shift
    };
    let half = 1i64 << precision.min(61);
    // rem_euclid by a power of two, as a mask (a division per lookup is measurable).
    let i = rounded & (2 * half - 1);
    let entry = |i: i64| table.get(i as usize).copied().unwrap_or(0);
    if i < half {
        entry(i)
    } else {
        entry(i - half).wrapping_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ties_even_equals_std_on_edges() {
        let edges = [
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999997,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            8_388_609.0,
            16_777_215.0,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for v in edges {
            assert_eq!(
                round_ties_even(v).to_bits(),
                v.round_ties_even().to_bits(),
                "{v}"
            );
        }
        assert!(round_ties_even(f32::NAN).is_nan());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn round_ties_even_equals_std(bits in proptest::prelude::any::<u32>()) {
            let v = f32::from_bits(bits);
            let (got, want) = (round_ties_even(v), v.round_ties_even());
            proptest::prop_assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{v}: {got} vs {want}"
            );
        }

        #[test]
        fn small_ints_round_like_std(k in -100_000i32..100_000, frac in 0u32..8) {
            // Exact halves and quarters around integers (where ties matter).
            let v = k as f32 + frac as f32 / 8.0;
            proptest::prop_assert_eq!(round_ties_even(v).to_bits(), v.round_ties_even().to_bits());
        }
    }
}
