//! Measures the latency of one keyswitch + programmable bootstrap (a 4-bit table lookup) with
//! realistic parameters, on 1 thread and on 2 threads over a batch of 64.
//!
//! ```text
//! cargo run --release -p fhec-runtime --example pbs_timing [-- OUTPUT_FILE]
//! ```
//! The numbers feed the optimizer's cost model; with OUTPUT_FILE they are appended there.

use std::io::Write;
use std::time::Instant;

use fhec_runtime::circuit::{Lut, ValueInfo};
use fhec_runtime::fhe::{ClientKey, FheEngine};
use fhec_runtime::{CryptoParams, Engine};

fn params(pbs: (usize, usize), ks: (usize, usize)) -> CryptoParams {
    CryptoParams {
        lwe_dimension: 850,
        glwe_dimension: 1,
        polynomial_size: 2048,
        lwe_noise_std: 2f64.powi(-20),
        glwe_noise_std: 2f64.powi(-51),
        pbs_base_log: pbs.0,
        pbs_level: pbs.1,
        ks_base_log: ks.0,
        ks_level: ks.1,
    }
}

/// Seconds per lookup of `batch` lookups on a pool of `threads` threads (best of `reps`).
fn measure(
    engine: &FheEngine,
    client: &ClientKey,
    threads: usize,
    batch: usize,
    reps: usize,
) -> f64 {
    let lut = Lut {
        input_min: 0,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| 15 - i).collect()],
        axis: None,
        sets: Default::default(),
    };
    let delta = lut.input_delta_log2();
    let info = ValueInfo {
        shape: vec![batch],
        min: 0,
        max: 15,
        delta_log2: delta,
        noise_factor: 1.0,
    };
    let cts: Vec<_> = (0..batch)
        .map(|i| client.encrypt_value((i % 16) as i64, delta))
        .collect();
    let refs: Vec<_> = cts.iter().collect();
    let tables = vec![0; batch];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        let out = pool
            .install(|| engine.lookup(&lut, &info, delta, &refs, &tables))
            .expect("lookup");
        best = best.min(start.elapsed().as_secs_f64() / batch as f64);
        for (i, ct) in out.iter().enumerate() {
            assert_eq!(client.decrypt_raw(ct, delta).0, 15 - (i % 16) as i64);
        }
    }
    best
}

/// Seconds per keyswitch alone (single thread, best of 3 runs of 16).
fn measure_ks(server: &fhec_runtime::ServerKey, client: &ClientKey) -> f64 {
    use tfhe::core_crypto::prelude::*;
    let input = client.encrypt_value(3, 59);
    let mut out = LweCiphertext::new(
        0u64,
        LweSize(server.params.primary().lwe_dimension + 1),
        CiphertextModulus::new_native(),
    );
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..16 {
            keyswitch_lwe_ciphertext(&server.sets[0].ksk, &input, &mut out);
        }
        best = best.min(start.elapsed().as_secs_f64() / 16.0);
    }
    best
}

fn main() {
    let out_file = std::env::args().nth(1);
    let mut lines = Vec::new();
    for (pbs, ks) in [
        ((23, 1), (3, 5)),
        ((15, 2), (3, 5)),
        ((15, 2), (4, 4)),
        ((11, 3), (3, 6)),
    ] {
        let p = params(pbs, ks);
        let t0 = Instant::now();
        let (client, compressed) = ClientKey::generate_insecure_for_tests(p).expect("keygen");
        let keygen = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let server = compressed.expand();
        let expand = t0.elapsed().as_secs_f64();
        let engine = FheEngine::new(&server);
        let one = measure(&engine, &client, 1, 16, 3);
        let two = measure(&engine, &client, 2, 64, 2);
        let ks = measure_ks(&server, &client);
        let line = format!(
            "{p}: KS+PBS 1 thread {:.2} ms/PBS (of which KS {:.2} ms); 2 threads batch 64 {:.2} ms/PBS wall (keygen {keygen:.1} s, expand {expand:.1} s)",
            one * 1e3,
            ks * 1e3,
            two * 1e3
        );
        println!("{line}");
        lines.push(line);
    }
    if let Some(path) = out_file {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("output file");
        for l in lines {
            writeln!(f, "{l}").expect("write");
        }
    }
}
