//! ONNX `TensorProto` decoding into import-time constant values.

use fhec_ir::DType;
use ndarray::{ArrayD, IxDyn};
use tract_onnx::pb::TensorProto;

/// A constant known at import time: weights (float) or shape arithmetic (integer).
#[derive(Clone, Debug, PartialEq)]
pub enum ConstValue {
    Float(ArrayD<f32>),
    /// Integer data with the ONNX element type it came as (bool becomes I64 0/1).
    Int(ArrayD<i64>, DType),
}

impl ConstValue {
    pub fn shape(&self) -> &[usize] {
        match self {
            ConstValue::Float(a) => a.shape(),
            ConstValue::Int(a, _) => a.shape(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            ConstValue::Float(_) => DType::F32,
            ConstValue::Int(_, t) => *t,
        }
    }

    /// The values as f32 (integers convert exactly up to 2^24).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            ConstValue::Float(a) => a.clone(),
            ConstValue::Int(a, _) => a.mapv(|v| v as f32),
        }
    }

    /// The values as i64; floats must be integral.
    pub fn to_i64(&self) -> Option<ArrayD<i64>> {
        match self {
            ConstValue::Int(a, _) => Some(a.clone()),
            ConstValue::Float(a) => {
                if a.iter().all(|v| v.fract() == 0.0 && v.is_finite()) {
                    Some(a.mapv(|v| v as i64))
                } else {
                    None
                }
            }
        }
    }
}

/// ONNX element type codes we read.
pub mod onnx_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;

    pub fn name(t: i32) -> &'static str {
        match t {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            17..=20 => "FLOAT8",
            21 => "UINT4",
            22 => "INT4",
            _ => "unknown",
        }
    }
}

/// The IR element type for an ONNX integer type code, if we support it.
pub fn int_dtype(t: i32) -> Option<DType> {
    use onnx_type::*;
    match t {
        UINT8 => Some(DType::U8),
        INT8 => Some(DType::I8),
        INT32 | INT16 | UINT16 => Some(DType::I32),
        INT64 | BOOL | UINT32 => Some(DType::I64),
        _ => None,
    }
}

/// Largest tensor we accept (elements), checked before allocating.
const MAX_ELEMENTS: usize = 1 << 28;

/// Largest constant the import creates itself (e.g. `ConstantOfShape`), whose size a few
/// bytes of the model declare: checked before allocating, so a tiny file cannot ask for
/// gigabytes.
pub(crate) const MAX_FOLDED_ELEMENTS: usize = 1 << 26;

/// Element count of `shape` if at most [`MAX_FOLDED_ELEMENTS`].
pub(crate) fn folded_elements(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_FOLDED_ELEMENTS)
        .ok_or_else(|| {
            format!("a constant of shape {shape:?} exceeds {MAX_FOLDED_ELEMENTS} elements")
        })
}

/// Decodes a tensor; the error string names the field at fault.
pub fn decode_tensor(t: &TensorProto) -> Result<ConstValue, String> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("its data is stored in an external file; re-export the model with the data embedded (e.g. onnx.save(model, path, save_as_external_data=False))".into());
    }
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let (shape, len) = tensor_shape(t)?;
    let fields = TensorData { t, len };
    let shape = IxDyn(&shape);
    let value = match t.data_type {
        onnx_type::FLOAT | onnx_type::DOUBLE | onnx_type::FLOAT16 => {
            let data = fields.floats()?;
            ConstValue::Float(ArrayD::from_shape_vec(shape, data).map_err(|e| e.to_string())?)
        }
        dt => {
            let Some(dtype) = int_dtype(dt) else {
                return Err(format!(
                    "element type {} is not supported",
                    onnx_type::name(dt)
                ));
            };
            let data = fields.ints()?;
            ConstValue::Int(
                ArrayD::from_shape_vec(shape, data).map_err(|e| e.to_string())?,
                dtype,
            )
        }
    };
    Ok(value)
}

/// The shape `t.dims` declare and its element count, at most [`MAX_ELEMENTS`].
fn tensor_shape(t: &TensorProto) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut len: usize = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("dims contain a negative dimension {d}"));
        }
        shape.push(d as usize);
        len = len
            .checked_mul(d as usize)
            .filter(|&l| l <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "dims {:?} describe more than {MAX_ELEMENTS} elements",
                    t.dims
                )
            })?;
    }
    Ok((shape, len))
}

