//! QONNX quantisers, as Brevitas's `export_qonnx` writes them: `Quant` (also named
//! `IntQuant`), `BipolarQuant` and `Trunc`, in the domains `onnx.brevitas` (Brevitas 0.10.x,
//! what Concrete ML 1.9 exports), `qonnx.custom_op.general` (Brevitas 0.11+) and the older
//! `finn.custom_op.general`.
//!
//! They are lowered onto the QCDQ form the QAT path already handles (Brevitas's
//! `export_onnx_qcdq`), so both exports of one model import to the same IR:
//!
//! * `Quant` on a constant (weights): the integers are computed here, with any QONNX rounding
//!   mode, and kept as an int8/uint8 constant under a `DequantizeLinear` (a QCDQ export's
//!   folded weights); wider than 8 bits (Int16/Int32 bias quantisers) the dequantised values
//!   become a float constant.
//! * `Quant` on a runtime tensor: `QuantizeLinear` (int8 when signed, uint8 otherwise), a
//!   `Clip` to `[min_int, max_int]` of `bitwidth`/`signed`/`narrow` when that is narrower than
//!   the type, and `DequantizeLinear`, with the node's scale and zero point (per channel along
//!   one axis when the scale has more than one element). QONNX clamps before rounding and
//!   QuantizeLinear after; with integer bounds the two agree. Only `ROUND` (= `HALF_EVEN`,
//!   NumPy's `np.round`, which QuantizeLinear implements) is lowered on runtime tensors; the
//!   other modes are refused there. With a non-zero zero point QONNX rounds the f32 sum
//!   `x / scale + zp` and QuantizeLinear `x / scale` before adding it: they differ only where
//!   `x / scale` is within float rounding of a half-integer (Brevitas's QCDQ export of the
//!   same quantiser has the QuantizeLinear semantics).
//! * `BipolarQuant` (and a signed 1-bit `Quant`): `+scale` where `x >= 0`, else `-scale`;
//!   on a runtime tensor `Clip(x * 2^64 + 1, -1, 1)`, `QuantizeLinear` to int8 with scale 1
//!   and `DequantizeLinear` at the node's scale (exact except for negative inputs within
//!   2^-64 of zero, which quantised graphs never see).
//! * `Trunc` requantises an integer format (after average pooling) by `T = 2^k`:
//!   `rnd(round(x / scale + zp) / T)`. Version 1 (Brevitas 0.10.x: inputs x, scale,
//!   zero_point, input_bit_width, output_bit_width; attribute rounding_mode) has
//!   `k = input_bit_width - output_bit_width`, no clamp, and rescales by `scale`; version 2
//!   (Brevitas 0.11+: inputs x, scale, zero_point, input_bit_width, output_scale,
//!   output_bit_width; attributes rounding_mode, signed, narrow) has
//!   `k = round(log2(output_scale / scale))`, clamps to the output bit width and rescales by
//!   `output_scale`. The input is on its scale's grid (Brevitas guarantees it; the inner
//!   round only cleans up float error). Lowered to `QuantizeLinear` at `scale * T`
//!   (`FLOOR`/`CEIL` shift the input by `scale * (T - 1) / 2` first, which makes the
//!   half-to-even rounding a floor/ceiling on every grid point with a margin of `1/(2T)`;
//!   `ROUND` recovers the input integer exactly first, with a `QuantizeLinear` to int8/uint8,
//!   or int32 above 8 bits, and a `DequantizeLinear` at scale 1, so that ties are exact and
//!   round to even), the output `Clip` (version 2) and `DequantizeLinear`. The zero point
//!   must be 0 (Brevitas refuses others at export). Version 1 does not clamp: its output is
//!   held in int8 (signed input) or uint8 (an input that is non-negative by construction: a
//!   ReLU, an unsigned quantiser), which only an input beyond the range Brevitas derives
//!   `input_bit_width` from could round past (it then saturates).

use fhec_ir::{BinaryOp, DType, NodeId, Op, QuantAttrs, UnaryOp};
use ndarray::{ArrayD, Dimension, IxDyn};

use crate::error::FrontendError;
use crate::node::{Importer, NodeCtx, Res, Value};
use crate::tensor::ConstValue;

