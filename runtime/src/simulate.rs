//! The simulation engine: executes a program on plain integers like [`crate::ClearEngine`],
//! but every table lookup reads the box the FHE bootstrap would read given Gaussian noise of
//! the variance [`crate::noise::CircuitNoise`] predicts (each lookup with the noise of its own
//! parameter sets). Running a test set through it measures
//! the accuracy an encrypted run would have, in seconds instead of hours.
//!
//! Per element of a lookup with input noise factor `alpha`, in units of the input delta
//! (`2^-(B+1)` of the torus, `B = precision + shift`):
//!
//! - no rounding / approximate rounding: `x = acc - input_min (+ 1/2 with rounding) + e`, `e ~ N(0, alpha*unit +
//!   var_ks + var_ms)` (`unit`: the circuit's largest bootstrap output variance); the bootstrap reads box `floor(x / 2^s + 1/2)`, taken modulo
//!   `2^(R+1)` (negacyclic): boxes `[0, 2^R)` give `table[box]`, boxes `[2^R, 2^(R+1))` give
//!   `-table[box - 2^R]`, entries past the end of a table are 0 (as in the FHE accumulator);
//! - exact rounding: each bit extraction `j` reads bit `j` of `x` with its own keyswitch and
//!   modulus-switch noise (a wrong read leaves bit `j` in, or subtracts a bit that was not
//!   there, exactly as the encrypted computation would) and adds fresh bootstrap noise to
//!   `x`; the final lookup then reads the box of the result.
//!
//! Randomness is reproducible: each lookup call gets the next number of a per-engine
//! counter, and each block of [`BLOCK`] elements of that call has its own RNG seeded from
//! `(seed, call, block)`, so results do not depend on the thread count.

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayD;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::circuit::{Circuit, Lut, Program, ValueInfo};
use crate::clear::{PlainEngine, PlainLookups};
use crate::error::RuntimeError;
use crate::exec::{decoded_outputs, dequantize_outputs, execute, quantize_inputs};
use crate::noise::{CircuitNoise, LookupKind};
use crate::params::ParamSets;

/// Elements sharing one random stream.
pub const BLOCK: usize = 1024;

/// Executes programs on plain `i64` values with simulated bootstrap noise: the clear engine's
/// arithmetic with [`SimulatedLookups`].
pub type SimulationEngine = PlainEngine<SimulatedLookups>;

/// The table reads of the simulation: what a bootstrap reads given the noise the parameters
/// predict (see the module documentation).
#[derive(Debug)]
pub struct SimulatedLookups {
    noise: CircuitNoise,
    seed: u64,
    calls: AtomicU64,
}

impl SimulationEngine {
    /// An engine simulating the noise of `params`, every set counted in the unit of the
    /// noise factors (exact for one set; [`Self::for_program`] for a circuit's sets); `seed`
    /// fixes every random draw.
    pub fn new(params: &ParamSets, seed: u64) -> Self {
        Self::with_model(CircuitNoise::new(params), seed)
    }

    /// An engine simulating `program`'s lookups on `params` ([`CircuitNoise::for_program`]).
    pub fn for_program(
        params: &ParamSets,
        program: &crate::Program,
        seed: u64,
    ) -> Result<Self, RuntimeError> {
        Ok(Self::with_model(
            CircuitNoise::for_program(params, program)?,
            seed,
        ))
    }

    /// An engine with an explicit noise model (tests, what-if studies).
    pub fn with_model(noise: CircuitNoise, seed: u64) -> Self {
        PlainEngine {
            lookups: SimulatedLookups {
                noise,
                seed,
                calls: AtomicU64::new(0),
            },
            kernels: true,
        }
    }

    pub fn model(&self) -> &CircuitNoise {
        &self.lookups.noise
    }
}

/// SplitMix64 finaliser: decorrelates the seeds of neighbouring streams.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn stream(seed: u64, call: u64, block: u64) -> SmallRng {
    let key = mix(mix(mix(seed) ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ block);
    SmallRng::seed_from_u64(key)
}

/// `x.floor() as i64` without the libm call that `f64::floor` becomes on baseline x86-64
/// (no SSE4.1): a tenth of the simulation time. Equal for every `x` inside the i64 range.
fn floor_i64(x: f64) -> i64 {
    let t = x as i64; // truncates toward zero
    if (t as f64) > x {
        t - 1
    } else {
        t
    }
}

/// Noise stds of one lookup in units of its input delta.
struct LookupNoise {
    kind: LookupKind,
    /// Noise already on the input (`alpha` units of the circuit's noise).
    input: f64,
    /// Keyswitch + modulus switch noise of the table's bootstrap.
    switch: f64,
    /// Keyswitch + modulus switch noise of a bit extraction, on the normalised torus (what
    /// it sees at its input).
    switch_torus: f64,
    /// Output noise of one bit extraction.
    pbs: f64,
    /// Everything a non-exact lookup sees at once.
    total: f64,
    /// `2^shift`: input units per box the bootstrap reads.
    box_width: f64,
}

impl LookupNoise {
    fn new(noise: &CircuitNoise, lut: &Lut, alpha: f64) -> Result<Self, RuntimeError> {
        let kind = LookupKind::of(lut);
        let units = 2f64.powi(kind.input_bits() as i32 + 1);
        let table = noise.set(lut.sets.table)?;
        let bits = if kind.exact {
            noise.set(lut.sets.bits)?
        } else {
            table
        };
        let input = alpha.max(0.0) * noise.unit;
        Ok(LookupNoise {
            kind,
            input: input.sqrt() * units,
            switch: (table.var_ks + table.var_ms).sqrt() * units,
            switch_torus: (bits.var_ks + bits.var_ms).sqrt(),
            pbs: bits.var_pbs.sqrt() * units,
            total: (input + table.var_ks + table.var_ms).sqrt() * units,
            box_width: 2f64.powi(kind.shift as i32),
        })
    }

