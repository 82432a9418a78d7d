//! The client's side of a circuit around encryption: quantising real inputs, dequantising
//! decrypted outputs, and the post-processing a circuit carries (e.g. the softmax split off
//! the model).

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use crate::circuit::{ClientOp, ClientStep, Program};
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

pub(crate) fn check_input_shapes<'a>(
    program: &Program,
    shapes: impl ExactSizeIterator<Item = &'a [usize]>,
) -> Result<(), RuntimeError> {
    let expected = program.inputs.len();
    let got = shapes.len();
    if got != expected {
        let names: Vec<&str> = program.inputs.iter().map(|s| s.name.as_str()).collect();
        let name = program
            .inputs
            .get(got)
            .map_or_else(|| format!("#{expected}"), |s| s.name.clone());
        return Err(RuntimeError::Input {
            name,
            message: format!(
                "the circuit takes {expected} input(s) ({}), got {got}",
                names.join(", ")
            ),
        });
    }
    for (spec, shape) in program.inputs.iter().zip(shapes) {
        if shape != spec.shape.as_slice() {
            return Err(RuntimeError::Input {
                name: spec.name.clone(),
                message: format!(
                    "shape {shape:?} does not match the circuit's input shape {:?}",
                    spec.shape
                ),
            });
        }
    }
    Ok(())
}

/// Quantises real client inputs with each input's [`crate::circuit::QParams`].
///
/// Each tensor must have exactly the shape of its input spec; NaN and infinite values are
/// refused (the message names the input and the first bad index).
pub fn quantize_inputs(
    program: &Program,
    inputs: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<i64>>, RuntimeError> {
    check_input_shapes(program, inputs.iter().map(|a| a.shape()))?;
    program
        .inputs
        .iter()
        .zip(inputs)
        .map(|(spec, x)| {
            // The fast scan first: `indexed_iter` over an IxDyn array is slow.
            let bad = x
                .iter()
                .any(|v| !v.is_finite())
                .then(|| x.indexed_iter().find(|(_, v)| !v.is_finite()))
                .flatten();
            if let Some((idx, v)) = bad {
                return Err(RuntimeError::Input {
                    name: spec.name.clone(),
                    message: format!("element {:?} is {v}", idx.slice()),
                });
            }
            let q = &spec.quantization;
            if q.bits == 0 || q.bits > 62 {
                return Err(RuntimeError::Input {
                    name: spec.name.clone(),
                    message: format!("unsupported quantisation to {} bits", q.bits),
                });
            }
            Ok(x.mapv(|v| q.quantize(v)))
        })
        .collect()
}

/// Dequantises integer outputs per output spec ([`crate::circuit::OutputSpec::dequantize`]).
pub fn dequantize_outputs(program: &Program, outputs: &[ArrayD<i64>]) -> Vec<ArrayD<f32>> {
    program
        .outputs
        .iter()
        .zip(outputs)
        .map(|(spec, q)| spec.dequantize(q))
        .collect()
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
