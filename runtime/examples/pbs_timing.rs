//! Measures the latency of one keyswitch + programmable bootstrap (a 4-bit table lookup) with
//! realistic parameters, on 1 thread and on 2 threads over a batch of 64.
//!
//! ```text
//! cargo run --release -p fhec-runtime --example pbs_timing [-- OUTPUT_FILE]
//! cargo run --release -p fhec-runtime --example pbs_timing -- --batch
//! cargo run --release -p fhec-runtime --example pbs_timing -- --fit
//! ```
//! The numbers feed the optimizer's cost model; with OUTPUT_FILE they are appended there.
//!
//! `--fit` measures the engine as circuits run it (2 threads, batch blind rotations) over a
//! grid of sets, the keyswitch alone on 2 threads too, and fits the optimizer's cost model
//! (`backend/src/optimizer/mod.rs`, `COST`): seconds per keyswitch multiply-add from the
//! keyswitches, seconds per FFT operation from the rest; it prints each set's measured and
//! fitted thread-milliseconds per lookup.
//!
//! `--batch` asks whether bootstrapping several ciphertexts per pass over the Fourier key
//! raises throughput: on 2 threads, `COUNT` lookups as the engine does them (keyswitch,
//! centered modulus switch and blind rotation per ciphertext, in parallel) against tfhe-rs's
//! batch blind rotation (each thread takes a chunk of ciphertexts and applies every GGSW of the
//! key to the whole chunk before the next, so the key streams from memory once per chunk), on
//! the sets fhec picks for `mlp_torch`'s tables (6 bits, exact rounding of 6) and
//! `cnn_torch_28` (its two sets; the bit-extraction set of the MLP is left out: its 9-bit
//! keyswitch is too coarse for the 4-bit table the engine path is checked with).

use std::io::Write;
use std::time::Instant;

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

use fhec_runtime::circuit::{Lut, ValueInfo};
use fhec_runtime::fhe::{ClientKey, FheEngine, SetKey};
use fhec_runtime::{CryptoParams, Engine};

/// Lookups per measurement of `--batch`.
const COUNT: usize = 256;

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

/// Seconds per lookup of `batch` lookups on a pool of `threads` threads (best of `reps`),
/// a 4-bit table.
fn measure(
    engine: &FheEngine,
    client: &ClientKey,
    threads: usize,
    batch: usize,
    reps: usize,
) -> f64 {
    measure_table(engine, client, threads, batch, reps, 4)
}

/// [`measure`] with a `precision`-bit table (`N = 256` rings only hold small ones: their
/// modulus switch is too coarse for 4 bits).
fn measure_table(
    engine: &FheEngine,
    client: &ClientKey,
    threads: usize,
    batch: usize,
    reps: usize,
    precision: u32,
) -> f64 {
    let top = (1i64 << precision) - 1;
    let lut = Lut {
        input_min: 0,
        precision,
        rounding: None,
        tables: vec![(0..=top).map(|i| top - i).collect()],
        axis: None,
        sets: Default::default(),
    };
    let delta = lut.input_delta_log2();
    let info = ValueInfo {
        shape: vec![batch],
        min: 0,
        max: top,
        delta_log2: delta,
        noise_factor: 1.0,
    };
    let cts: Vec<_> = (0..batch)
        .map(|i| client.encrypt_value(i as i64 % (top + 1), delta))
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
            assert_eq!(client.decrypt_raw(ct, delta).0, top - i as i64 % (top + 1));
        }
    }
    best
}

