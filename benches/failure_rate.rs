//! Measured failure probability of one table lookup against the noise model's prediction.
//!
//! For each per-bootstrap target `p` (default 0.01 and 0.05) the optimizer chooses parameters
//! for a one-lookup program at `--precision` bits (`Input → Tlu`, the same search `fhec
//! compile --p-error p` runs), keys are generated, and `--bootstraps N` independent
//! keyswitch + bootstraps run on fresh encryptions of uniformly random inputs over the whole
//! table domain. A lookup fails when its decrypted output differs from the exact table value
//! (the table is a random permutation, so reading any neighbouring box is a failure).
//!
//! Reported per target: the model's prediction for the chosen parameters (the optimizer's
//! figure, which counts a lookup input as one bootstrap output, and the figure for the fresh
//! encryptions actually used, whose noise is the client's encryption noise), the measured
//! `k/N`, its 95% Clopper-Pearson interval and whether the prediction lies inside it. The
//! simulation engine is run on the same lookup (`--sim-lookups` draws, cheap) as a check of
//! the simulator against the same model.
//!
//! ```text
//! cargo bench --bench failure_rate                                  # p = 0.01, 0.05; N = 10^4
//! cargo bench --bench failure_rate -- --p 0.05 --bootstraps 3000 --precision 4 --json
//! ```
//! Without `--bench` on its command line (what `cargo bench` passes, and `cargo test
//! --all-targets` does not) the binary only prints a note, so test runs stay fast.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use fhec_backend::optimizer::{choose_params, PErrorTarget};
use fhec_runtime::circuit::ValueInfo;
use fhec_runtime::circuit::{InputSpec, Instruction, Lut, OutputSpec, Program, QParams};
use fhec_runtime::fhe::{ClientKey, FheEngine};
use fhec_runtime::noise::{p_fail, NoiseModel};
use fhec_runtime::{CryptoParams, Engine, SimulationEngine};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "Measured vs predicted failure probability of one KS+PBS table lookup")]
struct Args {
    /// Per-bootstrap failure-probability targets (comma-separated or repeated).
    #[arg(long = "p", value_delimiter = ',', default_values_t = [0.01, 0.05])]
    targets: Vec<f64>,
    /// Bootstraps per target.
    #[arg(long, default_value_t = 10_000)]
    bootstraps: usize,
    /// Bits of the table (the lookup reads 2^precision boxes).
    #[arg(long, default_value_t = 6)]
    precision: u32,
    /// Threads [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Lookups drawn by the simulation engine per target (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    sim_lookups: usize,
    /// Seed of the inputs and the table (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Also print one JSON line per target.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Two-sided confidence level of the intervals.
const CONFIDENCE: f64 = 0.95;

#[derive(Serialize, Debug)]
struct Row {
    target: f64,
    precision: u32,
    params: String,
    /// The optimizer's per-bootstrap prediction (input noise = one bootstrap output).
    predicted: f64,
    /// Prediction for the experiment's inputs (fresh encryptions).
    predicted_fresh: f64,
    /// Noise std at the blind rotation (normalised torus) and the half box it must stay in.
    std_at_rotation: f64,
    half_box: f64,
    bootstraps: usize,
    failures: usize,
    measured: f64,
    ci_low: f64,
    ci_high: f64,
    predicted_in_ci: bool,
    predicted_fresh_in_ci: bool,
    sim_lookups: usize,
    sim_failures: usize,
    sim_measured: f64,
    sim_ci_low: f64,
    sim_ci_high: f64,
    sim_predicted_in_ci: bool,
    keygen_s: f64,
    run_s: f64,
    ms_per_bootstrap_per_thread: f64,
    threads: usize,
}

/// SplitMix64: a small reproducible generator (inputs and tables need no cryptographic
/// randomness; the encryption noise comes from tfhe-rs's own CSPRNG).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        // Rejection sampling: no modulo bias.
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// `ln P(X = i)` for `i = 0..=k`, X ~ Binomial(n, p), by the ratio recursion.
fn log_pmf(n: usize, p: f64, k: usize) -> Vec<f64> {
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    let mut out = Vec::with_capacity(k + 1);
    let mut l = n as f64 * lq;
    out.push(l);
    for i in 0..k.min(n) {
        l += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + lp - lq;
        out.push(l);
    }
    out
}

/// P(X <= k) for X ~ Binomial(n, p).
fn cdf(n: usize, p: f64, k: usize) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    let l = log_pmf(n, p, k);
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = l.iter().map(|x| (x - m).exp()).sum();
    (m + s.ln()).exp().min(1.0)
}

