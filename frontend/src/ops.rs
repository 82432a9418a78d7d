//! The op importer table: one function per ONNX op type, resolving attributes and opset
//! differences into the IR's single form.

use fhec_ir::{BinaryOp, ConvAttrs, DType, GemmAttrs, Op, PadMode, PoolAttrs, QuantAttrs, UnaryOp};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::error::FrontendError;
use crate::node::{Importer, NodeCtx, Res, Value};
use crate::tensor::{int_dtype, onnx_type, ConstValue};

/// Every supported ONNX op type and its importer.
pub(crate) const IMPORTERS: &[(&str, Importer)] = &[
    ("Add", |c| binary(c, BinaryOp::Add)),
    ("Sub", |c| binary(c, BinaryOp::Sub)),
    ("Mul", |c| binary(c, BinaryOp::Mul)),
    ("Div", |c| binary(c, BinaryOp::Div)),
    ("PRelu", prelu),
    ("Neg", |c| unary(c, UnaryOp::Neg, &[])),
    ("Relu", |c| unary(c, UnaryOp::Relu, &[])),
    ("LeakyRelu", |c| {
        let alpha = c.attr_float("alpha", 0.01);
        unary(c, UnaryOp::LeakyRelu { alpha }, &["alpha"])
    }),
    ("Sigmoid", |c| unary(c, UnaryOp::Sigmoid, &[])),
    ("Tanh", |c| unary(c, UnaryOp::Tanh, &[])),
    ("HardSigmoid", |c| {
        let (alpha, beta) = (c.attr_float("alpha", 0.2), c.attr_float("beta", 0.5));
        unary(c, UnaryOp::HardSigmoid { alpha, beta }, &["alpha", "beta"])
    }),
    ("HardSwish", |c| unary(c, UnaryOp::HardSwish, &[])),
    ("Elu", |c| {
        let alpha = c.attr_float("alpha", 1.0);
        unary(c, UnaryOp::Elu { alpha }, &["alpha"])
    }),
    ("Selu", |c| {
        let alpha = c.attr_float("alpha", 1.673_263_2);
        let gamma = c.attr_float("gamma", 1.050_701);
        unary(c, UnaryOp::Selu { alpha, gamma }, &["alpha", "gamma"])
    }),
    ("Softplus", |c| unary(c, UnaryOp::Softplus, &[])),
    ("Erf", |c| unary(c, UnaryOp::Erf, &[])),
    ("Gelu", gelu),
    ("Clip", clip),
    ("Identity", |c| unary_like(c, Op::Identity)),
    ("Dropout", dropout),
    ("MatMul", matmul),
    ("Gemm", gemm),
    ("Conv", conv),
    ("AveragePool", |c| pool(c, false)),
    ("MaxPool", |c| pool(c, true)),
    ("GlobalAveragePool", |c| {
        unary_like(c, Op::GlobalAveragePool)
    }),
    ("BatchNormalization", batch_norm),
    ("Softmax", softmax),
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Transpose", transpose),
    ("Concat", concat),
    ("Pad", pad),
    ("Squeeze", squeeze),
    ("Unsqueeze", unsqueeze),
    ("Constant", constant),
    ("ConstantOfShape", constant_of_shape),
    ("Cast", cast),
    ("Shape", shape),
    ("Gather", gather),
    ("Slice", slice),
    ("ReduceProd", reduce_prod),
    ("QuantizeLinear", quantize),
    ("DequantizeLinear", dequantize),
];

// ---------------------------------------------------------------------------------------------
// helpers

