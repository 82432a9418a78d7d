//! The fuzzing harness: one function per fuzz target, each feeding arbitrary bytes to a
//! loader exactly as the `fhec` command line does (ONNX import, `.fhec` circuits, key files,
//! ciphertext files). `tests/fuzz_corpus.rs` runs the committed seed corpus through these
//! same functions, so CI checks the seeds without a fuzzer.
//!
//! Artifact files carry a blake3 checksum, so almost every mutation of a whole file is
//! refused before its payload is decoded. The artifact targets therefore read a mode byte
//! first: an even byte feeds the rest as a whole file; an odd byte treats the rest as a
//! payload and builds a valid header around it (kind, version, length, checksum and, where
//! the loader checks it, the fingerprint of the parameters the payload declares), so
//! mutations reach the payload decoder and the checks behind it.
//!
//! Each function returns `Ok` when the input was accepted and the loader's error otherwise;
//! a panic, a hang or a huge allocation is the bug a fuzzer looks for.

use fhec_runtime::artifact::{self, ArtifactKind, Header};
use fhec_runtime::fhe::{Ciphertexts, EncryptedTensors};
use fhec_runtime::{Circuit, ClientKey, CompressedServerKey, ParamSets, FORMAT_VERSION};

/// ONNX bytes through the frontend import the CLI uses (default options).
pub fn onnx_import(data: &[u8]) -> Result<(), String> {
    let opts = fhec_frontend::ImportOptions::default();
    fhec_frontend::import_bytes(data, "fuzz.onnx", &opts)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A `.fhec` circuit: decoding, fingerprint, parameter and program validation.
pub fn circuit_load(data: &[u8]) -> Result<(), String> {
    let (framed, rest) = mode(data)?;
    let bytes = if framed {
        // The fingerprint is that of the parameters inside the payload: decode once to
        // learn them (the payload must decode anyway for the loader to get further).
        let probe = frame(ArtifactKind::Circuit, rest, [0; 32]);
        let fingerprint = artifact::decode_bytes::<Circuit>(&probe, ArtifactKind::Circuit)
            .map_or([0; 32], |(_, c)| c.params.fingerprint());
        frame(ArtifactKind::Circuit, rest, fingerprint)
    } else {
        rest.to_vec()
    };
    Circuit::from_bytes(&bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A client key (even bit 1 of the mode byte) or a compressed server key (odd bit 1).
pub fn key_load(data: &[u8]) -> Result<(), String> {
    let (&m, _) = data.split_first().ok_or("empty input")?;
    let (framed, rest) = mode(data)?;
    let server = m & 2 != 0;
    let kind = if server {
        ArtifactKind::ServerKey
    } else {
        ArtifactKind::ClientKey
    };
    let bytes = if framed {
        // Key payloads start with their parameters.
        let fingerprint =
            artifact::decode_prefix::<ParamSets>(rest).map_or([0; 32], |p| p.fingerprint());
        frame(kind, rest, fingerprint)
    } else {
        rest.to_vec()
    };
    if server {
        CompressedServerKey::from_bytes(&bytes).map(drop)
    } else {
        ClientKey::from_bytes(&bytes).map(drop)
    }
    .map_err(|e| e.to_string())
}

/// A ciphertext file, then what the server does first with it: the parameter check and the
/// expansion of every tensor to full LWE ciphertexts (a small LWE size keeps it cheap).
pub fn ciphertext_load(data: &[u8]) -> Result<(), String> {
    let (framed, rest) = mode(data)?;
    let bytes = if framed {
        frame(ArtifactKind::Ciphertext, rest, [0; 32])
    } else {
        rest.to_vec()
    };
    let tensors = EncryptedTensors::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let params = fhec_runtime::fhe::insecure_test_params();
    let _ = tensors.check(&params.into(), Some(&tensors.key_id), "the fuzz parameters");
    for t in &tensors.tensors {
        let lwe_size = match &t.ciphertexts {
            Ciphertexts::Full { lwe_size, .. } => *lwe_size,
            Ciphertexts::Seeded { .. } | Ciphertexts::SeededBatch { .. } => 2,
        };
        let cts = t.ciphertexts.expand(lwe_size).map_err(|e| e.to_string())?;
        if cts.len() != t.ciphertexts.len() {
            return Err(format!(
                "{} ciphertexts expanded from {}",
                cts.len(),
                t.ciphertexts.len()
            ));
        }
    }
    // What the server and the client do with a batch: split it into samples (against
    // per-sample shapes read off the file itself) and stack them again.
    let tails: Vec<(&str, &[usize])> = tensors
        .tensors
        .iter()
        .map(|t| ("t", t.shape.get(1..).unwrap_or_default()))
        .collect();
    if let Ok(Some(samples)) = tensors.split_samples(&tails, "input") {
        let stacked = EncryptedTensors::stack_samples(&samples).map_err(|e| e.to_string())?;
        if stacked != tensors {
            return Err("a batch split into samples and stacked again differs".into());
        }
    }
    Ok(())
}

/// Splits off the mode byte: `true` when the rest is a payload to frame.
fn mode(data: &[u8]) -> Result<(bool, &[u8]), String> {
    let (&m, rest) = data.split_first().ok_or("empty input")?;
    Ok((m & 1 == 1, rest))
}

/// A valid artifact of `kind` around `payload`.
fn frame(kind: ArtifactKind, payload: &[u8], fingerprint: [u8; 32]) -> Vec<u8> {
    let header = Header {
        kind,
        version: FORMAT_VERSION,
        fingerprint,
        key_id: [0; 16],
    };
    artifact::frame(&header, payload)
}
