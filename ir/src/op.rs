//! Operators of the IR and their shape inference.
//!
//! Attributes are stored resolved: axes are non-negative, paddings explicit, reshape targets
//! fully known. The frontend does the resolving, so passes and interpreters see one form.

use crate::fact::{DType, TensorFact};
use crate::quant::{QParams, Tlu};
use crate::Tensor;

/// Element-wise functions of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Softplus,
    Erf,
    /// `tanh_approx` selects ONNX Gelu's `approximate="tanh"`.
    Gelu {
        tanh_approx: bool,
    },
    Clip {
        min: f32,
        max: f32,
    },
}

/// Element-wise functions of two tensors with numpy (multidirectional) broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `x` if `x >= 0` else `slope * x`; the slope broadcasts to `x`.
    PRelu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// Convolution over N-C-spatial tensors; all vectors have one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvAttrs {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// (begin, end) padding per spatial axis.
    pub pads: Vec<(usize, usize)>,
    pub group: usize,
}

/// Average or max pooling window; one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<(usize, usize)>,
    pub ceil_mode: bool,
    /// Average pooling only: divide by the full window size including padding.
    pub count_include_pad: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// Quantize/dequantize parameters; scale and zero point are the op's 2nd and 3rd inputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuantAttrs {
    /// Axis along which scale/zero point vary (their length equals that dimension), or
    /// `None` when they are scalars.
    pub axis: Option<usize>,
    /// Quantized element type (int8 or uint8).
    pub dtype: DType,
}

/// An IR operator. Every op has exactly one output.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input; its fact is fixed when the graph is built.
    Input,
    /// A constant tensor (weights, biases, shapes folded to attributes are not kept).
    Const(Tensor),
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Numpy `matmul` semantics.
    MatMul,
    /// `alpha * op(A) @ op(B) + beta * C`; inputs A, B and optionally C.
    Gemm(GemmAttrs),
    /// Inputs X, W and optionally bias B.
    Conv(ConvAttrs),
    AveragePool(PoolAttrs),
    MaxPool(PoolAttrs),
    GlobalAveragePool,
    /// Inference-mode batch normalisation; inputs X, scale, bias, mean, var.
    BatchNorm {
        epsilon: f32,
    },
    /// ONNX opset-13 Softmax over one axis.
    Softmax {
        axis: usize,
    },
    /// Reshape to a fully known shape (Flatten, Squeeze and Unsqueeze lower to it).
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    Pad {
        pads: Vec<(usize, usize)>,
        mode: PadMode,
        value: f32,
    },
    /// Also the inference form of Dropout.
    Identity,
    /// Element type conversion; to an integer type it truncates toward zero and wraps (see
    /// [`crate::interp`] for the integer semantics).
    Cast {
        to: DType,
    },
    /// `saturate(round_half_even(x / scale) + zero_point)`; inputs x, scale, zero_point.
    QuantizeLinear(QuantAttrs),
    /// `(x - zero_point) * scale`; inputs x, scale, zero_point.
    DequantizeLinear(QuantAttrs),

    // Integer ops (after quantisation; see `quant` and `int_interp`).
    /// Integer constant (quantised weights and biases).
    IntConst(ndarray::ArrayD<i64>),
    /// Real to integer (client side): `clamp(round(x / scale) + zero_point)`.
    Quantize(QParams),
    /// Integer to real (client side): `scale * (q - zero_point)`.
    Dequantize(QParams),
    /// Integer to real with one more factor per channel (axis 1):
    /// `params.scale * scales[c] * (q - params.zero_point)`. The output of a layer whose
    /// weights have one scale per output channel (QAT per-channel weights), dequantised
    /// without a table lookup.
    DequantizeChannels {
        params: QParams,
        scales: Vec<f32>,
    },
    /// Element-wise table lookup: one programmable bootstrap per element in FHE.
    Tlu(Tlu),
    /// Window sum (average pooling with the division folded into the next table).
    SumPool(PoolAttrs),
}

/// Why shape inference rejected an op's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

macro_rules! shape_err {
    ($($t:tt)*) => { Err(ShapeError(format!($($t)*))) };
}

