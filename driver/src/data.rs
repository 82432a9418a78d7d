//! Dataset loading for evaluation, calibration, sweeps and tune searches.
//!
//! One entry point, [`load_dataset`], reads a labelled (or unlabelled) sample set from
//! a `.npz`, `.npy`, `.csv` or `.tsv` file into a [`Dataset`]: features as `f32` with
//! a leading sample axis, labels as `i64`. The README's "Data files" section describes the
//! accepted layouts.
//!
//! Every failure is a [`DataError`] whose message names the file and the array, row,
//! column or index at fault, and says what to do about it. Malformed input (truncated
//! archives, headers that promise more data than the file holds, odd dtypes) is an
//! error, never a panic.

use std::fmt;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array1, ArrayD, Axis, Dimension, IxDyn};
use ndarray_npy::npy::header::Header;
use ndarray_npy::ReadNpyExt;

/// Features and (optional) integer labels read from one data file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Features, `[N, ...sample shape]`, standard (C) layout, all values finite.
    pub x: ArrayD<f32>,
    /// Class labels, `[N]`; `None` when the file has no labels (e.g. a bare `.npy`).
    pub y: Option<Array1<i64>>,
    /// Human-readable description: file, arrays/columns used, conversions applied.
    pub source: String,
}

impl Dataset {
    /// Number of samples `N`.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// `true` when there are no samples (never the case for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one sample (`x.shape()[1..]`).
    pub fn sample_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    /// The first `n` samples (all of them if `n >= len`).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            x: self.x.slice_axis(Axis(0), (0..n).into()).to_owned(),
            y: self
                .y
                .as_ref()
                .map(|y| y.slice_axis(Axis(0), (0..n).into()).to_owned()),
            source: self.source.clone(),
        }
    }
}

/// Overrides for which arrays (`.npz`) or label column (`.csv`) to read
/// (`x_key` / `y_key`). `Default` means "use the conventional layout".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataKeys {
    /// `.npz` array holding the features; read verbatim (no scaling, no transposition).
    pub x_key: Option<String>,
    /// `.npz` array holding the labels, or the CSV header name of the label column.
    pub y_key: Option<String>,
}

/// Which split of a `.npz` file to read. Ignored for `.npy`, `.csv` and `.tsv`
/// (the whole file is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `x_train`/`y_train` or MedMNIST `train_images`/`train_labels`.
    Train,
    /// `x_test`/`y_test` or MedMNIST `test_images`/`test_labels`.
    Test,
    /// `x_val`/`y_val` or MedMNIST `val_images`/`val_labels` (what `tune` scores on).
    Val,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Val => "val",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Extensions [`load_dataset`] understands, for error messages.
const SUPPORTED: &str = ".npz (x_test/y_test, x_train/y_train or MedMNIST \
                         {train,test}_images/_labels), .npy (features only, no labels), \
                         .csv/.tsv (tabular features, label column)";

/// Header names recognised as the label column of a CSV file (case-insensitive).
const CSV_LABEL_NAMES: [&str; 3] = ["label", "target", "y"];

/// Why a data file could not be loaded. Every message names the file and what in it
/// is at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read data file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The extension is not one of the supported formats.
    #[error(
        "{}: unsupported data file extension {ext:?}; supported formats: {SUPPORTED}",
        path.display()
    )]
    UnsupportedExtension { path: PathBuf, ext: String },
    /// The `.npz` is not a readable zip archive (truncated, corrupt, or not an npz).
    #[error(
        "{} is not a readable .npz archive ({reason}); the file may be truncated or \
         corrupt: re-create it with numpy.savez / numpy.savez_compressed",
        path.display()
    )]
    NotAnNpz { path: PathBuf, reason: String },
    /// A requested array is not in the `.npz`.
    #[error(
        "{}: no {what} array {key:?} in the file; arrays it has: {}; \
         choose one with {field}",
        path.display(), list(available), field = if *what == "features" { "x_key" } else { "y_key" }
    )]
    MissingKey {
        path: PathBuf,
        key: String,
        what: &'static str,
        available: Vec<String>,
    },
    /// The `.npz` holds neither the plain nor the MedMNIST layout for the split.
    #[error(
        "{}: cannot find the {split} split: expected arrays 'x_{split}' (+ 'y_{split}') or \
         MedMNIST '{split}_images' (+ '{split}_labels'); arrays it has: {}; \
         name the arrays with x_key/y_key",
        path.display(), list(available)
    )]
    UnknownLayout {
        path: PathBuf,
        split: Split,
        available: Vec<String>,
    },
    /// An array inside the `.npz` (or the `.npy` itself) is malformed or has an
    /// unsupported dtype.
    #[error("{}: array {key:?}: {reason}", path.display())]
    BadArray {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// An array has the wrong rank or shape for its role.
    #[error("{}: array {key:?} has shape {shape:?}; {expected}", path.display())]
    BadShape {
        path: PathBuf,
        key: String,
        shape: Vec<usize>,
        expected: String,
    },
    /// A label is not an integer class index.
    #[error(
        "{}: label {index} in {key:?} is {value}, not an integer class index; \
         labels must be integers (or floats holding integers)",
        path.display()
    )]
    BadLabel {
        path: PathBuf,
        key: String,
        index: usize,
        value: String,
    },
    /// The features contain NaN or ±Inf.
    #[error(
        "{}: features {key:?} contain {count} non-finite value(s); the first is {value} at \
         index {index:?} (sample {}); clean the data (drop or impute those samples) first",
        path.display(), index[0]
    )]
    NonFinite {
        path: PathBuf,
        key: String,
        count: usize,
        index: Vec<usize>,
        value: f32,
    },
    /// No samples (or no feature columns).
    #[error("{}: {what} is empty: {detail}", path.display())]
    Empty {
        path: PathBuf,
        what: String,
        detail: String,
    },
    /// Features and labels disagree on the number of samples.
    #[error(
        "{}: {x_key:?} has {n_x} samples but {y_key:?} has {n_y} labels; \
         check that x_key/y_key name arrays of the same split",
        path.display()
    )]
    LengthMismatch {
        path: PathBuf,
        x_key: String,
        n_x: usize,
        y_key: String,
        n_y: usize,
    },
    /// A CSV/TSV cell or row is malformed.
    #[error("{}: line {line}, {column}: {reason}", path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        /// e.g. `column 3 ("radius")`, or `whole row`.
        column: String,
        reason: String,
    },
    /// An `x_key`/`y_key` override that does not apply to this file format.
    #[error("{}: {field} {key:?} does not apply here: {reason}", path.display())]
    KeyNotApplicable {
        path: PathBuf,
        /// `x_key` or `y_key`.
        field: &'static str,
        key: String,
        reason: String,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Loads the `split` of the dataset at `path`, honouring the `keys` overrides.
///
/// The format is chosen by extension (`.npz`, `.npy`, `.csv`, `.tsv`, case-insensitive);
/// see the README's "Data files" section for the layouts. The returned features are finite, have at least
/// one sample and a leading sample axis; labels, when present, match them in number.
pub fn load_dataset(path: &Path, split: Split, keys: &DataKeys) -> Result<Dataset, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let ds = match ext.as_str() {
        "npz" => load_npz(path, split, keys)?,
        "npy" => load_npy(path, keys)?,
        "csv" => load_csv(path, b',', keys)?,
        "tsv" => load_csv(path, b'\t', keys)?,
        _ => {
            return Err(DataError::UnsupportedExtension {
                path: path.to_path_buf(),
                ext: if ext.is_empty() {
                    "(none)".to_string()
                } else {
                    format!(".{ext}")
                },
            })
        }
    };
    debug_assert!(ds.x.is_standard_layout());
    Ok(ds)
}

