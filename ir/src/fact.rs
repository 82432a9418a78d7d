//! Static facts about a tensor: element type and shape.

use std::fmt;

/// Largest integer magnitude the float interpreter holds in an integer-typed tensor: up to
/// 2^24 - 1, `f32` represents every integer, and the `f32` sum, difference, product or
/// (truncated) quotient of two such integers is the exact integer result whenever that result
/// is below 2^24 in magnitude too (see [`crate::interp`]).
pub const F32_EXACT_INT: i64 = (1 << 24) - 1;

/// Element types a tensor of the IR may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    I8,
    U8,
    I32,
    I64,
}

impl DType {
    /// Inclusive value range of an integer type, `None` for floats.
    pub fn int_range(self) -> Option<(i64, i64)> {
        match self {
            DType::F32 => None,
            DType::I8 => Some((-128, 127)),
            DType::U8 => Some((0, 255)),
            DType::I32 => Some((i32::MIN as i64, i32::MAX as i64)),
            DType::I64 => Some((i64::MIN, i64::MAX)),
        }
    }

    /// Whether this is an integer type.
    pub fn is_int(self) -> bool {
        self != DType::F32
    }

    /// The integers a tensor of this type may hold in the float interpreter, which keeps
    /// every value in `f32`: the type's range cut to `±F32_EXACT_INT` (all of int8 and
    /// uint8; int32 and int64 only up to 2^24 - 1 in magnitude). `None` for floats.
    pub fn exact_range(self) -> Option<(i64, i64)> {
        self.int_range()
            .map(|(lo, hi)| (lo.max(-F32_EXACT_INT), hi.min(F32_EXACT_INT)))
    }

    /// `v` wrapped into the type's range modulo 2^bits (two's complement for signed types),
    /// as ONNX casts between integer types and as integer arithmetic overflows. Floats and
    /// values already in range are returned unchanged.
    pub fn wrap(self, v: i64) -> i64 {
        match self {
            DType::F32 | DType::I64 => v,
            DType::I8 => v as i8 as i64,
            DType::U8 => v as u8 as i64,
            DType::I32 => v as i32 as i64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Type and static shape of a node's output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TensorFact {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorFact {
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        TensorFact {
            dtype,
            shape: shape.into(),
        }
    }

    pub fn f32(shape: impl Into<Vec<usize>>) -> Self {
        Self::new(DType::F32, shape)
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for TensorFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
