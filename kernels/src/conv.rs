//! N-D convolution (cross-correlation) with strides, dilations, zero padding and groups, on
//! row-major data.
//!
//! Per image and group, the receptive fields are gathered into a `[C/g * K, P]` matrix (`K`
//! kernel positions, `P` output positions) that the group's `[M/g, C/g * K]` weights multiply.
//! Depthwise convolutions (one input channel per output channel) accumulate shifted input
//! planes instead, and pointwise ones multiply the input planes directly.

use std::ops::Range;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2};

use crate::Scalar;

/// The geometry of one convolution: ONNX `Conv` layouts, `input` `[N, C, spatial...]`,
/// `weight` `[M, C/group, kernel...]`, `output` `[N, M, spatial...]`.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape<'a> {
    pub input: &'a [usize],
    pub weight: &'a [usize],
    pub output: &'a [usize],
    pub strides: &'a [usize],
    pub dilations: &'a [usize],
    /// (begin, end) zero padding per spatial axis.
    pub pads: &'a [(usize, usize)],
    pub group: usize,
}

impl ConvShape<'_> {
    /// Checks that the shapes and attributes agree; returns `(N, C, M)`.
    fn check(&self) -> Result<(usize, usize, usize), String> {
        let (xsh, wsh, osh) = (self.input, self.weight, self.output);
        let sp = xsh.len().saturating_sub(2);
        if xsh.len() < 3
            || wsh.len() != xsh.len()
            || osh.len() != xsh.len()
            || self.strides.len() != sp
            || self.dilations.len() != sp
            || self.pads.len() != sp
            || self.group == 0
        {
            return Err(format!(
                "Conv: inconsistent X {xsh:?}, W {wsh:?} and attributes"
            ));
        }
        let (n, c, m, g) = (xsh[0], xsh[1], wsh[0], self.group);
        if wsh[1] * g != c || (m / g) * g != m || osh[0] != n || osh[1] != m {
            return Err(format!(
                "Conv: channels of X {xsh:?}, W {wsh:?} and group {g} disagree"
            ));
        }
        Ok((n, c, m))
    }
}

