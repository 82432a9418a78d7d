//! Attributes of the integer ops that quantisation introduces.
//!
//! An integer tensor stands for the real tensor `scale * (q - zero_point)`. Linear ops (Gemm,
//! MatMul, Conv, SumPool, Add/Sub of two tensors, layout ops) act on the integers directly
//! with integer weights; everything univariate between them is one table lookup ([`Tlu`]).
//! These semantics are what the FHE circuit computes, bit for bit.

use serde::{Deserialize, Serialize};

pub use fhec_kernels::quant::{QParams, Rounding, RoundingMode};

/// Element-wise table lookup: `out = table[index(acc)]` with
/// `index(acc) = floor((acc - input_min + 2^(shift-1)) / 2^shift)` (round half up; just
/// `acc - input_min` without rounding).
///
/// The bootstrapped value `acc - input_min (+ 2^(shift-1))` is non-negative by construction
/// (the padding bit stays clear); rounding keeps its top bits.
/// `tables` holds one table, or one per index of `axis` (per-channel functions).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tlu {
    /// Smallest accumulator value the table covers.
    pub input_min: i64,
    pub rounding: Option<Rounding>,
    pub tables: Vec<Vec<i64>>,
    pub axis: Option<usize>,
}

impl Tlu {
    /// Width in bits of the table's (rounded) input domain: the precision of the bootstrap.
    pub fn input_bits(&self) -> u32 {
        let len = self.tables.iter().map(Vec::len).max().unwrap_or(1).max(1) as u64;
        64 - (len - 1).leading_zeros()
    }

    /// Table index of an accumulator value; `None` below the domain.
    ///
    /// With rounding, the circuit bootstraps `acc - input_min + 2^(shift-1)`, so offsets
    /// down to `-2^(shift-1)` still land on index 0.
    pub fn index(&self, acc: i64) -> Option<usize> {
        let shift = self.rounding.map_or(0, |r| r.shift);
        fhec_kernels::quant::table_index(acc, self.input_min, shift)
    }

    /// Looks one accumulator value up in table `t`; `None` when outside the domain.
    pub fn lookup(&self, t: usize, acc: i64) -> Option<i64> {
        self.tables.get(t)?.get(self.index(acc)?).copied()
    }

    /// Whether `acc` falls inside table `t`'s domain (the entries it was built for).
    pub fn in_domain(&self, t: usize, acc: i64) -> bool {
        self.lookup(t, acc).is_some()
    }

    /// What the circuit's bootstrap reads for `acc` in table `t`, inside the domain or not:
    /// see [`negacyclic_read`] with the table's precision ([`Tlu::input_bits`]). Inside the
    /// domain this is [`Tlu::lookup`]. `None` only when `t` is not a table.
    pub fn read(&self, t: usize, acc: i64) -> Option<i64> {
        let shift = self.rounding.map_or(0, |r| r.shift);
        let table = self.tables.get(t)?;
        Some(negacyclic_read(
            table,
            self.input_bits(),
            shift,
            acc.wrapping_sub(self.input_min),
        ))
    }
}

pub use fhec_kernels::quant::negacyclic_read;

/// Bits needed to hold every integer of `[lo, hi]` as an offset from `lo`.
pub fn span_bits(lo: i64, hi: i64) -> u32 {
    let span = (hi - lo).max(0) as u64;
    64 - span.leading_zeros()
}

/// Bits of a signed or unsigned two's-complement integer holding `[lo, hi]`.
pub fn int_bits(lo: i64, hi: i64) -> u32 {
    let unsigned = |v: i64| 64 - (v as u64).leading_zeros();
    if lo >= 0 {
        unsigned(hi).max(1)
    } else {
        1 + unsigned(hi.max(0)).max(unsigned(-(lo + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_top_bits_ties_up() {
        let r = Rounding {
            shift: 2,
            mode: RoundingMode::Exact,
        };
        assert_eq!(
            [-6, -5, -3, -2, 0, 1, 2, 5, 6].map(|a| r.apply(a)),
            [-1, -1, -1, 0, 0, 0, 1, 1, 2]
        );
    }

    #[test]
    fn reads_outside_the_domain_wrap_negacyclically() {
        // A 2-bit table (4 boxes, 8 with the padding half), no rounding.
        let t = [10, 11, 12];
        let read = |o| negacyclic_read(&t, 2, 0, o);
        assert_eq!([0, 1, 2, 3].map(read), [10, 11, 12, 0]);
        assert_eq!([4, 5, 6, 7, 8].map(read), [-10, -11, -12, 0, 10]);
        assert_eq!([-1, -4, -5].map(read), [0, -10, 0]);
        // Rounded by 2 bits: offset 5 rounds to 1, offset 14 to 4 (padding half).
        assert_eq!(negacyclic_read(&t, 2, 2, 5), 11);
        assert_eq!(negacyclic_read(&t, 2, 2, 14), -10);
        assert_eq!(negacyclic_read(&t, 2, 2, -3), 0);
    }

    #[test]
    fn bit_widths() {
        assert_eq!(int_bits(0, 255), 8);
        assert_eq!(int_bits(-128, 127), 8);
        assert_eq!(int_bits(-129, 0), 9);
        assert_eq!(span_bits(-4, 3), 3);
        assert_eq!(span_bits(5, 5), 0);
    }

    #[test]
    fn unsigned_params_cover_range() {
        let q = QParams::unsigned_for_range(-1.0, 3.0, 4);
        assert_eq!(q.quantize(-1.0), 0);
        assert_eq!(q.quantize(3.0), 15);
        assert!((q.dequantize(q.quantize(0.0))).abs() < 1e-6);
    }
}
