//! The program validator: the structural checks that make a loaded (possibly hostile) circuit
//! safe to execute. A program that passes [`Program::validate`] cannot make the executor
//! panic or allocate without bound.

use crate::circuit::{Instruction, IntTensor, Lut, Program, ValueInfo, Window};
use crate::error::RuntimeError;
use fhec_kernels::conv::{tap_range, window_out_len};
use ndarray::{ArrayViewD, IxDyn};

/// Largest number of elements of any tensor, weight vector or table set.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Largest number of multiply-adds (or window reads) one instruction may ask for.
const MAX_WORK: u128 = 1 << 40;

/// Largest delta exponent: an element is `v * 2^delta_log2` modulo `2^64`.
pub const MAX_DELTA_LOG2: u32 = 63;

impl Program {
    /// Structural checks: every operand refers to an earlier value, every shape is the one
    /// the instruction produces, weights, windows, axes and tables are consistent, deltas fit
    /// the encoding, and no tensor is absurdly large. A program that passes cannot make
    /// [`execute`] panic.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let err = |i: usize, op: &'static str, message: String| RuntimeError::InvalidCircuit {
            instruction: i,
            op,
            message,
        };
        if self.values.len() != self.instructions.len() {
            return Err(err(
                self.instructions.len(),
                "Program",
                format!(
                    "{} value descriptions for {} instructions",
                    self.values.len(),
                    self.instructions.len()
                ),
            ));
        }
        for (k, spec) in self.inputs.iter().enumerate() {
            let q = &spec.quantization;
            let bad = if q.bits == 0 || q.bits > 62 {
                Some(format!("{} quantisation bits (1..=62 allowed)", q.bits))
            } else if !q.scale.is_finite() || q.scale == 0.0 {
                Some(format!(
                    "quantisation scale {} is not finite and non-zero",
                    q.scale
                ))
            } else {
                elements(&spec.shape).err()
            };
            if let Some(m) = bad {
                return Err(err(k, "InputSpec", format!("input '{}': {m}", spec.name)));
            }
        }
        for (k, o) in self.outputs.iter().enumerate() {
            if o.value >= self.values.len() {
                return Err(err(
                    k,
                    "OutputSpec",
                    format!(
                        "output '{}' refers to value {} of {}",
                        o.name,
                        o.value,
                        self.values.len()
                    ),
                ));
            }
            if !o.scale.is_finite() || o.channel_scales.iter().any(|s| !s.is_finite()) {
                return Err(err(
                    k,
                    "OutputSpec",
                    format!("output '{}' has a scale that is not finite", o.name),
                ));
            }
            let shape = &self.values[o.value].shape;
            if !o.channel_scales.is_empty()
                && (shape.len() < 2 || shape[1] != o.channel_scales.len())
            {
                return Err(err(
                    k,
                    "OutputSpec",
                    format!(
                        "output '{}' has {} channel scales for shape {shape:?}",
                        o.name,
                        o.channel_scales.len()
                    ),
                ));
            }
        }
        for (i, ins) in self.instructions.iter().enumerate() {
            self.validate_instruction(i, ins)
                .map_err(|m| err(i, ins.name(), m))?;
        }
        Ok(())
    }

    fn validate_instruction(&self, i: usize, ins: &Instruction) -> Result<(), String> {
        let out = &self.values[i];
        elements(&out.shape)?;
        if out.delta_log2 > MAX_DELTA_LOG2 {
            return Err(format!("delta 2^{} exceeds 2^63", out.delta_log2));
        }
        if !out.noise_factor.is_finite() || out.noise_factor < 0.0 {
            return Err(format!("noise factor {} is not finite", out.noise_factor));
        }
        for v in ins.operands() {
            if v >= i {
                return Err(format!("operand %{v} is not an earlier value"));
            }
        }
        let c = Check { program: self, out };
        match ins {
            Instruction::Input { index } => c.input(*index),
            Instruction::Dense {
                input,
                weights,
                in_features,
                out_features,
                bias,
            } => c.dense(*input, weights, *in_features, *out_features, bias),
            Instruction::Conv {
                input,
                weights,
                weight_shape,
                bias,
                window,
                group,
            } => c.conv(*input, weights, weight_shape, bias, window, *group),
            Instruction::SumPool { input, window } => c.sum_pool(*input, window),
            Instruction::MaxPool {
                input,
                window,
                relu,
            } => c.max_pool(*input, window, relu),
            Instruction::Add { a, b } | Instruction::Sub { a, b } => c.add_sub(*a, *b),
            Instruction::AddConst { input, constant }
            | Instruction::MulConst { input, constant } => c.with_constant(*input, constant),
            Instruction::Reshape { input } => c.reshape(*input),
            Instruction::Transpose { input, perm } => c.transpose(*input, perm),
            Instruction::Pad { input, pads, .. } => c.pad(*input, pads),
            Instruction::Concat { inputs, axis } => c.concat(inputs, *axis),
            Instruction::Rescale { input, shift } => c.rescale(*input, *shift),
            Instruction::Tlu { input, lut } => c.tlu(*input, lut),
        }
    }
}

