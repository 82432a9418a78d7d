//! The element-level quantisation semantics, defined once for the integer interpreter
//! (`fhec_ir::quant`) and the runtime (`fhec_runtime::circuit`), so that the clear reference,
//! the simulator and the FHE client cannot drift apart.

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