impl Op {
    /// Short operator name, as the printer and error messages show it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Const(_) => "Const",
            Op::Unary(u) => match u {
                UnaryOp::Neg => "Neg",
                UnaryOp::Relu => "Relu",
                UnaryOp::LeakyRelu { .. } => "LeakyRelu",
                UnaryOp::Sigmoid => "Sigmoid",
                UnaryOp::Tanh => "Tanh",
                UnaryOp::HardSigmoid { .. } => "HardSigmoid",
                UnaryOp::HardSwish => "HardSwish",
                UnaryOp::Elu { .. } => "Elu",
                UnaryOp::Selu { .. } => "Selu",
                UnaryOp::Softplus => "Softplus",
                UnaryOp::Erf => "Erf",
                UnaryOp::Gelu { .. } => "Gelu",
                UnaryOp::Clip { .. } => "Clip",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::PRelu => "PRelu",
            },
            Op::MatMul => "MatMul",
            Op::Gemm(_) => "Gemm",
            Op::Conv(_) => "Conv",
            Op::AveragePool(_) => "AveragePool",
            Op::MaxPool(_) => "MaxPool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Softmax { .. } => "Softmax",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Pad { .. } => "Pad",
            Op::Identity => "Identity",
            Op::Cast { .. } => "Cast",
            Op::QuantizeLinear(_) => "QuantizeLinear",
            Op::DequantizeLinear(_) => "DequantizeLinear",
            Op::IntConst(_) => "IntConst",
            Op::Quantize(_) => "Quantize",
            Op::Dequantize(_) => "Dequantize",
            Op::DequantizeChannels { .. } => "DequantizeChannels",
            Op::Tlu(_) => "Tlu",
            Op::SumPool(_) => "SumPool",
        }
    }

    /// Allowed number of inputs (inclusive range).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Input | Op::Const(_) | Op::IntConst(_) => (0, 0),
            Op::Binary(_) | Op::MatMul => (2, 2),
            Op::Gemm(_) | Op::Conv(_) => (2, 3),
            Op::BatchNorm { .. } => (5, 5),
            Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => (3, 3),
            Op::Concat { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// The output fact of this op applied to inputs with the given facts.
    pub fn infer(&self, inputs: &[&TensorFact]) -> Result<TensorFact, ShapeError> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return shape_err!(
                "{} takes {}..={} inputs, got {}",
                self.name(),
                lo,
                hi,
                inputs.len()
            );
        }
        match self {
            Op::Input => shape_err!("an Input's fact is given, not inferred"),
            Op::Const(t) => Ok(TensorFact::f32(t.shape())),
            Op::Unary(_) | Op::Identity => Ok(inputs[0].clone()),
            Op::Binary(b) => {
                let shape = broadcast_shapes(&inputs[0].shape, &inputs[1].shape)?;
                if *b == BinaryOp::PRelu && shape != inputs[0].shape {
                    return shape_err!(
                        "PRelu slope {:?} must broadcast to the input {:?}",
                        inputs[1].shape,
                        inputs[0].shape
                    );
                }
                Ok(TensorFact::new(
                    binary_dtype(inputs[0].dtype, inputs[1].dtype)?,
                    shape,
                ))
            }
            Op::MatMul => matmul_shape(&inputs[0].shape, &inputs[1].shape)
                .map(|s| TensorFact::new(linear_dtype(inputs), s)),
            Op::Gemm(a) => {
                let (sa, sb) = (&inputs[0].shape, &inputs[1].shape);
                if sa.len() != 2 || sb.len() != 2 {
                    return shape_err!("Gemm needs 2-D A and B, got {sa:?} and {sb:?}");
                }
                let (m, k) = if a.trans_a {
                    (sa[1], sa[0])
                } else {
                    (sa[0], sa[1])
                };
                let (k2, n) = if a.trans_b {
                    (sb[1], sb[0])
                } else {
                    (sb[0], sb[1])
                };
                if k != k2 {
                    return shape_err!("Gemm inner dimensions differ: A {sa:?}, B {sb:?}");
                }
                if let Some(c) = inputs.get(2) {
                    let out = broadcast_shapes(&c.shape, &[m, n])?;
                    if out != [m, n] {
                        return shape_err!(
                            "Gemm bias {:?} does not broadcast to [{m},{n}]",
                            c.shape
                        );
                    }
                }
                Ok(TensorFact::new(linear_dtype(inputs), [m, n]))
            }
            Op::Conv(a) => conv_shape(a, inputs),
            Op::AveragePool(p) | Op::MaxPool(p) | Op::SumPool(p) => {
                let x = &inputs[0].shape;
                let sp = p.kernel.len();
                if x.len() != sp + 2 {
                    return shape_err!(
                        "pooling with a {sp}-D kernel needs a rank-{} input, got {x:?}",
                        sp + 2
                    );
                }
                check_spatial_lens(sp, &[&p.strides, &p.dilations], p.pads.len())?;
                let mut out = vec![x[0], x[1]];
                for i in 0..sp {
                    out.push(pool_out_len(
                        x[2 + i],
                        p.kernel[i],
                        p.strides[i],
                        p.dilations[i],
                        p.pads[i],
                        p.ceil_mode,
                    )?);
                }
                // Max pooling only compares: it keeps any integer type (ONNX allows int8/uint8).
                let dtype = match self {
                    Op::MaxPool(_) => inputs[0].dtype,
                    _ => linear_dtype(inputs),
                };
                Ok(TensorFact::new(dtype, out))
            }
            Op::GlobalAveragePool => {
                let x = &inputs[0].shape;
                if x.len() < 3 {
                    return shape_err!("GlobalAveragePool needs rank >= 3, got {x:?}");
                }
                let mut out = x.clone();
                out[2..].iter_mut().for_each(|d| *d = 1);
                Ok(TensorFact::f32(out))
            }
            Op::BatchNorm { .. } => {
                let x = &inputs[0].shape;
                if x.len() < 2 {
                    return shape_err!("BatchNormalization needs rank >= 2, got {x:?}");
                }
                for (i, p) in inputs[1..].iter().enumerate() {
                    if p.shape != [x[1]] {
                        return shape_err!(
                            "BatchNormalization parameter {} has shape {:?}, expected [{}]",
                            i + 1,
                            p.shape,
                            x[1]
                        );
                    }
                }
                Ok(inputs[0].clone())
            }
            Op::Softmax { axis } => {
                if *axis >= inputs[0].rank() {
                    return shape_err!(
                        "Softmax axis {axis} out of range for {:?}",
                        inputs[0].shape
                    );
                }
                Ok(inputs[0].clone())
            }
            Op::Reshape { shape } => {
                if shape.iter().product::<usize>() != inputs[0].len() {
                    return shape_err!("cannot reshape {:?} to {shape:?}", inputs[0].shape);
                }
                Ok(TensorFact::new(inputs[0].dtype, shape.clone()))
            }
            Op::Transpose { perm } => {
                let x = &inputs[0].shape;
                let mut seen = vec![false; x.len()];
                if perm.len() != x.len()
                    || perm
                        .iter()
                        .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
                {
                    return shape_err!(
                        "Transpose perm {perm:?} is not a permutation of rank {}",
                        x.len()
                    );
                }
                Ok(TensorFact::new(
                    inputs[0].dtype,
                    perm.iter().map(|&p| x[p]).collect::<Vec<_>>(),
                ))
            }
            Op::Concat { axis } => {
                let first = &inputs[0].shape;
                if *axis >= first.len() {
                    return shape_err!("Concat axis {axis} out of range for {first:?}");
                }
                let mut out = first.clone();
                out[*axis] = 0;
                for f in inputs {
                    if f.rank() != first.len()
                        || f.shape
                            .iter()
                            .zip(first)
                            .enumerate()
                            .any(|(i, (a, b))| i != *axis && a != b)
                    {
                        return shape_err!(
                            "Concat inputs {first:?} and {:?} differ off axis {axis}",
                            f.shape
                        );
                    }
                    out[*axis] += f.shape[*axis];
                }
                Ok(TensorFact::new(inputs[0].dtype, out))
            }
            Op::Pad { pads, mode, .. } => {
                let x = &inputs[0].shape;
                if pads.len() != x.len() {
                    return shape_err!(
                        "Pad has {} (begin,end) pairs for rank {}",
                        pads.len(),
                        x.len()
                    );
                }
                if *mode == PadMode::Reflect
                    && pads.iter().zip(x).any(|(p, d)| p.0 >= *d || p.1 >= *d)
                {
                    return shape_err!(
                        "reflect padding {pads:?} must be smaller than the dimensions {x:?}"
                    );
                }
                Ok(TensorFact::new(
                    inputs[0].dtype,
                    x.iter()
                        .zip(pads)
                        .map(|(d, p)| d + p.0 + p.1)
                        .collect::<Vec<_>>(),
                ))
            }
            Op::Cast { to } => Ok(TensorFact::new(*to, inputs[0].shape.clone())),
            Op::QuantizeLinear(q) | Op::DequantizeLinear(q) => {
                let x = &inputs[0].shape;
                let want: Vec<usize> = match q.axis {
                    None => vec![],
                    Some(a) if a < x.len() => vec![x[a]],
                    Some(a) => return shape_err!("quantization axis {a} out of range for {x:?}"),
                };
                for (what, f) in [("scale", inputs[1]), ("zero point", inputs[2])] {
                    let ok = f.shape == want || (q.axis.is_none() && f.len() == 1);
                    if !ok {
                        return shape_err!("{what} has shape {:?}, expected {want:?}", f.shape);
                    }
                }
                let dtype = if matches!(self, Op::QuantizeLinear(_)) {
                    q.dtype
                } else {
                    DType::F32
                };
                Ok(TensorFact::new(dtype, x.clone()))
            }
            Op::IntConst(a) => Ok(TensorFact::new(DType::I64, a.shape())),
            Op::Quantize(_) => Ok(TensorFact::new(DType::I64, inputs[0].shape.clone())),
            Op::Dequantize(_) => {
                if inputs[0].dtype != DType::I64 {
                    return shape_err!("Dequantize takes an integer tensor, got {}", inputs[0]);
                }
                Ok(TensorFact::f32(inputs[0].shape.clone()))
            }
            Op::DequantizeChannels { scales, .. } => {
                let x = inputs[0];
                if x.dtype != DType::I64 {
                    return shape_err!("DequantizeChannels takes an integer tensor, got {x}");
                }
                if x.rank() < 2 || x.shape[1] != scales.len() {
                    return shape_err!(
                        "{} channel scales for a tensor of shape {:?}",
                        scales.len(),
                        x.shape
                    );
                }
                Ok(TensorFact::f32(x.shape.clone()))
            }
            Op::Tlu(t) => {
                let x = inputs[0];
                if x.dtype != DType::I64 {
                    return shape_err!("a table lookup takes an integer tensor, got {x}");
                }
                let want = match t.axis {
                    None => 1,
                    Some(a) if a < x.rank() => x.shape[a],
                    Some(a) => return shape_err!("table axis {a} out of range for {x}"),
                };
                if t.tables.len() != want || t.tables.iter().any(Vec::is_empty) {
                    return shape_err!(
                        "{} table(s) given, {want} non-empty needed",
                        t.tables.len()
                    );
                }
                Ok(x.clone())
            }
        }
    }
}

/// Numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return shape_err!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    if a.is_empty() || b.is_empty() {
        return shape_err!("MatMul operands must have rank >= 1, got {a:?} and {b:?}");
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return shape_err!("MatMul inner dimensions differ: {a:?} @ {b:?}");
    }
    let mut out = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

fn check_spatial_lens(sp: usize, vecs: &[&Vec<usize>], pads: usize) -> Result<(), ShapeError> {
    if vecs.iter().any(|v| v.len() != sp) || pads != sp {
        return shape_err!("attribute lengths disagree with {sp} spatial axes");
    }
    if vecs.iter().any(|v| v.contains(&0)) {
        return shape_err!("strides and dilations must be positive");
    }
    Ok(())
}

fn conv_shape(a: &ConvAttrs, inputs: &[&TensorFact]) -> Result<TensorFact, ShapeError> {
    let (x, w) = (&inputs[0].shape, &inputs[1].shape);
    if x.len() < 3 || w.len() != x.len() {
        return shape_err!("Conv needs X and W of equal rank >= 3, got {x:?} and {w:?}");
    }
    let sp = x.len() - 2;
    check_spatial_lens(sp, &[&a.strides, &a.dilations], a.pads.len())?;
    if a.group == 0 || x[1] % a.group != 0 || w[0] % a.group != 0 || w[1] * a.group != x[1] {
        return shape_err!(
            "Conv channels: X {x:?}, W {w:?} and group {} disagree",
            a.group
        );
    }
    if let Some(b) = inputs.get(2) {
        if b.shape != [w[0]] {
            return shape_err!("Conv bias has shape {:?}, expected [{}]", b.shape, w[0]);
        }
    }
    let mut out = vec![x[0], w[0]];
    for i in 0..sp {
        out.push(pool_out_len(
            x[2 + i],
            w[2 + i],
            a.strides[i],
            a.dilations[i],
            a.pads[i],
            false,
        )?);
    }
    Ok(TensorFact::new(linear_dtype(inputs), out))
}

