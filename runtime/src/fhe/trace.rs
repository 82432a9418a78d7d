//! Noise trace: runs a circuit on ciphertexts and, at every table lookup, decrypts with the
//! **client key** what the bootstraps read, next to the clear integer execution.
//!
//! This is a debugging tool for the key owner's own machine: it needs the secret key, which
//! a server must never hold. It answers "how close is each layer to failing?" with measured
//! numbers instead of the model's predictions:
//!
//! - *input noise*: the lookup's operand decrypted under the big key, minus its clear value
//!   (what the linear layers accumulated; the model predicts `alpha * var_pbs`);
//! - *rotation noise*: the ciphertext the (final) bootstrap reads, keyswitched and modulus
//!   switched exactly as the bootstrap does, decrypted with the small key modulo `2N` and
//!   compared with the box centre of the clear value. This is the noise that decides a
//!   failure: the lookup reads the wrong box when it exceeds half a box, `2^-(R+2)` for an
//!   `R`-bit table. The model predicts `alpha * var_pbs + var_ks + var_ms`;
//! - *output*: each bootstrap output decrypted and compared with the clear table value.
//!
//! The margin of a lookup is `log2(room / |rotation noise|)` bits for its worst element, `room`
//! the distance to the edge of its box (half a box without rounding or with exact rounding):
//! how many times that element's noise could double before it reads a neighbouring box. With exact rounding
//! the rotation noise is that of the final table lookup (after the bit extractions); the bit
//! extractions themselves are not traced.
//!
//! The clear side stays the exact reference: an element whose lookup failed keeps its
//! wrong ciphertext, later lookups count it in `inputs_wrong` and leave it out of their
//! noise statistics (its "noise" would be a whole message step).

use std::sync::Mutex;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::Serialize;
use tfhe::core_crypto::prelude::*;

use crate::circuit::{Circuit, Instruction, Lut, ValueInfo};
use crate::clear::ClearEngine;
use crate::engine::Engine;
use crate::error::RuntimeError;
use crate::exec::execute_observed;
use crate::fhe::ciphertext::EncryptedTensors;
use crate::fhe::engine::{encode, expected_bootstrap_input, Ct, FheEngine};
use crate::fhe::keys::{ClientKey, ServerKey};
use crate::fhe::{expand_inputs, pack_outputs};
use crate::noise::{CircuitNoise, LookupKind, MODULUS};

/// What one lookup batch (one `Tlu` instruction, or one tree level of a `MaxPool`) measured.
/// Noise figures are on the normalised torus (1 = the whole ciphertext modulus).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LookupTrace {
    /// Index of the instruction in the program.
    pub instruction: usize,
    pub op: &'static str,
    /// Tree level of a `MaxPool` comparison batch (`None` for `Tlu`).
    pub level: Option<usize>,
    /// Shape of the looked-up tensor (`[comparisons]` for a `MaxPool` level).
    pub shape: Vec<usize>,
    pub precision: u32,
    /// Low bits dropped before the lookup and whether exactly.
    pub shift: u32,
    pub exact: bool,
    /// Noise factor of the input (units of one bootstrap output's variance).
    pub noise_factor: f64,
    pub elements: usize,
    /// Elements whose input already differed from the clear value (an earlier failure);
    /// left out of the noise statistics below.
    pub inputs_wrong: usize,
    pub input_std_predicted: f64,
    pub input_std_measured: f64,
    pub rotation_std_predicted: f64,
    pub rotation_std_measured: f64,
    pub rotation_max_abs: f64,
    /// Half a box: the rotation noise that makes the lookup read a neighbour.
    pub half_box: f64,
    /// Bits of margin of the worst element: `log2(room / |noise|)` minimised over the
    /// elements, `room` the distance from the element's noiseless position to the edge of
    /// its box in the direction of its noise (half a box, except with approximate rounding,
    /// whose elements sit half an input unit off the box centre). How many times the noise
    /// could double before the lookup reads a neighbouring box.
    pub margin_bits: f64,
    /// `half_box / rotation_std_predicted` and the same for the measured std.
    pub margin_sigmas_predicted: f64,
    pub margin_sigmas_measured: f64,
    /// Elements whose rotation noise took them out of their box (read a wrong entry).
    pub rotation_out_of_box: usize,
    /// Bootstrap outputs that decrypt to another value than the clear table value (among
    /// elements whose input was right), and the model's failure probability per element.
    pub outputs_wrong: usize,
    pub p_fail_predicted: f64,
    pub output_std_predicted: f64,
    pub output_std_measured: f64,
}

