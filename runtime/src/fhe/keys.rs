//! Key generation and key files.
//!
//! A [`ClientKey`] holds the binary secret keys: the circuit big key ciphertexts live under
//! between bootstraps, per parameter set the small LWE key its bootstraps start from, and
//! for a set with a big key of its own that key (see [`ParamSets`]). [`ClientKey::generate`]
//! also produces the [`CompressedServerKey`]: per set the bootstrap key, the big→small
//! keyswitch key and (own big key) the return keyswitch key, in *seeded* form (only bodies
//! plus the seed their masks are regenerated from), which is what the client ships to the
//! server. The server calls [`CompressedServerKey::expand`] once to get a [`ServerKey`]: the
//! keys decompressed, the bootstrap keys in the Fourier domain, plus one FFT plan per set.
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
use crate::params::{CryptoParams, ParamSets, ReturnKeyswitch};
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

/// The secret keys of a client: the binary circuit big key every ciphertext lives under
/// between bootstraps (dimension `k * N` of set 0; each set sharing it reads it as a GLWE key
/// of its own shape), one binary small LWE key per parameter set, and the big key of each set
/// that has one of its own.
pub struct ClientKey {
    pub params: ParamSets,
    /// Random identity shared with the server key generated alongside.
    pub key_id: [u8; 16],
    pub small_lwe: Vec<LweSecretKey<Vec<u64>>>,
    big: LweSecretKey<Vec<u64>>,
    /// Per set: its own big key (`None` when it shares the circuit big key).
    own_big: Vec<Option<LweSecretKey<Vec<u64>>>>,
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
        for key in &mut self.small_lwe {
            wipe(key.as_mut());
        }
        for key in self.own_big.iter_mut().flatten() {
            wipe(key.as_mut());
        }
        wipe(self.big.as_mut());
    }
}

/// The evaluation key as shipped: per parameter set, the seeded bootstrap and keyswitch keys
/// (masks regenerated from their seeds by [`CompressedServerKey::expand`]).
#[derive(Clone, Debug)]
pub struct CompressedServerKey {
    pub params: ParamSets,
    pub key_id: [u8; 16],
    /// One entry per parameter set, in the order of `params`.
    pub sets: Vec<CompressedSetKey>,
}

/// The seeded evaluation keys of one parameter set.
#[derive(Clone, Debug)]
pub struct CompressedSetKey {
    pub bsk: SeededLweBootstrapKeyOwned<u64>,
    /// Circuit big key → this set's small LWE key.
    pub ksk: SeededLweKeyswitchKeyOwned<u64>,
    /// The set's own big key → circuit big key (sets with a key of their own).
    pub ret: Option<SeededLweKeyswitchKeyOwned<u64>>,
    bsk_seed: u128,
    ksk_seed: u128,
    ret_seed: u128,
}

/// The expanded evaluation key the server computes with.
pub struct ServerKey {
    pub params: ParamSets,
    pub key_id: [u8; 16],
    /// One entry per parameter set, in the order of `params`.
    pub sets: Vec<SetKey>,
}

/// The expanded evaluation keys of one parameter set.
pub struct SetKey {
    pub params: CryptoParams,
    pub bsk: FourierLweBootstrapKeyOwned,
    /// Circuit big key → this set's small key.
    pub ksk: LweKeyswitchKeyOwned<u64>,
    /// The set's own big key → circuit big key, applied to every bootstrap output (sets
    /// with a key of their own).
    pub ret: Option<LweKeyswitchKeyOwned<u64>>,
    /// The FFT plan every bootstrap of this set shares.
    pub fft: Fft,
}