/// Element type of a binary op: that of its operands. The IR holds every constant as an f32
/// `Const`, so an f32 operand next to an integer one stands for a constant of the integer
/// type (ONNX requires both operands to have one type) and the result is integer.
fn binary_dtype(a: DType, b: DType) -> Result<DType, ShapeError> {
    match (a, b) {
        (a, b) if a == b => Ok(a),
        (DType::F32, t) | (t, DType::F32) => Ok(t),
        (a, b) => shape_err!("operands have different element types {a} and {b}"),
    }
}

/// Linear ops on integer tensors give integers; otherwise reals.
fn linear_dtype(inputs: &[&TensorFact]) -> DType {
    if inputs[0].dtype == DType::I64 {
        DType::I64
    } else {
        DType::F32
    }
}

/// Output length of a sliding window along one axis ([`fhec_kernels::conv::window_out_len`]),
/// or why the window does not fit.
pub fn pool_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    ceil_mode: bool,
) -> Result<usize, ShapeError> {
    fhec_kernels::conv::window_out_len(input, kernel, stride, dilation, pads, ceil_mode)
        .ok_or_else(|| {
            ShapeError(format!(
                "a window of {kernel} (stride {stride}, dilation {dilation}) does not fit length {input} padded by {pads:?}"
            ))
        })
}