/// The noise trace of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoiseTrace {
    pub params: String,
    pub lookups: Vec<LookupTrace>,
    /// Circuit outputs (integers) that decrypt to another value than the clear execution.
    pub output_elements: usize,
    pub output_elements_wrong: usize,
}

/// Per-element measurements, summed over a batch.
#[derive(Clone, Copy)]
struct Sums {
    measured: usize,
    inputs_wrong: usize,
    input_sq: f64,
    rotation_sq: f64,
    rotation_max: f64,
    /// Smallest (distance to the box edge in the noise's direction) / |noise|.
    margin_ratio: f64,
    out_of_box: usize,
    outputs_wrong: usize,
    output_sq: f64,
    outputs_right: usize,
}

impl Default for Sums {
    fn default() -> Self {
        Sums {
            measured: 0,
            inputs_wrong: 0,
            input_sq: 0.0,
            rotation_sq: 0.0,
            rotation_max: 0.0,
            margin_ratio: f64::INFINITY,
            out_of_box: 0,
            outputs_wrong: 0,
            output_sq: 0.0,
            outputs_right: 0,
        }
    }
}

impl Sums {
    fn merge(mut self, o: Sums) -> Sums {
        self.measured += o.measured;
        self.inputs_wrong += o.inputs_wrong;
        self.input_sq += o.input_sq;
        self.rotation_sq += o.rotation_sq;
        self.rotation_max = self.rotation_max.max(o.rotation_max);
        self.margin_ratio = self.margin_ratio.min(o.margin_ratio);
        self.out_of_box += o.out_of_box;
        self.outputs_wrong += o.outputs_wrong;
        self.output_sq += o.output_sq;
        self.outputs_right += o.outputs_right;
        self
    }
}

/// Which instruction is running and how many lookup batches it issued so far.
struct Cursor {
    instruction: usize,
    op: &'static str,
    batches: usize,
}

/// An [`Engine`] on (ciphertext, clear value) pairs: linear operations run on both, lookups
/// run on the ciphertexts with a [`FheEngine`] and are measured against the clear values.
pub struct TraceEngine<'a> {
    fhe: FheEngine<'a>,
    client: &'a ClientKey,
    model: CircuitNoise,
    cursor: Mutex<Cursor>,
    records: Mutex<Vec<LookupTrace>>,
}

/// Signed difference `a - b` of two torus values, as a fraction of the torus.
fn torus_diff(a: u64, b: u64) -> f64 {
    a.wrapping_sub(b) as i64 as f64 / MODULUS
}

impl<'a> TraceEngine<'a> {
    /// A trace of `program`'s lookups (their noise model depends on which sets they use).
    pub fn new(
        server_key: &'a ServerKey,
        client: &'a ClientKey,
        program: &crate::Program,
    ) -> Result<Self, RuntimeError> {
        Ok(TraceEngine {
            fhe: FheEngine::new(server_key),
            client,
            model: CircuitNoise::for_program(&server_key.params, program)?,
            cursor: Mutex::new(Cursor {
                instruction: 0,
                op: "",
                batches: 0,
            }),
            records: Mutex::new(Vec::new()),
        })
    }

    fn begin(&self, instruction: usize, ins: &Instruction) {
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        *c = Cursor {
            instruction,
            op: ins.name(),
            batches: 0,
        };
    }

    /// Phase of a ciphertext keyswitched and modulus-switched in parameter set `set`, under
    /// that set's small key, in units of `1/(2N)` of the torus.
    fn switched_phase(&self, set: usize, x: &Ct) -> Result<u64, RuntimeError> {
        let (mask, body) = self.fhe.switched(set, x)?;
        let key = self
            .client
            .small_lwe
            .get(set)
            .map_or(&[][..], |k| k.as_ref());
        let dot = mask
            .iter()
            .zip(key)
            .fold(0u64, |acc, (&a, &s)| acc.wrapping_add(a.wrapping_mul(s)));
        let two_n = 2 * self.fhe.server_key().set(set)?.params.polynomial_size as u64;
        Ok(body.wrapping_sub(dot) & (two_n - 1))
    }

