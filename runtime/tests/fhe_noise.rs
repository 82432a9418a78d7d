//! The measured failure rate of a table lookup matches the noise model's prediction.
//!
//! Parameters and precision are chosen so that one lookup fails with probability ~5%; over
//! a few thousand lookups the number of failures must fall in the binomial 99.9% interval
//! of the prediction. This checks the whole chain: the centered modulus switch the engine
//! uses, the box layout of the accumulator and the noise model's variances.
//!
//! Keys, encryptions and inputs are seeded, so the count is the same on every run (an
//! unseeded run would leave the interval once in a thousand).

use fhec_runtime::circuit::{Lut, ValueInfo};
mod common;

use common::seeded_keys;
use fhec_runtime::fhe::{insecure_test_params, FheEngine};
use fhec_runtime::noise::{binomial_interval, NoiseModel};
use fhec_runtime::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn measured_failure_rate_matches_prediction() {
    let mut params = insecure_test_params();
    params.lwe_dimension = 800;
    let precision = 6;
    let lut = Lut {
        input_min: 0,
        precision,
        rounding: None,
        tables: vec![(0..64).collect()],
        axis: None,
        sets: Default::default(),
    };
    let model = NoiseModel::new(&params);
    let p = model.lookup_failure_probability(&lut, 1.0);
    assert!(
        (0.02..0.1).contains(&p),
        "test parameters should predict a few percent of failures, got {p}"
    );

    let (client, server) = seeded_keys(params, 7);
    let server = server.expand();
    let engine = FheEngine::new(&server);
    let delta = lut.input_delta_log2();
    let info = ValueInfo {
        shape: vec![1],
        min: 0,
        max: 63,
        delta_log2: delta,
        noise_factor: 1.0,
    };
    let trials = 2000;
    let mut rng = StdRng::seed_from_u64(7);
    let xs: Vec<i64> = (0..trials).map(|_| rng.random_range(0..64)).collect();
    let cts: Vec<_> = xs.iter().map(|&x| client.encrypt_value(x, delta)).collect();
    let refs: Vec<_> = cts.iter().collect();
    let out = engine
        .lookup(&lut, &info, delta, &refs, &vec![0; trials])
        .unwrap();
    let failures = xs
        .iter()
        .zip(&out)
        .filter(|(&x, ct)| client.decrypt_raw(ct, delta).0 != x)
        .count();
    let (lo, hi) = binomial_interval(trials, p, 0.0005);
    println!("predicted p = {p:.4}, {failures} failures in {trials} lookups, 99.9% interval [{lo}, {hi}]");
    assert!(
        (lo..=hi).contains(&failures),
        "{failures} failures in {trials} lookups, predicted p = {p:.4} (99.9% interval [{lo}, {hi}])"
    );
}

#[test]
fn binomial_interval_is_sane() {
    let (lo, hi) = binomial_interval(3000, 0.05, 0.0005);
    // mean 150, sd ~11.9, z(0.9995) ~ 3.29
    assert!((105..=115).contains(&lo), "{lo}");
    assert!((185..=195).contains(&hi), "{hi}");
}