/// Bisection for the `p` in [0, 1] where the decreasing function `f` crosses `target`.
fn solve_decreasing(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Exact (Clopper-Pearson) two-sided interval for `k` successes in `n` trials.
fn clopper_pearson(k: usize, n: usize, confidence: f64) -> (f64, f64) {
    let tail = (1.0 - confidence) / 2.0;
    // Lower: P(X >= k | p) = tail, i.e. P(X <= k-1 | p) = 1 - tail (decreasing in p).
    let low = if k == 0 {
        0.0
    } else {
        solve_decreasing(|p| cdf(n, p, k - 1), 1.0 - tail)
    };
    // Upper: P(X <= k | p) = tail.
    let high = if k == n {
        1.0
    } else {
        solve_decreasing(|p| cdf(n, p, k), tail)
    };
    (low, high)
}

/// `Input → Tlu` over `2^precision` values, table `table`, input noise factor 1.
fn program(precision: u32, table: Vec<i64>, elements: usize) -> (Program, Lut) {
    let max = (1i64 << precision) - 1;
    let lut = Lut {
        input_min: 0,
        precision,
        rounding: None,
        tables: vec![table],
        axis: None,
        sets: Default::default(),
    };
    let delta = lut.input_delta_log2();
    let info = ValueInfo {
        shape: vec![elements],
        min: 0,
        max,
        delta_log2: delta,
        noise_factor: 1.0,
    };
    let program = Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![elements],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: precision,
                signed: false,
            },
        }],
        outputs: vec![OutputSpec {
            name: "y".into(),
            value: 1,
            scale: 1.0,
            zero_point: 0,
            channel_scales: vec![],
        }],
        values: vec![info.clone(), info],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Tlu {
                input: 0,
                lut: lut.clone(),
            },
        ],
    };
    (program, lut)
}

