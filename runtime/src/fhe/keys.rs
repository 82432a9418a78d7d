//! Key generation and key files.
//!
//! A [`ClientKey`] holds the two binary secret keys (the small LWE key a bootstrap starts
//! from and the GLWE key, whose flattened form is the "big" LWE key ciphertexts live under
//! between bootstraps). [`ClientKey::generate`] also produces the [`CompressedServerKey`]: the
//! bootstrap key and the big→small keyswitch key in *seeded* form (only bodies plus the seed
//! their masks are regenerated from), which is what the client ships to the server. The
//! server calls [`CompressedServerKey::expand`] once to get a [`ServerKey`]: both keys
//! decompressed, the bootstrap key in the Fourier domain, plus the one FFT plan every
//! bootstrap shares.
//!
//! Randomness comes from tfhe's `new_seeder()` (hardware or OS entropy), except for keys made
//! by [`ClientKey::generate_with_seeders_for_tests`], which draw from seeders the caller
//! passes (deterministic ones make a test or a measurement reproducible). Secret key material is
//! overwritten when a [`ClientKey`] is dropped; the server key holds no secret.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::math::random::Seed;
use tfhe::core_crypto::prelude::*;

use std::path::Path;
use std::sync::Mutex;

use crate::artifact::{decode_bytes, format_error, load_with, write_file, ArtifactKind, Header};
use crate::error::RuntimeError;
use crate::params::{check_params, CryptoParams};
use crate::FORMAT_VERSION;

/// Short hexadecimal form of a key id for messages.
pub fn key_id_hex(id: &[u8; 16]) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Small, fast and NOT SECURE parameters for tests (n=640, k=1, N=1024, noise far below the
/// secure minimum). Never use them for real data.
pub fn insecure_test_params() -> CryptoParams {
    CryptoParams {
        lwe_dimension: 640,
        glwe_dimension: 1,
        polynomial_size: 1024,
        lwe_noise_std: 2f64.powi(-25),
        glwe_noise_std: 2f64.powi(-40),
        pbs_base_log: 15,
        pbs_level: 2,
        ks_base_log: 4,
        ks_level: 5,
    }
}

pub(crate) fn gaussian(std: f64) -> Gaussian<f64> {
    Gaussian::from_dispersion_parameter(StandardDev(std), 0.0)
}

pub(crate) fn native() -> CiphertextModulus<u64> {
    CiphertextModulus::new_native()
}

/// The secret key pair of a client (binary small LWE key and binary GLWE key).
pub struct ClientKey {
    pub params: CryptoParams,
    /// Random identity shared with the server key generated alongside.
    pub key_id: [u8; 16],
    pub small_lwe: LweSecretKey<Vec<u64>>,
    pub glwe: GlweSecretKey<Vec<u64>>,
    entropy: Entropy,
}

/// Where encryptions under a client key draw their seeds.
enum Entropy {
    /// tfhe's `new_seeder()` on every encryption: every real key.
    System,
    /// The caller's seeder ([`ClientKey::generate_with_seeders_for_tests`]).
    Injected(Mutex<Box<dyn Seeder + Send>>),
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientKey {{ id: {}, params: {} }}",
            key_id_hex(&self.key_id),
            self.params
        )
    }
}

/// Overwrites secret material so that it does not linger in freed memory.
fn wipe(data: &mut [u64]) {
    for x in data.iter_mut() {
        // SAFETY: `x` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(x, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Drop for ClientKey {
    fn drop(&mut self) {
        wipe(self.small_lwe.as_mut());
        wipe(self.glwe.as_mut());
    }
}

/// The evaluation key as shipped: seeded bootstrap and keyswitch keys (masks regenerated from
/// their seeds by [`CompressedServerKey::expand`]).
#[derive(Clone, Debug)]
pub struct CompressedServerKey {
    pub params: CryptoParams,
    pub key_id: [u8; 16],
    pub bsk: SeededLweBootstrapKeyOwned<u64>,
    /// Big (GLWE, flattened) key → small LWE key.
    pub ksk: SeededLweKeyswitchKeyOwned<u64>,
    bsk_seed: u128,
    ksk_seed: u128,
}

/// The expanded evaluation key the server computes with.
pub struct ServerKey {
    pub params: CryptoParams,
    pub key_id: [u8; 16],
    pub bsk: FourierLweBootstrapKeyOwned,
    pub ksk: LweKeyswitchKeyOwned<u64>,
    /// The FFT plan every bootstrap shares.
    pub fft: Fft,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerKey {{ id: {}, params: {} }}",
            key_id_hex(&self.key_id),
            self.params
        )
    }
}