/// The checks of one instruction: the program it belongs to and the value it produces (whose
/// own shape, delta and noise [`Program::validate_instruction`] has checked). Each method
/// checks one instruction kind's operands, attributes and result shape.
struct Check<'a> {
    program: &'a Program,
    out: &'a ValueInfo,
}

impl Check<'_> {
    fn value(&self, v: usize) -> &ValueInfo {
        &self.program.values[v]
    }

    /// Operand `v` is encoded at the result's delta.
    fn same_delta(&self, v: usize) -> Result<(), String> {
        let d = self.value(v).delta_log2;
        if d != self.out.delta_log2 {
            return Err(format!(
                "operand %{v} has delta 2^{d}, the result 2^{}",
                self.out.delta_log2
            ));
        }
        Ok(())
    }

    /// The result has the shape the instruction produces.
    fn expect_shape(&self, expected: &[usize]) -> Result<(), String> {
        if expected != self.out.shape.as_slice() {
            return Err(format!(
                "result shape {:?} should be {expected:?}",
                self.out.shape
            ));
        }
        Ok(())
    }

    fn input(&self, index: usize) -> Result<(), String> {
        let inputs = &self.program.inputs;
        let spec = inputs
            .get(index)
            .ok_or_else(|| format!("input #{index} of {}", inputs.len()))?;
        self.expect_shape(&spec.shape)
    }

    fn dense(
        &self,
        input: usize,
        weights: &[i64],
        in_features: usize,
        out_features: usize,
        bias: &[i64],
    ) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        let Some((&last, lead)) = x.split_last() else {
            return Err("the input is a scalar".into());
        };
        if last != in_features {
            return Err(format!(
                "input shape {x:?} does not end with in_features {in_features}"
            ));
        }
        let wlen = in_features
            .checked_mul(out_features)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or("weight matrix too large")?;
        if weights.len() != wlen || bias.len() != out_features {
            return Err(format!(
                "{} weights and {} biases for {in_features}x{out_features}",
                weights.len(),
                bias.len()
            ));
        }
        let mut shape = lead.to_vec();
        shape.push(out_features);
        self.expect_shape(&shape)?;
        work(&[self.out.len(), in_features])
    }

    fn conv(
        &self,
        input: usize,
        weights: &[i64],
        weight_shape: &[usize],
        bias: &[i64],
        window: &Window,
        group: usize,
    ) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        let sp = check_window(window, x, false)?;
        if weight_shape.len() != sp + 2 {
            return Err(format!(
                "weight shape {weight_shape:?} has not {} axes",
                sp + 2
            ));
        }
        if weight_shape[2..] != window.kernel[..] {
            return Err(format!(
                "weight shape {weight_shape:?} does not match kernel {:?}",
                window.kernel
            ));
        }
        let (cin, cout) = (x[1], weight_shape[0]);
        if group == 0 || cin % group != 0 || cout % group != 0 || weight_shape[1] != cin / group {
            return Err(format!(
                "{cin} input and {cout} output channels, weight shape {weight_shape:?} \
                 and group {group} are inconsistent"
            ));
        }
        if weights.len() != elements(weight_shape)? || bias.len() != cout {
            return Err(format!(
                "{} weights and {} biases for weight shape {weight_shape:?}",
                weights.len(),
                bias.len()
            ));
        }
        let shape = window_shape(x, cout, window, &self.out.shape)?;
        self.expect_shape(&shape)?;
        work(&[self.out.len(), weights.len() / cout.max(1)])
    }

    fn sum_pool(&self, input: usize, window: &Window) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        check_window(window, x, true)?;
        let shape = window_shape(x, x[1], window, &self.out.shape)?;
        self.expect_shape(&shape)?;
        work(&[self.out.len(), elements(&window.kernel)?])
    }

    fn max_pool(&self, input: usize, window: &Window, relu: &Lut) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        check_window(window, x, true)?;
        let shape = window_shape(x, x[1], window, &self.out.shape)?;
        self.expect_shape(&shape)?;
        check_lut(relu, 1)?;
        if relu.axis.is_some() {
            return Err("the relu table of a max pool has no axis".into());
        }
        if relu.input_delta_log2() != self.out.delta_log2 {
            return Err(format!(
                "relu input delta 2^{} differs from the pool's delta 2^{}",
                relu.input_delta_log2(),
                self.out.delta_log2
            ));
        }
        no_empty_window(window, x, &shape)?;
        work(&[self.out.len(), elements(&window.kernel)?])?;
        // Window elements are collected per output before the tree: bound them too.
        work(&[self.out.len(), elements(&window.kernel)?.min(elements(x)?)])
    }

    fn add_sub(&self, a: usize, b: usize) -> Result<(), String> {
        self.same_delta(a)?;
        self.same_delta(b)?;
        let (sa, sb) = (&self.value(a).shape, &self.value(b).shape);
        if sa != sb {
            return Err(format!("operand shapes {sa:?} and {sb:?} differ"));
        }
        self.expect_shape(sa)
    }

    /// `AddConst` and `MulConst`: the constant broadcasts to the input.
    fn with_constant(&self, input: usize, constant: &IntTensor) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        if elements(&constant.shape)? != constant.data.len() {
            return Err(format!(
                "constant of shape {:?} has {} values",
                constant.shape,
                constant.data.len()
            ));
        }
        let c = ArrayViewD::from_shape(IxDyn(&constant.shape), &constant.data)
            .map_err(|e| e.to_string())?;
        if c.broadcast(IxDyn(x)).is_none() {
            return Err(format!(
                "constant of shape {:?} does not broadcast to {x:?}",
                constant.shape
            ));
        }
        self.expect_shape(x)
    }

    fn reshape(&self, input: usize) -> Result<(), String> {
        self.same_delta(input)?;
        let (x, out) = (self.value(input), self.out);
        if x.len() != out.len() {
            return Err(format!(
                "reshape of {:?} ({} elements) to {:?} ({} elements)",
                x.shape,
                x.len(),
                out.shape,
                out.len()
            ));
        }
        Ok(())
    }

    fn transpose(&self, input: usize, perm: &[usize]) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        let mut seen = vec![false; x.len()];
        if perm.len() != x.len()
            || perm
                .iter()
                .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(format!("{perm:?} is not a permutation of {} axes", x.len()));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
        self.expect_shape(&shape)
    }

    fn pad(&self, input: usize, pads: &[(usize, usize)]) -> Result<(), String> {
        self.same_delta(input)?;
        let x = &self.value(input).shape;
        if pads.len() != x.len() {
            return Err(format!("{} pads for {} axes", pads.len(), x.len()));
        }
        let shape = x
            .iter()
            .zip(pads)
            .map(|(&n, &(b, e))| n.checked_add(b)?.checked_add(e))
            .collect::<Option<Vec<usize>>>()
            .ok_or("padding too large")?;
        self.expect_shape(&shape)
    }

    fn concat(&self, inputs: &[usize], axis: usize) -> Result<(), String> {
        let Some(&first) = inputs.first() else {
            return Err("no operands".into());
        };
        let mut shape = self.value(first).shape.clone();
        if axis >= shape.len() {
            return Err(format!("axis {axis} of a rank-{} tensor", shape.len()));
        }
        shape[axis] = 0;
        for &v in inputs {
            self.same_delta(v)?;
            let s = &self.value(v).shape;
            let mismatch = s.len() != shape.len()
                || s.iter()
                    .zip(&shape)
                    .enumerate()
                    .any(|(d, (a, b))| d != axis && a != b);
            if mismatch {
                return Err(format!(
                    "operand %{v} of shape {s:?} does not concatenate with %{first} \
                     along axis {axis}"
                ));
            }
            shape[axis] = shape[axis]
                .checked_add(s[axis])
                .ok_or("concatenation too large")?;
        }
        self.expect_shape(&shape)
    }

    fn rescale(&self, input: usize, shift: u32) -> Result<(), String> {
        let d = self.value(input).delta_log2;
        if d.checked_add(shift) != Some(self.out.delta_log2) {
            return Err(format!(
                "delta 2^{d} rescaled by 2^{shift} is not the result's 2^{}",
                self.out.delta_log2
            ));
        }
        self.expect_shape(&self.value(input).shape)
    }

    fn tlu(&self, input: usize, lut: &Lut) -> Result<(), String> {
        let x = self.value(input);
        let needed = match lut.axis {
            None => 1,
            Some(a) => *x
                .shape
                .get(a)
                .ok_or_else(|| format!("axis {a} of a rank-{} tensor", x.shape.len()))?,
        };
        check_lut(lut, needed)?;
        if lut.input_delta_log2() != x.delta_log2 {
            return Err(format!(
                "operand %{input} has delta 2^{}, the table reads 2^{}",
                x.delta_log2,
                lut.input_delta_log2()
            ));
        }
        self.expect_shape(&x.shape)
    }
}

