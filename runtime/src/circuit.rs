//! The compiled circuit: what the backend emits and every engine (clear, simulated, FHE)
//! executes.
//!
//! A [`Program`] is a list of tensor instructions in execution order; instruction `i` defines
//! value `i`, described by `values[i]` (shape, guaranteed integer range, encoding, noise).
//! Linear instructions use cleartext integer weights; [`Instruction::Tlu`] is the only place a
//! programmable bootstrap happens (plus the comparisons inside [`Instruction::MaxPool`]).
//!
//! Encoding: value `v` of a tensor with `delta_log2 = d` is encrypted as `v * 2^d mod 2^64`.
//! Every operand of a linear instruction has the delta of its result; a table lookup fixes
//! the delta of its input (`63 - precision - shift`, one padding bit) and may write its output
//! at any delta, chosen by its consumers.

use fhec_kernels::quant::negacyclic_read;
pub use fhec_kernels::quant::{QParams, Rounding, RoundingMode};
use serde::{Deserialize, Serialize};

use crate::params::ParamSets;

/// Index of a value (the result of the instruction with the same index).
pub type ValueId = usize;

/// A circuit: the program, the parameters chosen for it and what the compiler predicted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    pub program: Program,
    /// The parameter sets; each lookup names the sets its bootstraps use ([`Lut::sets`]).
    pub params: ParamSets,
    pub prediction: Prediction,
    /// Steps the client applies to decrypted outputs (e.g. a softmax split off the model:
    /// monotone, so predictions do not need it, and far too costly under FHE).
    #[serde(default)]
    pub postprocessing: Vec<ClientOp>,
}

impl Circuit {
    /// Checks that every lookup names parameter sets the circuit has, and that each table
    /// fits its set's polynomial (`N >= 2^(precision + 1)`).
    pub fn check_lookup_sets(&self) -> Result<(), crate::RuntimeError> {
        for (i, instruction) in self.program.instructions.iter().enumerate() {
            let lut = match instruction {
                Instruction::Tlu { lut, .. } => lut,
                Instruction::MaxPool { relu, .. } => relu,
                _ => continue,
            };
            let invalid = |message: String| crate::RuntimeError::InvalidCircuit {
                instruction: i,
                op: instruction.name(),
                message,
            };
            let table = self
                .params
                .get(lut.sets.table)
                .map_err(|e| invalid(e.to_string()))?;
            if lut.rounds_exactly() {
                self.params
                    .get(lut.sets.bits)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            if (table.polynomial_size as u64) < 2u64 << lut.precision.min(62) {
                return Err(invalid(format!(
                    "a {}-bit table needs a polynomial size of at least 2^{}, its parameter set \
                     {} has {}",
                    lut.precision,
                    lut.precision + 1,
                    lut.sets.table,
                    table.polynomial_size
                )));
            }
        }
        Ok(())
    }
}

/// One client-side step on decrypted, dequantised output number `output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientOp {
    pub output: usize,
    pub step: ClientStep,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientStep {
    Softmax { axis: usize },
    Reshape { shape: Vec<usize> },
    Transpose { perm: Vec<usize> },
}

/// What the compiler predicts for one inference with [`Circuit::params`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Programmable bootstraps per inference (table lookups, max-pool comparisons and the
    /// bit extractions of exact rounding).
    pub pbs_count: u64,
    /// Largest failure probability of one bootstrap.
    pub p_error_per_pbs: f64,
    /// Probability that at least one bootstrap of an inference fails.
    pub global_p_error: f64,
    /// Predicted single-thread latency of one KS+PBS averaged over the bootstraps of an
    /// inference, seconds.
    pub pbs_latency_s: f64,
    /// Predicted latency of one inference on `threads` threads, seconds.
    pub latency_s: f64,
    pub threads: usize,
    /// Bootstraps per inference in each parameter set (index = set).
    pub pbs_per_set: Vec<u64>,
    /// Predicted single-thread latency of one KS+PBS in each set, seconds.
    pub pbs_latency_per_set_s: Vec<f64>,
    /// Size of the expanded server key (every set's Fourier bootstrap key and keyswitch key).
    pub server_key_bytes: u64,
}

/// The instructions of a circuit and the facts about each value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    /// `values[i]` describes the result of `instructions[i]`.
    pub values: Vec<ValueInfo>,
    pub instructions: Vec<Instruction>,
}

/// A circuit input: a real tensor the client quantises and encrypts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub quantization: QParams,
}

/// `q = clamp(round_half_even(x / scale) + zero_point)` on the client; `x ≈ scale * (q - zero_point)`.
/// A circuit output: an integer tensor the client decrypts and dequantises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub value: ValueId,
    /// Real output = `scale * (q - zero_point)`, times `channel_scales[c]` along axis 1
    /// when not empty (a last layer with per-channel weight scales).
    pub scale: f32,
    pub zero_point: i64,
    pub channel_scales: Vec<f32>,
}

