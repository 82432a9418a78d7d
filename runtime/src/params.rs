//! TFHE parameters of a circuit: one set for every bootstrap.
//!
//! Ciphertexts between bootstraps live under the "big" key (the GLWE key flattened,
//! dimension `glwe_dimension * polynomial_size`); a bootstrap keyswitches to the small key
//! (dimension `lwe_dimension`), switches the modulus to `2 * polynomial_size` (centered),
//! blind-rotates a table and extracts a big-key ciphertext again.

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// One TFHE parameter set. Noise standard deviations are on the normalised torus (the
/// ciphertext modulus is 2^64); noise is Gaussian.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CryptoParams {
    /// n: dimension of the small LWE key (bootstrap input).
    pub lwe_dimension: usize,
    /// k: GLWE dimension.
    pub glwe_dimension: usize,
    /// N: polynomial size (a power of two).
    pub polynomial_size: usize,
    /// Encryption noise under the small key (keyswitch key).
    pub lwe_noise_std: f64,
    /// Encryption noise under the GLWE key (bootstrap key, client inputs).
    pub glwe_noise_std: f64,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
}

impl CryptoParams {
    /// Dimension of the big LWE key, `k * N`.
    pub fn big_lwe_dimension(&self) -> usize {
        self.glwe_dimension * self.polynomial_size
    }

    /// A digest of every field: artifacts made for other parameters are refused by it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"fhec-params-v1");
        for v in [
            self.lwe_dimension,
            self.glwe_dimension,
            self.polynomial_size,
            self.pbs_base_log,
            self.pbs_level,
            self.ks_base_log,
            self.ks_level,
        ] {
            h.update(&(v as u64).to_le_bytes());
        }
        h.update(&self.lwe_noise_std.to_le_bytes());
        h.update(&self.glwe_noise_std.to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// Short hexadecimal form of the fingerprint for messages and file names.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Display for CryptoParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} k={} N={} pbs=2^{}x{} ks=2^{}x{} sigma_lwe=2^{:.1} sigma_glwe=2^{:.1}",
            self.lwe_dimension,
            self.glwe_dimension,
            self.polynomial_size,
            self.pbs_base_log,
            self.pbs_level,
            self.ks_base_log,
            self.ks_level,
            self.lwe_noise_std.log2(),
            self.glwe_noise_std.log2(),
        )
    }
}

/// Largest LWE dimension (and GLWE `k*N`) accepted: far above any secure, usable choice.
pub const MAX_DIMENSION: usize = 1 << 20;

/// Checks that `params` can be used to build keys (tfhe would panic otherwise).
pub fn check_params(params: &CryptoParams) -> Result<(), RuntimeError> {
    let bad = |what: String| {
        Err(RuntimeError::Mismatch(format!(
            "unusable TFHE parameters ({params}): {what}"
        )))
    };
    if params.lwe_dimension == 0 || params.glwe_dimension == 0 {
        return bad("the LWE and GLWE dimensions must be positive".into());
    }
    if !params.polynomial_size.is_power_of_two() || params.polynomial_size < 2 {
        return bad("the polynomial size must be a power of two".into());
    }
    // Parameters come from files too: bound them so that key sizes cannot overflow.
    let big = params.glwe_dimension.checked_mul(params.polynomial_size);
    if params.lwe_dimension > MAX_DIMENSION || big.is_none_or(|d| d > MAX_DIMENSION) {
        return bad(format!(
            "the LWE dimension and k*N must be at most {MAX_DIMENSION}"
        ));
    }
    for (name, base_log, level) in [
        ("bootstrap", params.pbs_base_log, params.pbs_level),
        ("keyswitch", params.ks_base_log, params.ks_level),
    ] {
        if base_log == 0 || level == 0 || base_log.checked_mul(level).is_none_or(|b| b > 64) {
            return bad(format!(
                "{name} decomposition 2^{base_log} x {level} must have base_log, level >= 1 and base_log * level <= 64"
            ));
        }
    }
    for (name, std) in [
        ("lwe_noise_std", params.lwe_noise_std),
        ("glwe_noise_std", params.glwe_noise_std),
    ] {
        if !(std.is_finite() && std > 0.0 && std < 0.5) {
            return bad(format!("{name} = {std} must be in (0, 0.5)"));
        }
    }
    Ok(())
}
