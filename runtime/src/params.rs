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

/// How a parameter set with a big key of its own brings each bootstrap output back to the
/// circuit's big key: a keyswitch (own big key, `k * N` → circuit big key) with this
/// decomposition, its key encrypted with the circuit big key's noise (`glwe_noise_std` of
/// set 0, secure for that key by set 0's audit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReturnKeyswitch {
    pub base_log: usize,
    pub level: usize,
}

impl std::fmt::Display for ReturnKeyswitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "own key, return ks=2^{}x{}", self.base_log, self.level)
    }
}

/// The TFHE parameters of a circuit: one bootstrap parameter set per class of lookups.
///
/// Ciphertexts between bootstraps live under ONE big key, the circuit big key: set 0's GLWE
/// key flattened (dimension `k * N`, noise `glwe_noise_std` of set 0). Every set has its own
/// small LWE key, keyswitch key (circuit big key → small) and bootstrap key. A set either
///
/// - *shares* the circuit big key (`k * N` and `glwe_noise_std` equal to set 0's), reading
///   it as a GLWE key of its own shape `(k, N)`: its outputs are under the circuit big key
///   as they come; or
/// - has a big key *of its own* (any `k * N`, e.g. the larger `N` a wide comparison needs)
///   and a [`ReturnKeyswitch`] that brings every output back to the circuit big key.
///
/// Either way a value can go from any lookup to any other, and a linear instruction may mix
/// values made by different sets. Set 0 is the primary set (circuits with one class have
/// only it). Built only through [`ParamSets::new`], [`ParamSets::with_own_keys`] or
/// [`ParamSets::single`], which check these rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredParamSets", into = "StoredParamSets")]
pub struct ParamSets {
    sets: Vec<CryptoParams>,
    /// Per set: `None` if it shares the circuit big key, else how its outputs return to it.
    returns: Vec<Option<ReturnKeyswitch>>,
}

/// The serialized form of [`ParamSets`] (checked on the way in).
#[derive(Serialize, Deserialize)]
struct StoredParamSets {
    sets: Vec<CryptoParams>,
    returns: Vec<Option<ReturnKeyswitch>>,
}

/// Largest number of parameter sets a circuit may have (each costs a pair of keys).
pub const MAX_SETS: usize = 16;

impl ParamSets {
    /// One set for every bootstrap.
    pub fn single(params: CryptoParams) -> Self {
        ParamSets {
            sets: vec![params],
            returns: vec![None],
        }
    }

    /// Several sets all sharing the circuit big key; fails unless there are 1 to
    /// [`MAX_SETS`] of them, all with the same `k * N` and `glwe_noise_std`.
    pub fn new(sets: Vec<CryptoParams>) -> Result<Self, RuntimeError> {
        let returns = vec![None; sets.len()];
        Self::with_own_keys(sets, returns)
    }