impl ClientKey {
    /// Generates a fresh key pair for `params`: the client key and the compressed server key
    /// to ship to the server. Refuses parameters whose noise is below tfhe-rs's minimal
    /// secure noise for their key dimensions (see [`crate::noise::params_are_secure`]).
    pub fn generate(
        params: &CryptoParams,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        check_params(params)?;
        crate::noise::params_are_secure(params).map_err(|e| {
            RuntimeError::Mismatch(format!(
                "refusing to generate keys for TFHE parameters below 128-bit security: {e}; \
                 recompile the model to get secure parameters"
            ))
        })?;
        Self::generate_insecure_for_tests(params)
    }

    /// [`ClientKey::generate`] without the security check, for tests and benchmarks that need
    /// small, fast parameters such as [`insecure_test_params`]. Never use it for real data.
    pub fn generate_insecure_for_tests(
        params: &CryptoParams,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        Self::generate_with(params, new_seeder().as_mut(), Entropy::System)
    }

    /// [`ClientKey::generate_insecure_for_tests`] with the keys drawn from `keys` and every
    /// later encryption under the client key from `encryptions`: with deterministic seeders
    /// (tfhe's `DeterministicSeeder`) a test or a measurement of failure rates reproduces its
    /// keys and ciphertexts. Never use it for real data: whoever knows the seeds knows the key.
    pub fn generate_with_seeders_for_tests(
        params: &CryptoParams,
        keys: &mut dyn Seeder,
        encryptions: Box<dyn Seeder + Send>,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        Self::generate_with(params, keys, Entropy::Injected(Mutex::new(encryptions)))
    }

    fn generate_with(
        params: &CryptoParams,
        seeder: &mut dyn Seeder,
        entropy: Entropy,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        check_params(params)?;

        let mut secret_gen = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let small_lwe =
            LweSecretKey::generate_new_binary(LweDimension(params.lwe_dimension), &mut secret_gen);
        let glwe = GlweSecretKey::generate_new_binary(
            GlweDimension(params.glwe_dimension),
            PolynomialSize(params.polynomial_size),
            &mut secret_gen,
        );
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&seeder.seed().0.to_le_bytes());

        let bsk_seed = seeder.seed().0;
        let mut bsk = SeededLweBootstrapKey::new(
            0u64,
            GlweDimension(params.glwe_dimension).to_glwe_size(),
            PolynomialSize(params.polynomial_size),
            DecompositionBaseLog(params.pbs_base_log),
            DecompositionLevelCount(params.pbs_level),
            LweDimension(params.lwe_dimension),
            Seed(bsk_seed).into(),
            native(),
        );
        par_generate_seeded_lwe_bootstrap_key(
            &small_lwe,
            &glwe,
            &mut bsk,
            gaussian(params.glwe_noise_std),
            seeder,
        );

        let ksk_seed = seeder.seed().0;
        let mut ksk = SeededLweKeyswitchKey::new(
            0u64,
            DecompositionBaseLog(params.ks_base_log),
            DecompositionLevelCount(params.ks_level),
            LweDimension(params.big_lwe_dimension()),
            LweDimension(params.lwe_dimension),
            Seed(ksk_seed).into(),
            native(),
        );
        generate_seeded_lwe_keyswitch_key(
            &glwe.as_lwe_secret_key(),
            &small_lwe,
            &mut ksk,
            gaussian(params.lwe_noise_std),
            seeder,
        );