// ---------------------------------------------------------------------------------
// npy / npz arrays of any supported dtype

/// An array as stored, before conversion.
enum Raw {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
}

macro_rules! each_raw {
    ($raw:expr, $a:ident => $body:expr) => {
        match $raw {
            Raw::F32($a) => $body,
            Raw::F64($a) => $body,
            Raw::U8($a) => $body,
            Raw::U16($a) => $body,
            Raw::U32($a) => $body,
            Raw::U64($a) => $body,
            Raw::I8($a) => $body,
            Raw::I16($a) => $body,
            Raw::I32($a) => $body,
            Raw::I64($a) => $body,
        }
    };
}

impl Raw {
    fn dtype(&self) -> &'static str {
        match self {
            Raw::F32(_) => "float32",
            Raw::F64(_) => "float64",
            Raw::U8(_) => "uint8",
            Raw::U16(_) => "uint16",
            Raw::U32(_) => "uint32",
            Raw::U64(_) => "uint64",
            Raw::I8(_) => "int8",
            Raw::I16(_) => "int16",
            Raw::I32(_) => "int32",
            Raw::I64(_) => "int64",
        }
    }

    fn shape(&self) -> &[usize] {
        each_raw!(self, a => a.shape())
    }

    /// Values as `f32`, unscaled (`f64` out of `f32` range becomes ±Inf and is then
    /// rejected by the finiteness check).
    fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Raw::F32(a) => a.as_standard_layout().into_owned(),
            Raw::F64(a) => std_layout(a.mapv(|v| v as f32)),
            Raw::U8(a) => std_layout(a.mapv(f32::from)),
            Raw::U16(a) => std_layout(a.mapv(f32::from)),
            Raw::U32(a) => std_layout(a.mapv(|v| v as f32)),
            Raw::U64(a) => std_layout(a.mapv(|v| v as f32)),
            Raw::I8(a) => std_layout(a.mapv(f32::from)),
            Raw::I16(a) => std_layout(a.mapv(f32::from)),
            Raw::I32(a) => std_layout(a.mapv(|v| v as f32)),
            Raw::I64(a) => std_layout(a.mapv(|v| v as f32)),
        }
    }

    /// Values as `i64` labels in logical (row-major) order; `Err((index, value))` for
    /// the first value that is not an integer representable as `i64`.
    fn to_i64(&self) -> Result<Vec<i64>, (usize, String)> {
        fn float(v: f64) -> Option<i64> {
            // -2^63 (= i64::MIN) is exactly representable; anything in [-2^63, 2^63)
            // with no fractional part converts exactly.
            let min = i64::MIN as f64;
            (v.is_finite() && v.fract() == 0.0 && (min..-min).contains(&v)).then_some(v as i64)
        }
        let conv = |i: usize, v: Option<i64>, shown: String| v.ok_or((i, shown));
        match self {
            Raw::F32(a) => a
                .iter()
                .enumerate()
                .map(|(i, &v)| conv(i, float(f64::from(v)), v.to_string()))
                .collect(),
            Raw::F64(a) => a
                .iter()
                .enumerate()
                .map(|(i, &v)| conv(i, float(v), v.to_string()))
                .collect(),
            Raw::U64(a) => a
                .iter()
                .enumerate()
                .map(|(i, &v)| conv(i, i64::try_from(v).ok(), v.to_string()))
                .collect(),
            Raw::U8(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::U16(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::U32(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::I8(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::I16(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::I32(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Raw::I64(a) => Ok(a.iter().copied().collect()),
        }
    }
}

fn std_layout(a: ArrayD<f32>) -> ArrayD<f32> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Parses the bytes of one `.npy` file (stand-alone or an `.npz` member).
///
/// The header's promise (shape × item size) is checked against the bytes actually
/// present before anything is allocated, so a truncated or corrupt file gives an
/// error rather than a huge allocation.
fn parse_npy(bytes: &[u8], path: &Path, key: &str) -> Result<Raw, DataError> {
    let bad = |reason: String| DataError::BadArray {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let mut cursor = Cursor::new(bytes);
    let header = Header::from_reader(&mut cursor).map_err(|e| {
        bad(format!(
            "not a valid .npy array (bad header: {e}); the data may be truncated or corrupt"
        ))
    })?;
    let data_len = bytes.len() as u64 - cursor.position();
    let Some(descr) = header.type_descriptor.as_string().cloned() else {
        return Err(bad(format!(
            "structured/record dtype {} is not supported; save a plain numeric array",
            header.type_descriptor
        )));
    };
    // "<f4" → ("f", 4); the byte-order mark is handled by ndarray-npy.
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    let (kind, size) = code.split_at(code.len().min(1));
    let size: usize = size.parse().unwrap_or(0);
    let elems = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = elems.and_then(|n| n.checked_mul(size));
    let supported = matches!(
        (kind, size),
        ("f", 4 | 8) | ("u", 1 | 2 | 4 | 8) | ("i", 1 | 2 | 4 | 8)
    );
    if !supported {
        return Err(bad(format!(
            "dtype {descr:?} is not supported; use float32/float64 or an integer dtype"
        )));
    }
    match expected {
        Some(n) if n as u64 == data_len => {}
        Some(n) => {
            return Err(bad(format!(
                "header says shape {:?} of {descr} ({n} bytes) but {data_len} bytes of data \
                 follow; the file is truncated or corrupt",
                header.shape
            )))
        }
        None => {
            return Err(bad(format!(
                "header shape {:?} is too large to be real; the file is corrupt",
                header.shape
            )))
        }
    }
    let read_err = |e: ndarray_npy::ReadNpyError| bad(format!("cannot decode array: {e}"));
    let cur = Cursor::new(bytes);
    Ok(match (kind, size) {
        ("f", 4) => Raw::F32(ArrayD::read_npy(cur).map_err(read_err)?),
        ("f", 8) => Raw::F64(ArrayD::read_npy(cur).map_err(read_err)?),
        ("u", 1) => Raw::U8(ArrayD::read_npy(cur).map_err(read_err)?),
        ("u", 2) => Raw::U16(ArrayD::read_npy(cur).map_err(read_err)?),
        ("u", 4) => Raw::U32(ArrayD::read_npy(cur).map_err(read_err)?),
        ("u", 8) => Raw::U64(ArrayD::read_npy(cur).map_err(read_err)?),
        ("i", 1) => Raw::I8(ArrayD::read_npy(cur).map_err(read_err)?),
        ("i", 2) => Raw::I16(ArrayD::read_npy(cur).map_err(read_err)?),
        ("i", 4) => Raw::I32(ArrayD::read_npy(cur).map_err(read_err)?),
        _ => Raw::I64(ArrayD::read_npy(cur).map_err(read_err)?),
    })
}

/// An opened `.npz`: the zip archive and its array names (".npy" stripped).
struct Npz {
    path: PathBuf,
    zip: zip::ZipArchive<std::fs::File>,
    /// (array name, member name in the zip), in archive order.
    members: Vec<(String, String)>,
}

impl Npz {
    fn open(path: &Path) -> Result<Npz, DataError> {
        let file = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let zip = zip::ZipArchive::new(file).map_err(|e| DataError::NotAnNpz {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut members = zip
            .file_names()
            .map(|m| {
                let name = m.strip_suffix(".npy").unwrap_or(m);
                (name.to_string(), m.to_string())
            })
            .collect::<Vec<_>>();
        // Keep a stable, readable order for messages.
        members.sort();
        Ok(Npz {
            path: path.to_path_buf(),
            zip,
            members,
        })
    }

    fn names(&self) -> Vec<String> {
        self.members.iter().map(|(n, _)| n.clone()).collect()
    }

    fn read(&mut self, name: &str, what: &'static str) -> Result<Raw, DataError> {
        let Some((_, member)) = self.members.iter().find(|(n, _)| n == name) else {
            return Err(DataError::MissingKey {
                path: self.path.clone(),
                key: name.to_string(),
                what,
                available: self.names(),
            });
        };
        let member = member.clone();
        let corrupt = |reason: String| DataError::BadArray {
            path: self.path.clone(),
            key: name.to_string(),
            reason: format!(
                "cannot extract it from the archive ({reason}); the file is truncated or corrupt"
            ),
        };
        let mut entry = self
            .zip
            .by_name(&member)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut bytes = Vec::with_capacity(entry.size().min(1 << 26) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(e.to_string()))?;
        drop(entry);
        parse_npy(&bytes, &self.path, name)
    }
}

/// Which arrays to read from an `.npz`, and how.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    x_key: String,
    /// Apply the MedMNIST conversion (uint8 NHW(C) → float NCHW / 255).
    medmnist: bool,
    /// Label array: an explicit `y_key` (reading it fails if it is missing), or the
    /// conventional partner of `x_key` when the file has it; `None` = unlabelled.
    y_key: Option<String>,
    /// Remarks for `Dataset::source` (e.g. an override that did not apply).
    notes: Vec<String>,
}

/// The label array conventionally paired with a feature array, e.g. `x_val` → `y_val`,
/// `val_images` → `val_labels`.
fn partner(x_key: &str) -> Option<String> {
    if let Some(rest) = x_key
        .strip_prefix("x_")
        .or_else(|| x_key.strip_prefix("X_"))
    {
        Some(format!("y_{rest}"))
    } else if let Some(rest) = x_key.strip_suffix("images") {
        Some(format!("{rest}labels"))
    } else if x_key == "x" || x_key == "X" {
        Some("y".to_string())
    } else {
        None
    }
}

fn plan(path: &Path, names: &[String], split: Split, keys: &DataKeys) -> Result<Plan, DataError> {
    let has = |k: &str| names.iter().any(|n| n == k);
    let mut notes = Vec::new();
    // Overrides name the test split; for the train split, a key mentioning "test" is
    // mapped to its train counterpart and any other key is ignored.
    let map_key = |field: &str, k: &Option<String>, notes: &mut Vec<String>| -> Option<String> {
        let k = k.as_ref()?;
        match split {
            Split::Test => Some(k.clone()),
            other if k.contains("test") => Some(k.replace("test", other.name())),
            other => {
                notes.push(format!(
                    "{field} '{k}' names the test split; the {other} split uses the default \
                     layout"
                ));
                None
            }
        }
    };
    let x_override = map_key("x_key", &keys.x_key, &mut notes);
    let y_override = map_key("y_key", &keys.y_key, &mut notes);

    let (x_key, medmnist, default_y) = if let Some(x) = x_override {
        let y = partner(&x).filter(|p| has(p));
        (x, false, y)
    } else {
        let s = split.name();
        let (plain_x, plain_y) = (format!("x_{s}"), format!("y_{s}"));
        let (med_x, med_y) = (format!("{s}_images"), format!("{s}_labels"));
        if has(&plain_x) {
            (plain_x, false, Some(plain_y).filter(|k| has(k)))
        } else if has(&med_x) {
            (med_x, true, Some(med_y).filter(|k| has(k)))
        } else {
            return Err(DataError::UnknownLayout {
                path: path.to_path_buf(),
                split,
                available: names.to_vec(),
            });
        }
    };
    let y_key = y_override.or(default_y);
    Ok(Plan {
        x_key,
        medmnist,
        y_key,
        notes,
    })
}

fn load_npz(path: &Path, split: Split, keys: &DataKeys) -> Result<Dataset, DataError> {
    let mut npz = Npz::open(path)?;
    let names = npz.names();
    let plan = plan(path, &names, split, keys)?;

    let raw_x = npz.read(&plan.x_key, "features")?;
    let x_dtype = raw_x.dtype();
    let x_shape = raw_x.shape().to_vec();
    let (x, x_desc) = if plan.medmnist {
        let x = medmnist_images(&raw_x, path, &plan.x_key)?;
        let desc = format!(
            "MedMNIST '{}' {x_dtype} {x_shape:?} → float {:?} /255",
            plan.x_key,
            x.shape()
        );
        (x, desc)
    } else {
        let desc = format!("'{}' {x_dtype} {x_shape:?}", plan.x_key);
        (raw_x.to_f32(), desc)
    };
    drop(raw_x);
    check_x(&x, path, &plan.x_key)?;

    // An optional (conventional) label key is only planned when the array exists;
    // an explicit y_key that is missing is reported by `read`.
    let y = match &plan.y_key {
        Some(k) => {
            let raw_y = npz.read(k, "labels")?;
            let y = labels(&raw_y, path, k)?;
            if y.len() != x.shape()[0] {
                return Err(DataError::LengthMismatch {
                    path: path.to_path_buf(),
                    x_key: plan.x_key.clone(),
                    n_x: x.shape()[0],
                    y_key: k.clone(),
                    n_y: y.len(),
                });
            }
            Some(y)
        }
        None => None,
    };
    let y_desc = match (&y, &plan.y_key) {
        (Some(_), Some(k)) => format!("labels '{k}'"),
        _ => "no labels".to_string(),
    };
    let mut source = format!("{} ({split} split): {x_desc}, {y_desc}", path.display());
    for note in &plan.notes {
        source.push_str("; ");
        source.push_str(note);
    }
    Ok(Dataset { x, y, source })
}

/// MedMNIST images: uint8 `[N,H,W]` or `[N,H,W,C]` → float `[N,C,H,W]` in `[0,1]`.
fn medmnist_images(raw: &Raw, path: &Path, key: &str) -> Result<ArrayD<f32>, DataError> {
    let Raw::U8(a) = raw else {
        return Err(DataError::BadArray {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: format!(
                "MedMNIST images must be uint8, found {}; pass x_key {key} to read it verbatim",
                raw.dtype()
            ),
        });
    };
    let scaled = a.mapv(|v| f32::from(v) / 255.0);
    let nchw = match *a.shape() {
        [n, h, w] => scaled
            .into_shape_with_order(IxDyn(&[n, 1, h, w]))
            .expect("same element count"),
        [_, _, _, 1 | 3] => scaled.permuted_axes(IxDyn(&[0, 3, 1, 2])),
        _ => {
            return Err(DataError::BadShape {
                path: path.to_path_buf(),
                key: key.to_string(),
                shape: a.shape().to_vec(),
                expected: "MedMNIST images must be [N,H,W] (grey) or [N,H,W,3] (RGB); \
                           pass x_key to read it verbatim"
                    .to_string(),
            })
        }
    };
    Ok(std_layout(nchw))
}

/// Labels of shape `[N]` or `[N,1]`, integer-valued, → `[N]` i64.
fn labels(raw: &Raw, path: &Path, key: &str) -> Result<Array1<i64>, DataError> {
    let shape = raw.shape();
    if !matches!(shape, [_] | [_, 1]) {
        return Err(DataError::BadShape {
            path: path.to_path_buf(),
            key: key.to_string(),
            shape: shape.to_vec(),
            expected: "labels must be [N] or [N,1] integer class indices \
                       (one-hot and multi-label targets are not supported)"
                .to_string(),
        });
    }
    raw.to_i64()
        .map(Array1::from)
        .map_err(|(index, value)| DataError::BadLabel {
            path: path.to_path_buf(),
            key: key.to_string(),
            index,
            value,
        })
}

/// Features must have a sample axis plus at least one more, ≥ 1 sample, finite values.
fn check_x(x: &ArrayD<f32>, path: &Path, key: &str) -> Result<(), DataError> {
    if x.ndim() < 2 {
        return Err(DataError::BadShape {
            path: path.to_path_buf(),
            key: key.to_string(),
            shape: x.shape().to_vec(),
            expected: "features must be [N, ...sample shape] (at least 2-D); \
                       reshape a single feature to [N,1]"
                .to_string(),
        });
    }
    if x.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: format!("'{key}'"),
            detail: format!("shape {:?} holds no values", x.shape()),
        });
    }
    let count = x.iter().filter(|v| !v.is_finite()).count();
    if count > 0 {
        let (index, &value) = x
            .indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .expect("count > 0");
        return Err(DataError::NonFinite {
            path: path.to_path_buf(),
            key: key.to_string(),
            count,
            index: index.slice().to_vec(),
            value,
        });
    }
    Ok(())
}

fn load_npy(path: &Path, keys: &DataKeys) -> Result<Dataset, DataError> {
    for (field, k) in [("x_key", &keys.x_key), ("y_key", &keys.y_key)] {
        if let Some(k) = k {
            return Err(DataError::KeyNotApplicable {
                path: path.to_path_buf(),
                field,
                key: k.clone(),
                reason: "a .npy file holds a single (feature) array; use a .npz to name arrays"
                    .to_string(),
            });
        }
    }
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let key = "(the .npy array)";
    let raw = parse_npy(&bytes, path, key)?;
    let x = raw.to_f32();
    check_x(&x, path, key)?;
    let source = format!(
        "{}: {} {:?} features, no labels",
        path.display(),
        raw.dtype(),
        raw.shape()
    );
    Ok(Dataset { x, y: None, source })
}

// ---------------------------------------------------------------------------------
// CSV / TSV

fn load_csv(path: &Path, delimiter: u8, keys: &DataKeys) -> Result<Dataset, DataError> {
    if let Some(k) = &keys.x_key {
        return Err(DataError::KeyNotApplicable {
            path: path.to_path_buf(),
            field: "x_key",
            key: k.clone(),
            reason: "in a CSV every column except the label is a feature".to_string(),
        });
    }
    let records = read_csv_records(path, delimiter)?;
    let Some(first) = records.first() else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "the CSV".to_string(),
            detail: "no rows".to_string(),
        });
    };
    let ncols = first.len();
    let header = csv_header(first);
    let has_header = header.is_some();
    let label_col = csv_label_column(path, header.as_deref(), keys.y_key.as_deref(), ncols)?;
    if ncols < 2 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "the CSV features".to_string(),
            detail: format!(
                "rows have {ncols} column(s): a label column and at least one feature column \
                 are needed"
            ),
        });
    }
    let data = &records[usize::from(has_header)..];
    if data.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "the CSV".to_string(),
            detail: "it has a header row but no data rows".to_string(),
        });
    }
    let nfeat = ncols - 1;
    let (xs, ys) = parse_csv_rows(path, data, ncols, header.as_deref(), label_col)?;
    let n = ys.len();
    let x = ArrayD::from_shape_vec(IxDyn(&[n, nfeat]), xs).expect("n × nfeat values");
    let source = format!(
        "{}: {n} rows × {nfeat} features ({}), labels {}; split ignored (whole file)",
        path.display(),
        if has_header {
            "header row"
        } else {
            "no header"
        },
        csv_column_name(header.as_deref(), label_col)
    );
    Ok(Dataset {
        x,
        y: Some(Array1::from(ys)),
        source,
    })
}

