//! Matrix kernels: MatMul, Gemm and Conv (the last in `fhec-kernels`).

use fhec_kernels::conv::mat_mul_into;
use fhec_kernels::ConvShape;
use ndarray::{Array3, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};

use super::{from_vec, row_major, unravel};
use crate::op::{broadcast_shapes, ConvAttrs, GemmAttrs};
use crate::Tensor;

fn as_2d(v: ArrayViewD<'_, f32>) -> Result<ArrayView2<'_, f32>, String> {
    v.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}

/// Numpy `matmul`: rank-1 operands are promoted (and the added axis removed again), leading
/// axes broadcast.
pub(super) fn matmul(a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Result<Tensor, String> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let a2 = if a.ndim() == 1 {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let b2 = if b.ndim() == 1 {
        b.view().insert_axis(Axis(1))
    } else {
        b.view()
    };
    let (ra, rb) = (a2.ndim(), b2.ndim());
    let (m, k) = (a2.shape()[ra - 2], a2.shape()[ra - 1]);
    let (k2, n) = (b2.shape()[rb - 2], b2.shape()[rb - 1]);
    if k != k2 {
        return Err(format!(
            "MatMul inner dimensions differ: {:?} @ {:?}",
            a.shape(),
            b.shape()
        ));
    }
    let batch = broadcast_shapes(&a2.shape()[..ra - 2], &b2.shape()[..rb - 2]).map_err(|e| e.0)?;
    let with = |x: usize, y: usize| {
        let mut s = batch.clone();
        s.extend([x, y]);
        IxDyn(&s)
    };
    let av = a2
        .broadcast(with(m, k))
        .ok_or("MatMul: A does not broadcast")?;
    let bv = b2
        .broadcast(with(k, n))
        .ok_or("MatMul: B does not broadcast")?;
    let nb: usize = batch.iter().product();
    let mut out = Array3::<f32>::zeros((nb, m, n));
    let mut idx = vec![0; batch.len()];
    for (i, mut o) in out.outer_iter_mut().enumerate() {
        unravel(i, &batch, &mut idx);
        let (mut asub, mut bsub) = (av.view(), bv.view());
        for &j in &idx {
            asub = asub.index_axis_move(Axis(0), j);
            bsub = bsub.index_axis_move(Axis(0), j);
        }
        mat_mul_into(&as_2d(asub)?, &as_2d(bsub)?, &mut o);
    }
    let data = out.into_raw_vec_and_offset().0;
    from_vec(out_shape, data)
}

/// `alpha * op(A) @ op(B) + beta * C`, C broadcast to the output.
pub(super) fn gemm(
    attrs: &GemmAttrs,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    out_shape: &[usize],
) -> Result<Tensor, String> {
    let a = as_2d(a.view())?;
    let b = as_2d(b.view())?;
    let a = if attrs.trans_a { a.reversed_axes() } else { a };
    let b = if attrs.trans_b { b.reversed_axes() } else { b };
    let (m, n) = (a.nrows(), b.ncols());
    if a.ncols() != b.nrows() {
        return Err(format!(
            "Gemm inner dimensions differ: {:?} @ {:?}",
            a.dim(),
            b.dim()
        ));
    }
    let mut out = ndarray::Array2::<f32>::zeros((m, n));
    mat_mul_into(&a, &b, &mut out.view_mut());
    if attrs.alpha != 1.0 {
        out.mapv_inplace(|v| v * attrs.alpha);
    }
    if let Some(c) = c {
        let cv = c
            .broadcast((m, n))
            .ok_or_else(|| format!("Gemm: C {:?} does not broadcast to [{m}, {n}]", c.shape()))?;
        let beta = attrs.beta;
        out.zip_mut_with(&cv, |o, &c| *o += c * beta);
    }
    from_vec(out_shape, out.into_raw_vec_and_offset().0)
}

/// N-D convolution (cross-correlation) with strides, dilations, zero padding and groups
/// ([`fhec_kernels::conv()`], the kernel the integer interpreter and the runtime share).
pub(super) fn conv(
    attrs: &ConvAttrs,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out_shape: &[usize],
) -> Result<Tensor, String> {
    let shape = ConvShape {
        input: x.shape(),
        weight: w.shape(),
        output: out_shape,
        strides: &attrs.strides,
        dilations: &attrs.dilations,
        pads: &attrs.pads,
        group: attrs.group,
    };
    let bias = bias.map(row_major);
    let out = fhec_kernels::conv(&shape, &row_major(x), &row_major(w), bias.as_deref())?;
    from_vec(out_shape, out)
}