fn resolve_axis(c: &NodeCtx, axis: i64, rank: usize, attr: &str) -> Result<usize, FrontendError> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) {
        return Err(c.attr_err(
            attr,
            format!("value {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

fn ints_of(c: &NodeCtx, v: &ConstValue, what: &str) -> Result<Vec<i64>, FrontendError> {
    v.to_i64()
        .map(|a| a.iter().copied().collect())
        .ok_or_else(|| c.err(format!("{what} must hold integers")))
}

fn to_usizes(c: &NodeCtx, v: &[i64], attr: &str) -> Result<Vec<usize>, FrontendError> {
    v.iter()
        .map(|&x| {
            usize::try_from(x).map_err(|_| c.attr_err(attr, format!("has negative value {x}")))
        })
        .collect()
}

/// Reshape of a value: integer constants stay integer, the rest goes through the IR op.
fn reshape_value(c: &mut NodeCtx, x: Value, shape: Vec<usize>) -> Result<Value, FrontendError> {
    if let Value::Const(ConstValue::Int(a, t)) = &x {
        let a = a
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| c.err(e.to_string()))?;
        return Ok(Value::Const(ConstValue::Int(a, *t)));
    }
    if c.shape_of(&x) == shape {
        return Ok(x);
    }
    c.emit(Op::Reshape { shape }, &[x])
}

fn unary(c: &mut NodeCtx, op: UnaryOp, attrs: &[&str]) -> Res {
    let mut allowed = attrs.to_vec();
    allowed.push("consumed_inputs");
    c.allow_attrs(&allowed)?;
    let x = c.input(0)?;
    Ok(vec![c.emit(Op::Unary(op), &[x])?])
}

fn unary_like(c: &mut NodeCtx, op: Op) -> Res {
    c.allow_attrs(&[])?;
    let x = c.input(0)?;
    if matches!(op, Op::Identity) {
        if let Value::Const(_) = x {
            return Ok(vec![x]);
        }
    }
    Ok(vec![c.emit(op, &[x])?])
}

fn gelu(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["approximate"])?;
    let tanh_approx = match c.attr_string("approximate").as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(o) => {
            return Err(c.attr_err(
                "approximate",
                format!("value '{o}' is not 'none' or 'tanh'"),
            ))
        }
    };
    let x = c.input(0)?;
    Ok(vec![c.emit(Op::Unary(UnaryOp::Gelu { tanh_approx }), &[x])?])
}

fn scalar_of(c: &NodeCtx, v: Option<ConstValue>, what: &str) -> Result<Option<f32>, FrontendError> {
    match v {
        None => Ok(None),
        Some(v) if v.shape().iter().product::<usize>() == 1 => {
            Ok(Some(v.to_f32().iter().next().copied().unwrap_or(0.0)))
        }
        Some(v) => Err(c.err(format!(
            "{what} must be a scalar, got shape {:?}",
            v.shape()
        ))),
    }
}

fn clip(c: &mut NodeCtx) -> Res {
    let (min, max) = if c.opset < 11 {
        c.allow_attrs(&["min", "max", "consumed_inputs"])?;
        (
            c.attr_float("min", f32::NEG_INFINITY),
            c.attr_float("max", f32::INFINITY),
        )
    } else {
        c.allow_attrs(&[])?;
        let min = scalar_of(c, c.opt_const_input(1, "min")?, "min")?;
        let max = scalar_of(c, c.opt_const_input(2, "max")?, "max")?;
        (
            min.unwrap_or(f32::NEG_INFINITY),
            max.unwrap_or(f32::INFINITY),
        )
    };
    let x = c.input(0)?;
    Ok(vec![c.emit(Op::Unary(UnaryOp::Clip { min, max }), &[x])?])
}

fn dropout(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["ratio", "is_test", "seed", "consumed_inputs"])?;
    if c.opset < 7 && c.attr_int("is_test", 0) == 0 {
        return Err(c.attr_err(
            "is_test",
            "is 0 (training mode); export the model in eval mode",
        ));
    }
    if let Some(t) = c.opt_const_input(2, "training_mode")? {
        let ratio = scalar_of(c, c.opt_const_input(1, "ratio")?, "ratio")?.unwrap_or(0.5);
        if t.to_f32().iter().any(|&v| v != 0.0) && ratio != 0.0 {
            return Err(
                c.err("training_mode is true: dropout would be random; export in eval mode")
            );
        }
    }
    let x = c.input(0)?;
    let y = match x {
        Value::Const(_) => x,
        _ => c.emit(Op::Identity, &[x])?,
    };
    Ok(vec![
        y,
        Value::Unavailable("the Dropout mask output is not supported"),
    ])
}

fn binary(c: &mut NodeCtx, op: BinaryOp) -> Res {
    c.allow_attrs(&["broadcast", "axis", "consumed_inputs"])?;
    let a = c.input(0)?;
    let mut b = c.input(1)?;
    // Integer constant arithmetic (shape computations) folds exactly.
    if let (Value::Const(ConstValue::Int(x, t)), Value::Const(ConstValue::Int(y, _))) = (&a, &b) {
        let f = |p: i64, q: i64| match op {
            BinaryOp::Add => Some(p.wrapping_add(q)),
            BinaryOp::Sub => Some(p.wrapping_sub(q)),
            BinaryOp::Mul => Some(p.wrapping_mul(q)),
            BinaryOp::Div => p.checked_div(q),
            BinaryOp::PRelu => None,
        };
        let shape = fhec_ir::op::broadcast_shapes(x.shape(), y.shape()).map_err(|e| c.err(e.0))?;
        crate::tensor::folded_elements(&shape).map_err(|e| c.err(e))?;
        let xb = x
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| c.err("operands do not broadcast"))?;
        let yb = y
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| c.err("operands do not broadcast"))?;
        let vals: Option<Vec<i64>> = xb.iter().zip(yb.iter()).map(|(&p, &q)| f(p, q)).collect();
        let vals = vals.ok_or_else(|| c.err("integer division by zero in a constant"))?;
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), vals).map_err(|e| c.err(e.to_string()))?;
        return Ok(vec![Value::Const(ConstValue::Int(arr, *t))]);
    }
    // Opset < 7 "broadcast=1, axis=k": B aligns with A starting at axis k.
    if c.opset < 7 && c.attr_int("broadcast", 0) == 1 {
        let ra = c.shape_of(&a).len();
        let sb = c.shape_of(&b);
        let axis = if c.has_attr("axis") {
            resolve_axis(c, c.attr_int("axis", 0), ra, "axis")?
        } else {
            ra - sb.len()
        };
        let mut shape = sb.clone();
        shape.extend(std::iter::repeat_n(1, ra.saturating_sub(axis + sb.len())));
        b = reshape_value(c, b, shape)?;
    }
    Ok(vec![c.emit(Op::Binary(op), &[a, b])?])
}