    /// Measures one element: `input` the operand, `fed` what the final bootstrap read,
    /// `out` its output; `acc` and `clear_out` the clear input and table value.
    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        lut: &Lut,
        input: &Ct,
        fed: &Ct,
        out: &Ct,
        acc: i64,
        clear_out: i64,
        output_delta_log2: u32,
        two_n: f64,
    ) -> Sums {
        let big = self.client.big_lwe();
        let d_in = lut.input_delta_log2();
        let in_phase = decrypt_lwe_ciphertext(&big, input).0;
        let in_noise = torus_diff(in_phase, encode(acc, d_in));
        if in_noise.abs() >= 2f64.powi(d_in as i32 - 1) / MODULUS {
            return Sums {
                inputs_wrong: 1,
                ..Sums::default()
            };
        }
        let expected = expected_bootstrap_input(lut, acc).unwrap_or(0);
        // Where the element sits in the box of its clear table index: the centre, except
        // with approximate rounding (half an input unit off it, see fhe/engine.rs).
        let index = lut.index(acc).unwrap_or(0) as i64;
        let off = torus_diff(expected, encode(index, 63 - lut.precision));
        // The centered switch subtracts half a unit of 2N (see fhe/engine.rs).
        let centre = expected as f64 / MODULUS * two_n - 0.5;
        let Ok(phase) = self.switched_phase(lut.sets.table, fed) else {
            return Sums::default();
        };
        let phase = phase as f64;
        let rotation = ((phase - centre + two_n / 2.0).rem_euclid(two_n) - two_n / 2.0) / two_n;
        let half_box = 2f64.powi(-(lut.precision as i32 + 2));
        let room = if rotation >= 0.0 {
            half_box - off
        } else {
            half_box + off
        };
        let out_phase = decrypt_lwe_ciphertext(&big, out).0;
        let out_noise = torus_diff(out_phase, encode(clear_out, output_delta_log2));
        let out_half = 2f64.powi(output_delta_log2.min(64) as i32 - 1) / MODULUS;
        let wrong = out_noise.abs() >= out_half;
        Sums {
            measured: 1,
            inputs_wrong: 0,
            input_sq: in_noise * in_noise,
            rotation_sq: rotation * rotation,
            rotation_max: rotation.abs(),
            margin_ratio: room / rotation.abs(),
            out_of_box: usize::from(rotation.abs() >= room),
            outputs_wrong: usize::from(wrong),
            output_sq: if wrong { 0.0 } else { out_noise * out_noise },
            outputs_right: usize::from(!wrong),
        }
    }

    /// The records so far.
    pub fn records(&self) -> Vec<LookupTrace> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Engine for TraceEngine<'_> {
    type Ct = (Ct, i64);

    fn trivial(&self, value: i64, delta_log2: u32) -> Self::Ct {
        (self.fhe.trivial(value, delta_log2), value)
    }

    fn add_assign(&self, acc: &mut Self::Ct, x: &Self::Ct) {
        self.fhe.add_assign(&mut acc.0, &x.0);
        ClearEngine.add_assign(&mut acc.1, &x.1);
    }

    fn sub_assign(&self, acc: &mut Self::Ct, x: &Self::Ct) {
        self.fhe.sub_assign(&mut acc.0, &x.0);
        ClearEngine.sub_assign(&mut acc.1, &x.1);
    }

    fn mul_add_assign(&self, acc: &mut Self::Ct, x: &Self::Ct, weight: i64) {
        self.fhe.mul_add_assign(&mut acc.0, &x.0, weight);
        ClearEngine.mul_add_assign(&mut acc.1, &x.1, weight);
    }

    fn mul_assign(&self, x: &mut Self::Ct, weight: i64) {
        self.fhe.mul_assign(&mut x.0, weight);
        ClearEngine.mul_assign(&mut x.1, weight);
    }

    fn add_const_assign(&self, x: &mut Self::Ct, constant: i64, delta_log2: u32) {
        self.fhe.add_const_assign(&mut x.0, constant, delta_log2);
        ClearEngine.add_const_assign(&mut x.1, constant, delta_log2);
    }

    fn rescale(&self, x: &mut Self::Ct, shift: u32) {
        self.fhe.rescale(&mut x.0, shift);
    }

    fn lookup(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&Self::Ct],
        tables: &[usize],
    ) -> Result<Vec<Self::Ct>, RuntimeError> {
        let clear_in: Vec<i64> = inputs.iter().map(|p| p.1).collect();
        let clear_refs: Vec<&i64> = clear_in.iter().collect();
        let clear_out = ClearEngine.lookup(lut, input, output_delta_log2, &clear_refs, tables)?;
        let cts: Vec<&Ct> = inputs.iter().map(|p| &p.0).collect();
        let (outs, fed) = self
            .fhe
            .lookup_with_inputs(lut, output_delta_log2, &cts, tables)?;
        let table_set = self.fhe.server_key().set(lut.sets.table)?;
        let two_n = 2.0 * table_set.params.polynomial_size as f64;
        let sums = (0..outs.len())
            .into_par_iter()
            .map(|i| {
                self.measure(
                    lut,
                    cts[i],
                    &fed[i],
                    &outs[i],
                    clear_in[i],
                    clear_out[i],
                    output_delta_log2,
                    two_n,
                )
            })
            .reduce(Sums::default, Sums::merge);

        let kind = LookupKind::of(lut);
        let alpha = input.noise_factor;
        let bootstraps = self.model.bootstraps(kind, alpha, lut.sets)?;
        let table_model = self.model.set(lut.sets.table)?;
        let half_box = 2f64.powi(-(lut.precision as i32 + 2));
        let rms = |sq: f64, n: usize| {
            if n == 0 {
                f64::NAN
            } else {
                (sq / n as f64).sqrt()
            }
        };
        let rotation_std_predicted = bootstraps.last().map_or(f64::NAN, |b| b.variance.sqrt());
        let rotation_std_measured = rms(sums.rotation_sq, sums.measured);
        let (instruction, op, level) = {
            let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            let level = (c.op == "MaxPool").then_some(c.batches);
            c.batches += 1;
            (c.instruction, c.op, level)
        };
        let record = LookupTrace {
            instruction,
            op,
            level,
            shape: input.shape.clone(),
            precision: lut.precision,
            shift: kind.shift,
            exact: kind.exact,
            noise_factor: alpha,
            elements: outs.len(),
            inputs_wrong: sums.inputs_wrong,
            input_std_predicted: (alpha * self.model.unit).sqrt(),
            input_std_measured: rms(sums.input_sq, sums.measured),
            rotation_std_predicted,
            rotation_std_measured,
            rotation_max_abs: sums.rotation_max,
            half_box,
            margin_bits: sums.margin_ratio.log2(),
            margin_sigmas_predicted: half_box / rotation_std_predicted,
            margin_sigmas_measured: half_box / rotation_std_measured,
            rotation_out_of_box: sums.out_of_box,
            outputs_wrong: sums.outputs_wrong,
            p_fail_predicted: self
                .model
                .element_failure_probability(kind, alpha, lut.sets)?,
            output_std_predicted: table_model.var_pbs.sqrt(),
            output_std_measured: rms(sums.output_sq, sums.outputs_right),
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        Ok(outs.into_iter().zip(clear_out).collect())
    }
}