impl OutputSpec {
    /// The real values of output integers `q`.
    pub fn dequantize(&self, q: &ndarray::ArrayD<i64>) -> ndarray::ArrayD<f32> {
        let mut out = q.mapv(|v| self.scale * v.wrapping_sub(self.zero_point) as f32);
        for (c, &s) in self.channel_scales.iter().enumerate() {
            out.index_axis_mut(ndarray::Axis(1), c)
                .mapv_inplace(|v| v * s);
        }
        out
    }
}

/// Facts about one value, fixed at compile time.
///
/// Noise factors count in units of the circuit's largest bootstrap output variance (over its
/// parameter sets): an upper bound on the noise of every value, whichever sets made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueInfo {
    pub shape: Vec<usize>,
    /// Guaranteed inclusive range of every element (interval analysis over the program).
    pub min: i64,
    pub max: i64,
    /// Elements are encrypted as `v * 2^delta_log2`.
    pub delta_log2: u32,
    /// Noise variance of an element, in units of the largest variance of a fresh bootstrap
    /// output (fresh encryptions count as 1): the squared 2-norm of the weights that fed it.
    pub noise_factor: f64,
}

impl ValueInfo {
    /// What decrypting an element holding `v` gives: the ciphertext keeps `v` modulo
    /// `2^(64 - delta_log2)`, and decryption reads it into `[min, min + 2^(64 - delta_log2))`.
    /// `v` itself when it lies inside the guaranteed range; otherwise (only downstream of a
    /// lookup read outside its table's domain) the wrapped value an encrypted run returns.
    pub fn decoded(&self, v: i64) -> i64 {
        let width = 64u32.saturating_sub(self.delta_log2);
        if width >= 63 {
            return v;
        }
        self.min
            .wrapping_add(v.wrapping_sub(self.min).rem_euclid(1i64 << width))
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tensor instruction. Weights and constants are cleartext integers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Instruction {
    /// Circuit input number `index` (a ciphertext tensor from the client).
    Input {
        index: usize,
    },
    /// `y[.., o] = bias[o] + sum_i weights[o * in_features + i] * x[.., i]` over the last axis.
    Dense {
        input: ValueId,
        weights: Vec<i64>,
        in_features: usize,
        out_features: usize,
        bias: Vec<i64>,
    },
    /// N-C-spatial convolution; `weight_shape = [C_out, C_in / group, kernel...]`, weights
    /// row-major; `bias` has `C_out` entries.
    Conv {
        input: ValueId,
        weights: Vec<i64>,
        weight_shape: Vec<usize>,
        bias: Vec<i64>,
        window: Window,
        group: usize,
    },
    /// Sum over each window (average pooling before its division, which a table absorbs).
    SumPool {
        input: ValueId,
        window: Window,
    },
    /// Max over each window as a tree of `max(a, b) = a + relu(b - a)`; `relu` is the table
    /// on `b - a` (its input delta is this instruction's delta).
    MaxPool {
        input: ValueId,
        window: Window,
        relu: Lut,
    },
    /// Element-wise sum or difference of two tensors of the same shape.
    Add {
        a: ValueId,
        b: ValueId,
    },
    Sub {
        a: ValueId,
        b: ValueId,
    },
    /// `x + c` / `x * c` with `c` broadcast (numpy rules) to the input's shape.
    AddConst {
        input: ValueId,
        constant: IntTensor,
    },
    MulConst {
        input: ValueId,
        constant: IntTensor,
    },
    /// Same elements in row-major order, new shape (`values[self].shape`).
    Reshape {
        input: ValueId,
    },
    Transpose {
        input: ValueId,
        perm: Vec<usize>,
    },
    /// Constant padding; `pads[axis] = (before, after)`.
    Pad {
        input: ValueId,
        pads: Vec<(usize, usize)>,
        value: i64,
    },
    Concat {
        inputs: Vec<ValueId>,
        axis: usize,
    },
    /// Same values, encoding delta multiplied by `2^shift` (so a consumer sees its delta).
    Rescale {
        input: ValueId,
        shift: u32,
    },
    /// Element-wise table lookup (one programmable bootstrap per element).
    Tlu {
        input: ValueId,
        lut: Lut,
    },
}

impl Instruction {
    /// The values this instruction reads.
    pub fn operands(&self) -> Vec<ValueId> {
        use Instruction::*;
        match self {
            Input { .. } => vec![],
            Dense { input, .. }
            | Conv { input, .. }
            | SumPool { input, .. }
            | MaxPool { input, .. }
            | AddConst { input, .. }
            | MulConst { input, .. }
            | Reshape { input }
            | Transpose { input, .. }
            | Pad { input, .. }
            | Rescale { input, .. }
            | Tlu { input, .. } => vec![*input],
            Add { a, b } | Sub { a, b } => vec![*a, *b],
            Concat { inputs, .. } => inputs.clone(),
        }
    }

    /// The values this instruction reads, to rewrite them (renumbering).
    pub fn operands_mut(&mut self) -> Vec<&mut ValueId> {
        use Instruction::*;
        match self {
            Input { .. } => vec![],
            Dense { input, .. }
            | Conv { input, .. }
            | SumPool { input, .. }
            | MaxPool { input, .. }
            | AddConst { input, .. }
            | MulConst { input, .. }
            | Reshape { input }
            | Transpose { input, .. }
            | Pad { input, .. }
            | Rescale { input, .. }
            | Tlu { input, .. } => vec![input],
            Add { a, b } | Sub { a, b } => vec![a, b],
            Concat { inputs, .. } => inputs.iter_mut().collect(),
        }
    }

    /// Short name for reports and errors.
    pub fn name(&self) -> &'static str {
        use Instruction::*;
        match self {
            Input { .. } => "Input",
            Dense { .. } => "Dense",
            Conv { .. } => "Conv",
            SumPool { .. } => "SumPool",
            MaxPool { .. } => "MaxPool",
            Add { .. } => "Add",
            Sub { .. } => "Sub",
            AddConst { .. } => "AddConst",
            MulConst { .. } => "MulConst",
            Reshape { .. } => "Reshape",
            Transpose { .. } => "Transpose",
            Pad { .. } => "Pad",
            Concat { .. } => "Concat",
            Rescale { .. } => "Rescale",
            Tlu { .. } => "Tlu",
        }
    }
}

/// A small integer tensor (row-major data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub data: Vec<i64>,
}