fn prelu(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["consumed_inputs"])?;
    let x = c.input(0)?;
    let mut slope = c.input(1)?;
    let (sx, ss) = (c.shape_of(&x), c.shape_of(&slope));
    // A per-channel slope [C] on an N-C-spatial input means channel-wise (older exports).
    if ss.len() == 1 && sx.len() > 2 && ss[0] == sx[1] && ss[0] != sx[sx.len() - 1] {
        let mut shape = vec![ss[0]];
        shape.extend(std::iter::repeat_n(1, sx.len() - 2));
        slope = reshape_value(c, slope, shape)?;
    }
    Ok(vec![c.emit(Op::Binary(BinaryOp::PRelu), &[x, slope])?])
}

fn matmul(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&[])?;
    let (a, b) = (c.input(0)?, c.input(1)?);
    Ok(vec![c.emit(Op::MatMul, &[a, b])?])
}

fn gemm(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["alpha", "beta", "transA", "transB", "broadcast"])?;
    let attrs = GemmAttrs {
        alpha: c.attr_float("alpha", 1.0),
        beta: c.attr_float("beta", 1.0),
        trans_a: c.attr_int("transA", 0) != 0,
        trans_b: c.attr_int("transB", 0) != 0,
    };
    let mut ins = vec![c.input(0)?, c.input(1)?];
    if let Some(bias) = c.opt_input(2)? {
        ins.push(bias);
    }
    Ok(vec![c.emit(Op::Gemm(attrs), &ins)?])
}