/// Every window of a max pool over `x` (result shape `shape`) holds at least one real
/// element. With a dilation of at most the input length only the first window (all taps
/// before the input) and the last (starting past it) can be empty: check just those, so a
/// declared length of 2^31 costs no loop of 2^31 steps.
fn no_empty_window(window: &Window, x: &[usize], shape: &[usize]) -> Result<(), String> {
    for (d, &o_len) in shape[2..].iter().enumerate() {
        let ends_only = window.dilations[d] <= x[2 + d];
        let ends = [0, o_len.saturating_sub(1)].into_iter();
        let (ends, all) = if ends_only {
            (ends.take(o_len.min(2)), 0..0)
        } else {
            (ends.take(0), 0..o_len)
        };
        for o in ends.chain(all) {
            let r = tap_range(
                o,
                x[2 + d],
                window.kernel[d],
                window.strides[d],
                window.dilations[d],
                window.pads[d].0,
            );
            if r.is_empty() {
                return Err(format!(
                    "window {o} along spatial axis {d} lies entirely in padding"
                ));
            }
        }
    }
    Ok(())
}

/// Element count of a shape, at most [`MAX_ELEMENTS`].
fn elements(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} has more than 2^31 elements"))
}

/// Bounds the operations of one instruction (product of `factors`).
fn work(factors: &[usize]) -> Result<(), String> {
    let total = factors
        .iter()
        .try_fold(1u128, |n, &f| n.checked_mul(f as u128));
    match total {
        Some(t) if t <= MAX_WORK => Ok(()),
        _ => Err("more than 2^40 operations".into()),
    }
}

