//! What an engine must provide so that [`crate::execute`] can run a program on it: cheap
//! linear operations on one element, and batches of table lookups (the bootstraps).
//!
//! Three engines implement it: [`crate::ClearEngine`] (exact integers, the reference),
//! [`crate::SimulationEngine`] (integers plus the noise the parameters predict) and
//! [`crate::FheEngine`] (tfhe-rs LWE ciphertexts).

use crate::circuit::{Lut, ValueInfo};
use crate::error::RuntimeError;

/// Element-level operations of one execution back end.
///
/// `delta_log2` arguments give the encoding of the element operated on (see
/// [`crate::circuit`]); engines that hold plain integers ignore it.
pub trait Engine: Sync {
    /// One element of a tensor: an integer or a ciphertext.
    type Ct: Clone + Send + Sync;

    /// A noiseless element holding `value` (padding, constant fill).
    fn trivial(&self, value: i64, delta_log2: u32) -> Self::Ct;

    fn add_assign(&self, acc: &mut Self::Ct, x: &Self::Ct);

    fn sub_assign(&self, acc: &mut Self::Ct, x: &Self::Ct);

    /// `acc += weight * x`.
    fn mul_add_assign(&self, acc: &mut Self::Ct, x: &Self::Ct, weight: i64);

    /// `x *= weight`.
    fn mul_assign(&self, x: &mut Self::Ct, weight: i64);

    /// `x += constant` for an element encoded with `delta_log2`.
    fn add_const_assign(&self, x: &mut Self::Ct, constant: i64, delta_log2: u32);

    /// Multiplies the encoding delta by `2^shift`; the value stays the same.
    fn rescale(&self, x: &mut Self::Ct, shift: u32);

    /// The elements as plain integers, for engines whose element is one (`Ct = i64`): linear
    /// layers then run on the exact kernels of `fhec-kernels` (shared with the integer
    /// interpreter) instead of element by element. `None`, the default, for ciphertexts.
    fn as_plain<'a>(&self, _x: &'a [Self::Ct]) -> Option<&'a [i64]> {
        None
    }

    /// Elements from plain integers; `None` where [`Engine::as_plain`] is.
    fn wrap_plain(&self, _x: Vec<i64>) -> Option<Vec<Self::Ct>> {
        None
    }

    /// Looks every `inputs[i]` up in `lut.tables[tables[i]]` (see [`Lut`] for the index rule).
    /// `input` describes the operand (its delta is `lut.input_delta_log2()`, its noise factor
    /// feeds simulation); results are encoded with `output_delta_log2`. Engines run the batch
    /// in parallel.
    fn lookup(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&Self::Ct],
        tables: &[usize],
    ) -> Result<Vec<Self::Ct>, RuntimeError>;
}