/// A `csv` crate error as a [`DataError`]: I/O failures keep their source, anything
/// else is reported against the whole row it occurred on.
fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    let reason = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
        _ => DataError::Csv {
            path: path.to_path_buf(),
            line,
            column: "whole row".to_string(),
            reason,
        },
    }
}

/// Every non-blank row of the file (cells trimmed, rows of any length), header
/// included.
fn read_csv_records(path: &Path, delimiter: u8) -> Result<Vec<csv::StringRecord>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut records = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| csv_error(path, e))?;
        // Skip blank lines (a single empty field).
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        records.push(rec);
    }
    Ok(records)
}

/// The column names, if `first` is a header row.
///
/// A header is a first row with a non-empty, non-numeric cell (an empty cell is a
/// missing value, reported when the rows are parsed, not a column name).
fn csv_header(first: &csv::StringRecord) -> Option<Vec<String>> {
    let has_header = first
        .iter()
        .any(|c| !c.is_empty() && c.parse::<f64>().is_err());
    has_header.then(|| first.iter().map(String::from).collect())
}

/// Index of the label column: the `y_key` column of the header if one is named,
/// else the first header column called one of [`CSV_LABEL_NAMES`], else the last
/// column.
fn csv_label_column(
    path: &Path,
    header: Option<&[String]>,
    y_key: Option<&str>,
    ncols: usize,
) -> Result<usize, DataError> {
    Ok(match (header, y_key) {
        (Some(h), Some(k)) => {
            h.iter()
                .position(|c| c == k)
                .ok_or_else(|| DataError::KeyNotApplicable {
                    path: path.to_path_buf(),
                    field: "y_key",
                    key: k.to_string(),
                    reason: format!("no such column; the header has {}", list(h)),
                })?
        }
        (None, Some(k)) => {
            return Err(DataError::KeyNotApplicable {
                path: path.to_path_buf(),
                field: "y_key",
                key: k.to_string(),
                reason: "the CSV has no header row (its first row is all numbers); \
                         add one, or put the label in the last column"
                    .to_string(),
            })
        }
        (Some(h), None) => h
            .iter()
            .position(|c| CSV_LABEL_NAMES.contains(&c.to_ascii_lowercase().as_str()))
            .unwrap_or(ncols - 1),
        (None, None) => ncols - 1,
    })
}

