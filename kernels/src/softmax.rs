//! Softmax along one axis: the float interpreter's `Softmax` and the client's post-processing
//! step of a circuit (a softmax split off the model) are this one function.

use ndarray::{ArrayD, Axis};

/// Replaces every lane of `x` along `axis` by its softmax: `exp(v - max) / sum`, the sum in
/// `f64`; a NaN in a lane makes the whole lane NaN. `axis` must be an axis of `x`.
pub fn softmax_in_place(x: &mut ArrayD<f32>, axis: Axis) {
    let mut exps: Vec<f64> = Vec::with_capacity(x.shape()[axis.index()]);
    for mut lane in x.lanes_mut(axis) {
        let max = lane.iter().fold(
            f32::NEG_INFINITY,
            |m, &v| {
                if v.is_nan() || v > m {
                    v
                } else {
                    m
                }
            },
        );
        exps.clear();
        exps.extend(lane.iter().map(|&v| f64::from(v - max).exp()));
        let sum: f64 = exps.iter().sum();
        for (o, e) in lane.iter_mut().zip(&exps) {
            *o = (e / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn lanes_sum_to_one_and_keep_order() {
        let mut x =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 0.0, 0.0, 1000.0]).unwrap();
        softmax_in_place(&mut x, Axis(1));
        for row in x.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6, "{row}");
        }
        assert!(x[[0, 0]] < x[[0, 1]] && x[[0, 1]] < x[[0, 2]]);
        // exp(1000) would overflow without subtracting the lane maximum.
        assert_eq!(x[[1, 2]], 1.0);
    }
}
