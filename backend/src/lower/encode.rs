//! Encoding deltas, `Rescale` insertion, noise factors and the final numbering.
//!
//! Deltas are requirements flowing backwards: a table lookup needs its input at
//! `lut.input_delta_log2()`, a `MaxPool` computes at its comparison table's delta, an output
//! takes the smallest delta its range allows (most room for noise), and a linear
//! instruction needs its operands at its own delta. A value takes the smallest delta any of
//! its uses needs; uses that need a larger one read it through a `Rescale` (raising a delta
//! is a cleartext multiplication, lowering one is impossible).

use std::collections::{BTreeSet, HashMap};

use fhec_ir::NodeId;
use fhec_runtime::circuit::{Instruction, OutputSpec, Program, ValueId, ValueInfo};

use super::build::{bits_for_entries, Pre};
use super::LowerError;

/// The result of encoding: a program, or the max-poolings whose consumers need a smaller
/// delta than they compute at (to be expanded and lowered again).
pub(super) enum Encoded {
    Done(Program),
    ExpandMaxPools(Vec<NodeId>),
}

pub(super) fn encode(pre: &Pre) -> Result<Encoded, LowerError> {
    let uses = uses(pre);
    let Deltas {
        delta,
        required,
        conflicts,
    } = deltas(pre, &uses)?;
    if !conflicts.is_empty() {
        return Ok(Encoded::ExpandMaxPools(conflicts));
    }
    check_max_pool_inputs(pre)?;
    let Numbered {
        instructions,
        values,
        id,
    } = number(pre, &delta, &required)?;
    let mut outputs = vec![];
    for o in &pre.outputs {
        let value = id[&(o.value, output_delta(pre, o.value)?)];
        outputs.push(OutputSpec {
            name: o.name.clone(),
            value,
            scale: o.scale,
            zero_point: o.zero_point,
            channel_scales: o.channel_scales.clone(),
        });
    }
    Ok(Encoded::Done(Program {
        inputs: pre.inputs.clone(),
        outputs,
        values,
        instructions,
    }))
}

/// A range error on the node value `v` comes from.
fn range_error(pre: &Pre, v: usize, message: String) -> LowerError {
    LowerError::Range {
        node: pre.infos[v].node.clone(),
        op: pre.infos[v].op,
        message,
    }
}

/// Delta of output value `v`: the smallest its range allows (most room for noise).
fn output_delta(pre: &Pre, v: usize) -> Result<u32, LowerError> {
    let info = &pre.infos[v];
    let entries = (info.max as i128 - info.min as i128 + 1) as u128;
    let bits = bits_for_entries(entries);
    if bits > 62 {
        return Err(range_error(
            pre,
            v,
            format!(
                "output range [{}, {}] needs {bits} bits, more than the 62 an encoding holds",
                info.min, info.max
            ),
        ));
    }
    Ok(63 - bits)
}

/// Uses of every value: (consumer, or None for a graph output).
fn uses(pre: &Pre) -> Vec<Vec<Option<usize>>> {
    let mut uses: Vec<Vec<Option<usize>>> = vec![vec![]; pre.instrs.len()];
    for (c, instr) in pre.instrs.iter().enumerate() {
        let mut ops = instr.operands();
        ops.dedup();
        for v in ops {
            uses[v].push(Some(c));
        }
    }
    for o in &pre.outputs {
        uses[o.value].push(None);
    }
    uses
}

/// What [`deltas`] decides, per value.
struct Deltas {
    /// The delta each value is computed at.
    delta: Vec<u32>,
    /// The deltas its uses need (larger ones are read through a `Rescale`).
    required: Vec<BTreeSet<u32>>,
    /// Max-poolings computing at a larger delta than a use of theirs needs.
    conflicts: Vec<NodeId>,
}

/// Propagates the deltas uses need backwards: every consumer comes after its operands.
fn deltas(pre: &Pre, uses: &[Vec<Option<usize>>]) -> Result<Deltas, LowerError> {
    let n = pre.instrs.len();
    let mut delta = vec![0u32; n];
    let mut conflicts = vec![];
    let mut required: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); n];
    for v in (0..n).rev() {
        for u in &uses[v] {
            let r = match u {
                Some(c) => operand_delta(&pre.instrs[*c], delta[*c]),
                None => output_delta(pre, v)?,
            };
            required[v].insert(r);
        }
        let smallest = match required[v].first() {
            Some(&d) => d,
            None => output_delta(pre, v)?,
        };
        delta[v] = match &pre.instrs[v] {
            Instruction::MaxPool { relu, .. } => {
                let d = relu.input_delta_log2();
                if smallest < d {
                    conflicts.push(pre.infos[v].node_id);
                }
                d
            }
            _ => smallest,
        };
    }
    Ok(Deltas {
        delta,
        required,
        conflicts,
    })
}

