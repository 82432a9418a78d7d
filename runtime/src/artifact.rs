//! The one file format of every artifact: circuit, client key, server key, ciphertexts.
//!
//! ```text
//! magic "FHEC" | kind u8 | format version u32 | parameter fingerprint [32] | key id [16]
//! | payload length u64 | blake3(everything before it, then the payload) [32] | payload (bincode)
//! ```
//! All integers little-endian. The checksum catches corruption before decoding; the
//! fingerprint and key id let a reader refuse artifacts that do not belong together before
//! any cryptographic work. Files are written to a temporary file and renamed, so a reader
//! never sees half a file; secret files are created owner-only.

use std::path::Path;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RuntimeError;
use crate::FORMAT_VERSION;

const MAGIC: &[u8; 4] = b"FHEC";
const HEADER_LEN: usize = 4 + 1 + 4 + 32 + 16 + 8 + 32;
/// Largest payload a reader accepts (the biggest server keys are a few GiB).
const MAX_PAYLOAD: u64 = 16 << 30;

/// What an artifact file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    Circuit = 1,
    ClientKey = 2,
    ServerKey = 3,
    Ciphertext = 4,
}

impl ArtifactKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Circuit,
            2 => Self::ClientKey,
            3 => Self::ServerKey,
            4 => Self::Ciphertext,
            _ => return None,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Circuit => "a compiled circuit (.fhec)",
            Self::ClientKey => "a client (secret) key",
            Self::ServerKey => "a server (evaluation) key",
            Self::Ciphertext => "a ciphertext file",
        }
    }
}

/// The identity an artifact carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: ArtifactKind,
    pub version: u32,
    /// [`crate::CryptoParams::fingerprint`] of the parameters it was made for.
    pub fingerprint: [u8; 32],
    /// Random identity of the key pair (all zero for circuits).
    pub key_id: [u8; 16],
}

fn bincode_options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

/// The checksum covers the header fields and the payload: any flipped bit is caught.
fn checksum(header: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header);
    h.update(body);
    *h.finalize().as_bytes()
}

/// Serialises `payload` behind a header.
pub fn encode<T: Serialize>(header: &Header, payload: &T) -> Result<Vec<u8>, String> {
    let mut body = bincode_options(MAX_PAYLOAD)
        .serialize(payload)
        .map_err(|e| format!("cannot serialise: {e}"))?;
    let out = frame(header, &body);
    // The payload may be a secret key: do not leave a copy in freed memory.
    wipe_bytes(&mut body);
    Ok(out)
}

/// Overwrites a buffer that may hold secret material before it is freed (`black_box` keeps
/// the compiler from dropping the writes to memory that is about to be freed).
pub(crate) fn wipe_bytes(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&*bytes);
}

/// Puts an already serialised payload behind a header (length and checksum computed here).
/// [`encode`] uses it; fuzzing uses it to reach the payload decoder past the checksum.
pub fn frame(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(header.kind as u8);
    out.extend_from_slice(&header.version.to_le_bytes());
    out.extend_from_slice(&header.fingerprint);
    out.extend_from_slice(&header.key_id);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let digest = checksum(&out, body);
    out.extend_from_slice(&digest);
    out.extend_from_slice(body);
    out
}