/// The convolution of `x` by `w` (plus `bias`, one value per output channel), row-major.
pub fn conv<T: Scalar>(
    shape: &ConvShape<'_>,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Result<Vec<T>, String> {
    let (n, c, m) = shape.check()?;
    let (xsh, wsh) = (shape.input, shape.weight);
    let g = shape.group;
    let (cg, mg) = (wsh[1], m / g);
    let (ins, ks, outs) = (&xsh[2..], &wsh[2..], &shape.output[2..]);
    let kk: usize = ks.iter().product();
    let plane_in: usize = ins.iter().product();
    let plane_out: usize = outs.iter().product();
    let rows = cg * kk;
    if x.len() != n * c * plane_in || w.len() != m * rows {
        return Err(format!(
            "Conv: {} input and {} weight elements for X {xsh:?}, W {wsh:?}",
            x.len(),
            w.len()
        ));
    }
    let mut out = vec![T::zero(); n * m * plane_out];
    if plane_out == 0 {
        return Ok(out);
    }
    // taps[i][k]: which outputs along axis i kernel tap k reads, and where.
    let taps: Vec<Vec<AxisTap>> = (0..ins.len())
        .map(|i| {
            (0..ks[i])
                .map(|k| {
                    let offset = k * shape.dilations[i];
                    AxisTap::new(ins[i], outs[i], shape.strides[i], offset, shape.pads[i].0)
                })
                .collect()
        })
        .collect();
    let in_strides = row_major_strides(ins);
    let mut kidx = vec![0usize; ins.len()];
    let mut tap_row: Vec<AxisTap> = Vec::with_capacity(ins.len());
    let mut select_taps = |k: usize, tap_row: &mut Vec<AxisTap>| {
        unravel(k, ks, &mut kidx);
        tap_row.clear();
        tap_row.extend(taps.iter().zip(&kidx).map(|(t, &k)| t[k]));
    };
    // A 1x1 kernel with unit strides and no padding reads the input planes as they are.
    let pointwise = kk == 1
        && shape.strides.iter().all(|&s| s == 1)
        && shape.pads.iter().all(|&p| p == (0, 0))
        && ins == outs;
    if cg == 1 && !pointwise {
        for (i, dst) in out.chunks_mut(plane_out).enumerate() {
            let (ni, mi) = (i / m, i % m);
            let ci = ni * c + mi / mg;
            let plane = &x[ci * plane_in..(ci + 1) * plane_in];
            for (k, &wv) in w[mi * kk..(mi + 1) * kk].iter().enumerate() {
                select_taps(k, &mut tap_row);
                gather_taps(&tap_row, &in_strides, plane, 0, dst, &mut |d, v| {
                    *d = *d + wv * v
                });
            }
        }
    } else {
        let wmat = ArrayView2::from_shape((m, rows), w).map_err(|e| e.to_string())?;
        let mut col = vec![T::zero(); if pointwise { 0 } else { rows * plane_out }];
        for ni in 0..n {
            for gi in 0..g {
                let first = (ni * c + gi * cg) * plane_in;
                let cols = if pointwise {
                    ArrayView2::from_shape((rows, plane_out), &x[first..first + cg * plane_in])
                } else {
                    for (r, row) in col.chunks_mut(plane_out).enumerate() {
                        let (ci, k) = (r / kk, r % kk);
                        select_taps(k, &mut tap_row);
                        let plane = &x[first + ci * plane_in..first + (ci + 1) * plane_in];
                        row.fill(T::zero());
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
        if b.len() != m {
            return Err(format!("Conv bias has {} elements, expected {m}", b.len()));
        }
        for (i, chunk) in out.chunks_mut(plane_out).enumerate() {
            let bv = b[i % m];
            chunk.iter_mut().for_each(|v| *v = *v + bv);
        }
    }
    Ok(out)
}

/// `c = a @ b` on 2-D views, tolerating empty dimensions.
pub fn mat_mul_into<T: Scalar>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    c: &mut ArrayViewMut2<'_, T>,
) {
    if c.is_empty() {
        return;
    }
    if a.ncols() == 0 {
        c.fill(T::zero());
        return;
    }
    general_mat_mul(T::one(), a, b, T::zero(), c);
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
fn gather_taps<T: Copy>(
    taps: &[AxisTap],
    strides: &[usize],
    src: &[T],
    base: usize,
    dst: &mut [T],
    f: &mut impl FnMut(&mut T, T),
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

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

fn unravel(mut flat: usize, dims: &[usize], idx: &mut [usize]) {
    for (i, &d) in idx.iter_mut().zip(dims).rev() {
        if d == 0 {
            *i = 0;
            continue;
        }
        *i = flat % d;
        flat /= d;
    }
}

/// Output length of a sliding window (convolution, pooling) along one axis, the ONNX/PyTorch
/// rule: `ceil_mode` keeps a last partial window unless it would start inside the end
/// padding. `None` when the window does not fit, the kernel or stride is 0, or a length
/// overflows. One definition for shape inference, lowering and the program validator.
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    ceil_mode: bool,
) -> Option<usize> {
    let padded = input.checked_add(pads.0)?.checked_add(pads.1)?;
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    if stride == 0 || padded < span {
        return None;
    }
    let steps = padded - span;
    let mut out = if ceil_mode {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    if ceil_mode && (out - 1).checked_mul(stride)? >= input.checked_add(pads.0)? {
        out -= 1;
    }
    Some(out)
}

/// Kernel offsets `k` along one axis whose input position `o*stride + k*dilation - pad`
/// lies inside `[0, input)`.
pub fn tap_range(
    o: usize,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
) -> Range<usize> {
    let start = o as i128 * stride as i128 - pad as i128;
    let dil = dilation as i128;
    // k >= ceil(-start / dil) and k <= floor((input - 1 - start) / dil).
    let lo = if start >= 0 {
        0
    } else {
        (-start + dil - 1) / dil
    };
    let top = input as i128 - 1 - start;
    if top < 0 {
        return 0..0;
    }
    let hi = (top / dil + 1).min(kernel as i128);
    if lo >= hi {
        0..0
    } else {
        lo as usize..hi as usize
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tap_range_matches_brute_force() {
        for input in 1..7 {
            for kernel in 1..5 {
                for stride in 1..4 {
                    for dilation in 1..4 {
                        for pad in 0..4 {
                            for o in 0..8 {
                                let brute: Vec<usize> = (0..kernel)
                                    .filter(|&k| {
                                        let p = (o * stride + k * dilation) as i64 - pad as i64;
                                        p >= 0 && p < input as i64
                                    })
                                    .collect();
                                let r: Vec<usize> =
                                    tap_range(o, input, kernel, stride, dilation, pad).collect();
                                assert_eq!(
                                    r, brute,
                                    "o={o} in={input} k={kernel} s={stride} d={dilation} p={pad}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    use super::*;

    #[test]
    fn window_lengths_follow_floor_and_ceil_rules() {
        // 5 + 1 + 1 padded, kernel 3, stride 2: floor (7-3)/2+1 = 3.
        assert_eq!(window_out_len(5, 3, 2, 1, (1, 1), false), Some(3));
        // 4, kernel 2, stride 3: floor 1, ceil 2.
        assert_eq!(window_out_len(4, 2, 3, 1, (0, 0), false), Some(1));
        assert_eq!(window_out_len(4, 2, 3, 1, (0, 0), true), Some(2));
        // ceil mode drops a window that would start in the end padding.
        assert_eq!(window_out_len(3, 2, 2, 1, (0, 1), true), Some(2));
        assert_eq!(window_out_len(2, 3, 1, 1, (0, 0), false), None);
        assert_eq!(window_out_len(usize::MAX, 3, 1, 1, (1, 0), false), None);
        // A zero kernel or stride fits nowhere.
        assert_eq!(window_out_len(4, 0, 1, 1, (0, 0), false), None);
        assert_eq!(window_out_len(4, 2, 0, 1, (0, 0), true), None);
    }
}
