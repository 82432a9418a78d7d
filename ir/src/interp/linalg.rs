//! Matrix kernels: MatMul, Gemm and Conv (im2col + matrix multiply).

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array3, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Ix2, IxDyn};

use super::{from_vec, row_major, row_major_strides, unravel};
use crate::op::{broadcast_shapes, ConvAttrs, GemmAttrs};
use crate::Tensor;

fn as_2d(v: ArrayViewD<'_, f32>) -> Result<ArrayView2<'_, f32>, String> {
    v.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}

/// `c = a @ b` on 2-D views, tolerating empty dimensions.
fn mat_mul_into(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>, c: &mut ArrayViewMut2<'_, f32>) {
    if c.is_empty() {
        return;
    }
    if a.ncols() == 0 {
        c.fill(0.0);
        return;
    }
    general_mat_mul(1.0, a, b, 0.0, c);
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

/// N-D convolution (cross-correlation) with strides, dilations, zero padding and groups.
///
/// Per image and group, the receptive fields are gathered into a `[C/g * K, P]` matrix
/// (`K` kernel positions, `P` output positions) that the group's `[M/g, C/g * K]` weights
/// multiply. Depthwise convolutions (one input channel per output channel) accumulate shifted
/// input planes instead, and pointwise ones multiply the input planes directly.
pub(super) fn conv(
    attrs: &ConvAttrs,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out_shape: &[usize],
) -> Result<Tensor, String> {
    let (xsh, wsh) = (x.shape(), w.shape());
    let sp = xsh.len().saturating_sub(2);
    if xsh.len() < 3
        || wsh.len() != xsh.len()
        || out_shape.len() != xsh.len()
        || attrs.strides.len() != sp
        || attrs.dilations.len() != sp
        || attrs.pads.len() != sp
        || attrs.group == 0
    {
        return Err(format!(
            "Conv: inconsistent X {xsh:?}, W {wsh:?} and attributes"
        ));
    }
    let (n, c, m, g) = (xsh[0], xsh[1], wsh[0], attrs.group);
    let (cg, mg) = (wsh[1], m / g);
    if cg * g != c || mg * g != m || out_shape[0] != n || out_shape[1] != m {
        return Err(format!(
            "Conv: channels of X {xsh:?}, W {wsh:?} and group {g} disagree"
        ));
    }
    let (ins, ks, outs) = (&xsh[2..], &wsh[2..], &out_shape[2..]);
    let kk: usize = ks.iter().product();
    let plane_in: usize = ins.iter().product();
    let plane_out: usize = outs.iter().product();
    let rows = cg * kk;

    // taps[i][k]: which outputs along axis i kernel tap k reads, and where.
    let taps: Vec<Vec<AxisTap>> = (0..sp)
        .map(|i| {
            (0..ks[i])
                .map(|k| {
                    AxisTap::new(
                        ins[i],
                        outs[i],
                        attrs.strides[i],
                        k * attrs.dilations[i],
                        attrs.pads[i].0,
                    )
                })
                .collect()
        })
        .collect();
    let in_strides = row_major_strides(ins);
    let xs = row_major(x);
    let ws = row_major(w);
    let wmat = ArrayView2::from_shape((m, rows), &ws).map_err(|e| e.to_string())?;
    let mut out = vec![0.0f32; n * m * plane_out];
    if plane_out == 0 {
        return from_vec(out_shape, out);
    }
    let mut kidx = vec![0usize; sp];
    let mut tap_row: Vec<AxisTap> = Vec::with_capacity(sp);
    let mut select_taps = |k: usize, tap_row: &mut Vec<AxisTap>| {
        unravel(k, ks, &mut kidx);
        tap_row.clear();
        tap_row.extend(taps.iter().zip(&kidx).map(|(t, &k)| t[k]));
    };
    // A 1x1 kernel with unit strides and no padding reads the input planes as they are.
    let pointwise = kk == 1
        && attrs.strides.iter().all(|&s| s == 1)
        && attrs.pads.iter().all(|&p| p == (0, 0))
        && ins == outs;
    if cg == 1 && !pointwise {
        for (i, dst) in out.chunks_mut(plane_out).enumerate() {
            let (ni, mi) = (i / m, i % m);
            let ci = ni * c + mi / mg;
            let plane = &xs[ci * plane_in..(ci + 1) * plane_in];
            for (k, &wv) in ws[mi * kk..(mi + 1) * kk].iter().enumerate() {
                select_taps(k, &mut tap_row);
                gather_taps(&tap_row, &in_strides, plane, 0, dst, &mut |d, v| {
                    *d += wv * v
                });
            }
        }
    } else {
        let mut col = vec![0.0f32; if pointwise { 0 } else { rows * plane_out }];
        for ni in 0..n {
            for gi in 0..g {
                let first = (ni * c + gi * cg) * plane_in;
                let cols = if pointwise {
                    ArrayView2::from_shape((rows, plane_out), &xs[first..first + cg * plane_in])
                } else {
                    for (r, row) in col.chunks_mut(plane_out).enumerate() {
                        let (ci, k) = (r / kk, r % kk);
                        select_taps(k, &mut tap_row);
                        let plane = &xs[first + ci * plane_in..first + (ci + 1) * plane_in];
                        row.fill(0.0);
                        gather_taps(&tap_row, &in_strides, plane, 0, row, &mut |d, v| *d = v);
                    }
                    ArrayView2::from_shape((rows, plane_out), &col[..])
                }
                .map_err(|e| e.to_string())?;
                let wg = wmat.slice(s![gi * mg..(gi + 1) * mg, ..]);
                let start = (ni * m + gi * mg) * plane_out;
                let mut ov = ArrayViewMut2::from_shape(
                    (mg, plane_out),
                    &mut out[start..start + mg * plane_out],
                )
                .map_err(|e| e.to_string())?;
                mat_mul_into(&wg, &cols, &mut ov);
            }
        }
    }
    if let Some(b) = bias {
        let bs = row_major(b);
        if bs.len() != m {
            return Err(format!("Conv bias has {} elements, expected {m}", bs.len()));
        }
        for (i, chunk) in out.chunks_mut(plane_out).enumerate() {
            let bv = bs[i % m];
            chunk.iter_mut().for_each(|v| *v += bv);
        }
    }
    from_vec(out_shape, out)
}

/// The outputs along one axis that one kernel tap reads inside the input: outputs
/// `lo..hi` read input coordinates `src + (o - lo) * step`; the others read zero padding.
#[derive(Clone, Copy, Debug)]
struct AxisTap {
    /// Number of outputs along the axis.
    len: usize,
    lo: usize,
    hi: usize,
    src: usize,
    step: usize,
}

impl AxisTap {
    /// Output `o` reads input coordinate `o * stride + offset - pad`.
    fn new(input: usize, len: usize, stride: usize, offset: usize, pad: usize) -> Self {
        // First output whose coordinate is >= 0, and the first past the input's end.
        let lo = pad.saturating_sub(offset).div_ceil(stride).min(len);
        let hi = (input + pad)
            .saturating_sub(offset)
            .div_ceil(stride)
            .clamp(lo, len);
        AxisTap {
            len,
            lo,
            hi,
            src: (lo * stride + offset).saturating_sub(pad),
            step: stride,
        }
    }
}

/// Calls `f(dst, value)` for every output position (row-major over the taps' axes) that reads
/// an input element, passing that element; positions in the padding are left alone.
fn gather_taps(
    taps: &[AxisTap],
    strides: &[usize],
    src: &[f32],
    base: usize,
    dst: &mut [f32],
    f: &mut impl FnMut(&mut f32, f32),
) {
    let Some((t, rest)) = taps.split_first() else {
        if let Some(d) = dst.first_mut() {
            f(d, src[base]);
        }
        return;
    };
    if dst.is_empty() || t.len == 0 {
        return;
    }
    let count = t.hi - t.lo;
    if count == 0 {
        return;
    }
    let stride = strides[0];
    let first = base + t.src * stride;
    if rest.is_empty() {
        let dst = &mut dst[t.lo..t.hi];
        if t.step * stride == 1 {
            for (d, &v) in dst.iter_mut().zip(&src[first..first + count]) {
                f(d, v);
            }
        } else {
            let step = t.step * stride;
            for (j, d) in dst.iter_mut().enumerate() {
                f(d, src[first + j * step]);
            }
        }
        return;
    }
    let chunk = dst.len() / t.len;
    for (j, sub) in dst[t.lo * chunk..t.hi * chunk]
        .chunks_mut(chunk)
        .enumerate()
    {
        gather_taps(
            rest,
            &strides[1..],
            src,
            first + j * t.step * stride,
            sub,
            f,
        );
    }
}
