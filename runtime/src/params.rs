//! TFHE parameters of a circuit: [`CryptoParams`], one bootstrap parameter set, and
//! [`ParamSets`], the sets of a circuit (one per class of lookups) sharing one big key.
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

/// The TFHE parameters of a circuit: one bootstrap parameter set per class of lookups, all
/// sharing the big key every ciphertext lives under between bootstraps.
///
/// Each set has its own small LWE key, keyswitch key (big → small) and bootstrap key, and
/// reads the big key as a GLWE key of its own shape `(k, N)`: the shapes differ, the
/// flattened key (dimension `k * N`, noise `glwe_noise_std`) is the same one. So a value can
/// go from any lookup to any other without a keyswitch between sets, and a linear
/// instruction may mix values made by different sets. Set 0 is the primary set (circuits
/// with one class have only it). Built only through [`ParamSets::new`] or
/// [`ParamSets::single`], which check that the sets share the big key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<CryptoParams>", into = "Vec<CryptoParams>")]
pub struct ParamSets {
    sets: Vec<CryptoParams>,
}

/// Largest number of parameter sets a circuit may have (each costs a pair of keys).
pub const MAX_SETS: usize = 16;

impl ParamSets {
    /// One set for every bootstrap.
    pub fn single(params: CryptoParams) -> Self {
        ParamSets { sets: vec![params] }
    }

    /// Several sets; fails unless there are 1 to [`MAX_SETS`] of them, all with the same big
    /// key dimension `k * N` and the same `glwe_noise_std`.
    pub fn new(sets: Vec<CryptoParams>) -> Result<Self, RuntimeError> {
        let Some(first) = sets.first() else {
            return Err(RuntimeError::Mismatch(
                "a circuit needs at least one TFHE parameter set".into(),
            ));
        };
        if sets.len() > MAX_SETS {
            return Err(RuntimeError::Mismatch(format!(
                "{} TFHE parameter sets, at most {MAX_SETS} are supported",
                sets.len()
            )));
        }
        for (i, s) in sets.iter().enumerate().skip(1) {
            if s.big_lwe_dimension() != first.big_lwe_dimension()
                || s.glwe_noise_std != first.glwe_noise_std
            {
                return Err(RuntimeError::Mismatch(format!(
                    "TFHE parameter set {i} ({s}) does not share the big key of set 0 ({first}): \
                     k*N and glwe_noise_std must be equal"
                )));
            }
        }
        Ok(ParamSets { sets })
    }

    pub fn sets(&self) -> &[CryptoParams] {
        &self.sets
    }

    /// Set `index`, or an error naming it.
    pub fn get(&self, index: usize) -> Result<&CryptoParams, RuntimeError> {
        self.sets.get(index).ok_or_else(|| {
            RuntimeError::Mismatch(format!(
                "a lookup uses TFHE parameter set {index}, the circuit has {}",
                self.sets.len()
            ))
        })
    }

    /// The first set (the only one of a single-class circuit).
    pub fn primary(&self) -> &CryptoParams {
        &self.sets[0]
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Dimension of the big LWE key, `k * N` (the same in every set).
    pub fn big_lwe_dimension(&self) -> usize {
        self.primary().big_lwe_dimension()
    }

    /// Noise of fresh encryptions under the big key (and of every bootstrap key).
    pub fn glwe_noise_std(&self) -> f64 {
        self.primary().glwe_noise_std
    }

    /// A digest of every set: artifacts made for other parameters are refused by it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"fhec-param-sets-v1");
        h.update(&(self.sets.len() as u64).to_le_bytes());
        for s in &self.sets {
            h.update(&s.fingerprint());
        }
        *h.finalize().as_bytes()
    }

    /// Short hexadecimal form of the fingerprint for messages and file names.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Checks every set with [`check_params`] and that the sets share the big key.
    pub fn check(&self) -> Result<(), RuntimeError> {
        for s in &self.sets {
            check_params(s)?;
        }
        ParamSets::new(self.sets.clone()).map(|_| ())
    }
}

impl TryFrom<Vec<CryptoParams>> for ParamSets {
    type Error = RuntimeError;
    fn try_from(sets: Vec<CryptoParams>) -> Result<Self, RuntimeError> {
        ParamSets::new(sets)
    }
}

impl From<CryptoParams> for ParamSets {
    fn from(p: CryptoParams) -> Self {
        ParamSets::single(p)
    }
}

impl From<&CryptoParams> for ParamSets {
    fn from(p: &CryptoParams) -> Self {
        ParamSets::single(*p)
    }
}

impl From<&ParamSets> for ParamSets {
    fn from(p: &ParamSets) -> Self {
        p.clone()
    }
}

impl From<ParamSets> for Vec<CryptoParams> {
    fn from(p: ParamSets) -> Self {
        p.sets
    }
}

impl std::fmt::Display for ParamSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [only] = self.sets.as_slice() {
            return write!(f, "{only}");
        }
        for (i, s) in self.sets.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "set {i}: {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhe::insecure_test_params;

    #[test]
    fn sets_must_share_the_big_key() {
        let a = insecure_test_params();
        let reshaped = CryptoParams {
            glwe_dimension: 2,
            polynomial_size: 512,
            ..a
        };
        assert!(ParamSets::new(vec![a, reshaped]).is_ok());
        let bigger = CryptoParams {
            polynomial_size: 2048,
            ..a
        };
        let err = ParamSets::new(vec![a, bigger]).unwrap_err().to_string();
        assert!(err.contains("set 1") && err.contains("k*N"), "{err}");
        let noisier = CryptoParams {
            glwe_noise_std: a.glwe_noise_std * 2.0,
            ..a
        };
        assert!(ParamSets::new(vec![a, noisier]).is_err());
        assert!(ParamSets::new(vec![]).is_err());
        assert!(ParamSets::new(vec![a; MAX_SETS + 1]).is_err());
        // A file cannot smuggle in what `new` refuses.
        let bytes = bincode::serialize(&vec![a, bigger]).unwrap();
        assert!(bincode::deserialize::<ParamSets>(&bytes).is_err());
        let sets = ParamSets::new(vec![a, reshaped]).unwrap();
        let bytes = bincode::serialize(&sets).unwrap();
        assert_eq!(bincode::deserialize::<ParamSets>(&bytes).unwrap(), sets);
    }

    #[test]
    fn the_fingerprint_covers_every_set_and_their_order() {
        let a = insecure_test_params();
        let b = CryptoParams {
            glwe_dimension: 2,
            polynomial_size: 512,
            ..a
        };
        let one = ParamSets::single(a).fingerprint();
        let ab = ParamSets::new(vec![a, b]).unwrap().fingerprint();
        let ba = ParamSets::new(vec![b, a]).unwrap().fingerprint();
        assert_ne!(one, ab);
        assert_ne!(ab, ba);
        assert_ne!(one, a.fingerprint());
    }
}