/// Explicit (begin, end) paddings from `pads`/`auto_pad` for windows of `kernel` elements.
fn window_pads(
    c: &NodeCtx,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<Vec<(usize, usize)>, FrontendError> {
    let sp = kernel.len();
    let auto = c.attr_string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => {
            let pads = to_usizes(
                c,
                &c.attr_ints("pads").unwrap_or_else(|| vec![0; 2 * sp]),
                "pads",
            )?;
            if pads.len() != 2 * sp {
                return Err(c.attr_err(
                    "pads",
                    format!("has {} values, expected {}", pads.len(), 2 * sp),
                ));
            }
            Ok((0..sp).map(|i| (pads[i], pads[sp + i])).collect())
        }
        "VALID" => Ok(vec![(0, 0); sp]),
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..sp)
            .map(|i| {
                let out = input[i].div_ceil(strides[i]);
                let span = dilations[i] * (kernel[i] - 1) + 1;
                let total = ((out - 1) * strides[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(c.attr_err(
            "auto_pad",
            format!("value '{other}' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
        )),
    }
}

fn spatial_attr(c: &NodeCtx, name: &str, sp: usize) -> Result<Vec<usize>, FrontendError> {
    let v = to_usizes(c, &c.attr_ints(name).unwrap_or_else(|| vec![1; sp]), name)?;
    if v.len() != sp || v.contains(&0) {
        return Err(c.attr_err(name, format!("must have {sp} positive values, got {v:?}")));
    }
    Ok(v)
}

fn conv(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    let x = c.input(0)?;
    let w = c.input(1)?;
    let (sx, sw) = (c.shape_of(&x), c.shape_of(&w));
    if sx.len() < 3 || sx.len() > 4 || sw.len() != sx.len() {
        return Err(c.err(format!(
            "only 1-D and 2-D convolutions are supported (input {sx:?}, weights {sw:?})"
        )));
    }
    let sp = sx.len() - 2;
    let kernel = sw[2..].to_vec();
    if let Some(k) = c.attr_ints("kernel_shape") {
        if to_usizes(c, &k, "kernel_shape")? != kernel {
            return Err(c.attr_err(
                "kernel_shape",
                format!("{k:?} disagrees with the weights {sw:?}"),
            ));
        }
    }
    let strides = spatial_attr(c, "strides", sp)?;
    let dilations = spatial_attr(c, "dilations", sp)?;
    let pads = window_pads(c, &sx[2..], &kernel, &strides, &dilations)?;
    let group = c.attr_int("group", 1);
    if group < 1 {
        return Err(c.attr_err("group", format!("value {group} must be positive")));
    }
    let mut ins = vec![x, w];
    if let Some(b) = c.opt_input(2)? {
        ins.push(b);
    }
    let op = Op::Conv(ConvAttrs {
        strides,
        dilations,
        pads,
        group: group as usize,
    });
    Ok(vec![c.emit(op, &ins)?])
}

fn pool(c: &mut NodeCtx, max: bool) -> Res {
    c.allow_attrs(&[
        "auto_pad",
        "ceil_mode",
        "count_include_pad",
        "dilations",
        "kernel_shape",
        "pads",
        "strides",
        "storage_order",
    ])?;
    let x = c.input(0)?;
    let sx = c.shape_of(&x);
    if sx.len() < 3 || sx.len() > 4 {
        return Err(c.err(format!(
            "only 1-D and 2-D pooling is supported (input {sx:?})"
        )));
    }
    let sp = sx.len() - 2;
    let kernel = to_usizes(
        c,
        &c.attr_ints("kernel_shape")
            .ok_or_else(|| c.attr_err("kernel_shape", "is required"))?,
        "kernel_shape",
    )?;
    if kernel.len() != sp || kernel.contains(&0) {
        return Err(c.attr_err("kernel_shape", format!("must have {sp} positive values")));
    }
    let strides = spatial_attr(c, "strides", sp)?;
    let dilations = spatial_attr(c, "dilations", sp)?;
    let pads = window_pads(c, &sx[2..], &kernel, &strides, &dilations)?;
    let attrs = PoolAttrs {
        kernel,
        strides,
        dilations,
        pads,
        ceil_mode: c.attr_int("ceil_mode", 0) != 0,
        count_include_pad: c.attr_int("count_include_pad", 0) != 0,
    };
    let op = if max {
        Op::MaxPool(attrs)
    } else {
        Op::AveragePool(attrs)
    };
    Ok(vec![
        c.emit(op, &[x])?,
        Value::Unavailable("the MaxPool Indices output is not supported"),
    ])
}

fn batch_norm(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&[
        "epsilon",
        "momentum",
        "spatial",
        "is_test",
        "training_mode",
        "consumed_inputs",
    ])?;
    if c.attr_int("spatial", 1) != 1 {
        return Err(c.attr_err("spatial", "must be 1 (per-channel statistics)"));
    }
    if c.attr_int("training_mode", 0) != 0
        || (c.opset < 7 && c.attr_int("is_test", 0) == 0 && c.node.output.len() > 1)
    {
        return Err(c.err(
            "training-mode BatchNormalization is not supported; export the model in eval mode",
        ));
    }
    let ins = (0..5).map(|i| c.input(i)).collect::<Result<Vec<_>, _>>()?;
    let y = c.emit(
        Op::BatchNorm {
            epsilon: c.attr_float("epsilon", 1e-5),
        },
        &ins,
    )?;
    let mut out = vec![y];
    out.extend(std::iter::repeat_n(
        Value::Unavailable("BatchNormalization training outputs are not supported"),
        4,
    ));
    Ok(out)
}

fn softmax(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis"])?;
    let x = c.input(0)?;
    let shape = c.shape_of(&x);
    let rank = shape.len();
    if c.opset >= 13 {
        let axis = resolve_axis(c, c.attr_int("axis", -1), rank, "axis")?;
        return Ok(vec![c.emit(Op::Softmax { axis }, &[x])?]);
    }
    // Opset < 13 coerces the input to 2-D at `axis` and normalises over the flattened tail.
    let axis = resolve_axis(c, c.attr_int("axis", 1), rank, "axis")?;
    if axis + 1 == rank {
        return Ok(vec![c.emit(Op::Softmax { axis }, &[x])?]);
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let flat = reshape_value(c, x, vec![outer, inner])?;
    let y = c.emit(Op::Softmax { axis: 1 }, &[flat])?;
    Ok(vec![reshape_value(c, y, shape)?])
}

fn flatten(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis"])?;
    let x = c.input(0)?;
    let shape = c.shape_of(&x);
    let axis = c.attr_int("axis", 1);
    let r = shape.len() as i64;
    if axis < -r || axis > r {
        return Err(c.attr_err("axis", format!("value {axis} is out of range for rank {r}")));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let outer = shape[..axis].iter().product();
    let inner = shape[axis..].iter().product();
    Ok(vec![reshape_value(c, x, vec![outer, inner])?])
}

fn reshape(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["allowzero", "shape"])?;
    let x = c.input(0)?;
    let target: Vec<i64> = if c.opset < 5 {
        c.attr_ints("shape")
            .ok_or_else(|| c.attr_err("shape", "is required"))?
    } else {
        let s = c.const_input(1, "the target shape")?;
        ints_of(c, &s, "the target shape")?
    };
    let in_shape = c.shape_of(&x);
    let allow_zero = c.attr_int("allowzero", 0) != 0;
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                *in_shape
                    .get(i)
                    .ok_or_else(|| c.err(format!("target dim {i} copies a missing input dim")))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(c.err(format!("invalid target shape {target:?}"))),
        }
    }
    let total: usize = in_shape.iter().product();
    if let Some(i) = infer_at {
        let known: usize = out
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &d)| d)
            .product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(c.err(format!("cannot reshape {in_shape:?} to {target:?}")));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(c.err(format!("cannot reshape {in_shape:?} to {target:?}")));
    }
    Ok(vec![reshape_value(c, x, out)?])
}