/// Reads the header of `bytes` and checks magic, kind, version and checksum.
pub fn decode_header(bytes: &[u8], expected: ArtifactKind) -> Result<(Header, &[u8]), String> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(format!(
            "not an fhec artifact (expected {}; the file is too short or lacks the FHEC magic): pass a file written by fhec",
            expected.describe()
        ));
    }
    let kind = ArtifactKind::from_byte(bytes[4])
        .ok_or_else(|| format!("unknown artifact kind byte {}", bytes[4]))?;
    if kind != expected {
        return Err(format!(
            "this file is {}, expected {}",
            kind.describe(),
            expected.describe()
        ));
    }
    let version = u32::from_le_bytes(bytes[5..9].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this fhec reads version {FORMAT_VERSION}: recreate the file with this fhec"
        ));
    }
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&bytes[9..41]);
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&bytes[41..57]);
    let len = u64::from_le_bytes(bytes[57..65].try_into().unwrap_or_default());
    let body = &bytes[HEADER_LEN..];
    if len != body.len() as u64 {
        return Err(format!(
            "truncated or extended: header says {len} payload bytes, file has {}; copy the file again or regenerate it",
            body.len()
        ));
    }
    if checksum(&bytes[..65], body) != bytes[65..97] {
        return Err(
            "checksum mismatch: the file is corrupted; copy it again or regenerate it".into(),
        );
    }
    Ok((
        Header {
            kind,
            version,
            fingerprint,
            key_id,
        },
        body,
    ))
}

/// Checks and decodes an artifact of kind `expected`.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    expected: ArtifactKind,
) -> Result<(Header, T), String> {
    let (header, body) = decode_header(bytes, expected)?;
    let payload = bincode_options(body.len() as u64)
        .deserialize(body)
        .map_err(|e| format!("cannot decode the payload: {e}"))?;
    Ok((header, payload))
}

/// Decodes a `T` at the start of a payload and ignores the rest, with the same encoding and
/// size limit as [`decode`] (e.g. the parameters leading a key payload).
pub fn decode_prefix<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(body.len() as u64)
        .allow_trailing_bytes()
        .deserialize(body)
        .ok()
}

/// Writes an artifact atomically (temporary file in the same directory, then rename);
/// `secret` files are owner-only (mode 0600 on Unix).
pub fn write_file<T: Serialize>(
    path: &Path,
    header: &Header,
    payload: &T,
    secret: bool,
) -> Result<(), RuntimeError> {
    let mut bytes = encode(header, payload).map_err(|message| RuntimeError::Format {
        path: path.to_path_buf(),
        message,
    })?;
    let result = write_atomic(path, &bytes, secret);
    if secret {
        wipe_bytes(&mut bytes);
    }
    result
}

/// The path a [`RuntimeError::Format`] from a `from_bytes` decoder names: bytes in memory
/// have no file; [`load_with`] replaces it with the file the bytes came from.
pub const IN_MEMORY: &str = "<in-memory artifact>";

/// A [`RuntimeError::Format`] for bytes decoded in memory.
pub(crate) fn format_error(message: String) -> RuntimeError {
    RuntimeError::Format {
        path: IN_MEMORY.into(),
        message,
    }
}

/// [`decode`] with the error as a [`RuntimeError`] (path [`IN_MEMORY`]).
pub fn decode_bytes<T: DeserializeOwned>(
    bytes: &[u8],
    expected: ArtifactKind,
) -> Result<(Header, T), RuntimeError> {
    decode(bytes, expected).map_err(format_error)
}