/// A sliding window over the spatial axes of an N-C-spatial tensor; one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// (begin, end) padding per spatial axis; padded positions contribute nothing.
    pub pads: Vec<(usize, usize)>,
}

/// An element-wise table lookup on an integer accumulator.
///
/// `index(acc) = floor((acc - input_min + 2^(shift-1)) / 2^shift)` (just `acc - input_min`
/// without rounding); `out = tables[t][index]` where `t` is the element's index along `axis`
/// (or 0 when `axis` is `None`). The bootstrap reads `precision` bits: every table has at
/// most `2^precision` entries, and its input is encoded with delta `2^(63 - precision - shift)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lut {
    pub input_min: i64,
    pub precision: u32,
    pub rounding: Option<Rounding>,
    pub tables: Vec<Vec<i64>>,
    pub axis: Option<usize>,
    /// The parameter sets its bootstraps use (set by the parameter optimizer).
    pub sets: LookupSets,
}

/// Which parameter sets ([`Circuit::params`]) the bootstraps of one lookup use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LookupSets {
    /// The table lookup itself (and every comparison of a max-pool).
    pub table: usize,
    /// The bit extractions of exact rounding.
    pub bits: usize,
}

impl Lut {
    /// Low bits dropped before the lookup (0 without rounding).
    pub fn shift(&self) -> u32 {
        self.rounding.map_or(0, |r| r.shift)
    }

    /// Delta the input must be encoded with: the whole (rounded) domain fills the 63 bits
    /// below the padding bit.
    pub fn input_delta_log2(&self) -> u32 {
        63 - self.precision - self.shift()
    }

    /// Table index of an accumulator value; `None` outside the domain.
    pub fn index(&self, acc: i64) -> Option<usize> {
        fhec_kernels::quant::table_index(acc, self.input_min, self.shift())
            .filter(|&i| i < (1usize << self.precision))
    }

    /// Looks `acc` up in table `table`; `None` outside the domain.
    pub fn lookup(&self, table: usize, acc: i64) -> Option<i64> {
        self.tables.get(table)?.get(self.index(acc)?).copied()
    }

    /// What the bootstrap returns for `acc` with table `table`, inside its domain or not:
    /// the rounded offset `index` is read modulo `2^(precision+1)`; `[0, 2^precision)` gives
    /// `table[index]` (0 past the table's end), `[2^precision, 2^(precision+1))` gives
    /// `-table[index - 2^precision]` (the padding bit wraps negacyclically). Inside the domain
    /// this is [`Lut::lookup`]. Tables that span the calibration-observed range rather than
    /// the worst case rely on it. The rule is `fhec_kernels::quant::negacyclic_read`, which
    /// the compiler's integer interpreter uses too. `None` only when `table` does not exist.
    pub fn read(&self, table: usize, acc: i64) -> Option<i64> {
        let table = self.tables.get(table)?;
        let offset = acc.wrapping_sub(self.input_min);
        Some(negacyclic_read(table, self.precision, self.shift(), offset))
    }

    /// Whether bit extractions (exact rounding of at least one bit) precede the table read.
    pub fn rounds_exactly(&self) -> bool {
        self.rounding.is_some_and(|r| r.is_exact() && r.shift > 0)
    }

    /// Bootstraps one lookup costs per element: one, plus one per dropped bit when exact.
    pub fn pbs_per_element(&self) -> u64 {
        match self.rounding {
            Some(r) if r.is_exact() => 1 + r.shift as u64,
            _ => 1,
        }
    }
}
