//! Reproducible test keys (also used by `backend/tests/failure_rates.rs` through `#[path]`).

use fhec_runtime::fhe::{ClientKey, CompressedServerKey};
use tfhe::core_crypto::commons::generators::DeterministicSeeder;
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, Seed, Seeder};

/// A test key pair whose keys and every encryption under it come from `seed`
/// (deterministic seeders; never for real data).
pub fn seeded_keys(
    params: impl Into<fhec_runtime::ParamSets>,
    seed: u128,
) -> (ClientKey, CompressedServerKey) {
    let mut keys = DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(seed));
    let encryptions = DeterministicSeeder::<DefaultRandomGenerator>::new(keys.seed());
    ClientKey::generate_with_seeders_for_tests(params, &mut keys, Box::new(encryptions))
        .expect("key generation")
}