fn transpose(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["perm"])?;
    let x = c.input(0)?;
    let rank = c.shape_of(&x).len();
    let perm = match c.attr_ints("perm") {
        Some(p) => to_usizes(c, &p, "perm")?,
        None => (0..rank).rev().collect(),
    };
    if let Value::Const(ConstValue::Int(a, t)) = &x {
        if perm.len() == rank {
            let p = a
                .clone()
                .permuted_axes(IxDyn(&perm))
                .as_standard_layout()
                .into_owned();
            return Ok(vec![Value::Const(ConstValue::Int(p, *t))]);
        }
    }
    Ok(vec![c.emit(Op::Transpose { perm }, &[x])?])
}

fn concat(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis"])?;
    let ins = (0..c.input_count())
        .map(|i| c.input(i))
        .collect::<Result<Vec<_>, _>>()?;
    let first = ins
        .first()
        .ok_or_else(|| c.err("needs at least one input"))?;
    let rank = c.shape_of(first).len();
    let axis = resolve_axis(c, c.attr_int("axis", 0), rank, "axis")?;
    // All-integer constants (shape vectors) concatenate exactly.
    if ins
        .iter()
        .all(|v| matches!(v, Value::Const(ConstValue::Int(..))))
    {
        let arrays: Vec<ArrayD<i64>> = ins
            .iter()
            .map(|v| match v {
                Value::Const(ConstValue::Int(a, _)) => a.clone(),
                _ => unreachable!(),
            })
            .collect();
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        let joined = ndarray::concatenate(Axis(axis), &views).map_err(|e| c.err(e.to_string()))?;
        return Ok(vec![Value::Const(ConstValue::Int(
            joined,
            first_int_dtype(first),
        ))]);
    }
    // Zero-length pieces (allowed by ONNX) contribute nothing.
    let ins: Vec<Value> = ins
        .into_iter()
        .filter(|v| c.shape_of(v).iter().product::<usize>() > 0)
        .collect();
    if ins.len() == 1 {
        return Ok(ins);
    }
    Ok(vec![c.emit(Op::Concat { axis }, &ins)?])
}

fn first_int_dtype(v: &Value) -> DType {
    match v {
        Value::Const(ConstValue::Int(_, t)) => *t,
        _ => DType::I64,
    }
}

fn pad(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["mode", "pads", "paddings", "value"])?;
    let x = c.input(0)?;
    let rank = c.shape_of(&x).len();
    let mode = match c.attr_string("mode").as_deref() {
        None | Some("constant") => PadMode::Constant,
        Some("reflect") => PadMode::Reflect,
        Some("edge") => PadMode::Edge,
        Some(o) => {
            return Err(c.attr_err(
                "mode",
                format!("value '{o}' is not supported (constant, reflect, edge)"),
            ))
        }
    };
    let (raw, value, axes): (Vec<i64>, f32, Option<Vec<i64>>) = if c.opset < 11 {
        let key = if c.opset < 2 { "paddings" } else { "pads" };
        let p = c
            .attr_ints(key)
            .ok_or_else(|| c.attr_err(key, "is required"))?;
        (p, c.attr_float("value", 0.0), None)
    } else {
        let p = c.const_input(1, "pads")?;
        let p = ints_of(c, &p, "pads")?;
        let v =
            scalar_of(c, c.opt_const_input(2, "constant_value")?, "constant_value")?.unwrap_or(0.0);
        let axes = match c.opt_const_input(3, "axes")? {
            Some(a) => Some(ints_of(c, &a, "axes")?),
            None => None,
        };
        (p, v, axes)
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&ax| resolve_axis(c, ax, rank, "axes"))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(c.err(format!(
            "pads has {} values for {} axes",
            raw.len(),
            axes.len()
        )));
    }
    if raw.iter().any(|&p| p < 0) {
        return Err(c.err(format!(
            "negative pads {raw:?} (cropping) are not supported"
        )));
    }
    let mut pads = vec![(0usize, 0usize); rank];
    for (i, &ax) in axes.iter().enumerate() {
        pads[ax] = (raw[i] as usize, raw[axes.len() + i] as usize);
    }
    if pads.iter().all(|&p| p == (0, 0)) {
        return Ok(vec![x]);
    }
    Ok(vec![c.emit(Op::Pad { pads, mode, value }, &[x])?])
}

fn axes_arg(c: &NodeCtx) -> Result<Option<Vec<i64>>, FrontendError> {
    if c.opset < 13 {
        Ok(c.attr_ints("axes"))
    } else {
        match c.opt_const_input(1, "axes")? {
            Some(a) => Ok(Some(ints_of(c, &a, "axes")?)),
            None => Ok(None),
        }
    }
}

