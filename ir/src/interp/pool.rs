//! Pooling kernels: average, max and global average pooling over N-C-spatial tensors.

use super::{from_vec, row_major};
use crate::op::PoolAttrs;
use crate::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PoolKind {
    Average,
    Max,
}

/// The window of one output position along one axis.
struct AxisWindow {
    /// Input coordinates the window covers inside the input.
    valid: Vec<usize>,
    /// Window taps inside the input or its explicit padding (ceil-mode overhang excluded);
    /// the divisor of `count_include_pad` averaging.
    padded: usize,
}

fn axis_windows(p: &PoolAttrs, axis: usize, input: usize, output: usize) -> Vec<AxisWindow> {
    let (stride, dil, kernel) = (p.strides[axis], p.dilations[axis], p.kernel[axis]);
    let (begin, end) = p.pads[axis];
    (0..output)
        .map(|o| {
            let mut w = AxisWindow {
                valid: Vec::with_capacity(kernel),
                padded: 0,
            };
            for k in 0..kernel {
                // Coordinate in the explicitly padded input.
                let q = o * stride + k * dil;
                if q < begin + input + end {
                    w.padded += 1;
                }
                if let Some(i) = q.checked_sub(begin).filter(|&i| i < input) {
                    w.valid.push(i);
                }
            }
            w
        })
        .collect()
}

/// One pass of separable pooling: reduces the middle axis of `src`, viewed as
/// `[outer, len_in, inner]`, to `windows.len()` window results.
///
/// Max and sum over a box window factor into one pass per axis, and so does the average's
/// divisor (a product of per-axis counts), so N-D pooling costs the sum, not the product, of
/// the kernel sizes.
fn pool_axis<T: Copy>(
    src: &[T],
    (outer, len_in, inner): (usize, usize, usize),
    windows: &[AxisWindow],
    init: T,
    fold: impl Fn(T, T) -> T,
    finish: impl Fn(T, &AxisWindow) -> T,
) -> Vec<T> {
    let mut out = vec![init; outer * windows.len() * inner];
    if out.is_empty() {
        return out;
    }
    if inner == 1 {
        // Innermost axis: fold scalars directly.
        for (r, dst_row) in out.chunks_mut(windows.len()).enumerate() {
            let src_row = &src[r * len_in..(r + 1) * len_in];
            for (d, w) in dst_row.iter_mut().zip(windows) {
                let acc = w.valid.iter().fold(init, |a, &i| fold(a, src_row[i]));
                *d = finish(acc, w);
            }
        }
        return out;
    }
    for (o_blk, dst_outer) in out.chunks_mut(windows.len() * inner).enumerate() {
        let src_outer = &src[o_blk * len_in * inner..(o_blk + 1) * len_in * inner];
        for (w, dst) in windows.iter().zip(dst_outer.chunks_mut(inner)) {
            for &i in &w.valid {
                let row = &src_outer[i * inner..(i + 1) * inner];
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = fold(*d, v);
                }
            }
            for d in dst.iter_mut() {
                *d = finish(*d, w);
            }
        }
    }
    out
}

/// AveragePool or MaxPool with explicit pads, dilations and ceil mode (the output shape,
/// already inferred, tells how many windows there are).
///
/// MaxPool treats padding as -inf (a window with no input element gives -inf) and propagates
/// NaN. AveragePool sums the input elements of the window and divides by their number, or with
/// `count_include_pad` by the number of window taps inside the input plus its explicit pads;
/// taps in the ceil-mode overhang never count (PyTorch / onnxruntime behaviour). A window
/// without any element to count averages to NaN.
pub(super) fn pool(
    p: &PoolAttrs,
    x: &Tensor,
    out_shape: &[usize],
    kind: PoolKind,
) -> Result<Tensor, String> {
    let xsh = x.shape();
    let sp = p.kernel.len();
    if xsh.len() != sp + 2
        || out_shape.len() != sp + 2
        || out_shape[..2] != xsh[..2]
        || p.strides.len() != sp
        || p.dilations.len() != sp
        || p.pads.len() != sp
    {
        return Err(format!(
            "pooling attributes do not fit input {xsh:?} and output {out_shape:?}"
        ));
    }
    // Current extents: output lengths on the axes already reduced, input lengths after.
    let mut dims = xsh.to_vec();
    let xs = row_major(x);
    let axis_pass = |i: usize, dims: &[usize]| {
        let outer: usize = dims[..2 + i].iter().product();
        let inner: usize = dims[3 + i..].iter().product();
        let windows = axis_windows(p, i, xsh[2 + i], out_shape[2 + i]);
        (outer, inner, windows)
    };
    let out: Vec<f32> = match kind {
        PoolKind::Max => {
            let mut buf: Vec<f32> = xs.into_owned();
            for i in 0..sp {
                let (outer, inner, windows) = axis_pass(i, &dims);
                buf = pool_axis(
                    &buf,
                    (outer, xsh[2 + i], inner),
                    &windows,
                    f32::NEG_INFINITY,
                    |m, v| if v.is_nan() || v > m { v } else { m },
                    |m, _| m,
                );
                dims[2 + i] = out_shape[2 + i];
            }
            buf
        }
        PoolKind::Average => {
            let mut buf: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
            let cip = p.count_include_pad;
            for i in 0..sp {
                let (outer, inner, windows) = axis_pass(i, &dims);
                buf = pool_axis(
                    &buf,
                    (outer, xsh[2 + i], inner),
                    &windows,
                    0.0,
                    |s, v| s + v,
                    |s, w| s / (if cip { w.padded } else { w.valid.len() }) as f64,
                );
                dims[2 + i] = out_shape[2 + i];
            }
            buf.into_iter().map(|v| v as f32).collect()
        }
    };
    from_vec(out_shape, out)
}

/// Mean over all spatial axes (accumulated in f64).
pub(super) fn global_average(x: &Tensor, out_shape: &[usize]) -> Result<Tensor, String> {
    let xsh = x.shape();
    if xsh.len() < 3 {
        return Err(format!("GlobalAveragePool needs rank >= 3, got {xsh:?}"));
    }
    let planes = xsh[0] * xsh[1];
    let plane: usize = xsh[2..].iter().product();
    let xs = row_major(x);
    let out = (0..planes)
        .map(|p| {
            let sum: f64 = xs[p * plane..(p + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            (sum / plane as f64) as f32
        })
        .collect();
    from_vec(out_shape, out)
}