/// The values of tensor `t`, `len` of them (what its dims declare), from `raw_data` or
/// the typed field its element type uses.
struct TensorData<'a> {
    t: &'a TensorProto,
    len: usize,
}

impl TensorData<'_> {
    /// Checks that `raw_data` holds `len` elements of `width` bytes.
    fn expect_raw(&self, width: usize) -> Result<(), String> {
        let (t, len, raw) = (self.t, self.len, &self.t.raw_data);
        if raw.len() != len * width {
            Err(format!(
                "raw_data holds {} bytes, dims {:?} of {} need {}",
                raw.len(),
                t.dims,
                onnx_type::name(t.data_type),
                len * width
            ))
        } else {
            Ok(())
        }
    }

    /// Checks that typed field `field` holds `n` = `len` values.
    fn check_len(&self, field: &str, n: usize) -> Result<(), String> {
        let len = self.len;
        if n != len {
            Err(format!(
                "{field} holds {n} values, dims {:?} need {len}",
                self.t.dims
            ))
        } else {
            Ok(())
        }
    }

    /// The values of a FLOAT, DOUBLE or FLOAT16 tensor, as f32.
    fn floats(&self) -> Result<Vec<f32>, String> {
        use onnx_type::*;
        let (t, raw) = (self.t, &self.t.raw_data);
        Ok(if !raw.is_empty() {
            match t.data_type {
                FLOAT => {
                    self.expect_raw(4)?;
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }
                DOUBLE => {
                    self.expect_raw(8)?;
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                        .collect()
                }
                _ => {
                    self.expect_raw(2)?;
                    raw.chunks_exact(2)
                        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                        .collect()
                }
            }
        } else {
            match t.data_type {
                FLOAT => {
                    self.check_len("float_data", t.float_data.len())?;
                    t.float_data.clone()
                }
                DOUBLE => {
                    self.check_len("double_data", t.double_data.len())?;
                    t.double_data.iter().map(|&v| v as f32).collect()
                }
                _ => {
                    self.check_len("int32_data", t.int32_data.len())?;
                    t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()
                }
            }
        })
    }

    /// The values of an integer (or BOOL) tensor of a type [`int_dtype`] supports, as i64.
    fn ints(&self) -> Result<Vec<i64>, String> {
        use onnx_type::*;
        let (t, raw) = (self.t, &self.t.raw_data);
        let dt = t.data_type;
        Ok(if !raw.is_empty() {
            match dt {
                UINT8 | BOOL => {
                    self.expect_raw(1)?;
                    raw.iter().map(|&b| b as i64).collect()
                }
                INT8 => {
                    self.expect_raw(1)?;
                    raw.iter().map(|&b| b as i8 as i64).collect()
                }
                INT16 => {
                    self.expect_raw(2)?;
                    raw.chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                        .collect()
                }
                UINT16 => {
                    self.expect_raw(2)?;
                    raw.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                        .collect()
                }
                INT32 => {
                    self.expect_raw(4)?;
                    raw.chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                        .collect()
                }
                UINT32 => {
                    self.expect_raw(4)?;
                    raw.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                        .collect()
                }
                _ => {
                    self.expect_raw(8)?;
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect()
                }
            }
        } else if dt == INT64 {
            self.check_len("int64_data", t.int64_data.len())?;
            t.int64_data.clone()
        } else if dt == UINT32 {
            self.check_len("uint64_data", t.uint64_data.len())?;
            t.uint64_data.iter().map(|&v| v as i64).collect()
        } else {
            self.check_len("int32_data", t.int32_data.len())?;
            t.int32_data.iter().map(|&v| v as i64).collect()
        })
    }
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn raw_data_length_is_checked() {
        let t = TensorProto {
            dims: vec![2, 2],
            data_type: onnx_type::FLOAT,
            raw_data: vec![0; 12],
            ..Default::default()
        };
        let e = decode_tensor(&t).unwrap_err();
        assert!(e.contains("raw_data holds 12 bytes"), "{e}");
    }

    #[test]
    fn huge_dims_are_refused_before_allocating() {
        let t = TensorProto {
            dims: vec![1 << 20, 1 << 20],
            data_type: onnx_type::FLOAT,
            ..Default::default()
        };
        assert!(decode_tensor(&t).unwrap_err().contains("more than"));
    }
}