        let client = ClientKey {
            params: *params,
            key_id,
            small_lwe,
            glwe,
            entropy,
        };
        let server = CompressedServerKey {
            params: *params,
            key_id,
            bsk,
            ksk,
            bsk_seed,
            ksk_seed,
        };
        Ok((client, server))
    }

    /// The big LWE key (the GLWE key flattened) ciphertexts are encrypted under.
    pub fn big_lwe(&self) -> LweSecretKey<&[u64]> {
        self.glwe.as_lwe_secret_key()
    }

    fn header(&self) -> Header {
        Header {
            kind: ArtifactKind::ClientKey,
            version: FORMAT_VERSION,
            fingerprint: self.params.fingerprint(),
            key_id: self.key_id,
        }
    }

    /// Writes the key to `path`, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        let payload = ClientKeyRef {
            params: &self.params,
            small_lwe: self.small_lwe.as_ref(),
            glwe: self.glwe.as_ref(),
        };
        write_file(path, &self.header(), &payload, true)
    }

    /// Reads a key written by [`ClientKey::save`].
    pub fn load(path: &Path) -> Result<ClientKey, RuntimeError> {
        load_with(path, ClientKey::from_bytes)
    }

    /// Decodes and checks the bytes of a client key file.
    pub fn from_bytes(bytes: &[u8]) -> Result<ClientKey, RuntimeError> {
        let (header, payload): (Header, ClientKeyPayload) =
            decode_bytes(bytes, ArtifactKind::ClientKey)?;
        let format = format_error;
        let ClientKeyPayload {
            params,
            mut small_lwe,
            mut glwe,
        } = payload;
        let checked = (|| {
            if header.fingerprint != params.fingerprint() {
                return Err("the header fingerprint does not match the stored parameters".into());
            }
            check_params(&params).map_err(|e| e.to_string())?;
            // `check_params` bounded the dimensions: `big_lwe_dimension` cannot overflow.
            if small_lwe.len() != params.lwe_dimension || glwe.len() != params.big_lwe_dimension() {
                return Err(format!(
                    "key sizes {} and {} do not match the parameters ({params})",
                    small_lwe.len(),
                    glwe.len()
                ));
            }
            if small_lwe.iter().chain(glwe.iter()).any(|&b| b > 1) {
                return Err("the secret keys are not binary".into());
            }
            Ok(())
        })();
        if let Err(message) = checked {
            wipe(&mut small_lwe);
            wipe(&mut glwe);
            return Err(format(message));
        }
        Ok(ClientKey {
            params,
            key_id: header.key_id,
            small_lwe: LweSecretKey::from_container(small_lwe),
            glwe: GlweSecretKey::from_container(glwe, PolynomialSize(params.polynomial_size)),
            entropy: Entropy::System,
        })
    }

    /// Runs `encrypt` with the seeder an encryption under this key draws from: a fresh
    /// `new_seeder()`, or the seeder a test key was generated with.
    pub(crate) fn with_encryption_seeder<R>(
        &self,
        encrypt: impl FnOnce(&mut dyn Seeder) -> R,
    ) -> R {
        match &self.entropy {
            Entropy::System => encrypt(new_seeder().as_mut()),
            Entropy::Injected(seeder) => {
                encrypt(seeder.lock().unwrap_or_else(|e| e.into_inner()).as_mut())
            }
        }
    }

    /// Fails with a [`RuntimeError::Mismatch`] unless `server` belongs to this client key.
    pub fn check_server_key(&self, server: &CompressedServerKey) -> Result<(), RuntimeError> {
        if server.key_id != self.key_id {
            return Err(RuntimeError::Mismatch(format!(
                "the server key (id {}) was not generated with this client key (id {}): use the server key generated alongside the client key",
                key_id_hex(&server.key_id),
                key_id_hex(&self.key_id)
            )));
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct ClientKeyRef<'a> {
    params: &'a CryptoParams,
    small_lwe: &'a [u64],
    glwe: &'a [u64],
}

#[derive(Deserialize)]
struct ClientKeyPayload {
    params: CryptoParams,
    small_lwe: Vec<u64>,
    glwe: Vec<u64>,
}

#[derive(Serialize)]
struct ServerKeyRef<'a> {
    params: &'a CryptoParams,
    bsk_seed: u128,
    bsk: &'a [u64],
    ksk_seed: u128,
    ksk: &'a [u64],
}

#[derive(Deserialize)]
struct ServerKeyPayload {
    params: CryptoParams,
    bsk_seed: u128,
    bsk: Vec<u64>,
    ksk_seed: u128,
    ksk: Vec<u64>,
}