impl ServerKey {
    /// The keys of parameter set `index`.
    pub fn set(&self, index: usize) -> Result<&SetKey, RuntimeError> {
        self.sets.get(index).ok_or_else(|| {
            RuntimeError::Mismatch(format!(
                "a lookup uses TFHE parameter set {index}, the server key has {}",
                self.sets.len()
            ))
        })
    }
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
        params: impl Into<ParamSets>,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        let params = params.into();
        params.check()?;
        for set in params.sets() {
            crate::noise::params_are_secure(set).map_err(|e| {
                RuntimeError::Mismatch(format!(
                    "refusing to generate keys for TFHE parameters below 128-bit security: {e}; \
                     recompile the model to get secure parameters"
                ))
            })?;
        }
        Self::generate_insecure_for_tests(params)
    }

    /// [`ClientKey::generate`] without the security check, for tests and benchmarks that need
    /// small, fast parameters such as [`insecure_test_params`]. Never use it for real data.
    pub fn generate_insecure_for_tests(
        params: impl Into<ParamSets>,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        Self::generate_with(&params.into(), new_seeder().as_mut(), Entropy::System)
    }

    /// [`ClientKey::generate_insecure_for_tests`] with the keys drawn from `keys` and every
    /// later encryption under the client key from `encryptions`: with deterministic seeders
    /// (tfhe's `DeterministicSeeder`) a test or a measurement of failure rates reproduces its
    /// keys and ciphertexts. Never use it for real data: whoever knows the seeds knows the key.
    pub fn generate_with_seeders_for_tests(
        params: impl Into<ParamSets>,
        keys: &mut dyn Seeder,
        encryptions: Box<dyn Seeder + Send>,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        Self::generate_with(
            &params.into(),
            keys,
            Entropy::Injected(Mutex::new(encryptions)),
        )
    }

    fn generate_with(
        params: &ParamSets,
        seeder: &mut dyn Seeder,
        entropy: Entropy,
    ) -> Result<(ClientKey, CompressedServerKey), RuntimeError> {
        params.check()?;

        let mut secret_gen = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let big = LweSecretKey::generate_new_binary(
            LweDimension(params.big_lwe_dimension()),
            &mut secret_gen,
        );
        let small_lwe: Vec<_> = params
            .sets()
            .iter()
            .map(|p| {
                LweSecretKey::generate_new_binary(LweDimension(p.lwe_dimension), &mut secret_gen)
            })
            .collect();
        let own_big: Vec<_> = params
            .sets()
            .iter()
            .zip(params.returns())
            .map(|(p, ret)| {
                ret.map(|_| {
                    LweSecretKey::generate_new_binary(
                        LweDimension(p.big_lwe_dimension()),
                        &mut secret_gen,
                    )
                })
            })
            .collect();
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&seeder.seed().0.to_le_bytes());

        let sets = (0..params.len())
            .map(|i| {
                let own = own_big[i].as_ref().zip(params.return_keyswitch(i));
                set_keys(params, i, &big, &small_lwe[i], own, seeder)
            })
            .collect();
        let client = ClientKey {
            params: params.clone(),
            key_id,
            small_lwe,
            big,
            own_big,
            entropy,
        };
        let server = CompressedServerKey {
            params: params.clone(),
            key_id,
            sets,
        };
        Ok((client, server))
    }

    /// The circuit big LWE key ciphertexts are encrypted under.
    pub fn big_lwe(&self) -> LweSecretKey<&[u64]> {
        self.big.as_view()
    }

    /// The big key of parameter set `set` if it has one of its own.
    pub fn own_big_lwe(&self, set: usize) -> Option<LweSecretKey<&[u64]>> {
        self.own_big.get(set)?.as_ref().map(|k| k.as_view())
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
            small_lwe: self.small_lwe.iter().map(|k| k.as_ref()).collect(),
            big: self.big.as_ref(),
            own_big: self
                .own_big
                .iter()
                .map(|k| k.as_ref().map(|k| k.as_ref()))
                .collect(),
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
            mut big,
            mut own_big,
        } = payload;
        let checked = (|| {
            if header.fingerprint != params.fingerprint() {
                return Err("the header fingerprint does not match the stored parameters".into());
            }
            params.check().map_err(|e| e.to_string())?;
            // `check` bounded the dimensions: `big_lwe_dimension` cannot overflow.
            let sizes_match =
                small_lwe.len() == params.len()
                    && small_lwe
                        .iter()
                        .zip(params.sets())
                        .all(|(k, p)| k.len() == p.lwe_dimension)
                    && big.len() == params.big_lwe_dimension()
                    && own_big.len() == params.len()
                    && own_big.iter().zip(params.sets()).zip(params.returns()).all(
                        |((k, p), ret)| match (k, ret) {
                            (Some(k), Some(_)) => k.len() == p.big_lwe_dimension(),
                            (None, None) => true,
                            _ => false,
                        },
                    );
            if !sizes_match {
                return Err(format!("key sizes do not match the parameters ({params})"));
            }
            let own = own_big.iter().flatten().flatten();
            if small_lwe
                .iter()
                .flatten()
                .chain(big.iter())
                .chain(own)
                .any(|&b| b > 1)
            {
                return Err("the secret keys are not binary".into());
            }
            Ok(())
        })();
        if let Err(message) = checked {
            for key in small_lwe.iter_mut().chain(own_big.iter_mut().flatten()) {
                wipe(key);
            }
            wipe(&mut big);
            return Err(format(message));
        }
        Ok(ClientKey {
            params,
            key_id: header.key_id,
            small_lwe: small_lwe
                .into_iter()
                .map(LweSecretKey::from_container)
                .collect(),
            big: LweSecretKey::from_container(big),
            own_big: own_big
                .into_iter()
                .map(|k| k.map(LweSecretKey::from_container))
                .collect(),
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
    params: &'a ParamSets,
    small_lwe: Vec<&'a [u64]>,
    big: &'a [u64],
    own_big: Vec<Option<&'a [u64]>>,
}

#[derive(Deserialize)]
struct ClientKeyPayload {
    params: ParamSets,
    small_lwe: Vec<Vec<u64>>,
    big: Vec<u64>,
    own_big: Vec<Option<Vec<u64>>>,
}

#[derive(Serialize)]
struct ServerKeyRef<'a> {
    params: &'a ParamSets,
    sets: Vec<SetKeyRef<'a>>,
}