/// Reads `path` and decodes its bytes with `from_bytes`, naming `path` in format errors: the
/// one way every artifact loader goes from a file to its in-memory decoder.
pub fn load_with<T>(
    path: &Path,
    from_bytes: impl FnOnce(&[u8]) -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    let mut bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let result = from_bytes(&bytes);
    // The bytes may be a secret key file: do not leave them in freed memory.
    wipe_bytes(&mut bytes);
    result.map_err(|e| match e {
        RuntimeError::Format { message, .. } => RuntimeError::Format {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// Reads and decodes an artifact of kind `expected`.
pub fn read_file<T: DeserializeOwned>(
    path: &Path,
    expected: ArtifactKind,
) -> Result<(Header, T), RuntimeError> {
    load_with(path, |bytes| decode_bytes(bytes, expected))
}

/// Writes `bytes` to `path` with the one atomic writer ([`crate::atomic`]); `secret` files
/// are owner-only.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), RuntimeError> {
    use crate::atomic::Access;
    let access = if secret {
        Access::Private
    } else {
        Access::Shared
    };
    crate::atomic::write_atomic(path, bytes, access).map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl crate::Circuit {
    /// Writes the circuit as a `.fhec` artifact (atomically).
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        let header = Header {
            kind: ArtifactKind::Circuit,
            version: FORMAT_VERSION,
            fingerprint: self.params.fingerprint(),
            key_id: [0; 16],
        };
        write_file(path, &header, self, false)
    }

    /// Reads a `.fhec` artifact and checks it before anything runs it (see
    /// [`crate::Circuit::from_bytes`]).
    pub fn load(path: &Path) -> Result<crate::Circuit, RuntimeError> {
        load_with(path, crate::Circuit::from_bytes)
    }

    /// Decodes and checks the bytes of a `.fhec` artifact: header, checksum, parameter
    /// fingerprint, usable and secure parameters, then program structure.
    pub fn from_bytes(bytes: &[u8]) -> Result<crate::Circuit, RuntimeError> {
        let (header, circuit): (Header, crate::Circuit) =
            decode_bytes(bytes, ArtifactKind::Circuit)?;
        if header.fingerprint != circuit.params.fingerprint() {
            return Err(format_error(
                "the header's parameter fingerprint does not match the circuit's parameters".into(),
            ));
        }
        // Sizes first: the security estimate multiplies the dimensions.
        circuit
            .params
            .check()
            .map_err(|e| format_error(format!("{e}; recompile the model")))?;
        for set in circuit.params.sets() {
            crate::noise::params_are_secure(set).map_err(|e| {
                format_error(format!(
                    "refusing parameters below 128-bit security: {e}; recompile the model"
                ))
            })?;
        }
        circuit
            .program
            .validate()
            .map_err(|e| format_error(e.to_string()))?;
        circuit
            .check_lookup_sets()
            .map_err(|e| format_error(e.to_string()))?;
        Ok(circuit)
    }
}

/// Bytes `payload` takes in an artifact file (header included).
pub fn encoded_len<T: Serialize>(payload: &T) -> u64 {
    bincode_options(MAX_PAYLOAD)
        .serialized_size(payload)
        .map_or(0, |n| n + HEADER_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            kind: ArtifactKind::Ciphertext,
            version: FORMAT_VERSION,
            fingerprint: [7; 32],
            key_id: [3; 16],
        }
    }

    #[test]
    fn round_trips_and_checks() {
        let bytes = encode(&header(), &vec![1u64, 2, 3]).unwrap();
        let (h, v): (Header, Vec<u64>) = decode(&bytes, ArtifactKind::Ciphertext).unwrap();
        assert_eq!(h, header());
        assert_eq!(v, vec![1, 2, 3]);
        let err = decode::<Vec<u64>>(&bytes, ArtifactKind::Circuit).unwrap_err();
        assert!(err.contains("expected a compiled circuit"), "{err}");
        for i in [0, 4, 6, 20, 60, 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode::<Vec<u64>>(&bad, ArtifactKind::Ciphertext).is_err());
        }
        assert!(decode::<Vec<u64>>(&bytes[..bytes.len() - 1], ArtifactKind::Ciphertext).is_err());
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A payload claiming 2^60 elements must be refused by the size limit.
        let mut body = (1u64 << 60).to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 8]);
        let mut bytes = encode(&header(), &()).unwrap();
        bytes.truncate(HEADER_LEN);
        bytes[57..65].copy_from_slice(&(body.len() as u64).to_le_bytes());
        let digest = checksum(&bytes[..65], &body);
        bytes[65..97].copy_from_slice(&digest);
        bytes.extend_from_slice(&body);
        assert!(decode::<Vec<u64>>(&bytes, ArtifactKind::Ciphertext).is_err());
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ct");
        write_file(&path, &header(), &vec![5u8; 10], true).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing = dir.path().join("no/such/dir/x.ct");
        assert!(write_file(&missing, &header(), &1u8, false).is_err());
    }
}
