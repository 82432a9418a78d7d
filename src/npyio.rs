//! `.npy` input and output for the CLI: reading arrays of any common numeric element type and
//! writing results atomically (a temporary file in the target directory, then a rename), so
//! an interrupted or failed run never leaves a partial output behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

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
    let bytes = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    decode_npy(&bytes).map_err(|e| {
        let what = match &e {
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
        anyhow!(e).context(format!("cannot read '{}': {what}", path.display()))
    })
}

/// Where an atomic write goes before it is renamed onto its target.
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl PendingFile {
    /// Creates the temporary file next to `target`, so that a target that cannot be written
    /// is reported before any work is done. Nothing is left behind if the write is dropped.
    pub fn new(target: &Path) -> Result<Self> {
        Self::with_mode(target, 0o666)
    }

    /// Like [`PendingFile::new`], but the file is readable by its owner only (mode 0600):
    /// for decrypted results, which are as private as the inputs they came from.
    pub fn new_private(target: &Path) -> Result<Self> {
        Self::with_mode(target, 0o600)
    }

    #[cfg_attr(not(unix), allow(unused_variables))]
    fn with_mode(target: &Path, mode: u32) -> Result<Self> {
        let ctx = || format!("cannot write '{}'", target.display());
        if target.is_dir() {
            return Err(anyhow!("it is a directory")).with_context(ctx);
        }
        let name = target
            .file_name()
            .ok_or_else(|| anyhow!("the path names no file"))
            .with_context(ctx)?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "cannot write '{}': directory '{}' does not exist",
                target.display(),
                dir.display()
            );
        }
        let prefix = format!(".{}.", name.to_string_lossy());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // 0666 (less the umask) for an ordinary file, 0600 for a private one.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        let tmp = builder.tempfile_in(&dir).with_context(ctx)?;
        Ok(PendingFile {
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// Writes `array` as `.npy` and renames the file onto the target.
    pub fn write_npy(self, array: &ArrayD<f32>) -> Result<()> {
        let ctx = || format!("cannot write '{}'", self.target.display());
        {
            let file: &File = self.tmp.as_file();
            let mut w = BufWriter::new(file);
            array.write_npy(&mut w).with_context(ctx)?;
            w.flush().with_context(ctx)?;
            file.sync_all().with_context(ctx)?;
        }
        let target = self.target.clone();
        self.tmp
            .persist(&target)
            .map_err(|e| anyhow!(e.error))
            .with_context(|| format!("cannot write '{}'", target.display()))?;
        Ok(())
    }
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
