//! `.npy` arrays in and out: reading arrays of any common numeric element type (model inputs,
//! encrypted-run feeds) and writing results through the one atomic writer, so an interrupted
//! or failed run never leaves a partial output behind. [`sniff`] says what a file that is not
//! what it should be looks like.

use std::io::{BufWriter, Write};
use std::path::Path;

use fhec_runtime::atomic::PendingFile;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use crate::error::{DriverError, Result};

/// The element kind a `.npy` file held; all values are widened to `f64` (exact for every
/// integer of at most 53 bits and for every `f32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyKind {
    Float32,
    Float64,
    /// An integer type, by its numpy name.
    Int(&'static str),
    Bool,
}

impl NpyKind {
    pub fn name(self) -> &'static str {
        match self {
            NpyKind::Float32 => "float32",
            NpyKind::Float64 => "float64",
            NpyKind::Int(n) => n,
            NpyKind::Bool => "bool",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, NpyKind::Float32 | NpyKind::Float64)
    }
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug)]
pub struct NpyArray {
    pub kind: NpyKind,
    pub data: ArrayD<f64>,
}

/// What a file that failed to parse as `.npy` looks like, for the error message.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x93NUMPY") {
        Some("a NumPy .npy array")
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some("a zip archive (.npz, .keras, .pt, ...)")
    } else if bytes.starts_with(b"\x89HDF") {
        Some("an HDF5 file (Keras .h5?)")
    } else if bytes.is_empty() {
        Some("an empty file")
    } else if bytes.starts_with(b"\x08") && bytes.len() > 2 {
        // Field 1 (ir_version) as a varint is how ONNX files start.
        Some("an ONNX (protobuf) model")
    } else if bytes
        .iter()
        .take(256)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        Some("a text file")
    } else {
        None
    }
}

/// Tries `T`; `Ok(None)` when the file holds another element type.
fn try_read<T>(bytes: &[u8]) -> Result<Option<ArrayD<T>>, ReadNpyError>
where
    T: ndarray_npy::ReadableElement,
{
    match ArrayD::<T>::read_npy(bytes) {
        Ok(a) => Ok(Some(a)),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decodes `.npy` bytes holding float, integer or bool elements.
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, ReadNpyError> {
    macro_rules! attempt {
        ($t:ty, $kind:expr) => {
            if let Some(a) = try_read::<$t>(bytes)? {
                #[allow(clippy::unnecessary_cast)]
                return Ok(NpyArray {
                    kind: $kind,
                    data: a.mapv(|v| v as f64),
                });
            }
        };
    }
    attempt!(f32, NpyKind::Float32);
    attempt!(f64, NpyKind::Float64);
    attempt!(u8, NpyKind::Int("uint8"));
    attempt!(i8, NpyKind::Int("int8"));
    attempt!(i16, NpyKind::Int("int16"));
    attempt!(u16, NpyKind::Int("uint16"));
    attempt!(i32, NpyKind::Int("int32"));
    attempt!(u32, NpyKind::Int("uint32"));
    attempt!(i64, NpyKind::Int("int64"));
    attempt!(u64, NpyKind::Int("uint64"));
    if let Some(a) = try_read::<bool>(bytes)? {
        return Ok(NpyArray {
            kind: NpyKind::Bool,
            data: a.mapv(|v| if v { 1.0 } else { 0.0 }),
        });
    }
    // No element type matched: report the file's descriptor.
    let header = ndarray_npy::npy::header::Header::from_reader(&mut &bytes[..])?;
    Err(ReadNpyError::WrongDescriptor(header.type_descriptor))
}

/// Reads a `.npy` file; the error names the file and says what it looks like instead.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|source| DriverError::Read {
        what: "array",
        path: path.to_path_buf(),
        source,
    })?;
    decode_npy(&bytes).map_err(|e| {
        let problem = match &e {
            ReadNpyError::WrongDescriptor(d) => format!(
                "its element type {d} is not supported (use float32, float64 or an integer type)"
            ),
            _ => match sniff(&bytes) {
                Some(kind) if !bytes.starts_with(b"\x93NUMPY") => {
                    format!("it looks like {kind}, not a .npy array")
                }
                _ => "it is not a valid .npy array (truncated or corrupt?)".into(),
            },
        };
        DriverError::BadNpy {
            path: path.to_path_buf(),
            problem: format!("{problem}: {e}"),
        }
    })
}

/// Writes `array` as `.npy` into a pending atomic write (made before the work, so that an
/// unwritable target fails first) and renames it onto its target.
pub fn write_npy(mut pending: PendingFile, array: &ArrayD<f32>) -> Result<()> {
    let path = pending.target().to_path_buf();
    let io = |source| DriverError::Write {
        path: path.clone(),
        source,
    };
    {
        let mut w = BufWriter::new(pending.file());
        array
            .write_npy(&mut w)
            .map_err(|e| io(std::io::Error::other(e)))?;
        w.flush().map_err(io)?;
    }
    pending.commit().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: ndarray_npy::WritableElement>(a: &ArrayD<T>) -> Vec<u8> {
        let mut v = vec![];
        a.write_npy(&mut v).unwrap();
        v
    }

    #[test]
    fn reads_float_and_integer_types() {
        let f = ArrayD::from_shape_vec(vec![2, 1], vec![1.5f32, -2.0]).unwrap();
        let r = decode_npy(&encode(&f)).unwrap();
        assert_eq!(r.kind, NpyKind::Float32);
        assert_eq!(r.data.shape(), &[2, 1]);
        let d = ArrayD::from_shape_vec(vec![2], vec![0.25f64, 3.0]).unwrap();
        assert_eq!(decode_npy(&encode(&d)).unwrap().kind, NpyKind::Float64);
        let u = ArrayD::from_shape_vec(vec![3], vec![0u8, 7, 255]).unwrap();
        let r = decode_npy(&encode(&u)).unwrap();
        assert_eq!(r.kind, NpyKind::Int("uint8"));
        assert_eq!(r.data.as_slice().unwrap(), &[0.0, 7.0, 255.0]);
        let i = ArrayD::from_shape_vec(vec![1], vec![-5i64]).unwrap();
        assert_eq!(decode_npy(&encode(&i)).unwrap().kind, NpyKind::Int("int64"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_npy(b"not an array").is_err());
        let f = ArrayD::from_shape_vec(vec![4], vec![1f32; 4]).unwrap();
        let bytes = encode(&f);
        assert!(decode_npy(&bytes[..bytes.len() - 3]).is_err());
    }
}