#[derive(Serialize)]
struct SetKeyRef<'a> {
    bsk_seed: u128,
    bsk: &'a [u64],
    ksk_seed: u128,
    ksk: &'a [u64],
    ret_seed: u128,
    ret: Option<&'a [u64]>,
}

#[derive(Deserialize)]
struct ServerKeyPayload {
    params: ParamSets,
    sets: Vec<SetKeyPayload>,
}

#[derive(Deserialize)]
struct SetKeyPayload {
    bsk_seed: u128,
    bsk: Vec<u64>,
    ksk_seed: u128,
    ksk: Vec<u64>,
    ret_seed: u128,
    ret: Option<Vec<u64>>,
}

/// Number of stored (body) coefficients of a seeded bootstrap key (`None` on overflow).
fn seeded_bsk_len(p: &CryptoParams) -> Option<usize> {
    p.lwe_dimension
        .checked_mul(p.glwe_dimension.checked_add(1)?)?
        .checked_mul(p.pbs_level)?
        .checked_mul(p.polynomial_size)
}

/// Number of stored (body) coefficients of a seeded keyswitch key from dimension `input`
/// with `level` levels.
fn seeded_ksk_len(input: usize, level: usize) -> Option<usize> {
    input.checked_mul(level)
}

/// The seeded keys of parameter set `index` of `params`: bootstrap key (small → the set's
/// GLWE key: its own big key if `own` is given, else the circuit big key read with the set's
/// shape), keyswitch key (circuit big key → small) and, with `own`, the return keyswitch key
/// (own big key → circuit big key, noise of the circuit big key).
fn set_keys(
    params: &ParamSets,
    index: usize,
    big: &LweSecretKey<Vec<u64>>,
    small: &LweSecretKey<Vec<u64>>,
    own: Option<(&LweSecretKey<Vec<u64>>, ReturnKeyswitch)>,
    seeder: &mut dyn Seeder,
) -> CompressedSetKey {
    let p = &params.sets()[index];
    let glwe_big = own.map_or(big, |(key, _)| key);
    let glwe = GlweSecretKey::from_container(glwe_big.as_ref(), PolynomialSize(p.polynomial_size));
    let bsk_seed = seeder.seed().0;
    let mut bsk = SeededLweBootstrapKey::new(
        0u64,
        GlweDimension(p.glwe_dimension).to_glwe_size(),
        PolynomialSize(p.polynomial_size),
        DecompositionBaseLog(p.pbs_base_log),
        DecompositionLevelCount(p.pbs_level),
        LweDimension(p.lwe_dimension),
        Seed(bsk_seed).into(),
        native(),
    );
    par_generate_seeded_lwe_bootstrap_key(
        small,
        &glwe,
        &mut bsk,
        gaussian(p.glwe_noise_std),
        seeder,
    );
    let ksk_seed = seeder.seed().0;
    let mut ksk = SeededLweKeyswitchKey::new(
        0u64,
        DecompositionBaseLog(p.ks_base_log),
        DecompositionLevelCount(p.ks_level),
        LweDimension(params.big_lwe_dimension()),
        LweDimension(p.lwe_dimension),
        Seed(ksk_seed).into(),
        native(),
    );
    generate_seeded_lwe_keyswitch_key(big, small, &mut ksk, gaussian(p.lwe_noise_std), seeder);
    let ret_seed = seeder.seed().0;
    let ret = own.map(|(own_key, r)| {
        let mut ret = SeededLweKeyswitchKey::new(
            0u64,
            DecompositionBaseLog(r.base_log),
            DecompositionLevelCount(r.level),
            LweDimension(p.big_lwe_dimension()),
            LweDimension(params.big_lwe_dimension()),
            Seed(ret_seed).into(),
            native(),
        );
        generate_seeded_lwe_keyswitch_key(
            own_key,
            big,
            &mut ret,
            gaussian(params.glwe_noise_std()),
            seeder,
        );
        ret
    });
    CompressedSetKey {
        bsk,
        ksk,
        ret,
        bsk_seed,
        ksk_seed,
        ret_seed,
    }
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
            sets: self
                .sets
                .iter()
                .map(|k| SetKeyRef {
                    bsk_seed: k.bsk_seed,
                    bsk: k.bsk.as_ref(),
                    ksk_seed: k.ksk_seed,
                    ksk: k.ksk.as_ref(),
                    ret_seed: k.ret_seed,
                    ret: k.ret.as_ref().map(|r| r.as_ref()),
                })
                .collect(),
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
        let params = payload.params;
        if header.fingerprint != params.fingerprint() {
            return Err(format(
                "the header fingerprint does not match the stored parameters".into(),
            ));
        }
        params.check().map_err(|e| format(e.to_string()))?;
        if payload.sets.len() != params.len() {
            return Err(format(format!(
                "{} key sets for {} parameter sets",
                payload.sets.len(),
                params.len()
            )));
        }
        let mut sets = Vec::with_capacity(params.len());
        let main = params.big_lwe_dimension();
        for (i, (k, p)) in payload.sets.into_iter().zip(params.sets()).enumerate() {
            let ret_len_ok = match (&k.ret, params.return_keyswitch(i)) {
                (Some(ret), Some(r)) => {
                    Some(ret.len()) == seeded_ksk_len(p.big_lwe_dimension(), r.level)
                }
                (None, None) => true,
                _ => false,
            };
            if Some(k.bsk.len()) != seeded_bsk_len(p)
                || Some(k.ksk.len()) != seeded_ksk_len(main, p.ks_level)
                || !ret_len_ok
            {
                return Err(format(format!(
                    "key sizes do not match the parameters ({p})"
                )));
            }
            let bsk = SeededLweBootstrapKey::from_container(
                k.bsk,
                GlweDimension(p.glwe_dimension).to_glwe_size(),
                PolynomialSize(p.polynomial_size),
                DecompositionBaseLog(p.pbs_base_log),
                DecompositionLevelCount(p.pbs_level),
                Seed(k.bsk_seed).into(),
                native(),
            );
            let ksk = SeededLweKeyswitchKey::from_container(
                k.ksk,
                DecompositionBaseLog(p.ks_base_log),
                DecompositionLevelCount(p.ks_level),
                LweDimension(p.lwe_dimension).to_lwe_size(),
                Seed(k.ksk_seed).into(),
                native(),
            );
            let ret = k.ret.zip(params.return_keyswitch(i)).map(|(ret, r)| {
                SeededLweKeyswitchKey::from_container(
                    ret,
                    DecompositionBaseLog(r.base_log),
                    DecompositionLevelCount(r.level),
                    LweDimension(main).to_lwe_size(),
                    Seed(k.ret_seed).into(),
                    native(),
                )
            });
            sets.push(CompressedSetKey {
                bsk,
                ksk,
                ret,
                bsk_seed: k.bsk_seed,
                ksk_seed: k.ksk_seed,
                ret_seed: k.ret_seed,
            });
        }
        Ok(CompressedServerKey {
            params,
            key_id: header.key_id,
            sets,
        })
    }

    /// Regenerates the masks and converts the bootstrap keys to the Fourier domain (the costly
    /// step a server does once per key).
    pub fn expand(&self) -> ServerKey {
        let sets = self
            .sets
            .iter()
            .zip(self.params.sets())
            .map(|(k, p)| {
                let std_bsk = k.bsk.clone().par_decompress_into_lwe_bootstrap_key();
                let mut bsk = FourierLweBootstrapKey::new(
                    std_bsk.input_lwe_dimension(),
                    std_bsk.glwe_size(),
                    std_bsk.polynomial_size(),
                    std_bsk.decomposition_base_log(),
                    std_bsk.decomposition_level_count(),
                );
                par_convert_standard_lwe_bootstrap_key_to_fourier(&std_bsk, &mut bsk);
                drop(std_bsk);
                SetKey {
                    params: *p,
                    bsk,
                    ksk: k.ksk.clone().par_decompress_into_lwe_keyswitch_key(),
                    ret: k
                        .ret
                        .as_ref()
                        .map(|r| r.clone().par_decompress_into_lwe_keyswitch_key()),
                    fft: Fft::new(PolynomialSize(p.polynomial_size)),
                }
            })
            .collect();
        ServerKey {
            params: self.params.clone(),
            key_id: self.key_id,
            sets,
        }
    }
}