fn squeeze(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axes"])?;
    let x = c.input(0)?;
    let shape = c.shape_of(&x);
    let axes: Vec<usize> = match axes_arg(c)? {
        Some(a) => a
            .iter()
            .map(|&ax| resolve_axis(c, ax, shape.len(), "axes"))
            .collect::<Result<_, _>>()?,
        None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
    };
    if let Some(&bad) = axes.iter().find(|&&a| shape[a] != 1) {
        return Err(c.err(format!(
            "cannot squeeze axis {bad} of size {} in {shape:?}",
            shape[bad]
        )));
    }
    let out = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    Ok(vec![reshape_value(c, x, out)?])
}

fn unsqueeze(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axes"])?;
    let x = c.input(0)?;
    let shape = c.shape_of(&x);
    let axes = axes_arg(c)?.ok_or_else(|| c.err("axes are required"))?;
    let out_rank = shape.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| resolve_axis(c, a, out_rank, "axes"))
        .collect::<Result<_, _>>()?;
    axes.sort_unstable();
    let mut out = Vec::with_capacity(out_rank);
    let mut it = shape.iter();
    for i in 0..out_rank {
        if axes.contains(&i) {
            out.push(1);
        } else {
            out.push(
                *it.next()
                    .ok_or_else(|| c.err(format!("duplicate axes {axes:?}")))?,
            );
        }
    }
    Ok(vec![reshape_value(c, x, out)?])
}

fn constant(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&[
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
    ])?;
    let v = if let Some(t) = c.attr_tensor("value")? {
        t
    } else if c.has_attr("value_float") {
        ConstValue::Float(ArrayD::from_elem(
            IxDyn(&[]),
            c.attr_float("value_float", 0.0),
        ))
    } else if let Some(f) = c.attr_floats("value_floats") {
        ConstValue::Float(
            ArrayD::from_shape_vec(IxDyn(&[f.len()]), f).map_err(|e| c.err(e.to_string()))?,
        )
    } else if c.has_attr("value_int") {
        ConstValue::Int(
            ArrayD::from_elem(IxDyn(&[]), c.attr_int("value_int", 0)),
            DType::I64,
        )
    } else if let Some(i) = c.attr_ints("value_ints") {
        ConstValue::Int(
            ArrayD::from_shape_vec(IxDyn(&[i.len()]), i).map_err(|e| c.err(e.to_string()))?,
            DType::I64,
        )
    } else {
        return Err(c.err(
            "has no supported value attribute (sparse and string constants are not supported)",
        ));
    };
    Ok(vec![Value::Const(v)])
}

fn constant_of_shape(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["value"])?;
    let s = c.const_input(0, "the shape")?;
    let shape = to_usizes(c, &ints_of(c, &s, "the shape")?, "shape")?;
    crate::tensor::folded_elements(&shape).map_err(|e| c.err(e))?;
    let fill = c
        .attr_tensor("value")?
        .unwrap_or(ConstValue::Float(ArrayD::zeros(IxDyn(&[1]))));
    let v = match fill {
        ConstValue::Float(a) => ConstValue::Float(ArrayD::from_elem(
            IxDyn(&shape),
            a.iter().next().copied().unwrap_or(0.0),
        )),
        ConstValue::Int(a, t) => ConstValue::Int(
            ArrayD::from_elem(IxDyn(&shape), a.iter().next().copied().unwrap_or(0)),
            t,
        ),
    };
    Ok(vec![Value::Const(v)])
}

fn cast(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["to", "saturate"])?;
    let to = c.attr_int("to", 0) as i32;
    let x = c.input(0)?;
    let to_float = matches!(
        to,
        onnx_type::FLOAT | onnx_type::DOUBLE | onnx_type::FLOAT16
    );
    let unsupported = |c: &NodeCtx, what: &str| {
        c.attr_err(
            "to",
            format!("target type {} is not supported{what}", onnx_type::name(to)),
        )
    };
    if let Value::Const(v) = &x {
        // Folded exactly in i64; to an integer type: truncation, then the ONNX wrap-around.
        let target = if to_float {
            DType::F32
        } else {
            int_dtype(to).ok_or_else(|| unsupported(c, ""))?
        };
        let wrap = |v: i64| match to {
            onnx_type::INT8 => v as i8 as i64,
            onnx_type::UINT8 => v as u8 as i64,
            onnx_type::INT16 => v as i16 as i64,
            onnx_type::UINT16 => v as u16 as i64,
            onnx_type::INT32 => v as i32 as i64,
            onnx_type::UINT32 => v as u32 as i64,
            onnx_type::BOOL => (v != 0) as i64,
            _ => v,
        };
        let out = match (v, to_float) {
            (_, true) => ConstValue::Float(v.to_f32()),
            (ConstValue::Int(a, _), false) => ConstValue::Int(a.mapv(wrap), target),
            (ConstValue::Float(a), false) if to == onnx_type::BOOL => {
                ConstValue::Int(a.mapv(|f| (f != 0.0) as i64), target)
            }
            (ConstValue::Float(a), false) => ConstValue::Int(a.mapv(|f| wrap(f as i64)), target),
        };
        return Ok(vec![Value::Const(out)]);
    }
    let from = match &x {
        Value::Node(id) => c.graph.node(*id).fact.dtype,
        _ => DType::F32,
    };
    if to_float {
        // An integer tensor becomes f32 by a Cast (its values are held in f32 already).
        let op = if from.is_int() {
            Op::Cast { to: DType::F32 }
        } else {
            Op::Identity
        };
        return Ok(vec![c.emit(op, &[x])?]);
    }
    // Runtime tensors: only the integer types the IR holds with their own wrap-around.
    let target = match to {
        onnx_type::INT8 => DType::I8,
        onnx_type::UINT8 => DType::U8,
        onnx_type::INT32 => DType::I32,
        onnx_type::INT64 => DType::I64,
        _ => {
            return Err(unsupported(
                c,
                " for a runtime tensor (int8, uint8, int32, int64 and float are)",
            ))
        }
    };
    Ok(vec![c.emit(Op::Cast { to: target }, &[x])?])
}