/// Checks a window against an N-C-spatial input; returns the number of spatial axes.
fn check_window(window: &Window, x: &[usize], pool: bool) -> Result<usize, String> {
    let sp = window.kernel.len();
    if x.len() != sp + 2 {
        return Err(format!(
            "input shape {x:?} is not N-C plus {sp} spatial axes"
        ));
    }
    if window.strides.len() != sp || window.dilations.len() != sp || window.pads.len() != sp {
        return Err(format!("window {window:?} has inconsistent ranks"));
    }
    if window
        .kernel
        .iter()
        .chain(&window.strides)
        .chain(&window.dilations)
        .any(|&v| v == 0)
    {
        return Err(format!(
            "window {window:?} has a zero kernel, stride or dilation"
        ));
    }
    if pool {
        elements(&window.kernel)?;
    }
    Ok(sp)
}

/// Expected output shape of a windowed instruction: the spatial lengths must follow the
/// floor or the ceil rule (pooling may have used `ceil_mode`).
fn window_shape(
    x: &[usize],
    channels: usize,
    window: &Window,
    actual: &[usize],
) -> Result<Vec<usize>, String> {
    let mut shape = vec![x[0], channels];
    for d in 0..window.kernel.len() {
        let args = (
            x[2 + d],
            window.kernel[d],
            window.strides[d],
            window.dilations[d],
            window.pads[d],
        );
        let floor = window_out_len(args.0, args.1, args.2, args.3, args.4, false)
            .ok_or_else(|| format!("window does not fit spatial axis {d} of {x:?}"))?;
        let ceil = window_out_len(args.0, args.1, args.2, args.3, args.4, true).unwrap_or(floor);
        let len = match actual.get(2 + d) {
            Some(&a) if a == ceil => ceil,
            _ => floor,
        };
        shape.push(len);
    }
    Ok(shape)
}

/// Checks a table set: at least `needed` tables, each with 1..=2^precision entries, and an
/// input delta that fits the encoding.
fn check_lut(lut: &Lut, needed: usize) -> Result<(), String> {
    if lut
        .precision
        .checked_add(lut.shift())
        .is_none_or(|bits| bits > 62)
    {
        return Err(format!(
            "precision {} plus shift {} exceeds 62 bits",
            lut.precision,
            lut.shift()
        ));
    }
    if lut.tables.len() < needed.max(1) {
        return Err(format!(
            "{} tables where {} are needed",
            lut.tables.len(),
            needed.max(1)
        ));
    }
    let cap = 1usize << lut.precision;
    let mut total = 0usize;
    for (t, table) in lut.tables.iter().enumerate() {
        if table.is_empty() || table.len() > cap {
            return Err(format!(
                "table {t} has {} entries, must have 1..={cap} ({}-bit precision)",
                table.len(),
                lut.precision
            ));
        }
        total = total.saturating_add(table.len());
    }
    if total > MAX_ELEMENTS {
        return Err("tables hold more than 2^31 entries".into());
    }
    Ok(())
}