/// Lookups per second with batch blind rotations of `batch` ciphertexts per thread step.
fn batch_rate(set: &SetKey, client: &ClientKey, pool: &rayon::ThreadPool, batch: usize) -> f64 {
    let p = &set.params;
    let (glwe_size, poly) = (
        GlweSize(p.glwe_dimension + 1),
        PolynomialSize(p.polynomial_size),
    );
    let delta = 59;
    let cts: Vec<_> = (0..COUNT)
        .map(|i| client.encrypt_value((i % 15 + 1) as i64, delta))
        .collect();
    // A constant table: every box returns 5 at delta 59 (inputs 1..=15 stay clear of the
    // negacyclic wrap at 0, which the engine avoids with its half-box rotation).
    let body = vec![5u64 << delta; p.polynomial_size];
    let mut best = 0f64;
    for _ in 0..2 {
        let start = Instant::now();
        pool.install(|| {
            cts.par_chunks(batch).for_each(|chunk| {
                let log_modulus = poly.to_blind_rotation_input_modulus_log();
                let smalls: Vec<_> = chunk
                    .iter()
                    .map(|ct| {
                        let mut small = LweCiphertext::new(
                            0u64,
                            LweSize(p.lwe_dimension + 1),
                            CiphertextModulus::new_native(),
                        );
                        keyswitch_lwe_ciphertext(&set.ksk, ct, &mut small);
                        small
                    })
                    .collect();
                let msed: Vec<_> = smalls
                    .iter()
                    .map(|s| {
                        lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(
                            s.as_view(),
                            log_modulus,
                        )
                    })
                    .collect();
                let mut accs = GlweCiphertextList::new(
                    0u64,
                    glwe_size,
                    poly,
                    GlweCiphertextCount(chunk.len()),
                    CiphertextModulus::new_native(),
                );
                for mut acc in accs.iter_mut() {
                    acc.get_mut_body().as_mut().copy_from_slice(&body);
                }
                let mut buffers = ComputationBuffers::new();
                buffers.resize(
                    batch_blind_rotate_assign_scratch::<u64>(
                        glwe_size,
                        poly,
                        CiphertextCount(chunk.len()),
                        set.fft.as_view(),
                    )
                    .unaligned_bytes_required(),
                );
                set.bsk.as_view().batch_blind_rotate_assign(
                    accs.as_mut_view(),
                    &msed,
                    set.fft.as_view(),
                    buffers.stack(),
                );
                for acc in accs.iter() {
                    let mut out = LweCiphertext::new(
                        0u64,
                        LweSize(p.big_lwe_dimension() + 1),
                        CiphertextModulus::new_native(),
                    );
                    extract_lwe_sample_from_glwe_ciphertext(&acc, &mut out, MonomialDegree(0));
                    assert_eq!(client.decrypt_raw(&out, delta).0, 5);
                }
            })
        });
        best = best.max(COUNT as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// A timing set: noise far below the real sets' (timing does not depend on it; results stay
/// exact).
fn set(n: usize, k: usize, poly: usize, pbs: (usize, usize), ks: (usize, usize)) -> CryptoParams {
    CryptoParams {
        lwe_dimension: n,
        glwe_dimension: k,
        polynomial_size: poly,
        lwe_noise_std: 2f64.powi(-40),
        glwe_noise_std: 2f64.powi(-60),
        ..params(pbs, ks)
    }
}

fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool")
}

/// `--batch`: engine path against batch blind rotations, per set and batch size.
fn batch_comparison() {
    let pool = two_threads();
    for p in [
        set(828, 1, 2048, (9, 4), (3, 5)),
        set(916, 2, 2048, (15, 2), (5, 3)),
        set(932, 1, 4096, (15, 2), (4, 4)),
    ] {
        let (client, compressed) = ClientKey::generate_insecure_for_tests(p).expect("keygen");
        let server = compressed.expand();
        let engine = FheEngine::new(&server);
        let one = 1.0 / measure(&engine, &client, 2, COUNT, 2);
        let mut line = format!("{p}: engine {one:.1} lookups/s");
        for batch in [4, 16, 64] {
            let rate = batch_rate(&server.sets[0], &client, &pool, batch);
            line += &format!("; batch {batch}: {rate:.1}/s ({:.2}x)", rate / one);
        }
        println!("{line}");
    }
}

/// Seconds per keyswitch alone (single thread, best of 3 runs of 16).
fn measure_ks(server: &fhec_runtime::ServerKey, client: &ClientKey) -> f64 {
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

/// Operations of the cost model for one lookup of `p`: (FFT operations of the blind
/// rotation, keyswitch multiply-adds), as `backend/src/optimizer/mod.rs` counts them.
fn model_ops(p: &CryptoParams) -> (f64, f64) {
    let (n, k, poly, l) = (
        p.lwe_dimension as f64,
        p.glwe_dimension as f64,
        p.polynomial_size as f64,
        p.pbs_level as f64,
    );
    let ffts = n * (k + 1.0) * (l + 1.0) * poly * poly.log2();
    let products = n * (k + 1.0) * (k + 1.0) * l * poly;
    let macs = (p.big_lwe_dimension() * p.ks_level * (p.lwe_dimension + 1)) as f64;
    (ffts + products, macs)
}

/// Thread-seconds per keyswitch, `COUNT` of them on the 2 threads of `pool` (best of 3).
fn parallel_ks(set: &SetKey, client: &ClientKey, pool: &rayon::ThreadPool) -> f64 {
    let cts: Vec<_> = (0..COUNT)
        .map(|i| client.encrypt_value(i as i64 % 8, 59))
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        pool.install(|| {
            cts.par_iter().for_each(|ct| {
                let mut out = LweCiphertext::new(
                    0u64,
                    LweSize(set.params.lwe_dimension + 1),
                    CiphertextModulus::new_native(),
                );
                keyswitch_lwe_ciphertext(&set.ksk, ct, &mut out);
            })
        });
        best = best.min(2.0 * start.elapsed().as_secs_f64() / COUNT as f64);
    }
    best
}

/// `--fit`: the cost model's constants from the engine's measured lookups.
fn fit() {
    let pool = two_threads();
    let grid = [
        set(600, 1, 512, (23, 1), (3, 4)),
        set(570, 6, 256, (16, 2), (3, 4)),
        set(570, 8, 256, (12, 3), (3, 4)),
        set(600, 4, 512, (16, 2), (3, 4)),
        set(600, 2, 1024, (16, 2), (4, 4)),
        set(850, 1, 1024, (23, 1), (3, 5)),
        set(850, 1, 2048, (23, 1), (3, 5)),
        set(850, 1, 2048, (15, 2), (3, 5)),
        set(850, 1, 2048, (9, 4), (2, 8)),
        set(850, 2, 2048, (15, 2), (5, 3)),
        set(850, 1, 4096, (15, 2), (4, 4)),
        set(850, 1, 4096, (9, 4), (2, 8)),
        set(1000, 1, 2048, (11, 3), (3, 6)),
    ];
    // (model ops, measured thread-seconds per lookup, keyswitch thread-seconds)
    let mut rows = Vec::new();
    for p in grid {
        let (client, compressed) = ClientKey::generate_insecure_for_tests(p).expect("keygen");
        let server = compressed.expand();
        let engine = FheEngine::new(&server);
        eprintln!("measuring {p}");
        let precision = if p.polynomial_size < 1024 { 1 } else { 4 };
        let lookup = 2.0 * measure_table(&engine, &client, 2, COUNT, 2, precision);
        let ks = parallel_ks(&server.sets[0], &client, &pool);
        rows.push((p, model_ops(&p), lookup, ks));
    }
    // Keyswitch: seconds per multiply-add, least squares on relative error.
    let ratio_fit = |pairs: &[(f64, f64)]| {
        // minimise sum ((c * x - t) / t)^2  =>  c = sum(x/t) / sum((x/t)^2)
        let (num, den) = pairs.iter().fold((0.0, 0.0), |(a, b), &(x, t)| {
            (a + x / t, b + (x / t).powi(2))
        });
        num / den
    };
    let ks_pairs: Vec<(f64, f64)> = rows.iter().map(|(_, (_, m), _, k)| (*m, *k)).collect();
    let ks_mac_s = ratio_fit(&ks_pairs);
    let fft_pairs: Vec<(f64, f64)> = rows
        .iter()
        .map(|(_, (f, m), t, _)| (*f, t - ks_mac_s * m))
        .collect();
    let fft_op_s = ratio_fit(&fft_pairs);
    for (p, (f, m), t, k) in &rows {
        let fitted = fft_op_s * f + ks_mac_s * m;
        println!(
            "{p}: measured {:.2} thread-ms per lookup (keyswitch {:.2}), fitted {:.2} ({:+.0} %)",
            t * 1e3,
            k * 1e3,
            fitted * 1e3,
            (fitted / t - 1.0) * 100.0
        );
    }
    println!("fft_op_s: {fft_op_s:.4e}, ks_mac_s: {ks_mac_s:.4e}");
}

fn main() {
    let out_file = std::env::args().nth(1);
    if out_file.as_deref() == Some("--batch") {
        return batch_comparison();
    }
    if out_file.as_deref() == Some("--fit") {
        return fit();
    }
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