/// Runs `circuit` on `inputs` like [`crate::fhe::run`] and traces the noise of every lookup.
///
/// The clear reference is the decryption of the inputs themselves, so no plaintext input is
/// needed. **Needs the client key: for debugging on the key owner's machine only.** Returns
/// the output ciphertexts (identical in distribution to those of an untraced run) and the
/// trace.
pub fn run_traced(
    circuit: &Circuit,
    server_key: &ServerKey,
    client: &ClientKey,
    inputs: &EncryptedTensors,
) -> Result<(EncryptedTensors, NoiseTrace), RuntimeError> {
    if client.key_id != server_key.key_id {
        return Err(RuntimeError::Mismatch(
            "the client key and the server key are not a key pair (different key ids)".into(),
        ));
    }
    client.check_circuit_params(&circuit.params)?;
    let program = &circuit.program;
    let arrays = expand_inputs(circuit, server_key, inputs)?;
    let mut paired = Vec::with_capacity(arrays.len());
    for (k, a) in arrays.into_iter().enumerate() {
        let d = program
            .instructions
            .iter()
            .position(|ins| matches!(ins, Instruction::Input { index } if *index == k))
            .map_or(0, |v| program.values[v].delta_log2);
        let shape = a.shape().to_vec();
        let data: Vec<(Ct, i64)> = a
            .into_iter()
            .map(|c| {
                let v = client.decrypt_raw(&c, d).0;
                (c, v)
            })
            .collect();
        paired.push(
            ArrayD::from_shape_vec(IxDyn(&shape), data)
                .map_err(|e| RuntimeError::Mismatch(e.to_string()))?,
        );
    }
    let engine = TraceEngine::new(server_key, client, program)?;
    let outputs = execute_observed(program, &engine, paired, |i, ins| engine.begin(i, ins))?;

    let mut output_elements = 0;
    let mut output_elements_wrong = 0;
    let mut cts = Vec::with_capacity(outputs.len());
    for (a, spec) in outputs.into_iter().zip(&program.outputs) {
        let info = &program.values[spec.value];
        let shape = a.shape().to_vec();
        let mut data = Vec::with_capacity(a.len());
        for (c, v) in a {
            output_elements += 1;
            let phase = decrypt_lwe_ciphertext(&client.big_lwe(), &c).0;
            let half = 2f64.powi(info.delta_log2.min(64) as i32 - 1) / MODULUS;
            if torus_diff(phase, encode(v, info.delta_log2)).abs() >= half {
                output_elements_wrong += 1;
            }
            data.push(c);
        }
        cts.push(
            ArrayD::from_shape_vec(IxDyn(&shape), data)
                .map_err(|e| RuntimeError::Mismatch(e.to_string()))?,
        );
    }
    let encrypted = pack_outputs(circuit, server_key, cts.iter());
    Ok((
        encrypted,
        NoiseTrace {
            params: circuit.params.to_string(),
            lookups: engine.records(),
            output_elements,
            output_elements_wrong,
        },
    ))
}

