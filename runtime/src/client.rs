//! Client-side steps after decryption: the post-processing a circuit carries (e.g. the
//! softmax split off the model).

use ndarray::{ArrayD, Axis, IxDyn};

use crate::circuit::{ClientOp, ClientStep};
use crate::error::RuntimeError;

/// Applies `ops` in order to the dequantised outputs.
pub fn apply_postprocessing(
    ops: &[ClientOp],
    mut outputs: Vec<ArrayD<f32>>,
) -> Result<Vec<ArrayD<f32>>, RuntimeError> {
    for op in ops {
        let bad = |message: String| {
            RuntimeError::Mismatch(format!(
                "client post-processing of output {}: {message}",
                op.output
            ))
        };
        let x = outputs
            .get_mut(op.output)
            .ok_or_else(|| bad("the circuit has no such output".into()))?;
        *x = match &op.step {
            ClientStep::Softmax { axis } => {
                if *axis >= x.ndim() {
                    return Err(bad(format!(
                        "softmax axis {axis} of a rank-{} tensor",
                        x.ndim()
                    )));
                }
                let mut y = x.clone();
                fhec_kernels::softmax::softmax_in_place(&mut y, Axis(*axis));
                y
            }
            ClientStep::Reshape { shape } => {
                if shape.iter().product::<usize>() != x.len() {
                    return Err(bad(format!("cannot reshape {:?} to {shape:?}", x.shape())));
                }
                x.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(shape))
                    .map_err(|e| bad(e.to_string()))?
            }
            ClientStep::Transpose { perm } => {
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..x.ndim()).collect::<Vec<_>>() {
                    return Err(bad(format!(
                        "{perm:?} is not a permutation of the axes of {:?}",
                        x.shape()
                    )));
                }
                x.clone()
                    .permuted_axes(IxDyn(perm))
                    .as_standard_layout()
                    .into_owned()
            }
        };
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_then_reshape() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![0.0f32, (3.0f32).ln()]).unwrap();
        let ops = vec![
            ClientOp {
                output: 0,
                step: ClientStep::Softmax { axis: 1 },
            },
            ClientOp {
                output: 0,
                step: ClientStep::Reshape { shape: vec![2] },
            },
        ];
        let out = apply_postprocessing(&ops, vec![x]).unwrap();
        assert_eq!(out[0].shape(), &[2]);
        assert!((out[0][[0]] - 0.25).abs() < 1e-6 && (out[0][[1]] - 0.75).abs() < 1e-6);
        let bad = vec![ClientOp {
            output: 1,
            step: ClientStep::Softmax { axis: 0 },
        }];
        assert!(apply_postprocessing(&bad, vec![ArrayD::zeros(IxDyn(&[2]))]).is_err());
    }
}
