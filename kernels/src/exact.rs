//! Exact integer convolution and matrix products, computed in `f32` or `f64`.
//!
//! A float type holds every integer below 2^24 (`f32`) or 2^53 (`f64`) exactly, so a sum of
//! integer products is computed exactly — in any order, with or without fused multiply-adds —
//! as long as every partial sum stays below that limit. The bound used is
//! `|bias| + max|x| * sum|w|` per output (a partial sum adds a subset of the products). The
//! functions take `f32` when the bound allows (twice the vector lanes and half the memory
//! traffic), else `f64`; when even 2^53 is reached they return `None` and the caller runs its
//! checked `i64` loop instead. The float kernels are 10-100x faster than an element-by-element
//! integer loop (blocked, vectorised matrix multiply).

use ndarray::{Array2, ArrayView2};

use crate::conv::{conv, mat_mul_into, ConvShape};
use crate::Scalar;

/// Integers whose magnitude is below this are exact in `f64`.
pub const EXACT_LIMIT: u128 = 1 << 53;

/// A float type the exact kernels compute in.
trait ExactFloat: Scalar {
    /// Integers of smaller magnitude are exact.
    const LIMIT: u128;
    fn from_i64(v: i64) -> Self;
    fn to_i64(self) -> i64;
}

impl ExactFloat for f32 {
    const LIMIT: u128 = 1 << 24;
    fn from_i64(v: i64) -> Self {
        v as f32
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl ExactFloat for f64 {
    const LIMIT: u128 = EXACT_LIMIT;
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
}

fn max_abs(x: &[i64]) -> u128 {
    x.iter()
        .map(|v| v.unsigned_abs() as u128)
        .max()
        .unwrap_or(0)
}

fn sum_abs(x: impl IntoIterator<Item = i64>) -> u128 {
    x.into_iter()
        .fold(0u128, |s, v| s.saturating_add(v.unsigned_abs() as u128))
}

fn floats<T: ExactFloat>(x: &[i64]) -> Vec<T> {
    x.iter().map(|&v| T::from_i64(v)).collect()
}

fn ints<T: ExactFloat>(x: Vec<T>) -> Vec<i64> {
    x.into_iter().map(T::to_i64).collect()
}

/// The convolution of [`crate::conv()`] on integers, exact; `Ok(None)` when the bound does not
/// prove that `f64` is exact for these operands.
pub fn conv_exact(
    shape: &ConvShape<'_>,
    x: &[i64],
    w: &[i64],
    bias: Option<&[i64]>,
) -> Result<Option<Vec<i64>>, String> {
    let m = shape.weight.first().copied().unwrap_or(0);
    if m == 0 || !w.len().is_multiple_of(m) {
        return Err(format!(
            "Conv: {} weight elements for W {:?}",
            w.len(),
            shape.weight
        ));
    }
    let xmax = max_abs(x);
    let bound = w
        .chunks(w.len() / m)
        .enumerate()
        .map(|(oc, row)| {
            let b = bias
                .and_then(|b| b.get(oc))
                .map_or(0, |v| v.unsigned_abs() as u128);
            b.saturating_add(xmax.saturating_mul(sum_abs(row.iter().copied())))
        })
        .max()
        .unwrap_or(0);
    fn run<T: ExactFloat>(
        shape: &ConvShape<'_>,
        x: &[i64],
        w: &[i64],
        bias: Option<&[i64]>,
    ) -> Result<Option<Vec<i64>>, String> {
        let bias = bias.map(floats::<T>);
        let out = conv(shape, &floats::<T>(x), &floats::<T>(w), bias.as_deref())?;
        Ok(Some(ints(out)))
    }
    if bound < f32::LIMIT {
        run::<f32>(shape, x, w, bias)
    } else if bound < f64::LIMIT {
        run::<f64>(shape, x, w, bias)
    } else {
        Ok(None)
    }
}

/// `a @ b` on integers, exact; `None` when the bound does not prove that `f64` is exact.
pub fn matmul_exact(a: &ArrayView2<'_, i64>, b: &ArrayView2<'_, i64>) -> Option<Array2<i64>> {
    let amax = a
        .iter()
        .map(|v| v.unsigned_abs() as u128)
        .max()
        .unwrap_or(0);
    let bound = b
        .columns()
        .into_iter()
        .map(|col| amax.saturating_mul(sum_abs(col.iter().copied())))
        .max()
        .unwrap_or(0);
    fn run<T: ExactFloat>(a: &ArrayView2<'_, i64>, b: &ArrayView2<'_, i64>) -> Array2<i64> {
        let af = a.mapv(T::from_i64);
        let bf = b.mapv(T::from_i64);
        let mut out = Array2::<T>::zeros((a.nrows(), b.ncols()));
        mat_mul_into(&af.view(), &bf.view(), &mut out.view_mut());
        out.mapv(T::to_i64)
    }
    if bound < f32::LIMIT {
        Some(run::<f32>(a, b))
    } else if bound < f64::LIMIT {
        Some(run::<f64>(a, b))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: every output a checked `i64` sum, element by element.
    fn conv_reference(s: &ConvShape<'_>, x: &[i64], w: &[i64], bias: Option<&[i64]>) -> Vec<i64> {
        // 2-D only (what the property test generates).
        let (n, c, h, wd) = (s.input[0], s.input[1], s.input[2], s.input[3]);
        let (m, cg, kh, kw) = (s.weight[0], s.weight[1], s.weight[2], s.weight[3]);
        let (oh, ow) = (s.output[2], s.output[3]);
        let mg = m / s.group;
        let mut out = vec![0i64; n * m * oh * ow];
        for ni in 0..n {
            for oc in 0..m {
                let g = oc / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.map_or(0, |b| b[oc]);
                        for ic in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * s.strides[0] + ky * s.dilations[0]) as i64
                                        - s.pads[0].0 as i64;
                                    let ix = (ox * s.strides[1] + kx * s.dilations[1]) as i64
                                        - s.pads[1].0 as i64;
                                    if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                        continue;
                                    }
                                    let xi = ((ni * c + g * cg + ic) * h + iy as usize) * wd
                                        + ix as usize;
                                    let wi = ((oc * cg + ic) * kh + ky) * kw + kx;
                                    acc = acc.checked_add(x[xi] * w[wi]).unwrap();
                                }
                            }
                        }
                        out[((ni * m + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn conv_exact_equals_integer_sums(
            n in 1usize..3, cg in 1usize..4, mg in 1usize..4, group in 1usize..3,
            h in 1usize..9, wd in 1usize..9, kh in 1usize..4, kw in 1usize..4,
            stride in 1usize..3, dil in 1usize..3, pad in 0usize..3,
            magnitude in 1i64..(1 << 20), seed in proptest::prelude::any::<u64>(),
        ) {
            let (c, m) = (cg * group, mg * group);
            let (eh, ew) = ((kh - 1) * dil + 1, (kw - 1) * dil + 1);
            proptest::prop_assume!(h + 2 * pad >= eh && wd + 2 * pad >= ew);
            let (oh, ow) = ((h + 2 * pad - eh) / stride + 1, (wd + 2 * pad - ew) / stride + 1);
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as i64 % (2 * magnitude + 1)) - magnitude
            };
            let x: Vec<i64> = (0..n * c * h * wd).map(|_| next()).collect();
            let w: Vec<i64> = (0..m * cg * kh * kw).map(|_| next()).collect();
            let b: Vec<i64> = (0..m).map(|_| next() * 1000).collect();
            let (input, weight, output) = ([n, c, h, wd], [m, cg, kh, kw], [n, m, oh, ow]);
            let shape = ConvShape {
                input: &input, weight: &weight, output: &output,
                strides: &[stride, stride], dilations: &[dil, dil],
                pads: &[(pad, pad), (pad, pad)], group,
            };
            let fast = conv_exact(&shape, &x, &w, Some(&b)).unwrap();
            // Products up to 2^40 times at most 36 taps stay below 2^53: always proven.
            proptest::prop_assert_eq!(fast, Some(conv_reference(&shape, &x, &w, Some(&b))));
        }

        #[test]
        fn matmul_exact_equals_integer_sums(
            m in 1usize..6, k in 0usize..40, n in 1usize..6, magnitude in 1i64..(1 << 24),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as i64 % (2 * magnitude + 1)) - magnitude
            };
            let a = Array2::from_shape_fn((m, k), |_| next());
            let b = Array2::from_shape_fn((k, n), |_| next());
            let expected = Array2::from_shape_fn((m, n), |(i, j)| {
                (0..k).map(|p| a[(i, p)] * b[(p, j)]).sum::<i64>()
            });
            proptest::prop_assert_eq!(matmul_exact(&a.view(), &b.view()), Some(expected));
        }
    }

    /// A 1x2 kernel over a 1x2 image: one output, the dot product of two pairs.
    fn two_tap_dot() -> ConvShape<'static> {
        ConvShape {
            input: &[1, 1, 1, 2],
            weight: &[1, 1, 1, 2],
            output: &[1, 1, 1, 1],
            strides: &[1, 1],
            dilations: &[1, 1],
            pads: &[(0, 0), (0, 0)],
            group: 1,
        }
    }

    #[test]
    fn sums_that_may_reach_2_pow_24_run_in_f64() {
        // 2^24 + 1 has no f32: the f32 kernel would return 2^24.
        let a = ndarray::arr2(&[[1i64, 1]]);
        let b = ndarray::arr2(&[[1i64 << 24], [1]]);
        assert_eq!(
            matmul_exact(&a.view(), &b.view()).unwrap()[(0, 0)],
            (1 << 24) + 1
        );
        let shape = two_tap_dot();
        let x = [1i64 << 12, 1];
        assert_eq!(
            conv_exact(&shape, &x, &[1 << 12, 1], Some(&[0])),
            Ok(Some(vec![(1 << 24) + 1]))
        );
    }

    #[test]
    fn sums_that_may_reach_2_pow_53_are_refused() {
        // 2^27 * 2^26 = 2^53: not provably exact.
        let a = Array2::from_elem((1, 1), 1i64 << 27);
        let b = Array2::from_elem((1, 1), 1i64 << 26);
        assert_eq!(matmul_exact(&a.view(), &b.view()), None);
        let b = Array2::from_elem((1, 1), (1i64 << 26) - 1);
        assert_eq!(
            matmul_exact(&a.view(), &b.view()).unwrap()[(0, 0)],
            (1i64 << 27) * ((1 << 26) - 1)
        );
        let shape = two_tap_dot();
        // Each product is below 2^52, their sum reaches 2^53.
        let big = 1i64 << 26;
        assert_eq!(conv_exact(&shape, &[big, big], &[big, big], None), Ok(None));
        assert_eq!(
            conv_exact(&shape, &[big, -big], &[big, big - 1], Some(&[5])),
            Ok(Some(vec![big * big - big * (big - 1) + 5]))
        );
    }
}