/// Custom-op domains whose QONNX ops are imported.
pub(crate) const DOMAINS: &[&str] = &[
    "onnx.brevitas",
    "qonnx.custom_op.general",
    "finn.custom_op.general",
];

/// The QONNX op importers (in every domain of [`DOMAINS`]).
pub(crate) const IMPORTERS: &[(&str, Importer)] = &[
    ("Quant", quant),
    ("IntQuant", quant),
    ("BipolarQuant", bipolar_quant),
    ("Trunc", trunc),
];

/// QONNX rounding modes (`resolve_rounding_mode` in qonnx's `intquant.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounding {
    /// `ROUND` or `HALF_EVEN`: NumPy's `np.round`.
    HalfEven,
    Ceil,
    Floor,
    /// Away from zero.
    Up,
    /// Toward zero.
    Down,
    HalfUp,
    HalfDown,
}

impl Rounding {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ROUND" | "HALF_EVEN" => Rounding::HalfEven,
            "CEIL" => Rounding::Ceil,
            "FLOOR" => Rounding::Floor,
            "UP" => Rounding::Up,
            "DOWN" => Rounding::Down,
            "HALF_UP" => Rounding::HalfUp,
            "HALF_DOWN" => Rounding::HalfDown,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Rounding::HalfEven => "ROUND",
            Rounding::Ceil => "CEIL",
            Rounding::Floor => "FLOOR",
            Rounding::Up => "UP",
            Rounding::Down => "DOWN",
            Rounding::HalfUp => "HALF_UP",
            Rounding::HalfDown => "HALF_DOWN",
        }
    }

    fn apply(self, v: f32) -> f32 {
        let sign = if v < 0.0 { -1.0 } else { 1.0 };
        match self {
            Rounding::HalfEven => v.round_ties_even(),
            Rounding::Ceil => v.ceil(),
            Rounding::Floor => v.floor(),
            Rounding::Up => sign * v.abs().ceil(),
            Rounding::Down => v.trunc(),
            Rounding::HalfUp => sign * (v.abs() + 0.5).floor(),
            Rounding::HalfDown => sign * (v.abs() - 0.5).ceil(),
        }
    }
}

fn rounding(c: &NodeCtx, default: &str) -> Result<Rounding, FrontendError> {
    let s = c
        .attr_string("rounding_mode")
        .unwrap_or_else(|| default.into());
    Rounding::parse(&s).ok_or_else(|| {
        c.attr_err(
            "rounding_mode",
            format!(
                "value '{s}' is not a QONNX rounding mode (ROUND, HALF_EVEN, CEIL, FLOOR, UP, \
                 DOWN, HALF_UP, HALF_DOWN)"
            ),
        )
    })
}

/// QONNX `min_int` / `max_int`: the integer range of `bits` bits.
fn int_range(signed: bool, narrow: bool, bits: u32) -> (i64, i64) {
    if signed {
        let half = 1i64 << (bits - 1);
        (if narrow { -half + 1 } else { -half }, half - 1)
    } else {
        let top = (1i64 << bits) - 1;
        (0, if narrow { top - 1 } else { top })
    }
}

/// A float constant input (scale, zero point, bit width), by slot.
fn float_input(c: &NodeCtx, i: usize, what: &str) -> Result<ArrayD<f32>, FrontendError> {
    Ok(c.const_input(i, what)?.to_f32())
}

fn scalar_input(c: &NodeCtx, i: usize, what: &str) -> Result<f32, FrontendError> {
    let v = float_input(c, i, what)?;
    if v.len() != 1 {
        return Err(c.err(format!(
            "{what} (input {i}, '{}') must be a scalar, got shape {:?}",
            c.node.input[i],
            v.shape()
        )));
    }
    Ok(v.iter().next().copied().unwrap_or(0.0))
}

/// A bit width input: a positive integer (QONNX allows it as a float).
fn bits_input(c: &NodeCtx, i: usize, what: &str) -> Result<u32, FrontendError> {
    let b = scalar_input(c, i, what)?;
    if !((1.0..=32.0).contains(&b) && b.fract() == 0.0) {
        return Err(c.err(format!(
            "{what} (input {i}, '{}') is {b}; it must be an integer from 1 to 32",
            c.node.input[i]
        )));
    }
    Ok(b as u32)
}

