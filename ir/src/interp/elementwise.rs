//! Element-wise kernels: unary and binary ops, casts, quantization, batch normalisation and
//! softmax.

use ndarray::{Axis, IxDyn, Zip};

use super::{from_vec, row_major};
use crate::op::{BinaryOp, QuantAttrs, UnaryOp};
use crate::Tensor;

/// `v` limited to `[lo, hi]` the way `np.minimum(np.maximum(v, lo), hi)` does it: NaN stays
/// NaN and `lo > hi` gives `hi`.
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Evaluates `f` in `f64` and rounds the result to `f32` once.
fn via_f64(x: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    x.mapv(|v| f(f64::from(v)) as f32)
}

pub(super) fn unary(u: &UnaryOp, x: &Tensor) -> Tensor {
    match *u {
        UnaryOp::Neg => x.mapv(|v| -v),
        UnaryOp::Relu => x.mapv(|v| if v < 0.0 { 0.0 } else { v }),
        UnaryOp::LeakyRelu { alpha } => x.mapv(|v| if v < 0.0 { alpha * v } else { v }),
        UnaryOp::Sigmoid => via_f64(x, |v| {
            if v >= 0.0 {
                1.0 / (1.0 + (-v).exp())
            } else {
                let e = v.exp();
                e / (1.0 + e)
            }
        }),
        UnaryOp::Tanh => via_f64(x, f64::tanh),
        // The ONNX reference computes `clip(x * alpha + beta, 0, 1)` in f32.
        UnaryOp::HardSigmoid { alpha, beta } => x.mapv(|v| clamp(v * alpha + beta, 0.0, 1.0)),
        // HardSwish is `x * HardSigmoid<alpha = 1/6, beta = 0.5>(x)` in the ONNX spec.
        UnaryOp::HardSwish => {
            let alpha = 1.0f32 / 6.0;
            x.mapv(|v| v * clamp(v * alpha + 0.5, 0.0, 1.0))
        }
        UnaryOp::Elu { alpha } => {
            let alpha = f64::from(alpha);
            via_f64(x, |v| if v > 0.0 { v } else { alpha * v.exp_m1() })
        }
        UnaryOp::Selu { alpha, gamma } => {
            let (alpha, gamma) = (f64::from(alpha), f64::from(gamma));
            via_f64(x, |v| {
                if v > 0.0 {
                    gamma * v
                } else {
                    gamma * alpha * v.exp_m1()
                }
            })
        }
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large |x|.
        UnaryOp::Softplus => via_f64(x, |v| v.max(0.0) + (-v.abs()).exp().ln_1p()),
        UnaryOp::Erf => via_f64(x, libm::erf),
        // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), without cancellation for x << 0.
        UnaryOp::Gelu { tanh_approx: false } => via_f64(x, |v| {
            0.5 * v * libm::erfc(-v * std::f64::consts::FRAC_1_SQRT_2)
        }),
        UnaryOp::Gelu { tanh_approx: true } => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            via_f64(x, |v| {
                0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
            })
        }
        UnaryOp::Clip { min, max } => x.mapv(|v| clamp(v, min, max)),
    }
}

fn binary_fn(op: BinaryOp) -> fn(f32, f32) -> f32 {
    match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::PRelu => |x, slope| if x < 0.0 { slope * x } else { x },
    }
}

/// `a` broadcast to `shape` (numpy rules), or an error.
fn broadcast<'a>(t: &'a Tensor, shape: &[usize]) -> Result<ndarray::ArrayViewD<'a, f32>, String> {
    t.broadcast(IxDyn(shape))
        .ok_or_else(|| format!("{:?} does not broadcast to {shape:?}", t.shape()))
}