/// Comparison inputs must fit the bits below their padding bit. (A table lookup's input
/// may not: a table narrower than its input's range reads the wrap outside its domain,
/// which every engine reproduces.)
fn check_max_pool_inputs(pre: &Pre) -> Result<(), LowerError> {
    for (c, instr) in pre.instrs.iter().enumerate() {
        if let Instruction::MaxPool { input, relu, .. } = instr {
            let (v, d) = (*input, relu.input_delta_log2());
            let span = pre.infos[v].max as i128 - pre.infos[v].min as i128;
            let lookup_span = 2 * span;
            if lookup_span >= 1i128 << (63 - d) {
                return Err(range_error(
                    pre,
                    c,
                    format!(
                        "input range [{}, {}] does not fit the {} bits below the padding bit",
                        pre.infos[v].min,
                        pre.infos[v].max,
                        63 - d
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The program's instructions and values, in their final numbering.
struct Numbered {
    instructions: Vec<Instruction>,
    values: Vec<ValueInfo>,
    /// The program value holding pre-value `v` at delta `d`, by `(v, d)`.
    id: HashMap<(usize, u32), ValueId>,
}

/// Final numbering: every value, then the rescaled copies its uses need.
fn number(pre: &Pre, delta: &[u32], required: &[BTreeSet<u32>]) -> Result<Numbered, LowerError> {
    let n = pre.instrs.len();
    let mut instructions: Vec<Instruction> = Vec::with_capacity(n);
    let mut values: Vec<ValueInfo> = Vec::with_capacity(n);
    let mut id: HashMap<(usize, u32), ValueId> = HashMap::new();
    for v in 0..n {
        let mut instr = pre.instrs[v].clone();
        let want = operand_delta(&instr, delta[v]);
        let mut missing = None;
        remap_operands(&mut instr, |x| match id.get(&(x, want)) {
            Some(&f) => f,
            None => {
                missing = Some(x);
                0
            }
        });
        if let Some(x) = missing {
            return Err(range_error(
                pre,
                v,
                format!(
                    "operand {x} has delta {} where {want} is needed (lowering bug)",
                    delta[x]
                ),
            ));
        }
        let info = &pre.infos[v];
        let noise = noise_factor(&instr, &values);
        let value = instructions.len();
        instructions.push(instr);
        values.push(ValueInfo {
            shape: info.shape.clone(),
            min: info.min,
            max: info.max,
            delta_log2: delta[v],
            noise_factor: noise,
        });
        id.insert((v, delta[v]), value);
        for &r in required[v].iter().filter(|&&r| r > delta[v]) {
            let rescale = Instruction::Rescale {
                input: value,
                shift: r - delta[v],
            };
            let noise = noise_factor(&rescale, &values);
            id.insert((v, r), instructions.len());
            instructions.push(rescale);
            values.push(ValueInfo {
                delta_log2: r,
                noise_factor: noise,
                ..values[value].clone()
            });
        }
    }
    Ok(Numbered {
        instructions,
        values,
        id,
    })
}

/// The delta an instruction needs its operands at, given its own.
fn operand_delta(instr: &Instruction, own: u32) -> u32 {
    match instr {
        Instruction::Tlu { lut, .. } => lut.input_delta_log2(),
        Instruction::MaxPool { relu, .. } => relu.input_delta_log2(),
        _ => own,
    }
}

fn remap_operands(instr: &mut Instruction, mut f: impl FnMut(ValueId) -> ValueId) {
    for operand in instr.operands_mut() {
        *operand = f(*operand);
    }
}

/// Noise variance of the value `instr` defines, in units of a fresh bootstrap's, from the
/// noise factors of its operands (already in `values`).
pub(super) fn noise_factor(instr: &Instruction, values: &[ValueInfo]) -> f64 {
    use Instruction::*;
    let alpha = |v: &ValueId| values[*v].noise_factor;
    let max_filter_norm = |weights: &[i64], per_filter: usize| {
        weights
            .chunks(per_filter.max(1))
            .map(|f| f.iter().map(|&w| (w as f64) * (w as f64)).sum::<f64>())
            .fold(0.0, f64::max)
    };
    match instr {
        Input { .. } | Tlu { .. } => 1.0,
        Dense {
            input,
            weights,
            in_features,
            ..
        } => alpha(input) * max_filter_norm(weights, *in_features),
        Conv {
            input,
            weights,
            weight_shape,
            ..
        } => alpha(input) * max_filter_norm(weights, weight_shape[1..].iter().product()),
        SumPool { input, window } => window.kernel.iter().product::<usize>() as f64 * alpha(input),
        MaxPool { input, window, .. } => {
            let k = window.kernel.iter().product::<usize>() as u128;
            alpha(input) + bits_for_entries(k) as f64
        }
        Add { a, b } | Sub { a, b } => alpha(a) + alpha(b),
        AddConst { input, .. }
        | Reshape { input }
        | Transpose { input, .. }
        | Pad { input, .. } => alpha(input),
        MulConst { input, constant } => {
            let c = constant
                .data
                .iter()
                .map(|c| c.unsigned_abs())
                .max()
                .unwrap_or(0) as f64;
            c * c * alpha(input)
        }
        Concat { inputs, .. } => inputs.iter().map(alpha).fold(0.0, f64::max),
        Rescale { input, shift } => 4f64.powi(*shift as i32) * alpha(input),
    }
}
