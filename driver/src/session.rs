//! FHE sessions: client and server in one process, keys made once, then encrypt → run →
//! decrypt per sample ([`FheSession`]); and a [`KeyCache`] that keeps one session per
//! parameter set in memory and its keys on disk (`DIR/<fingerprint>/`), so configurations
//! and restarts that share parameters share keys.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fhec_runtime::fhe::{ClientKey, CompressedServerKey, ServerKey};
use fhec_runtime::Circuit;
use ndarray::ArrayD;
use serde::Serialize;

use crate::error::{one_line, DriverError, Result};
use crate::hooks::Hooks;

/// Seconds spent in each phase of encrypted inference.
#[derive(Serialize, Debug, Clone, Default)]
pub struct FheTimings {
    pub keygen_s: f64,
    /// Expanding the compressed server key (decompression + Fourier transform).
    pub server_key_s: f64,
    /// Per sample, mean over the samples run.
    pub encrypt_s: f64,
    pub run_s: f64,
    pub decrypt_s: f64,
    pub samples: usize,
}

/// Client and server in one process (each run uses every thread for its bootstraps).
pub struct FheSession {
    client: ClientKey,
    server: ServerKey,
    pub timings: FheTimings,
}

impl FheSession {
    /// Generates keys for `circuit`'s parameters.
    pub fn new(circuit: &Circuit) -> Result<Self> {
        let t = Instant::now();
        let (client, compressed) = ClientKey::generate(&circuit.params)?;
        let keygen_s = t.elapsed().as_secs_f64();
        let mut session = Self::expand(client, &compressed)?;
        session.timings.keygen_s = keygen_s;
        Ok(session)
    }

    /// A session on keys made earlier: checks they belong together, expands the server key;
    /// `keygen_s` stays 0.
    pub fn from_keys(client: ClientKey, compressed: &CompressedServerKey) -> Result<Self> {
        client.check_server_key(compressed)?;
        Self::expand(client, compressed)
    }

    fn expand(client: ClientKey, compressed: &CompressedServerKey) -> Result<Self> {
        let t = Instant::now();
        let server = compressed.expand();
        Ok(FheSession {
            client,
            server,
            timings: FheTimings {
                server_key_s: t.elapsed().as_secs_f64(),
                ..Default::default()
            },
        })
    }

    /// Encrypts one sample, runs the circuit, decrypts and dequantises (the circuit's client
    /// post-processing is not applied).
    pub fn infer(&mut self, circuit: &Circuit, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>> {
        let t = Instant::now();
        let cts = self.client.encrypt(&circuit.program, inputs)?;
        let encrypt_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = fhec_runtime::fhe::run(circuit, &self.server, &cts)?;
        let run_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let plain = self.client.decrypt(&circuit.program, &out)?;
        let decrypt_s = t.elapsed().as_secs_f64();
        let k = self.timings.samples as f64;
        let mean = |old: f64, new: f64| (old * k + new) / (k + 1.0);
        self.timings.encrypt_s = mean(self.timings.encrypt_s, encrypt_s);
        self.timings.run_s = mean(self.timings.run_s, run_s);
        self.timings.decrypt_s = mean(self.timings.decrypt_s, decrypt_s);
        self.timings.samples += 1;
        Ok(plain)
    }
}

/// Sessions by parameter set: the last one in memory, every key pair on disk.
pub struct KeyCache {
    dir: PathBuf,
    current: Option<Cached>,
}

struct Cached {
    fingerprint: String,
    session: FheSession,
    server_key_bytes: u64,
}

/// A session from the cache, and what getting it cost.
pub struct CachedSession<'c> {
    pub session: &'c mut FheSession,
    /// Size of the compressed server key file.
    pub server_key_bytes: u64,
    /// Seconds of key generation; `None` when the keys were loaded or already in memory.
    pub keygen_s: Option<f64>,
}

impl KeyCache {
    /// Keys under `dir/<fingerprint>/{client,server}.key`.
    pub fn new(dir: &Path) -> Self {
        KeyCache {
            dir: dir.to_path_buf(),
            current: None,
        }
    }

    /// The session for `circuit`'s parameters: the one in memory, else keys from the cache
    /// directory, else fresh keys (saved there).
    pub fn session(&mut self, circuit: &Circuit, hooks: &Hooks) -> Result<CachedSession<'_>> {
        let fingerprint = circuit.params.fingerprint_hex();
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.fingerprint == fingerprint)
        {
            let c = self.current.as_mut().expect("checked");
            return Ok(CachedSession {
                session: &mut c.session,
                server_key_bytes: c.server_key_bytes,
                keygen_s: None,
            });
        }
        // Free the previous parameter set's keys before making or loading others.
        self.current = None;
        let dir = self.dir.join(&fingerprint);
        let (client_path, server_path) = (dir.join("client.key"), dir.join("server.key"));
        let loaded = if client_path.is_file() && server_path.is_file() {
            let _spin = hooks.task(
                &format!("loading cached keys from '{}'", dir.display()),
                None,
            );
            match load_keys(&client_path, &server_path, circuit) {
                Ok(k) => Some(k),
                Err(e) => {
                    hooks.note(&format!(
                        "warning: cached keys in '{}' are unusable ({}); generating new ones",
                        dir.display(),
                        one_line(&e)
                    ));
                    None
                }
            }
        } else {
            None
        };
        let mut keygen_s = None;
        let (client, compressed) = match loaded {
            Some(k) => k,
            None => {
                let _spin = hooks.task(&format!("generating keys ({})", circuit.params), None);
                let t = Instant::now();
                let keys = ClientKey::generate(&circuit.params)?;
                keygen_s = Some(t.elapsed().as_secs_f64());
                save_keys(&dir, &keys)?;
                keys
            }
        };
        let server_key_bytes = std::fs::metadata(&server_path).map_or(0, |m| m.len());
        let session = {
            let _spin = hooks.task("expanding the server key", None);
            FheSession::from_keys(client, &compressed)?
        };
        let c = self.current.insert(Cached {
            fingerprint,
            session,
            server_key_bytes,
        });
        Ok(CachedSession {
            session: &mut c.session,
            server_key_bytes,
            keygen_s,
        })
    }
}

/// Client first: a server key file present means the pair is complete.
fn save_keys(dir: &Path, (client, server): &(ClientKey, CompressedServerKey)) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| DriverError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    client.save(&dir.join("client.key"))?;
    server.save(&dir.join("server.key"))?;
    Ok(())
}

/// A cached key pair, checked against the circuit's parameters and each other.
fn load_keys(
    client_path: &Path,
    server_path: &Path,
    circuit: &Circuit,
) -> Result<(ClientKey, CompressedServerKey)> {
    let client = ClientKey::load(client_path)?;
    let server = CompressedServerKey::load(server_path)?;
    if client.params != circuit.params || server.params != circuit.params {
        return Err(DriverError::Invalid(
            "they were made for other parameters than the circuit's".into(),
        ));
    }
    client.check_server_key(&server)?;
    Ok((client, server))
}