fn shape(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["start", "end"])?;
    let x = c.input(0)?;
    let s: Vec<i64> = c.shape_of(&x).iter().map(|&d| d as i64).collect();
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(c.attr_int("start", 0));
    let end = clamp(c.attr_int("end", r));
    let v: Vec<i64> = s[start..end.max(start)].to_vec();
    Ok(vec![Value::Const(ConstValue::Int(
        ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| c.err(e.to_string()))?,
        DType::I64,
    ))])
}

fn gather(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis"])?;
    let data = c.const_input(0, "the data (Gather on runtime tensors is not supported)")?;
    let idx = c.const_input(1, "the indices")?;
    let rank = data.shape().len();
    let axis = resolve_axis(c, c.attr_int("axis", 0), rank, "axis")?;
    let dim = data.shape()[axis] as i64;
    let idx_arr = idx
        .to_i64()
        .ok_or_else(|| c.err("indices must be integers"))?;
    let mut flat = vec![];
    for &i in idx_arr.iter() {
        let j = if i < 0 { i + dim } else { i };
        if j < 0 || j >= dim {
            return Err(c.err(format!(
                "index {i} is out of range for axis {axis} of size {dim}"
            )));
        }
        flat.push(j as usize);
    }
    let mut out_shape: Vec<usize> = data.shape()[..axis].to_vec();
    out_shape.extend(idx_arr.shape());
    out_shape.extend(&data.shape()[axis + 1..]);
    fn pick<T: Clone>(
        a: &ArrayD<T>,
        axis: usize,
        idx: &[usize],
        shape: &[usize],
    ) -> Result<ArrayD<T>, String> {
        a.select(Axis(axis), idx)
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| e.to_string())
    }
    let v = match data {
        ConstValue::Float(a) => {
            ConstValue::Float(pick(&a, axis, &flat, &out_shape).map_err(|e| c.err(e))?)
        }
        ConstValue::Int(a, t) => {
            ConstValue::Int(pick(&a, axis, &flat, &out_shape).map_err(|e| c.err(e))?, t)
        }
    };
    Ok(vec![Value::Const(v)])
}

fn slice(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["starts", "ends", "axes"])?;
    let data = c.const_input(0, "the data (Slice on runtime tensors is not supported)")?;
    let rank = data.shape().len();
    let get = |c: &NodeCtx, i: usize, attr: &str| -> Result<Option<Vec<i64>>, FrontendError> {
        if c.opset < 10 {
            Ok(c.attr_ints(attr))
        } else {
            match c.opt_const_input(i, attr)? {
                Some(v) => Ok(Some(ints_of(c, &v, attr)?)),
                None => Ok(None),
            }
        }
    };
    let starts = get(c, 1, "starts")?.ok_or_else(|| c.err("starts are required"))?;
    let ends = get(c, 2, "ends")?.ok_or_else(|| c.err("ends are required"))?;
    let axes = get(c, 3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = if c.opset < 10 {
        None
    } else {
        get(c, 4, "steps")?
    }
    .unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(c.err("starts, ends, axes and steps differ in length"));
    }
    let mut slices: Vec<Slice> = vec![Slice::from(..); rank];
    for i in 0..starts.len() {
        let ax = resolve_axis(c, axes[i], rank, "axes")?;
        let dim = data.shape()[ax] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(c.err("a step of 0 is invalid"));
        }
        let norm = |v: i64, lo: i64, hi: i64| (if v < 0 { v + dim } else { v }).clamp(lo, hi);
        let (s, e) = if step > 0 {
            (norm(starts[i], 0, dim), norm(ends[i], 0, dim))
        } else {
            (norm(starts[i], -1, dim - 1), norm(ends[i], -1, dim - 1))
        };
        slices[ax] = if step > 0 {
            Slice::new(s as isize, Some(e.max(s) as isize), step as isize)
        } else {
            // ndarray slices backwards from the end of [e+1, s+1).
            Slice::new(
                (e + 1) as isize,
                Some((s + 1).max(e + 1) as isize),
                step as isize,
            )
        };
    }
    fn cut<T: Clone>(a: &ArrayD<T>, slices: &[Slice]) -> ArrayD<T> {
        let mut v = a.view();
        for (ax, s) in slices.iter().enumerate() {
            v.slice_axis_inplace(Axis(ax), *s);
        }
        v.to_owned()
    }
    let v = match &data {
        ConstValue::Float(a) => ConstValue::Float(cut(a, &slices)),
        ConstValue::Int(a, t) => ConstValue::Int(cut(a, &slices), *t),
    };
    Ok(vec![Value::Const(v)])
}