/// Number of stored (body) coefficients of a seeded bootstrap key (`None` on overflow).
fn seeded_bsk_len(p: &CryptoParams) -> Option<usize> {
    p.lwe_dimension
        .checked_mul(p.glwe_dimension.checked_add(1)?)?
        .checked_mul(p.pbs_level)?
        .checked_mul(p.polynomial_size)
}

/// Number of stored (body) coefficients of a seeded big→small keyswitch key.
fn seeded_ksk_len(p: &CryptoParams) -> Option<usize> {
    p.glwe_dimension
        .checked_mul(p.polynomial_size)?
        .checked_mul(p.ks_level)
}

impl CompressedServerKey {
    fn header(&self) -> Header {
        Header {
            kind: ArtifactKind::ServerKey,
            version: FORMAT_VERSION,
            fingerprint: self.params.fingerprint(),
            key_id: self.key_id,
        }
    }

    /// Writes the compressed key to `path`.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        let payload = ServerKeyRef {
            params: &self.params,
            bsk_seed: self.bsk_seed,
            bsk: self.bsk.as_ref(),
            ksk_seed: self.ksk_seed,
            ksk: self.ksk.as_ref(),
        };
        write_file(path, &self.header(), &payload, false)
    }

    /// Reads a key written by [`CompressedServerKey::save`].
    pub fn load(path: &Path) -> Result<CompressedServerKey, RuntimeError> {
        load_with(path, CompressedServerKey::from_bytes)
    }

    /// Decodes and checks the bytes of a compressed server key file.
    pub fn from_bytes(bytes: &[u8]) -> Result<CompressedServerKey, RuntimeError> {
        let (header, payload): (Header, ServerKeyPayload) =
            decode_bytes(bytes, ArtifactKind::ServerKey)?;
        let format = format_error;
        let p = payload.params;
        if header.fingerprint != p.fingerprint() {
            return Err(format(
                "the header fingerprint does not match the stored parameters".into(),
            ));
        }
        check_params(&p).map_err(|e| format(e.to_string()))?;
        if Some(payload.bsk.len()) != seeded_bsk_len(&p)
            || Some(payload.ksk.len()) != seeded_ksk_len(&p)
        {
            return Err(format(format!(
                "key sizes do not match the parameters ({p})"
            )));
        }
        let bsk = SeededLweBootstrapKey::from_container(
            payload.bsk,
            GlweDimension(p.glwe_dimension).to_glwe_size(),
            PolynomialSize(p.polynomial_size),
            DecompositionBaseLog(p.pbs_base_log),
            DecompositionLevelCount(p.pbs_level),
            Seed(payload.bsk_seed).into(),
            native(),
        );
        let ksk = SeededLweKeyswitchKey::from_container(
            payload.ksk,
            DecompositionBaseLog(p.ks_base_log),
            DecompositionLevelCount(p.ks_level),
            LweDimension(p.lwe_dimension).to_lwe_size(),
            Seed(payload.ksk_seed).into(),
            native(),
        );
        Ok(CompressedServerKey {
            params: p,
            key_id: header.key_id,
            bsk,
            ksk,
            bsk_seed: payload.bsk_seed,
            ksk_seed: payload.ksk_seed,
        })
    }

    /// Regenerates the masks and converts the bootstrap key to the Fourier domain (the costly
    /// step a server does once per key).
    pub fn expand(&self) -> ServerKey {
        let std_bsk = self.bsk.clone().par_decompress_into_lwe_bootstrap_key();
        let mut bsk = FourierLweBootstrapKey::new(
            std_bsk.input_lwe_dimension(),
            std_bsk.glwe_size(),
            std_bsk.polynomial_size(),
            std_bsk.decomposition_base_log(),
            std_bsk.decomposition_level_count(),
        );
        par_convert_standard_lwe_bootstrap_key_to_fourier(&std_bsk, &mut bsk);
        drop(std_bsk);
        let ksk = self.ksk.clone().par_decompress_into_lwe_keyswitch_key();
        ServerKey {
            params: self.params,
            key_id: self.key_id,
            bsk,
            ksk,
            fft: Fft::new(PolynomialSize(self.params.polynomial_size)),
        }
    }
}