fn check_scale(c: &NodeCtx, scale: &ArrayD<f32>) -> Result<(), FrontendError> {
    if scale.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(c.err(format!(
            "the scale (input 1, '{}') must be positive and finite",
            c.node.input[1]
        )));
    }
    Ok(())
}

/// A quantisation parameter as QuantizeLinear/DequantizeLinear take it: its values and the
/// one axis of `x` they vary along (`None` for a single value). QONNX parameters broadcast
/// against `x` (a per-channel conv weight scale is `[C,1,1,1]`).
fn param_axis(
    c: &NodeCtx,
    p: &ArrayD<f32>,
    x_shape: &[usize],
    what: &str,
) -> Result<(Vec<f32>, Option<usize>), FrontendError> {
    let vals: Vec<f32> = p.iter().copied().collect();
    if vals.len() == 1 {
        return Ok((vals, None));
    }
    let varying: Vec<usize> = p
        .shape()
        .iter()
        .enumerate()
        .filter(|(_, &d)| d > 1)
        .map(|(a, _)| a)
        .collect();
    let offset = x_shape.len() as isize - p.ndim() as isize;
    if let [a] = varying.as_slice() {
        let axis = *a as isize + offset;
        if axis >= 0 && x_shape.get(axis as usize) == Some(&vals.len()) {
            return Ok((vals, Some(axis as usize)));
        }
    }
    Err(c.err(format!(
        "{what} of shape {:?} does not vary along one axis of the input {x_shape:?}; only \
         per-tensor and per-channel (one axis) quantisation is supported",
        p.shape()
    )))
}

/// Scales, zero points (one per channel, or one) and the axis they vary along.
type Params = (Vec<f32>, Vec<f32>, Option<usize>);

/// Scale and zero point of a `Quant`, aligned on one axis (a scalar zero point with a
/// per-channel scale is repeated); the zero points must be integers.
fn scale_and_zp(c: &NodeCtx, x_shape: &[usize]) -> Result<Params, FrontendError> {
    let scale = float_input(c, 1, "the scale")?;
    let zp = float_input(c, 2, "the zero point")?;
    check_scale(c, &scale)?;
    let (s, s_axis) = param_axis(c, &scale, x_shape, "the scale")?;
    let (z, z_axis) = param_axis(c, &zp, x_shape, "the zero point")?;
    if z.iter().any(|v| v.fract() != 0.0 || !v.is_finite()) {
        return Err(c.err(format!(
            "the zero point (input 2, '{}') must hold integers, got {z:?}",
            c.node.input[2]
        )));
    }
    let axis = s_axis.or(z_axis);
    if s_axis.is_some() && z_axis.is_some() && s_axis != z_axis {
        return Err(c.err("the scale and the zero point vary along different axes"));
    }
    let n = s.len().max(z.len());
    let widen = |v: Vec<f32>| if v.len() == n { v } else { vec![v[0]; n] };
    Ok((widen(s), widen(z), axis))
}

/// The parameter tensor of a Q/DQ node: a scalar, or a vector along the axis.
fn param_tensor(v: &[f32], axis: Option<usize>) -> ArrayD<f32> {
    let shape: Vec<usize> = if axis.is_some() {
        vec![v.len()]
    } else {
        vec![]
    };
    ArrayD::from_shape_vec(IxDyn(&shape), v.to_vec()).expect("length matches")
}

fn zp_value(z: &[f32], axis: Option<usize>, dtype: DType) -> Value {
    Value::Const(ConstValue::Int(
        param_tensor(z, axis).mapv(|v| v as i64),
        dtype,
    ))
}

fn scale_value(s: &[f32], axis: Option<usize>) -> Value {
    Value::Const(ConstValue::Float(param_tensor(s, axis)))
}

/// Per-element parameter of `x`'s element at `index` (scalar or along `axis`).
fn at(v: &[f32], axis: Option<usize>, index: &[usize]) -> f32 {
    match axis {
        Some(a) => v[index[a]],
        None => v[0],
    }
}