fn reduce_prod(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axes", "keepdims"])?;
    let data = c.const_input(
        0,
        "the data (ReduceProd on runtime tensors is not supported)",
    )?;
    let a = data
        .to_i64()
        .ok_or_else(|| c.err("ReduceProd is only folded on integer constants"))?;
    let axes = if c.opset < 18 {
        c.attr_ints("axes")
    } else {
        match c.opt_const_input(1, "axes")? {
            Some(v) => Some(ints_of(c, &v, "axes")?),
            None => None,
        }
    };
    let rank = a.ndim();
    let mut axes: Vec<usize> = match axes {
        Some(ax) if !ax.is_empty() => ax
            .iter()
            .map(|&x| resolve_axis(c, x, rank, "axes"))
            .collect::<Result<_, _>>()?,
        _ => (0..rank).collect(),
    };
    axes.sort_unstable();
    let keep = c.attr_int("keepdims", 1) != 0;
    let mut out = a;
    for &ax in axes.iter().rev() {
        out = out.map_axis(Axis(ax), |l| l.iter().product());
        if keep {
            out.insert_axis_inplace(Axis(ax));
        }
    }
    Ok(vec![Value::Const(ConstValue::Int(out, DType::I64))])
}

/// Scale and zero point of a Q/DQ node, checked and placed in the graph.
fn quant_params(
    c: &mut NodeCtx,
    x_shape: &[usize],
    default_zp: DType,
) -> Result<(QuantAttrs, Value, Value), FrontendError> {
    if c.attr_int("block_size", 0) != 0 {
        return Err(c.attr_err("block_size", "blocked quantization is not supported"));
    }
    let scale = c.const_input(1, "the scale")?;
    let zp = c.opt_const_input(2, "the zero point")?;
    let dtype = match &zp {
        Some(ConstValue::Int(_, t)) if matches!(t, DType::I8 | DType::U8) => *t,
        Some(z) => {
            return Err(c.err(format!(
                "zero point type {} is not supported (int8/uint8 only)",
                z.dtype()
            )))
        }
        None => {
            if c.has_attr("output_dtype") {
                let t = c.attr_int("output_dtype", 0) as i32;
                int_dtype(t)
                    .filter(|d| matches!(d, DType::I8 | DType::U8))
                    .ok_or_else(|| {
                        c.attr_err(
                            "output_dtype",
                            format!("{} is not supported (int8/uint8 only)", onnx_type::name(t)),
                        )
                    })?
            } else {
                default_zp
            }
        }
    };
    let n = scale.shape().iter().product::<usize>();
    let axis = if scale.shape().is_empty()
        || (n == 1 && scale.shape().len() <= 1 && x_shape.get(1) != Some(&1))
    {
        None
    } else {
        Some(resolve_axis(
            c,
            c.attr_int("axis", 1),
            x_shape.len(),
            "axis",
        )?)
    };
    if scale.to_f32().iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(c.err("the scale must be positive and finite"));
    }
    let zp = zp.unwrap_or_else(|| ConstValue::Int(ArrayD::zeros(IxDyn(scale.shape())), dtype));
    Ok((
        QuantAttrs { axis, dtype },
        Value::Const(scale),
        Value::Const(zp),
    ))
}

fn quantize(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis", "saturate", "block_size", "output_dtype"])?;
    let x = c.input(0)?;
    let xs = c.shape_of(&x);
    let (attrs, scale, zp) = quant_params(c, &xs, DType::U8)?;
    Ok(vec![c.emit(Op::QuantizeLinear(attrs), &[x, scale, zp])?])
}

fn dequantize(c: &mut NodeCtx) -> Res {
    c.allow_attrs(&["axis", "block_size", "output_dtype"])?;
    let x = c.input(0)?;
    let xs = c.shape_of(&x);
    let x_dtype = match &x {
        Value::Const(v) => v.dtype(),
        Value::Node(id) => c.graph.node(*id).fact.dtype,
        Value::Unavailable(_) => DType::U8,
    };
    let default = if matches!(x_dtype, DType::I8 | DType::U8) {
        x_dtype
    } else {
        DType::U8
    };
    let (attrs, scale, zp) = quant_params(c, &xs, default)?;
    Ok(vec![c.emit(Op::DequantizeLinear(attrs), &[x, scale, zp])?])
}