pub(super) fn binary(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, String> {
    let f = binary_fn(op);
    if a.shape() == shape && b.shape() == shape {
        if let (Some(xs), Some(ys)) = (a.as_slice(), b.as_slice()) {
            let data = xs.iter().zip(ys).map(|(&x, &y)| f(x, y)).collect();
            return from_vec(shape, data);
        }
    }
    if b.len() == 1 && a.shape() == shape {
        let y = b.iter().next().copied().unwrap_or(0.0);
        return Ok(a.mapv(|x| f(x, y)));
    }
    let (av, bv) = (broadcast(a, shape)?, broadcast(b, shape)?);
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// Cast: to f32 a copy (integers are already held in f32); to an integer type also a copy,
/// which `eval_op` then truncates toward zero and wraps into the type like every
/// integer-typed result (see the module doc of `interp`).
pub(super) fn cast(x: &Tensor) -> Tensor {
    x.clone()
}

/// A scale or zero point reshaped so that it broadcasts against `x`: a scalar, or a vector
/// laid along the quantization axis.
fn quant_param(q: &QuantAttrs, x: &Tensor, p: &Tensor, what: &str) -> Result<Tensor, String> {
    let data: Vec<f32> = p.iter().copied().collect();
    match q.axis {
        None if data.len() == 1 => from_vec(&[], data),
        None => Err(format!(
            "per-tensor {what} must have one element, got {:?}",
            p.shape()
        )),
        Some(a) => {
            let len = x.shape().get(a).copied();
            if p.ndim() != 1 || len != Some(data.len()) {
                return Err(format!(
                    "per-axis {what} of shape {:?} does not match axis {a} of {:?}",
                    p.shape(),
                    x.shape()
                ));
            }
            let mut dims = vec![1; x.ndim()];
            dims[a] = data.len();
            from_vec(&dims, data)
        }
    }
}

/// `saturate(round_half_even(x / scale) + zero_point)`; NaN quantizes to the zero point.
pub(super) fn quantize(
    q: &QuantAttrs,
    x: &Tensor,
    scale: &Tensor,
    zero_point: &Tensor,
) -> Result<Tensor, String> {
    let Some((lo, hi)) = q.dtype.int_range() else {
        return Err(format!(
            "QuantizeLinear to {} is not an integer type",
            q.dtype
        ));
    };
    let (lo, hi) = (lo as f64, hi as f64);
    let s = quant_param(q, x, scale, "scale")?;
    let z = quant_param(q, x, zero_point, "zero point")?;
    let (s, z) = (broadcast(&s, x.shape())?, broadcast(&z, x.shape())?);
    Ok(Zip::from(x).and(&s).and(&z).map_collect(|&v, &s, &z| {
        let r = (v / s).round_ties_even();
        let q = if r.is_nan() {
            f64::from(z)
        } else {
            f64::from(r) + f64::from(z)
        };
        q.clamp(lo, hi) as f32
    }))
}

/// `(x - zero_point) * scale`.
pub(super) fn dequantize(
    q: &QuantAttrs,
    x: &Tensor,
    scale: &Tensor,
    zero_point: &Tensor,
) -> Result<Tensor, String> {
    let s = quant_param(q, x, scale, "scale")?;
    let z = quant_param(q, x, zero_point, "zero point")?;
    let (s, z) = (broadcast(&s, x.shape())?, broadcast(&z, x.shape())?);
    Ok(Zip::from(x)
        .and(&s)
        .and(&z)
        .map_collect(|&v, &s, &z| (v - z) * s))
}

/// Inference batch normalisation along axis 1, as the ONNX reference computes it:
/// `scale * (x - mean) / sqrt(var + epsilon) + bias`, in f32.
pub(super) fn batch_norm(epsilon: f32, inputs: &[&Tensor]) -> Result<Tensor, String> {
    let [x, scale, bias, mean, var] = inputs else {
        return Err(format!("BatchNorm takes 5 inputs, got {}", inputs.len()));
    };
    let shape = x.shape();
    let c = shape.get(1).copied().ok_or("BatchNorm needs rank >= 2")?;
    let params: Vec<Vec<f32>> = [scale, bias, mean, var]
        .iter()
        .map(|p| p.iter().copied().collect::<Vec<f32>>())
        .collect();
    if params.iter().any(|p| p.len() != c) {
        return Err(format!("BatchNorm parameters must have {c} elements"));
    }
    let inner: usize = shape[2..].iter().product();
    let xs = row_major(x);
    let mut out = Vec::with_capacity(xs.len());
    if inner > 0 {
        for (i, chunk) in xs.chunks(inner).enumerate() {
            let ch = i % c;
            let (s, b, m) = (params[0][ch], params[1][ch], params[2][ch]);
            let d = (params[3][ch] + epsilon).sqrt();
            out.extend(chunk.iter().map(|&v| s * (v - m) / d + b));
        }
    }
    from_vec(shape, out)
}

/// Softmax along `axis`, shifted by the maximum for stability (exp and sum in f64).
pub(super) fn softmax(x: &Tensor, axis: usize) -> Result<Tensor, String> {
    if axis >= x.ndim() {
        return Err(format!(
            "Softmax axis {axis} out of range for {:?}",
            x.shape()
        ));
    }
    let mut out = x.clone();
    fhec_kernels::softmax::softmax_in_place(&mut out, Axis(axis));
    Ok(out)
}