/// `Quant` / `IntQuant`: inputs x, scale, zero_point, bitwidth; attributes signed (default 1),
/// narrow (default 0) and rounding_mode (default ROUND), as qonnx's IntQuant documents them.
fn quant(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["signed", "narrow", "rounding_mode"])?;
    let signed = c.attr_int("signed", 1) != 0;
    let narrow = c.attr_int("narrow", 0) != 0;
    let mode = rounding(c, "ROUND")?;
    let x = c.input(0)?;
    let xs = c.shape_of(&x);
    let (s, z, axis) = scale_and_zp(c, &xs)?;
    let bits = bits_input(c, 3, "the bit width")?;
    if bits == 1 && signed {
        // QONNX quantises signed 1-bit values to bipolar -1/+1 (BipolarQuant).
        if z.iter().any(|&v| v != 0.0) {
            return Err(c.err("a signed 1-bit Quant (bipolar) must have a zero point of 0"));
        }
        return bipolar(c, x, &s, axis);
    }
    let (lo, hi) = int_range(signed, narrow, bits);
    let dtype = if signed { DType::I8 } else { DType::U8 };
    let (tlo, thi) = dtype.int_range().expect("integer type");
    if bits <= 8 && z.iter().any(|&v| (v as i64) < tlo || (v as i64) > thi) {
        return Err(c.err(format!(
            "the zero point {z:?} does not fit {dtype}, the type of a {}signed {bits}-bit \
             quantiser",
            if signed { "" } else { "un" }
        )));
    }
    if let Value::Const(v) = &x {
        // Weights: the integers, computed as QONNX does (in f32, clamp then round).
        let v = v.to_f32();
        let mut q = v.clone();
        for (idx, e) in q.indexed_iter_mut() {
            let y = *e / at(&s, axis, idx.slice()) + at(&z, axis, idx.slice());
            *e = mode.apply(y.clamp(lo as f32, hi as f32));
        }
        if bits > 8 {
            let mut y = q;
            for (idx, e) in y.indexed_iter_mut() {
                *e = (*e - at(&z, axis, idx.slice())) * at(&s, axis, idx.slice());
            }
            return Ok(vec![Value::Const(ConstValue::Float(y))]);
        }
        let attrs = QuantAttrs { axis, dtype };
        let q = Value::Const(ConstValue::Int(q.mapv(|e| e as i64), dtype));
        let out = c.emit(
            Op::DequantizeLinear(attrs),
            &[q, scale_value(&s, axis), zp_value(&z, axis, dtype)],
        )?;
        return Ok(vec![out]);
    }
    if bits > 8 {
        return Err(c.err(format!(
            "a {bits}-bit quantiser on a runtime tensor cannot be imported: fhec lowers QONNX \
             Quant to int8/uint8 QuantizeLinear (1 to 8 bits)"
        )));
    }
    if mode != Rounding::HalfEven {
        return Err(c.attr_err(
            "rounding_mode",
            format!(
                "{} on a runtime tensor is not supported: fhec lowers QONNX Quant to \
                 QuantizeLinear, which rounds half to even (ROUND); other modes are imported on \
                 constant inputs (weights) only",
                mode.name()
            ),
        ));
    }
    let attrs = QuantAttrs { axis, dtype };
    let mut q = c.emit(
        Op::QuantizeLinear(attrs.clone()),
        &[x, scale_value(&s, axis), zp_value(&z, axis, dtype)],
    )?;
    if (lo, hi) != (tlo, thi) {
        q = clip(c, q, lo, hi)?;
    }
    let out = c.emit(
        Op::DequantizeLinear(attrs),
        &[q, scale_value(&s, axis), zp_value(&z, axis, dtype)],
    )?;
    Ok(vec![out])
}

fn clip(c: &mut NodeCtx, x: Value, lo: i64, hi: i64) -> Result<Value, FrontendError> {
    c.emit(
        Op::Unary(UnaryOp::Clip {
            min: lo as f32,
            max: hi as f32,
        }),
        &[x],
    )
}

/// `BipolarQuant`: inputs x, scale; no attributes.
fn bipolar_quant(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&[])?;
    let x = c.input(0)?;
    let xs = c.shape_of(&x);
    let scale = float_input(c, 1, "the scale")?;
    check_scale(c, &scale)?;
    let (s, axis) = param_axis(c, &scale, &xs, "the scale")?;
    bipolar(c, x, &s, axis)
}

