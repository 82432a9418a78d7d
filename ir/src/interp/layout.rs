//! Data movement kernels: Reshape, Transpose, Concat and Pad.

use ndarray::{Axis, IxDyn};

use super::{from_vec, gather, row_major, row_major_strides};
use crate::op::PadMode;
use crate::Tensor;

/// Row-major reshape.
pub(super) fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    from_vec(shape, row_major(x).into_owned())
}

/// Permutes the axes (`perm` already checked to be a permutation of the rank).
pub(super) fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    x.view()
        .permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .into_owned()
}

pub(super) fn concat(inputs: &[&Tensor], axis: usize) -> Result<Tensor, String> {
    if inputs.iter().any(|t| axis >= t.ndim()) {
        return Err(format!("Concat axis {axis} out of range"));
    }
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    ndarray::concatenate(Axis(axis), &views).map_err(|e| e.to_string())
}

/// Source coordinate of output coordinate `j` along an axis of length `len` with `begin`
/// padding, or `None` for the constant value.
fn pad_source(j: usize, begin: usize, len: usize, mode: PadMode) -> Result<Option<usize>, String> {
    let pos = j as i64 - begin as i64;
    let n = len as i64;
    if (0..n).contains(&pos) {
        return Ok(Some(pos as usize));
    }
    match mode {
        PadMode::Constant => Ok(None),
        _ if len == 0 => Err(format!("{mode:?} padding of an empty axis")),
        PadMode::Edge => Ok(Some(pos.clamp(0, n - 1) as usize)),
        PadMode::Reflect if len == 1 => Ok(Some(0)),
        PadMode::Reflect => {
            // numpy "reflect": mirror without repeating the edge, periodic with 2(n - 1).
            let period = 2 * (n - 1);
            let r = pos.rem_euclid(period);
            Ok(Some(if r < n { r } else { period - r } as usize))
        }
    }
}

pub(super) fn pad(
    x: &Tensor,
    pads: &[(usize, usize)],
    mode: PadMode,
    value: f32,
) -> Result<Tensor, String> {
    let shape = x.shape();
    if pads.len() != shape.len() {
        return Err(format!(
            "Pad has {} (begin,end) pairs for rank {}",
            pads.len(),
            shape.len()
        ));
    }
    let out_shape: Vec<usize> = shape.iter().zip(pads).map(|(d, p)| d + p.0 + p.1).collect();
    let maps = shape
        .iter()
        .zip(pads)
        .zip(&out_shape)
        .map(|((&d, &(b, _)), &o)| (0..o).map(|j| pad_source(j, b, d, mode)).collect())
        .collect::<Result<Vec<Vec<Option<usize>>>, String>>()?;
    let map_refs: Vec<&[Option<usize>]> = maps.iter().map(Vec::as_slice).collect();
    let mut out = vec![value; out_shape.iter().product()];
    gather(
        &map_refs,
        &row_major_strides(shape),
        &row_major(x),
        0,
        value,
        &mut out,
    );
    from_vec(&out_shape, out)
}