/// How error messages and the dataset description name (0-based) column `c`.
fn csv_column_name(header: Option<&[String]>, c: usize) -> String {
    match header {
        Some(h) => format!("column {} ({:?})", c + 1, h[c]),
        None => format!("column {}", c + 1),
    }
}

/// Parses the data rows (header excluded) into row-major features and labels.
/// Every row must have `ncols` fields, as many as the file's first row.
fn parse_csv_rows(
    path: &Path,
    data: &[csv::StringRecord],
    ncols: usize,
    header: Option<&[String]>,
    label_col: usize,
) -> Result<(Vec<f32>, Vec<i64>), DataError> {
    let mut xs = Vec::with_capacity(data.len() * (ncols - 1));
    let mut ys = Vec::with_capacity(data.len());
    for rec in data {
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != ncols {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line,
                column: "whole row".to_string(),
                reason: format!(
                    "{} fields, but the first row has {ncols}; every row needs the same \
                     number of columns",
                    rec.len()
                ),
            });
        }
        for (c, cell) in rec.iter().enumerate() {
            let bad = |reason: String| DataError::Csv {
                path: path.to_path_buf(),
                line,
                column: csv_column_name(header, c),
                reason,
            };
            let v: f64 = cell.parse().map_err(|_| {
                bad(if cell.is_empty() {
                    "empty cell; fill or drop missing values first".to_string()
                } else {
                    format!("cannot parse {cell:?} as a number")
                })
            })?;
            if c == label_col {
                let ok = v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15;
                if !ok {
                    return Err(bad(format!("label {cell:?} is not an integer class index")));
                }
                ys.push(v as i64);
            } else {
                let f = v as f32;
                if !f.is_finite() {
                    return Err(bad(format!(
                        "feature value {cell:?} is not a finite float32; clean the data first"
                    )));
                }
                xs.push(f);
            }
        }
    }
    Ok((xs, ys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2, ArrayD};
    use ndarray_npy::{NpzReader, NpzWriter, WriteNpyExt};
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("tests/fixtures/data")
            .join(name)
    }

    fn load(name: &str, split: Split) -> Dataset {
        load_dataset(&fixture(name), split, &DataKeys::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn keys(x: Option<&str>, y: Option<&str>) -> DataKeys {
        DataKeys {
            x_key: x.map(String::from),
            y_key: y.map(String::from),
        }
    }

    /// A scratch directory removed on drop (no extra dev-dependency needed).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "fhec-data-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }

        /// Writes an `.npz` with the given arrays (each added by a closure).
        fn npz(&self, name: &str, add: impl FnOnce(&mut NpzWriter<std::fs::File>)) -> PathBuf {
            let p = self.0.join(name);
            let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
            add(&mut w);
            w.finish().unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn err(path: &Path, split: Split, k: &DataKeys) -> DataError {
        match load_dataset(path, split, k) {
            Ok(d) => panic!("expected an error, got {}", d.source),
            Err(e) => e,
        }
    }

    // ---- real fixtures ----------------------------------------------------------

    #[test]
    fn breast_cancer_test_and_train_splits() {
        let test = load("breast_cancer.npz", Split::Test);
        assert_eq!(test.x.shape(), &[114, 30]);
        assert_eq!(test.len(), 114);
        assert_eq!(test.sample_shape(), &[30]);
        let y = test.y.as_ref().unwrap();
        assert_eq!(y.len(), 114);
        assert!(y.iter().all(|&c| c == 0 || c == 1));
        assert!(test.source.contains("x_test") && test.source.contains("y_test"));

        let train = load("breast_cancer.npz", Split::Train);
        assert_eq!(train.x.shape(), &[455, 30]);
        assert_eq!(train.y.unwrap().len(), 455);
        assert!(train.source.contains("x_train"));
    }

    #[test]
    fn digits_28_nchw_in_unit_range() {
        let d = load("digits_28.npz", Split::Test);
        assert_eq!(d.x.shape(), &[360, 1, 28, 28]);
        assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(d.y.unwrap().len(), 360);
    }

    /// The MedMNIST fixture is digits_28 × 255 as uint8, for the first 200 test / 300
    /// train samples (checked: max |difference| is exactly 0 and the labels agree).
    #[test]
    fn medmnist_grey_matches_digits_28() {
        for (split, n) in [(Split::Test, 200), (Split::Train, 300)] {
            let med = load("digits_medmnist_28.npz", split);
            let dig = load("digits_28.npz", split);
            assert_eq!(med.x.shape(), &[n, 1, 28, 28], "{split}");
            assert!(med.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
            assert_eq!(med.x, dig.x.slice(s![..n, .., .., ..]).into_dyn());
            assert_eq!(
                med.y.as_ref().unwrap(),
                dig.y.as_ref().unwrap().slice(s![..n])
            );
            assert!(med.source.contains("MedMNIST"), "{}", med.source);
        }
        // One explicit value, for the record.
        let med = load("digits_medmnist_28.npz", Split::Test);
        let dig = load("digits_28.npz", Split::Test);
        assert!(dig.x[[0, 0, 14, 14]] > 0.0);
        assert_eq!(med.x[[0, 0, 14, 14]], dig.x[[0, 0, 14, 14]]);
    }

    /// RGB MedMNIST: HWC → CHW, checked against the raw uint8 array and against
    /// digits_rgb_28 (whose first 100 test samples it stores × 255).
    #[test]
    fn medmnist_rgb_transposed_to_nchw() {
        let med = load("digits_medmnist_rgb_28.npz", Split::Test);
        assert_eq!(med.x.shape(), &[100, 3, 28, 28]);
        assert!(med.x.is_standard_layout());

        let mut npz =
            NpzReader::new(std::fs::File::open(fixture("digits_medmnist_rgb_28.npz")).unwrap())
                .unwrap();
        let raw: ndarray::Array4<u8> = npz.by_name("test_images").unwrap();
        for &(n, c, h, w) in &[
            (0, 0, 14, 14),
            (3, 1, 10, 20),
            (99, 2, 27, 5),
            (50, 2, 14, 9),
        ] {
            assert_eq!(med.x[[n, c, h, w]], f32::from(raw[[n, h, w, c]]) / 255.0);
        }
        let rgb = load("digits_rgb_28.npz", Split::Test);
        assert_eq!(med.x, rgb.x.slice(s![..100, .., .., ..]).into_dyn());
        assert_eq!(med.y.unwrap(), rgb.y.unwrap().slice(s![..100]));

        let train = load("digits_medmnist_rgb_28.npz", Split::Train);
        assert_eq!(train.x.shape(), &[200, 3, 28, 28]);
    }

    #[test]
    fn npy_sample_is_features_only() {
        let d = load("breast_cancer_sample.npy", Split::Test);
        assert_eq!(d.x.shape(), &[1, 30]);
        assert!(d.y.is_none());
        let test = load("breast_cancer.npz", Split::Test);
        assert_eq!(d.x, test.x.slice(s![..1, ..]).into_dyn());
        let e = err(
            &fixture("breast_cancer_sample.npy"),
            Split::Test,
            &keys(None, Some("y")),
        );
        assert!(matches!(e, DataError::KeyNotApplicable { .. }), "{e}");
    }

    // ---- key overrides ----------------------------------------------------------

    #[test]
    fn x_key_reads_verbatim_and_pairs_labels() {
        let p = fixture("digits_medmnist_28.npz");
        let d = load_dataset(&p, Split::Test, &keys(Some("val_images"), None)).unwrap();
        // No scaling, no channel axis.
        assert_eq!(d.x.shape(), &[100, 28, 28]);
        assert!(d.x.iter().any(|&v| v > 1.0) && d.x.iter().all(|&v| v <= 255.0));
        assert_eq!(d.y.as_ref().unwrap().len(), 100, "paired with val_labels");
        assert!(d.source.contains("val_labels"), "{}", d.source);

        // Train split: "test" in the key becomes "train".
        let d = load_dataset(
            &p,
            Split::Train,
            &keys(Some("test_images"), Some("test_labels")),
        )
        .unwrap();
        assert_eq!(d.x.shape(), &[300, 28, 28]);
        assert!(d.source.contains("train_images") && d.source.contains("train_labels"));

        // Train split, key without "test": default train layout, noted in `source`.
        let d = load_dataset(&p, Split::Train, &keys(Some("val_images"), None)).unwrap();
        assert_eq!(d.x.shape(), &[300, 1, 28, 28]);
        assert!(d.source.contains("x_key 'val_images'"), "{}", d.source);

        // Plain layout: explicit keys give the same as the defaults.
        let bc = fixture("breast_cancer.npz");
        let a = load_dataset(&bc, Split::Test, &keys(Some("x_test"), Some("y_test"))).unwrap();
        let b = load("breast_cancer.npz", Split::Test);
        assert_eq!(a.x, b.x);
        assert_eq!(a.y, b.y);
        let t = load_dataset(&bc, Split::Train, &keys(Some("x_test"), None)).unwrap();
        assert_eq!(t.x.shape(), &[455, 30]);
        assert_eq!(t.y.unwrap().len(), 455);
    }

    #[test]
    fn missing_key_lists_available_arrays() {
        let p = fixture("breast_cancer.npz");
        let e = err(&p, Split::Test, &keys(Some("features"), None));
        assert!(
            matches!(
                e,
                DataError::MissingKey {
                    what: "features",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        for k in [
            "breast_cancer.npz",
            "\"features\"",
            "'x_test'",
            "'y_test'",
            "'x_train'",
            "'y_train'",
            "x_key",
        ] {
            assert!(msg.contains(k), "{k} not in: {msg}");
        }
        let e = err(&p, Split::Test, &keys(None, Some("labels")));
        assert!(e.to_string().contains("y_key"), "{e}");
        assert!(e.to_string().contains("'y_test'"), "{e}");
    }

    #[test]
    fn unknown_layout_lists_available_arrays() {
        let t = TempDir::new();
        let p = t.npz("odd.npz", |w| {
            w.add_array("a", &Array2::<f32>::zeros((2, 3))).unwrap();
            w.add_array("b", &Array1::<i64>::zeros(2)).unwrap();
        });
        let e = err(&p, Split::Test, &DataKeys::default());
        let msg = e.to_string();
        assert!(matches!(e, DataError::UnknownLayout { .. }), "{e:?}");
        for k in ["odd.npz", "'x_test'", "'test_images'", "'a', 'b'", "x_key"] {
            assert!(msg.contains(k), "{k} not in: {msg}");
        }
        // Naming the arrays works, verbatim; "b" is not a conventional partner of "a".
        let d = load_dataset(&p, Split::Test, &keys(Some("a"), Some("b"))).unwrap();
        assert_eq!(d.x.shape(), &[2, 3]);
        assert_eq!(d.y.unwrap().len(), 2);
        let d = load_dataset(&p, Split::Test, &keys(Some("a"), None)).unwrap();
        assert!(d.y.is_none());
        // No train split in the file.
        let e = err(&p, Split::Train, &DataKeys::default());
        assert!(e.to_string().contains("'x_train'"), "{e}");
    }

    // ---- dtypes and validation --------------------------------------------------

    #[test]
    fn dtypes_convert_without_scaling() {
        let t = TempDir::new();
        let p = t.npz("types.npz", |w| {
            let x = ndarray::arr2(&[[0u8, 255], [7, 8]]);
            w.add_array("x_test", &x).unwrap();
            w.add_array("y_test", &ndarray::arr2(&[[3.0f64], [1.0]]))
                .unwrap();
            w.add_array("x_train", &ndarray::arr2(&[[1.5f64, -2.0]]))
                .unwrap();
            w.add_array("y_train", &ndarray::arr1(&[9i32])).unwrap();
        });
        let d = load_dataset(&p, Split::Test, &DataKeys::default()).unwrap();
        assert_eq!(
            d.x,
            ndarray::arr2(&[[0.0f32, 255.0], [7.0, 8.0]]).into_dyn()
        );
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[3i64, 1]));
        let d = load_dataset(&p, Split::Train, &DataKeys::default()).unwrap();
        assert_eq!(d.x, ndarray::arr2(&[[1.5f32, -2.0]]).into_dyn());
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[9i64]));
    }

    #[test]
    fn fortran_order_is_made_standard() {
        let t = TempDir::new();
        let x = ndarray::arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let p = t.npz("f.npz", |w| {
            w.add_array("x_test", &x.t().as_standard_layout().t())
                .unwrap();
        });
        let d = load_dataset(&p, Split::Test, &DataKeys::default()).unwrap();
        assert!(d.x.is_standard_layout());
        assert_eq!(d.x, x.into_dyn());
        assert!(d.y.is_none(), "no y_test: unlabelled");
    }

    #[test]
    fn nan_and_inf_features_are_rejected_with_index() {
        let t = TempDir::new();
        let mut x = Array2::<f32>::zeros((3, 4));
        x[[1, 2]] = f32::NAN;
        x[[2, 0]] = f32::INFINITY;
        let p = t.npz("nan.npz", |w| {
            w.add_array("x_test", &x).unwrap();
            w.add_array("y_test", &Array1::<i64>::zeros(3)).unwrap();
        });
        let e = err(&p, Split::Test, &DataKeys::default());
        match &e {
            DataError::NonFinite { index, count, .. } => {
                assert_eq!(index, &[1, 2]);
                assert_eq!(*count, 2);
            }
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("nan.npz") && msg.contains("[1, 2]") && msg.contains("sample 1"),
            "{msg}"
        );
        // float64 beyond float32 range becomes Inf and is rejected too.
        let p = t.npz("big.npz", |w| {
            w.add_array("x_test", &ndarray::arr2(&[[1e300f64]]))
                .unwrap();
        });
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::NonFinite { .. }
        ));
    }

    #[test]
    fn bad_labels_are_rejected() {
        let t = TempDir::new();
        let x = Array2::<f32>::zeros((3, 2));
        type AddLabels = Box<dyn Fn(&mut NpzWriter<std::fs::File>)>;
        let cases: Vec<(&str, AddLabels)> = vec![
            (
                "frac",
                Box::new(|w| {
                    w.add_array("y_test", &ndarray::arr1(&[0.0f32, 0.5, 1.0]))
                        .unwrap()
                }),
            ),
            (
                "onehot",
                Box::new(|w| {
                    w.add_array("y_test", &Array2::<i64>::zeros((3, 2)))
                        .unwrap()
                }),
            ),
            (
                "short",
                Box::new(|w| w.add_array("y_test", &Array1::<i64>::zeros(2)).unwrap()),
            ),
            (
                "huge",
                Box::new(|w| {
                    w.add_array("y_test", &ndarray::arr1(&[0u64, u64::MAX, 1]))
                        .unwrap()
                }),
            ),
        ];
        for (name, add) in cases {
            let p = t.npz(&format!("{name}.npz"), |w| {
                w.add_array("x_test", &x).unwrap();
                add(w);
            });
            let e = err(&p, Split::Test, &DataKeys::default());
            let msg = e.to_string();
            match name {
                "frac" => {
                    assert!(matches!(e, DataError::BadLabel { index: 1, .. }), "{e:?}");
                    assert!(msg.contains("0.5"), "{msg}");
                }
                "huge" => assert!(matches!(e, DataError::BadLabel { index: 1, .. }), "{e:?}"),
                "onehot" => {
                    assert!(matches!(e, DataError::BadShape { .. }), "{e:?}");
                    assert!(msg.contains("[3, 2]"), "{msg}");
                }
                _ => {
                    assert!(
                        matches!(e, DataError::LengthMismatch { n_x: 3, n_y: 2, .. }),
                        "{e:?}"
                    );
                    assert!(
                        msg.contains("\"x_test\"") && msg.contains("\"y_test\""),
                        "{msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_and_rank1_features_are_rejected() {
        let t = TempDir::new();
        let p = t.npz("empty.npz", |w| {
            w.add_array("x_test", &Array2::<f32>::zeros((0, 30)))
                .unwrap();
        });
        let e = err(&p, Split::Test, &DataKeys::default());
        assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
        let p = t.npz("rank1.npz", |w| {
            w.add_array("x_test", &Array1::<f32>::zeros(5)).unwrap();
        });
        let e = err(&p, Split::Test, &DataKeys::default());
        assert!(matches!(e, DataError::BadShape { .. }), "{e:?}");
        assert!(e.to_string().contains("[N,1]"), "{e}");
    }

    #[test]
    fn medmnist_images_must_be_uint8() {
        let t = TempDir::new();
        let p = t.npz("fmed.npz", |w| {
            w.add_array("test_images", &ArrayD::<f32>::zeros(IxDyn(&[2, 4, 4])))
                .unwrap();
        });
        let e = err(&p, Split::Test, &DataKeys::default());
        assert!(
            e.to_string().contains("uint8") && e.to_string().contains("x_key"),
            "{e}"
        );
        let p = t.npz("med5.npz", |w| {
            w.add_array("test_images", &ArrayD::<u8>::zeros(IxDyn(&[2, 4, 4, 5])))
                .unwrap();
        });
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::BadShape { .. }
        ));
    }

    // ---- malformed files ----------------------------------------------------------

    #[test]
    fn truncated_npz_is_an_error_not_a_panic() {
        let t = TempDir::new();
        let bytes = std::fs::read(fixture("breast_cancer.npz")).unwrap();
        for len in [0, 10, 100, bytes.len() / 2, bytes.len() - 1] {
            let p = t.write(&format!("trunc{len}.npz"), &bytes[..len]);
            let e = err(&p, Split::Test, &DataKeys::default());
            assert!(matches!(e, DataError::NotAnNpz { .. }), "{len}: {e:?}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        let p = t.write("garbage.npz", b"this is not a zip file at all");
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::NotAnNpz { .. }
        ));
    }

    #[test]
    fn truncated_array_inside_npz_is_an_error() {
        let t = TempDir::new();
        let mut npy = Vec::new();
        Array2::<f32>::zeros((10, 30)).write_npy(&mut npy).unwrap();
        let p = t.0.join("short.npz");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("x_test.npy", opts).unwrap();
        zip.write_all(&npy[..npy.len() - 7]).unwrap();
        zip.start_file("y_test.npy", opts).unwrap();
        zip.write_all(b"\x93NUMPY garbage").unwrap();
        zip.finish().unwrap();
        let e = err(&p, Split::Test, &DataKeys::default());
        let msg = e.to_string();
        assert!(matches!(e, DataError::BadArray { .. }), "{e:?}");
        assert!(
            msg.contains("\"x_test\"") && msg.contains("truncated"),
            "{msg}"
        );
        // A bad header in the labels array.
        let e = err(&p, Split::Test, &keys(Some("y_test"), None));
        assert!(matches!(e, DataError::BadArray { .. }), "{e:?}");
        // A bare .npy that is cut short.
        let p = t.write("short.npy", &npy[..npy.len() / 2]);
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::BadArray { .. }
        ));
    }

    #[test]
    fn unsupported_extension_and_missing_file() {
        let t = TempDir::new();
        let p = t.write("data.parquet", b"PAR1");
        let e = err(&p, Split::Test, &DataKeys::default());
        let msg = e.to_string();
        assert!(matches!(e, DataError::UnsupportedExtension { .. }));
        for k in ["data.parquet", ".parquet", ".npz", ".csv", ".npy"] {
            assert!(msg.contains(k), "{k} not in: {msg}");
        }
        let e = err(&t.0.join("nope.npz"), Split::Test, &DataKeys::default());
        assert!(matches!(e, DataError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("nope.npz"));
        let e = err(&t.0.join("noext"), Split::Test, &DataKeys::default());
        assert!(e.to_string().contains("(none)"), "{e}");
    }

    // ---- CSV ------------------------------------------------------------------------

    #[test]
    fn csv_with_header_uses_named_label_column() {
        let t = TempDir::new();
        let p = t.write("h.csv", b"f1, Target ,f2\n1.5,0,2\n-3,1,4e1\n\n0.25,2,0\n");
        for split in [Split::Test, Split::Train] {
            let d = load_dataset(&p, split, &DataKeys::default()).unwrap();
            assert_eq!(
                d.x,
                ndarray::arr2(&[[1.5f32, 2.0], [-3.0, 40.0], [0.25, 0.0]]).into_dyn()
            );
            assert_eq!(d.y.unwrap(), ndarray::arr1(&[0i64, 1, 2]));
            assert!(d.source.contains("Target"), "{}", d.source);
        }
        // y_key picks another column; an unknown one lists the header.
        let d = load_dataset(&p, Split::Test, &keys(None, Some("f2"))).unwrap();
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[2i64, 40, 0]));
        let e = err(&p, Split::Test, &keys(None, Some("class")));
        assert!(e.to_string().contains("'f1', 'Target', 'f2'"), "{e}");
        let e = err(&p, Split::Test, &keys(Some("f1"), None));
        assert!(
            matches!(e, DataError::KeyNotApplicable { field: "x_key", .. }),
            "{e:?}"
        );
        // Header without a label-named column: the last column is the label.
        let p = t.write("h2.csv", b"a,b,c\n1,2,3\n4,5,6\n");
        let d = load_dataset(&p, Split::Test, &DataKeys::default()).unwrap();
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[3i64, 6]));
    }

    #[test]
    fn csv_without_header_uses_last_column() {
        let t = TempDir::new();
        let p = t.write("n.csv", b"1,2,3,0\n4,5,6,1.0\n");
        let d = load_dataset(&p, Split::Test, &DataKeys::default()).unwrap();
        assert_eq!(d.x.shape(), &[2, 3]);
        assert_eq!(d.x[[1, 2]], 6.0);
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[0i64, 1]));
        assert!(d.source.contains("no header"), "{}", d.source);
        let e = err(&p, Split::Test, &keys(None, Some("label")));
        assert!(e.to_string().contains("no header"), "{e}");
        // TSV.
        let p = t.write("n.tsv", b"label\tx\n1\t0.5\n");
        let d = load_dataset(&p, Split::Test, &DataKeys::default()).unwrap();
        assert_eq!(d.x, ndarray::arr2(&[[0.5f32]]).into_dyn());
        assert_eq!(d.y.unwrap(), ndarray::arr1(&[1i64]));
    }

    #[test]
    fn csv_bad_cells_name_line_and_column() {
        let t = TempDir::new();
        let cases: [(&str, &[u8], &[&str]); 6] = [
            (
                "word",
                b"a,b,label\n1,2,0\n3,abc,1\n",
                &["line 3", "column 2 (\"b\")", "\"abc\""],
            ),
            (
                "nan",
                b"a,b,label\n1,2,0\n3,NaN,1\n",
                &["line 3", "column 2", "finite"],
            ),
            (
                "empty",
                b"1,2,0\n,2,1\n",
                &["line 2", "column 1", "empty cell"],
            ),
            (
                "label",
                b"a,label\n1,0.5\n",
                &["line 2", "column 2 (\"label\")", "integer"],
            ),
            ("ragged", b"1,2,0\n1,2\n", &["line 2", "2 fields", "3"]),
            ("headeronly", b"a,b,label\n", &["no data rows"]),
        ];
        for (name, text, needles) in cases {
            let p = t.write(&format!("{name}.csv"), text);
            let e = err(&p, Split::Test, &DataKeys::default());
            let msg = e.to_string();
            assert!(msg.contains(&format!("{name}.csv")), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{name}: {n} not in: {msg}");
            }
        }
        // An empty cell in the first row is a missing value, not a header.
        let p = t.write("first.csv", b"1,,0\n2,3,1\n");
        let e = err(&p, Split::Test, &DataKeys::default());
        assert!(
            e.to_string().contains("line 1, column 2: empty cell"),
            "{e}"
        );
        let p = t.write("blank.csv", b"\n\n");
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::Empty { .. }
        ));
        let p = t.write("one.csv", b"1\n2\n");
        assert!(matches!(
            err(&p, Split::Test, &DataKeys::default()),
            DataError::Empty { .. }
        ));
    }

    // ---- misc ---------------------------------------------------------------------

    #[test]
    fn head_takes_first_samples() {
        let d = load("breast_cancer.npz", Split::Test);
        let h = d.head(5);
        assert_eq!(h.x.shape(), &[5, 30]);
        assert_eq!(h.y.as_ref().unwrap().len(), 5);
        assert_eq!(h.x, d.x.slice(s![..5, ..]).into_dyn());
        assert_eq!(d.head(1000).len(), 114);
        assert!(!h.is_empty());
    }

    #[test]
    fn partner_keys() {
        assert_eq!(partner("x_val").as_deref(), Some("y_val"));
        assert_eq!(partner("val_images").as_deref(), Some("val_labels"));
        assert_eq!(partner("x").as_deref(), Some("y"));
        assert_eq!(partner("features"), None);
    }
}