/// `scale * (x >= 0 ? 1 : -1)`.
fn bipolar(c: &mut NodeCtx, x: Value, s: &[f32], axis: Option<usize>) -> Res {
    let attrs = QuantAttrs {
        axis,
        dtype: DType::I8,
    };
    let zero = vec![0.0; s.len()];
    if let Value::Const(v) = &x {
        let q = v.to_f32().mapv(|e| if e >= 0.0 { 1 } else { -1 });
        let q = Value::Const(ConstValue::Int(q, DType::I8));
        let out = c.emit(
            Op::DequantizeLinear(attrs),
            &[q, scale_value(s, axis), zp_value(&zero, axis, DType::I8)],
        )?;
        return Ok(vec![out]);
    }
    let big = Value::Const(ConstValue::Float(ArrayD::from_elem(
        IxDyn(&[]),
        2f32.powi(64),
    )));
    let one = Value::Const(ConstValue::Float(ArrayD::from_elem(IxDyn(&[]), 1.0)));
    let t = c.emit(Op::Binary(BinaryOp::Mul), &[x, big])?;
    let t = c.emit(Op::Binary(BinaryOp::Add), &[t, one])?;
    let t = c.emit(
        Op::Unary(UnaryOp::Clip {
            min: -1.0,
            max: 1.0,
        }),
        &[t],
    )?;
    let unit = QuantAttrs {
        axis: None,
        dtype: DType::I8,
    };
    let q = c.emit(
        Op::QuantizeLinear(unit),
        &[
            t,
            scale_value(&[1.0], None),
            zp_value(&[0.0], None, DType::I8),
        ],
    )?;
    let out = c.emit(
        Op::DequantizeLinear(attrs),
        &[q, scale_value(s, axis), zp_value(&zero, axis, DType::I8)],
    )?;
    Ok(vec![out])
}

/// Whether a value is never negative: it comes through sign-preserving ops from a ReLU, a
/// non-negative clip or an unsigned dequantisation with zero point 0.
fn nonnegative(c: &NodeCtx, v: &Value) -> bool {
    let mut id: NodeId = match v {
        Value::Node(id) => *id,
        Value::Const(k) => return k.to_f32().iter().all(|&e| e >= 0.0),
        Value::Unavailable(_) => return false,
    };
    let g = &*c.graph;
    let const_of = |n: NodeId| match &g.node(n).op {
        Op::Const(t) => Some(t.clone()),
        _ => None,
    };
    loop {
        let ins = g.node_inputs(id);
        match &g.node(id).op {
            Op::Unary(UnaryOp::Relu) => return true,
            Op::Unary(UnaryOp::Clip { min, .. }) if *min >= 0.0 => return true,
            Op::DequantizeLinear(q) => {
                return q.dtype == DType::U8
                    && const_of(ins[2]).is_some_and(|z| z.iter().all(|&e| e == 0.0))
            }
            Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::MaxPool(_)
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Identity => id = ins[0],
            Op::Pad { value, .. } if *value >= 0.0 => id = ins[0],
            Op::Binary(BinaryOp::Mul | BinaryOp::Div)
                if const_of(ins[1]).is_some_and(|k| k.iter().all(|&e| e > 0.0)) =>
            {
                id = ins[0]
            }
            _ => return false,
        }
    }
}