impl NoiseTrace {
    /// Elements of every lookup whose bootstrap output differed from the clear value.
    pub fn lookups_wrong(&self) -> usize {
        self.lookups.iter().map(|l| l.outputs_wrong).sum()
    }

    /// The trace as a text table, one row per lookup batch; noise as `log2` of the torus.
    pub fn table(&self) -> String {
        let lg = |x: f64| {
            if x > 0.0 && x.is_finite() {
                format!("{:.2}", x.log2())
            } else if x == 0.0 {
                "-inf".into()
            } else {
                "n/a".into()
            }
        };
        let header = [
            "instr",
            "op",
            "shape",
            "bits",
            "elems",
            "in std pred",
            "in std meas",
            "rot std pred",
            "rot std meas",
            "max|noise|",
            "half box",
            "margin bits",
            "sigmas pred",
            "sigmas meas",
            "p_fail pred",
            "wrong in/out",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for l in &self.lookups {
            let op = match l.level {
                Some(lv) => format!("{}[{lv}]", l.op),
                None => l.op.to_string(),
            };
            let bits = match (l.shift, l.exact) {
                (0, _) => format!("{}", l.precision),
                (s, true) => format!("{}+{s}e", l.precision),
                (s, false) => format!("{}+{s}a", l.precision),
            };
            rows.push(vec![
                l.instruction.to_string(),
                op,
                format!("{:?}", l.shape),
                bits,
                l.elements.to_string(),
                lg(l.input_std_predicted),
                lg(l.input_std_measured),
                lg(l.rotation_std_predicted),
                lg(l.rotation_std_measured),
                lg(l.rotation_max_abs),
                lg(l.half_box),
                format!("{:.2}", l.margin_bits),
                format!("{:.1}", l.margin_sigmas_predicted),
                format!("{:.1}", l.margin_sigmas_measured),
                format!("{:.2e}", l.p_fail_predicted),
                format!("{}/{}", l.inputs_wrong, l.outputs_wrong),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let mut s = format!(
            "noise trace (decrypted with the client key; params {}; noise as log2 of the torus)\n",
            self.params
        );
        for r in &rows {
            s.push(' ');
            for (c, cell) in r.iter().enumerate() {
                // Text columns left-aligned, numbers right-aligned.
                if c == 1 || c == 2 {
                    s.push_str(&format!(" {cell:<w$}", w = widths[c]));
                } else {
                    s.push_str(&format!(" {cell:>w$}", w = widths[c]));
                }
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "  {} lookup output(s) decrypted to another value than the clear execution; {} of {} circuit output integers differ\n",
            self.lookups_wrong(),
            self.output_elements_wrong,
            self.output_elements
        ));
        s
    }
}
