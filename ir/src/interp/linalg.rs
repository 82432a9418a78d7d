//! Matrix kernels: MatMul, Gemm and Conv (im2col + matrix multiply).

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array3, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Ix2, IxDyn};

use super::{from_vec, gather, row_major, row_major_strides, unravel};
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
/// multiply.
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

    // tables[i][k][o]: input coordinate along axis i read by kernel tap k at output o.
    let mut tables: Vec<Vec<Vec<Option<usize>>>> = Vec::with_capacity(sp);
    for i in 0..sp {
        let (stride, dil, pad) = (attrs.strides[i], attrs.dilations[i], attrs.pads[i].0);
        let per_k = (0..ks[i])
            .map(|k| {
                (0..outs[i])
                    .map(|o| {
                        (o * stride + k * dil)
                            .checked_sub(pad)
                            .filter(|&p| p < ins[i])
                    })
                    .collect()
            })
            .collect();
        tables.push(per_k);
    }
    let in_strides = row_major_strides(ins);
    let xs = row_major(x);
    let ws = row_major(w);
    let wmat = ArrayView2::from_shape((m, rows), &ws).map_err(|e| e.to_string())?;
    // A 1x1 kernel with unit strides and no padding reads the input planes as they are.
    let direct = kk == 1
        && attrs.strides.iter().all(|&s| s == 1)
        && attrs.pads.iter().all(|&p| p == (0, 0))
        && ins == outs;
    let mut col = vec![0.0f32; if direct { 0 } else { rows * plane_out }];
    let mut out = vec![0.0f32; n * m * plane_out];
    let mut kidx = vec![0usize; sp];
    let mut maps: Vec<&[Option<usize>]> = Vec::with_capacity(sp);
    for ni in 0..n {
        for gi in 0..g {
            let first = (ni * c + gi * cg) * plane_in;
            let cols = if direct {
                ArrayView2::from_shape((rows, plane_out), &xs[first..first + cg * plane_in])
            } else {
                if plane_out > 0 {
                    for (r, row) in col.chunks_mut(plane_out).enumerate() {
                        let (ci, k) = (r / kk, r % kk);
                        unravel(k, ks, &mut kidx);
                        maps.clear();
                        maps.extend(tables.iter().zip(&kidx).map(|(t, &k)| t[k].as_slice()));
                        let plane = &xs[first + ci * plane_in..first + (ci + 1) * plane_in];
                        gather(&maps, &in_strides, plane, 0, 0.0, row);
                    }
                }
                ArrayView2::from_shape((rows, plane_out), &col[..])
            }
            .map_err(|e| e.to_string())?;
            let wg = wmat.slice(s![gi * mg..(gi + 1) * mg, ..]);
            let start = (ni * m + gi * mg) * plane_out;
            let mut ov =
                ArrayViewMut2::from_shape((mg, plane_out), &mut out[start..start + mg * plane_out])
                    .map_err(|e| e.to_string())?;
            mat_mul_into(&wg, &cols, &mut ov);
        }
    }
    if let Some(b) = bias {
        let bs = row_major(b);
        if bs.len() != m {
            return Err(format!("Conv bias has {} elements, expected {m}", bs.len()));
        }
        if plane_out > 0 {
            for (i, chunk) in out.chunks_mut(plane_out).enumerate() {
                let bv = bs[i % m];
                chunk.iter_mut().for_each(|v| *v += bv);
            }
        }
    }
    from_vec(out_shape, out)
}