/// `Trunc`, version 1 (5 inputs) or 2 (6 inputs); see the module documentation.
fn trunc(c: &mut NodeCtx) -> Res {
    let v2 = c.input_count() >= 6;
    if v2 {
        c.allow_attrs(&["rounding_mode", "signed", "narrow"])?;
    } else {
        c.allow_attrs(&["rounding_mode"])?;
    }
    let mode = rounding(c, "FLOOR")?;
    let x = c.input(0)?;
    let scale = scalar_input(c, 1, "the scale")?;
    check_scale(c, &ArrayD::from_elem(IxDyn(&[]), scale))?;
    let zp = scalar_input(c, 2, "the zero point")?;
    if zp != 0.0 {
        return Err(c.err(format!(
            "the zero point (input 2, '{}') is {zp}; Trunc is imported with a zero point of 0 \
             only (Brevitas exports no other)",
            c.node.input[2]
        )));
    }
    let in_bits = bits_input(c, 3, "the input bit width")?;
    let (t, out_bits, out_scale, clamp) = if v2 {
        let out_scale = scalar_input(c, 4, "the output scale")?;
        if !(out_scale > 0.0 && out_scale.is_finite()) {
            return Err(c.err("the output scale (input 4) must be positive and finite"));
        }
        let out_bits = bits_input(c, 5, "the output bit width")?;
        let signed = c.attr_int("signed", 1) != 0;
        let narrow = c.attr_int("narrow", 0) != 0;
        let k = (out_scale / scale).log2().round();
        (
            2f32.powi(k as i32),
            out_bits,
            out_scale,
            Some(int_range(signed, narrow, out_bits)),
        )
    } else {
        let out_bits = bits_input(c, 4, "the output bit width")?;
        (
            2f32.powi(in_bits as i32 - out_bits as i32),
            out_bits,
            scale,
            None,
        )
    };
    if let Value::Const(v) = &x {
        let y = v.to_f32().mapv(|e| {
            let mut r = mode.apply((e / scale).round_ties_even() / t);
            if let Some((lo, hi)) = clamp {
                r = r.clamp(lo as f32, hi as f32);
            }
            r * out_scale
        });
        return Ok(vec![Value::Const(ConstValue::Float(y))]);
    }
    // Signed or not picks int8 or uint8: version 2 says it, version 1 leaves it to the input.
    let signed_in = match clamp {
        Some((lo, _)) => lo < 0,
        None => !nonnegative(c, &x),
    };
    if out_bits > 8 {
        return Err(c.err(format!(
            "the output bit width is {out_bits}: fhec lowers Trunc to int8/uint8 \
             QuantizeLinear (up to 8 bits)"
        )));
    }
    let dtype = if signed_in { DType::I8 } else { DType::U8 };
    let (tlo, thi) = dtype.int_range().expect("integer type");
    let attrs = QuantAttrs { axis: None, dtype };
    let zero = zp_value(&[0.0], None, dtype);
    let mut q = if t <= 1.0 {
        // A finer (or equal) grid: every input integer maps to an exact integer.
        c.emit(
            Op::QuantizeLinear(attrs.clone()),
            &[x, scale_value(&[scale * t], None), zero.clone()],
        )?
    } else {
        match mode {
            Rounding::Floor | Rounding::Ceil => {
                let half = scale * (t - 1.0) / 2.0;
                let shift = if mode == Rounding::Floor { -half } else { half };
                let shift = Value::Const(ConstValue::Float(ArrayD::from_elem(IxDyn(&[]), shift)));
                let y = c.emit(Op::Binary(BinaryOp::Add), &[x, shift])?;
                c.emit(
                    Op::QuantizeLinear(attrs.clone()),
                    &[y, scale_value(&[scale * t], None), zero.clone()],
                )?
            }
            Rounding::HalfEven => {
                // The input integer first (exact), then half-to-even on exact halves: a
                // single QuantizeLinear at `scale * T` would decide the ties (every T-th
                // grid point) by float error.
                let in_type = match (in_bits <= 8, signed_in) {
                    (true, true) => DType::I8,
                    (true, false) => DType::U8,
                    (false, _) => DType::I32,
                };
                let in_attrs = QuantAttrs {
                    axis: None,
                    dtype: in_type,
                };
                let in_zero = zp_value(&[0.0], None, in_type);
                let q = c.emit(
                    Op::QuantizeLinear(in_attrs.clone()),
                    &[x, scale_value(&[scale], None), in_zero.clone()],
                )?;
                let y = c.emit(
                    Op::DequantizeLinear(in_attrs),
                    &[q, scale_value(&[1.0], None), in_zero],
                )?;
                c.emit(
                    Op::QuantizeLinear(attrs.clone()),
                    &[y, scale_value(&[t], None), zero.clone()],
                )?
            }
            other => {
                return Err(c.attr_err(
                    "rounding_mode",
                    format!(
                        "{} truncation of a runtime tensor is not supported (ROUND, FLOOR \
                         and CEIL are)",
                        other.name()
                    ),
                ))
            }
        }
    };
    if let Some((lo, hi)) = clamp {
        if (lo, hi) != (tlo, thi) {
            q = clip(c, q, lo, hi)?;
        }
    }
    let out = c.emit(
        Op::DequantizeLinear(attrs),
        &[q, scale_value(&[out_scale], None), zero],
    )?;
    Ok(vec![out])
}