fn measure(args: &Args, target: f64, threads: usize, rng: &mut SplitMix) -> Result<Row> {
    let precision = args.precision;
    let size = 1usize << precision;
    // A random permutation: every neighbouring box holds another value.
    let mut table: Vec<i64> = (0..size as i64).collect();
    for i in (1..size).rev() {
        table.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let (prog, lut) = program(precision, table, args.bootstraps);
    let (params, prediction) = choose_params(&prog, PErrorTarget::PerPbs(target), threads)?;
    let model = NoiseModel::new(&params);
    let predicted = model.lookup_failure_probability(&lut, 1.0);
    let half_box = 2f64.powi(-(precision as i32 + 2));
    // Fresh encryptions carry the client's encryption noise, not a bootstrap's.
    let fresh_var = params.glwe_noise_std.powi(2) + model.var_ks + model.var_ms;
    let predicted_fresh = p_fail(half_box, fresh_var.sqrt());
    println!(
        "target {target}: params {params}; predicted p_fail {predicted:.4e} (optimizer, \
         {} PBS), {predicted_fresh:.4e} for fresh inputs; std at rotation 2^{:.2}, half box 2^{}",
        prediction.pbs_count,
        model.input_variance(1.0).sqrt().log2(),
        -(precision as i32 + 2)
    );

    let t = Instant::now();
    let (client, compressed) = ClientKey::generate(params)?;
    let server = compressed.expand();
    let keygen_s = t.elapsed().as_secs_f64();
    let engine = FheEngine::new(&server);
    let delta = lut.input_delta_log2();
    let info = &prog.values[0];

    // Batches bound the memory (two big-key ciphertexts per bootstrap) and show progress.
    let batch = (threads * 64).max(256);
    let (mut failures, mut done) = (0usize, 0usize);
    let t = Instant::now();
    while done < args.bootstraps {
        let n = batch.min(args.bootstraps - done);
        let xs: Vec<i64> = (0..n).map(|_| rng.below(size as u64) as i64).collect();
        let cts: Vec<_> = xs.iter().map(|&x| client.encrypt_value(x, delta)).collect();
        let refs: Vec<_> = cts.iter().collect();
        let out = engine.lookup(&lut, info, delta, &refs, &vec![0; n])?;
        failures += xs
            .iter()
            .zip(&out)
            .filter(|(&x, ct)| client.decrypt_raw(ct, delta).0 != lut.tables[0][x as usize])
            .count();
        done += n;
        eprint!(
            "\r  {done}/{} bootstraps, {failures} failures, {:.1} s",
            args.bootstraps,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    let run_s = t.elapsed().as_secs_f64();
    let (ci_low, ci_high) = clopper_pearson(failures, args.bootstraps, CONFIDENCE);

    // The simulator on the same lookup.
    let (sim_failures, sim_ci) = if args.sim_lookups > 0 {
        simulate(&params, &lut, info, args.sim_lookups, rng)?
    } else {
        (0, (f64::NAN, f64::NAN))
    };
    let n = args.bootstraps as f64;
    Ok(Row {
        target,
        precision,
        params: params.to_string(),
        predicted,
        predicted_fresh,
        std_at_rotation: model.input_variance(1.0).sqrt(),
        half_box,
        bootstraps: args.bootstraps,
        failures,
        measured: failures as f64 / n,
        ci_low,
        ci_high,
        predicted_in_ci: (ci_low..=ci_high).contains(&predicted),
        predicted_fresh_in_ci: (ci_low..=ci_high).contains(&predicted_fresh),
        sim_lookups: args.sim_lookups,
        sim_failures,
        sim_measured: sim_failures as f64 / args.sim_lookups.max(1) as f64,
        sim_ci_low: sim_ci.0,
        sim_ci_high: sim_ci.1,
        sim_predicted_in_ci: (sim_ci.0..=sim_ci.1).contains(&predicted),
        keygen_s,
        run_s,
        ms_per_bootstrap_per_thread: run_s * 1e3 * threads as f64 / n,
        threads,
    })
}

/// Failures of the simulation engine over `lookups` draws, with their interval.
fn simulate(
    params: &CryptoParams,
    lut: &Lut,
    info: &ValueInfo,
    lookups: usize,
    rng: &mut SplitMix,
) -> Result<(usize, (f64, f64))> {
    let sim = SimulationEngine::new(&(*params).into(), rng.next());
    let size = 1u64 << lut.precision;
    let xs: Vec<i64> = (0..lookups).map(|_| rng.below(size) as i64).collect();
    let refs: Vec<&i64> = xs.iter().collect();
    let out = sim.lookup(lut, info, info.delta_log2, &refs, &vec![0; lookups])?;
    let failures = xs
        .iter()
        .zip(&out)
        .filter(|(&x, &y)| y != lut.tables[0][x as usize])
        .count();
    Ok((failures, clopper_pearson(failures, lookups, CONFIDENCE)))
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| target p | precision | predicted p_fail | N | failures | measured k/N | 95% CI (Clopper-Pearson) | prediction in CI | simulator k/N (N) | ms/PBS/thread |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let verdict = if r.predicted_in_ci {
            "yes".to_string()
        } else if r.predicted < r.ci_low {
            "NO (model optimistic)".to_string()
        } else {
            "NO (model pessimistic)".to_string()
        };
        let sim = if r.sim_lookups > 0 {
            format!(
                "{:.5} ({}) [{:.5}, {:.5}]{}",
                r.sim_measured,
                r.sim_lookups,
                r.sim_ci_low,
                r.sim_ci_high,
                if r.sim_predicted_in_ci {
                    ""
                } else {
                    " prediction OUTSIDE"
                }
            )
        } else {
            "-".into()
        };
        println!(
            "| {} | {} | {:.5} (fresh inputs {:.5}) | {} | {} | {:.5} | [{:.5}, {:.5}] | {} | {} | {:.1} |",
            r.target,
            r.precision,
            r.predicted,
            r.predicted_fresh,
            r.bootstraps,
            r.failures,
            r.measured,
            r.ci_low,
            r.ci_high,
            verdict,
            sim,
            r.ms_per_bootstrap_per_thread
        );
    }
    println!();
    for r in rows {
        if !r.predicted_in_ci {
            println!(
                "WARNING: at target {} the predicted p_fail {:.4} lies outside the measured 95% interval [{:.4}, {:.4}] ({} of {}).",
                r.target, r.predicted, r.ci_low, r.ci_high, r.failures, r.bootstraps
            );
        }
        if r.sim_lookups > 0 && !r.sim_predicted_in_ci {
            println!(
                "WARNING: at target {} the predicted p_fail {:.5} lies outside the simulator's 95% interval [{:.5}, {:.5}] ({} of {} simulated lookups).",
                r.target, r.predicted, r.sim_ci_low, r.sim_ci_high, r.sim_failures, r.sim_lookups
            );
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bench {
        println!(
            "failure_rate: run with `cargo bench --bench failure_rate` (add `-- --help` for options)"
        );
        return Ok(());
    }
    if args.bootstraps == 0 {
        bail!("--bootstraps must be at least 1");
    }
    if !(1..=10).contains(&args.precision) {
        bail!(
            "--precision {} is out of range: use 1..=10 bits",
            args.precision
        );
    }
    if let Some(&p) = args.targets.iter().find(|&&p| !(p > 0.0 && p < 1.0)) {
        bail!("--p {p}: a failure probability must be strictly between 0 and 1");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!(
        "failure_rate: {} bootstraps per target, {}-bit table, {threads} threads, seed {seed}",
        args.bootstraps, args.precision
    );
    let mut rng = SplitMix(seed);
    let mut rows = Vec::new();
    for &target in &args.targets {
        let row = pool.install(|| measure(&args, target, threads, &mut rng))?;
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        }
        rows.push(row);
    }
    print_table(&rows);
    Ok(())
}