    /// What the bootstrap(s) of one element decode to; `offset = acc - input_min`.
    fn read(&self, lut: &Lut, table: &[i64], offset: i64, rng: &mut SmallRng) -> i64 {
        let s = self.kind.shift;
        let gauss = |rng: &mut SmallRng| -> f64 { rng.sample(StandardNormal) };
        let position = if self.kind.exact {
            let mut x = offset.wrapping_add(1 << (s - 1));
            let mut e = self.input * gauss(rng);
            for j in 0..s {
                // Bit j of x + e, read through t = (x + e) * 2^(B-j) + 2^62 plus switch noise:
                // on the torus t = (x + e) / 2^(j+1) + 1/4 + n, and the bit is floor(2t) mod 2.
                let v = (x as f64 + e) / 2f64.powi(j as i32)
                    + 0.5
                    + 2.0 * self.switch_torus * gauss(rng);
                if floor_i64(v) & 1 == 1 {
                    x = x.wrapping_sub(1 << j);
                }
                e += self.pbs * gauss(rng);
            }
            x as f64 + e + self.switch * gauss(rng)
        } else if s > 0 {
            // Approximate rounding: the engine adds half an input unit (see fhe/engine.rs).
            offset as f64 + 0.5 + self.total * gauss(rng)
        } else {
            offset as f64 + self.total * gauss(rng)
        };
        let boxes = 1i64 << (lut.precision + 1);
        let half = 1i64 << lut.precision;
        let b = floor_i64(position / self.box_width + 0.5);
        let b = b & (boxes - 1); // rem_euclid by a power of two
        let entry = |i: i64| table.get(i as usize).copied().unwrap_or(0);
        if b < half {
            entry(b)
        } else {
            entry(b - half).wrapping_neg()
        }
    }
}

impl PlainLookups for SimulatedLookups {
    fn read_tables(
        &self,
        lut: &Lut,
        input: &ValueInfo,
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
        if lut.precision == 0 || lut.precision + lut.shift() > 62 {
            return Err(RuntimeError::Mismatch(format!(
                "a lookup of {} bits with {} rounded bits cannot be simulated",
                lut.precision,
                lut.shift()
            )));
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let noise = LookupNoise::new(&self.noise, lut, input.noise_factor)?;
        let seed = self.seed;
        // Each block of BLOCK elements draws from its own stream, straight into the output.
        let mut out = vec![0i64; inputs.len()];
        out.par_chunks_mut(BLOCK)
            .zip(inputs.par_chunks(BLOCK).zip(tables.par_chunks(BLOCK)))
            .enumerate()
            .try_for_each(|(block, (dst, (xs, ts)))| {
                let mut rng = stream(seed, call, block as u64);
                for ((d, &&acc), &t) in dst.iter_mut().zip(xs).zip(ts) {
                    let table = lut.tables.get(t).ok_or(RuntimeError::NoSuchTable {
                        table: t,
                        count: lut.tables.len(),
                    })?;
                    // Outside the table's domain the read wraps as in FHE (`Lut::read`).
                    *d = noise.read(lut, table, acc.wrapping_sub(lut.input_min), &mut rng);
                }
                Ok::<(), RuntimeError>(())
            })?;
        Ok(out)
    }
}

/// Quantises real inputs, executes `circuit` on a [`SimulationEngine`] seeded with `seed`
/// and returns the integer outputs.
///
/// Each call starts a fresh engine, so two calls with the same seed draw the same noise:
/// give every sample of a data set its own seed (e.g. `base_seed + sample_index`; seeds are
/// hashed, neighbouring seeds give independent streams).
pub fn simulate_integers(
    circuit: &Circuit,
    inputs: &[ArrayD<f32>],
    seed: u64,
) -> Result<Vec<ArrayD<i64>>, RuntimeError> {
    simulate_program(&circuit.program, &circuit.params, inputs, seed)
}

/// [`simulate_integers`] for a program and explicit parameters.
pub fn simulate_program(
    program: &Program,
    params: &ParamSets,
    inputs: &[ArrayD<f32>],
    seed: u64,
) -> Result<Vec<ArrayD<i64>>, RuntimeError> {
    let quantized = quantize_inputs(program, inputs)?;
    let engine = SimulationEngine::for_program(params, program, seed)?;
    let outputs = execute(program, &engine, quantized)?;
    Ok(decoded_outputs(program, outputs))
}

/// Quantises real inputs, executes `circuit` with simulated noise and dequantises the
/// outputs (before the circuit's client post-processing).
pub fn simulate(
    circuit: &Circuit,
    inputs: &[ArrayD<f32>],
    seed: u64,
) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
    let outputs = simulate_integers(circuit, inputs, seed)?;
    Ok(dequantize_outputs(&circuit.program, &outputs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn floor_i64_is_floor() {
        let cases = [
            -2.5,
            -2.0,
            -1.000_000_1,
            -0.5,
            -0.0,
            0.0,
            0.4999,
            0.5,
            1.0,
            7.999_999,
            1e15 + 0.5,
        ];
        for x in cases {
            assert_eq!(super::floor_i64(x), x.floor() as i64, "{x}");
        }
    }
}
