//! What an encrypted run of a circuit with APPROXIMATE rounding may decrypt to, from the rule
//! the compiler documents (README, `round_accumulators`; `fhec_ir::quant::RoundingMode` and
//! `fhec_runtime::circuit::Rounding`): a lookup that reads the top bits of a wider accumulator
//! directly may land on the neighbouring entry (off by one) when the accumulator lies within
//! the noise margin of a rounding boundary; every other lookup reads its clear entry (their
//! failure probability, 2^-40 per bootstrap by default, is negligible).
//!
//! [`output_bounds`] propagates that rule through a circuit by interval arithmetic: each
//! element is an inclusive range `[lo, hi]` of integers, linear instructions combine ranges
//! exactly, and a lookup returns the smallest and largest entry among the indices its input
//! range reaches, read the way the bootstrap reads them (`Lut::read`, with the negacyclic
//! wrap past either end). An approximately rounded lookup also reaches the index below (above)
//! when the lowest (highest) accumulator of its range lies within [`SIGMAS`] standard
//! deviations of the predicted rotation noise (the last of `CircuitNoise::bootstraps` for the input's
//! noise factor, on the lookup's parameter sets) of its box's lower (upper) edge; the FHE engine places an accumulator half
//! an input unit above its nominal position (`runtime/src/fhe/engine.rs`), which is where the
//! distances are measured from.

use fhec_runtime::circuit::{Circuit, Lut, ValueInfo};
use fhec_runtime::exec::quantize_inputs;
use fhec_runtime::noise::{CircuitNoise, LookupKind};
use fhec_runtime::{execute, Engine, RuntimeError};
use ndarray::ArrayD;

/// An inclusive integer range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iv {
    pub lo: i64,
    pub hi: i64,
}

impl Iv {
    pub fn contains(&self, v: i64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

fn scaled(x: &Iv, w: i64) -> Iv {
    let (a, b) = (x.lo * w, x.hi * w);
    Iv {
        lo: a.min(b),
        hi: a.max(b),
    }
}

/// How many predicted standard deviations of noise count as "near" a rounding boundary: a
/// Gaussian exceeds 8 sigma with probability 1.2e-15.
pub const SIGMAS: f64 = 8.0;

/// The interval engine (see the module documentation).
pub struct IntervalEngine {
    pub noise: CircuitNoise,
}

impl Engine for IntervalEngine {
    type Ct = Iv;

    fn trivial(&self, value: i64, _delta_log2: u32) -> Iv {
        Iv {
            lo: value,
            hi: value,
        }
    }

    fn add_assign(&self, acc: &mut Iv, x: &Iv) {
        acc.lo += x.lo;
        acc.hi += x.hi;
    }

    fn sub_assign(&self, acc: &mut Iv, x: &Iv) {
        acc.lo -= x.hi;
        acc.hi -= x.lo;
    }

    fn mul_add_assign(&self, acc: &mut Iv, x: &Iv, weight: i64) {
        let m = scaled(x, weight);
        self.add_assign(acc, &m);
    }

    fn mul_assign(&self, x: &mut Iv, weight: i64) {
        *x = scaled(x, weight);
    }

    fn add_const_assign(&self, x: &mut Iv, constant: i64, _delta_log2: u32) {
        x.lo += constant;
        x.hi += constant;
    }

    fn rescale(&self, _x: &mut Iv, _shift: u32) {}

    fn lookup(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        _output_delta_log2: u32,
        inputs: &[&Iv],
        tables: &[usize],
    ) -> Result<Vec<Iv>, RuntimeError> {
        let s = lut.shift();
        let approximate = lut.rounding.is_some_and(|r| !r.is_exact()) && s > 0;
        let half = if s == 0 { 0 } else { 1i64 << (s - 1) };
        // The index rule of `Lut::index`, without the domain check.
        let index = |acc: i64| (acc - lut.input_min + half) >> s;
        // The noise margin, in accumulator units (one unit is 2^-(precision + 1 + shift) of
        // the torus).
        let unit = 2f64.powi(-(lut.precision as i32 + 1 + s as i32));
        let rotation = self
            .noise
            .bootstraps(LookupKind::of(lut), input.noise_factor, lut.sets)?;
        let std = rotation.last().map_or(0.0, |b| b.variance.sqrt());
        let margin = SIGMAS * std / unit;
        // Distance of an accumulator, placed half a unit above its value, from the lower and
        // upper edges of its box (box `i` holds `[i * 2^s - half, (i + 1) * 2^s - half)`).
        let edges = |acc: i64| {
            let pos = (acc - lut.input_min) as f64 + 0.5;
            let i = index(acc);
            (
                pos - ((i << s) - half) as f64,
                (((i + 1) << s) - half) as f64 - pos,
            )
        };
        let period = 2i64 << lut.precision;
        inputs
            .iter()
            .zip(tables)
            .map(|(x, &t)| {
                let (mut first, mut last) = (index(x.lo), index(x.hi));
                if approximate {
                    if edges(x.lo).0 < margin {
                        first -= 1;
                    }
                    if edges(x.hi).1 < margin {
                        last += 1;
                    }
                }
                if last - first >= period {
                    // Every entry, both signs of the wrap.
                    (first, last) = (0, period - 1);
                }
                let mut out: Option<Iv> = None;
                for i in first..=last {
                    // An accumulator whose index is `i`: `Lut::read` wraps it as the
                    // bootstrap does.
                    let v =
                        lut.read(t, lut.input_min + (i << s))
                            .ok_or(RuntimeError::NoSuchTable {
                                table: t,
                                count: lut.tables.len(),
                            })?;
                    out = Some(match out {
                        None => Iv { lo: v, hi: v },
                        Some(o) => Iv {
                            lo: o.lo.min(v),
                            hi: o.hi.max(v),
                        },
                    });
                }
                Ok(out.expect("at least one index"))
            })
            .collect()
    }
}

/// For one sample (one real array per circuit input), the range of every integer of every
/// circuit output that an encrypted run may decrypt to under the approximate-rounding rule.
pub fn output_bounds(
    circuit: &Circuit,
    inputs: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<Iv>>, RuntimeError> {
    let q = quantize_inputs(&circuit.program, inputs)?;
    let ivs = q
        .into_iter()
        .map(|a| a.mapv(|v| Iv { lo: v, hi: v }))
        .collect();
    let engine = IntervalEngine {
        noise: CircuitNoise::for_program(&circuit.params, &circuit.program)?,
    };
    execute(&circuit.program, &engine, ivs)
}
