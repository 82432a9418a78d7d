//! The clear engine: executes a program on plain integers, the reference every other engine
//! is compared with (and what `fhec predict --mode clear` runs).
//!
//! An element is the integer value itself; deltas are ignored and rescaling is a no-op.
//! Linear arithmetic wraps (the trait's element operations cannot fail, and the compiler's
//! interval analysis keeps every accumulator far inside i64); a lookup outside its table's
//! domain reads what the bootstrap reads ([`Lut::read`]), and outputs are read into their
//! decryption window ([`crate::exec::decoded_outputs`]), so results equal an encrypted run's.

use ndarray::ArrayD;
use rayon::prelude::*;

use crate::circuit::{Lut, Program, ValueInfo};
use crate::engine::Engine;
use crate::error::RuntimeError;
use crate::exec::{decoded_outputs, dequantize_outputs, execute, quantize_inputs};

/// Batches at least this large are looked up in parallel.
const PARALLEL_LOOKUPS: usize = 4096;

/// Executes programs on plain `i64` values.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClearEngine;

impl Engine for ClearEngine {
    type Ct = i64;

    fn trivial(&self, value: i64, _delta_log2: u32) -> i64 {
        value
    }

    fn add_assign(&self, acc: &mut i64, x: &i64) {
        *acc = acc.wrapping_add(*x);
    }

    fn sub_assign(&self, acc: &mut i64, x: &i64) {
        *acc = acc.wrapping_sub(*x);
    }

    fn mul_add_assign(&self, acc: &mut i64, x: &i64, weight: i64) {
        *acc = acc.wrapping_add(x.wrapping_mul(weight));
    }

    fn mul_assign(&self, x: &mut i64, weight: i64) {
        *x = x.wrapping_mul(weight);
    }

    fn add_const_assign(&self, x: &mut i64, constant: i64, _delta_log2: u32) {
        *x = x.wrapping_add(constant);
    }

    fn rescale(&self, _x: &mut i64, _shift: u32) {}

    fn as_plain<'a>(&self, x: &'a [i64]) -> Option<&'a [i64]> {
        Some(x)
    }

    fn wrap_plain(&self, x: Vec<i64>) -> Option<Vec<i64>> {
        Some(x)
    }

    fn lookup(
        &self,
        lut: &Lut,
        _input: &ValueInfo,
        _output_delta_log2: u32,
        inputs: &[&i64],
        tables: &[usize],
    ) -> Result<Vec<i64>, RuntimeError> {
        if inputs.len() != tables.len() {
            return Err(RuntimeError::Mismatch(format!(
                "{} lookup inputs with {} table indices",
                inputs.len(),
                tables.len()
            )));
        }
        // Straight into a preallocated output, chunk by chunk (collecting a parallel iterator
        // of `Result`s goes through linked lists of vectors: 5x slower).
        let read = |dst: &mut [i64], xs: &[&i64], ts: &[usize]| {
            for ((d, &&value), &table) in dst.iter_mut().zip(xs).zip(ts) {
                *d = lut.read(table, value).ok_or(RuntimeError::NoSuchTable {
                    table,
                    count: lut.tables.len(),
                })?;
            }
            Ok::<(), RuntimeError>(())
        };
        let mut out = vec![0i64; inputs.len()];
        if inputs.len() >= PARALLEL_LOOKUPS {
            out.par_chunks_mut(PARALLEL_LOOKUPS)
                .zip(inputs.par_chunks(PARALLEL_LOOKUPS))
                .zip(tables.par_chunks(PARALLEL_LOOKUPS))
                .try_for_each(|((dst, xs), ts)| read(dst, xs, ts))?;
        } else {
            read(&mut out, inputs, tables)?;
        }
        Ok(out)
    }
}

/// Quantises real inputs, executes the program on [`ClearEngine`] and dequantises.
pub fn run_clear(
    program: &Program,
    inputs: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
    let outputs = run_clear_integers(program, inputs)?;
    Ok(dequantize_outputs(program, &outputs))
}

/// Quantises real inputs, executes the program on [`ClearEngine`] and returns the integer
/// outputs (what an FHE run decrypts to).
pub fn run_clear_integers(
    program: &Program,
    inputs: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<i64>>, RuntimeError> {
    let quantized = quantize_inputs(program, inputs)?;
    let outputs = execute(program, &ClearEngine, quantized)?;
    Ok(decoded_outputs(program, outputs))
}

/// What an engine built on the clear engine's arithmetic does at a table lookup.
pub trait PlainLookups: Sync {
    /// The table reads of one lookup batch; see [`Engine::lookup`].
    fn read_tables(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&i64],
        tables: &[usize],
    ) -> Result<Vec<i64>, RuntimeError>;
}

impl PlainLookups for ClearEngine {
    fn read_tables(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&i64],
        tables: &[usize],
    ) -> Result<Vec<i64>, RuntimeError> {
        Engine::lookup(self, lut, input, output_delta_log2, inputs, tables)
    }
}

/// An engine on plain `i64` elements with the clear engine's exact linear arithmetic and
/// `lookups`' table reads: what engines that differ from the clear one only at lookups
/// (recording or counting them, in tests and tools) are built from. With `kernels: false`
/// dense layers and convolutions run element by element, as on ciphertexts, instead of on
/// the shared exact kernels.
#[derive(Debug)]
pub struct PlainEngine<L> {
    pub lookups: L,
    pub kernels: bool,
}

impl<L: PlainLookups> Engine for PlainEngine<L> {
    type Ct = i64;

    fn trivial(&self, value: i64, delta_log2: u32) -> i64 {
        ClearEngine.trivial(value, delta_log2)
    }

    fn add_assign(&self, acc: &mut i64, x: &i64) {
        ClearEngine.add_assign(acc, x)
    }

    fn sub_assign(&self, acc: &mut i64, x: &i64) {
        ClearEngine.sub_assign(acc, x)
    }

    fn mul_add_assign(&self, acc: &mut i64, x: &i64, weight: i64) {
        ClearEngine.mul_add_assign(acc, x, weight)
    }

    fn mul_assign(&self, x: &mut i64, weight: i64) {
        ClearEngine.mul_assign(x, weight)
    }

    fn add_const_assign(&self, x: &mut i64, constant: i64, delta_log2: u32) {
        ClearEngine.add_const_assign(x, constant, delta_log2)
    }

    fn rescale(&self, x: &mut i64, shift: u32) {
        ClearEngine.rescale(x, shift)
    }

    fn as_plain<'a>(&self, x: &'a [i64]) -> Option<&'a [i64]> {
        self.kernels.then_some(x)
    }

    fn wrap_plain(&self, x: Vec<i64>) -> Option<Vec<i64>> {
        self.kernels.then_some(x)
    }

    fn lookup(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&i64],
        tables: &[usize],
    ) -> Result<Vec<i64>, RuntimeError> {
        self.lookups
            .read_tables(lut, input, output_delta_log2, inputs, tables)
    }
}
