//! Pooling kernels: average, max and global average pooling over N-C-spatial tensors.

use super::{from_vec, row_major, row_major_strides, unravel};
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

/// Calls `f` on every element of the window given by per-axis coordinate lists.
fn for_window(
    lists: &[&[usize]],
    strides: &[usize],
    src: &[f32],
    base: usize,
    f: &mut impl FnMut(f32),
) {
    match lists.split_first() {
        None => f(src[base]),
        Some((list, rest)) => {
            for &i in *list {
                for_window(rest, &strides[1..], src, base + i * strides[0], f);
            }
        }
    }
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
    let (ins, outs) = (&xsh[2..], &out_shape[2..]);
    let windows: Vec<Vec<AxisWindow>> = (0..sp)
        .map(|i| axis_windows(p, i, ins[i], outs[i]))
        .collect();
    let strides = row_major_strides(ins);
    let plane_in: usize = ins.iter().product();
    let plane_out: usize = outs.iter().product();
    let planes = xsh[0] * xsh[1];
    let xs = row_major(x);
    let mut out = Vec::with_capacity(planes * plane_out);
    let mut oidx = vec![0usize; sp];
    let mut lists: Vec<&[usize]> = Vec::with_capacity(sp);
    for pl in 0..planes {
        let src = &xs[pl * plane_in..(pl + 1) * plane_in];
        for flat in 0..plane_out {
            unravel(flat, outs, &mut oidx);
            lists.clear();
            lists.extend(
                windows
                    .iter()
                    .zip(&oidx)
                    .map(|(w, &o)| w[o].valid.as_slice()),
            );
            let v = match kind {
                PoolKind::Max => {
                    let mut m = f32::NEG_INFINITY;
                    for_window(&lists, &strides, src, 0, &mut |v| {
                        if v.is_nan() || v > m {
                            m = v;
                        }
                    });
                    m
                }
                PoolKind::Average => {
                    let mut sum = 0.0f64;
                    for_window(&lists, &strides, src, 0, &mut |v| sum += f64::from(v));
                    let count: usize = if p.count_include_pad {
                        windows
                            .iter()
                            .zip(&oidx)
                            .map(|(w, &o)| w[o].padded)
                            .product()
                    } else {
                        lists.iter().map(|l| l.len()).product()
                    };
                    (sum / count as f64) as f32
                }
            };
            out.push(v);
        }
    }
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