    /// Several sets, set `i` with a big key of its own when `returns[i]` is given (set 0
    /// never: its key is the circuit big key). Sets without one must share set 0's `k * N`
    /// and `glwe_noise_std`; a return keyswitch must satisfy the decomposition bounds of
    /// [`check_params`].
    pub fn with_own_keys(
        sets: Vec<CryptoParams>,
        returns: Vec<Option<ReturnKeyswitch>>,
    ) -> Result<Self, RuntimeError> {
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
        if returns.len() != sets.len() {
            return Err(RuntimeError::Mismatch(format!(
                "{} return keyswitches for {} TFHE parameter sets",
                returns.len(),
                sets.len()
            )));
        }
        if returns[0].is_some() {
            return Err(RuntimeError::Mismatch(
                "TFHE parameter set 0 holds the circuit big key: it cannot have a key of its own"
                    .into(),
            ));
        }
        for (i, (s, ret)) in sets.iter().zip(&returns).enumerate().skip(1) {
            match ret {
                None if s.big_lwe_dimension() != first.big_lwe_dimension()
                    || s.glwe_noise_std != first.glwe_noise_std =>
                {
                    return Err(RuntimeError::Mismatch(format!(
                        "TFHE parameter set {i} ({s}) does not share the big key of set 0 \
                         ({first}): k*N and glwe_noise_std must be equal, or the set needs a \
                         return keyswitch"
                    )));
                }
                Some(r)
                    if r.base_log == 0
                        || r.level == 0
                        || r.base_log.checked_mul(r.level).is_none_or(|b| b > 64) =>
                {
                    return Err(RuntimeError::Mismatch(format!(
                        "TFHE parameter set {i}: return keyswitch 2^{} x {} must have base_log, \
                         level >= 1 and base_log * level <= 64",
                        r.base_log, r.level
                    )));
                }
                _ => {}
            }
        }
        Ok(ParamSets { sets, returns })
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

    /// The return keyswitch of set `index` (`None`: it shares the circuit big key, or there
    /// is no such set).
    pub fn return_keyswitch(&self, index: usize) -> Option<ReturnKeyswitch> {
        self.returns.get(index).copied().flatten()
    }

    /// Per set, its return keyswitch (`None` for sets sharing the circuit big key).
    pub fn returns(&self) -> &[Option<ReturnKeyswitch>] {
        &self.returns
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

    /// Dimension of the circuit big key every ciphertext lives under between bootstraps
    /// (`k * N` of set 0); the input dimension of every set's keyswitch.
    pub fn big_lwe_dimension(&self) -> usize {
        self.primary().big_lwe_dimension()
    }

    /// Noise of fresh encryptions under the circuit big key (and of return keyswitch keys).
    pub fn glwe_noise_std(&self) -> f64 {
        self.primary().glwe_noise_std
    }

    /// A digest of every set: artifacts made for other parameters are refused by it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"fhec-param-sets-v2");
        h.update(&(self.sets.len() as u64).to_le_bytes());
        for (s, ret) in self.sets.iter().zip(&self.returns) {
            h.update(&s.fingerprint());
            let (b, l) = ret.map_or((0, 0), |r| (r.base_log, r.level));
            h.update(&(b as u64).to_le_bytes());
            h.update(&(l as u64).to_le_bytes());
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

    /// Checks every set with [`check_params`] and the rules of [`ParamSets::with_own_keys`].
    pub fn check(&self) -> Result<(), RuntimeError> {
        for s in &self.sets {
            check_params(s)?;
        }
        ParamSets::with_own_keys(self.sets.clone(), self.returns.clone()).map(|_| ())
    }
}

impl TryFrom<StoredParamSets> for ParamSets {
    type Error = RuntimeError;
    fn try_from(stored: StoredParamSets) -> Result<Self, RuntimeError> {
        ParamSets::with_own_keys(stored.sets, stored.returns)
    }
}

impl From<ParamSets> for StoredParamSets {
    fn from(p: ParamSets) -> Self {
        StoredParamSets {
            sets: p.sets,
            returns: p.returns,
        }
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

impl std::fmt::Display for ParamSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [only] = self.sets.as_slice() {
            return write!(f, "{only}");
        }
        for (i, (s, ret)) in self.sets.iter().zip(&self.returns).enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "set {i}: {s}")?;
            if let Some(r) = ret {
                write!(f, " ({r})")?;
            }
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
        let smuggled = StoredParamSets {
            sets: vec![a, bigger],
            returns: vec![None, None],
        };
        let bytes = bincode::serialize(&smuggled).unwrap();
        assert!(bincode::deserialize::<ParamSets>(&bytes).is_err());
        let sets = ParamSets::new(vec![a, reshaped]).unwrap();
        let bytes = bincode::serialize(&sets).unwrap();
        assert_eq!(bincode::deserialize::<ParamSets>(&bytes).unwrap(), sets);
    }

    #[test]
    fn a_set_with_its_own_big_key_needs_a_valid_return_keyswitch() {
        let a = insecure_test_params();
        let bigger = CryptoParams {
            polynomial_size: 2048,
            glwe_noise_std: a.glwe_noise_std / 4.0,
            ..a
        };
        let ret = ReturnKeyswitch {
            base_log: 20,
            level: 2,
        };
        let sets = ParamSets::with_own_keys(vec![a, bigger], vec![None, Some(ret)]).unwrap();
        assert_eq!(sets.return_keyswitch(1), Some(ret));
        assert_eq!(sets.return_keyswitch(0), None);
        assert_eq!(sets.big_lwe_dimension(), a.big_lwe_dimension());
        assert!(sets.to_string().contains("own key, return ks=2^20x2"));
        // Set 0 holds the circuit big key.
        let err = ParamSets::with_own_keys(vec![bigger, a], vec![Some(ret), None])
            .unwrap_err()
            .to_string();
        assert!(err.contains("set 0"), "{err}");
        for bad in [
            ReturnKeyswitch {
                base_log: 0,
                level: 2,
            },
            ReturnKeyswitch {
                base_log: 40,
                level: 2,
            },
        ] {
            let err = ParamSets::with_own_keys(vec![a, bigger], vec![None, Some(bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("return keyswitch"), "{err}");
        }
        assert!(ParamSets::with_own_keys(vec![a, bigger], vec![None]).is_err());
        let bytes = bincode::serialize(&sets).unwrap();
        assert_eq!(bincode::deserialize::<ParamSets>(&bytes).unwrap(), sets);
        // The fingerprint covers the return keyswitch.
        let other = ParamSets::with_own_keys(
            vec![a, bigger],
            vec![None, Some(ReturnKeyswitch { level: 3, ..ret })],
        )
        .unwrap();
        assert_ne!(sets.fingerprint(), other.fingerprint());
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
