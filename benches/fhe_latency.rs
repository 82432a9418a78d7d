//! FHE latency benchmark: how close one encrypted inference comes to its bootstrap bound.
//!
//! Compiles a model through the driver (as `fhec compile` does), generates keys, then measures
//! - key generation, server key expansion and the compressed server key size;
//! - the cost of one programmable bootstrap (KS+PBS) at the circuit's parameters: a batch of
//!   the circuit's first table lookup on one thread (median over repetitions), and the same
//!   batch on every thread (throughput);
//! - end-to-end latency per sample (encrypt, `fhe::run`, decrypt) on K test samples, and the
//!   agreement of the decrypted outputs with the clear execution;
//! - a profile of one run: time per lookup batch against its bootstrap bound, and the time
//!   spent between lookups (linear layers, allocation).
//!
//! The headline figure is `ratio = measured run time / (pbs_count × single_pbs ÷ threads)`:
//! the bootstraps are the irreducible work, so a ratio near 1 means the executor wastes
//! nothing (goal ≤ 1.15). Results: a table, then one JSON line starting with `{"bench"`.
//!
//! ```text
//! cargo bench --bench fhe_latency                       # breast-cancer MLP, 6 bits, K=5
//! cargo bench --bench fhe_latency -- --model tests/fixtures/cnn_torch_28.onnx \
//!     --data tests/fixtures/data/digits_28.npz --samples 1
//! cargo bench --bench fhe_latency -- --help
//! ```
//! Without `--bench` on its command line (what `cargo bench` passes, and `cargo test
//! --all-targets` does not) the binary only prints a note, so test runs stay fast.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use fhec_driver::{CryptoConfig, Hooks, QuantConfig};
use fhec_runtime::circuit::{Instruction, Lut, Program, ValueInfo};
use fhec_runtime::clear::{run_clear, run_clear_integers};
use fhec_runtime::exec::dequantize_outputs;
use fhec_runtime::fhe::{
    self, engine::Ct, Ciphertexts, ClientKey, EncryptedTensor, EncryptedTensors, FheEngine,
    ServerKey,
};
use fhec_runtime::{execute, Circuit, Engine, RuntimeError};
use ndarray::{ArrayD, IxDyn};
use rayon::ThreadPool;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "FHE latency benchmark: bootstrap cost, end-to-end latency, bound ratio")]
struct Args {
    /// ONNX model to compile.
    #[arg(long, default_value = "tests/fixtures/mlp_torch.onnx")]
    model: PathBuf,
    /// Dataset (.npz): test samples from `x_test` or MedMNIST `test_images`; also the
    /// calibration data unless --calib is given.
    #[arg(long, default_value = "tests/fixtures/data/breast_cancer.npz")]
    data: PathBuf,
    /// Calibration data (as `fhec compile --calib`) [default: --data].
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Use an already compiled circuit instead of compiling --model.
    #[arg(long, value_name = "MODEL.fhec")]
    circuit: Option<PathBuf>,
    /// Quantisation bits (as `fhec compile --bits`).
    #[arg(long, default_value_t = 6)]
    bits: u32,
    /// Rounding bits before each lookup (0: no rounding; before 2026-12-07 0 left the
    /// compiler's default of 7).
    #[arg(long, default_value_t = 6)]
    rounding_bits: u32,
    /// Rounding mode: exact or approximate [default: the compiler's].
    #[arg(long)]
    rounding_mode: Option<String>,
    /// Failure probability of one bootstrap.
    #[arg(long, default_value_t = 0.008)]
    p_error: f64,
    /// Test samples to run end to end (K).
    #[arg(long, short = 'k', default_value_t = 5)]
    samples: usize,
    /// Threads of the run phase [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Elements of the single-bootstrap batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Repetitions of the single-bootstrap batch (the median is kept).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip the profiled run (one extra inference timed per lookup batch).
    #[arg(long)]
    no_profile: bool,
    /// Profile the first sample's run itself instead of an extra run (its time then counts
    /// as a measured run; saves one inference on large models).
    #[arg(long, conflicts_with = "no_profile")]
    profile_first: bool,
    /// Set by `cargo bench`; without it the binary does nothing (see the module doc).
    #[arg(long, hide = true)]
    bench: bool,
}

/// Resolves a path given on the command line: as is when it exists, else relative to the
/// package root (so defaults work from any directory).
fn resolve(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Compiles `args.model` through the driver (as `fhec compile` does) into `dir`.
fn compile(args: &Args, threads: usize, dir: &Path) -> Result<(PathBuf, f64)> {
    use fhec_driver::config::{RoundingBits, RoundingMode};
    let out = dir.join("model.fhec");
    let model_path = resolve(&args.model);
    let rounding_mode = match args.rounding_mode.as_deref() {
        None => None,
        Some("exact") => Some(RoundingMode::Exact),
        Some("approximate") => Some(RoundingMode::Approximate),
        Some(other) => bail!("--rounding-mode {other}: give exact or approximate"),
    };
    let quant = QuantConfig {
        rounding_bits: Some(match args.rounding_bits {
            0 => RoundingBits::None,
            r => RoundingBits::Keep(r),
        }),
        rounding_mode,
        calib: Some(resolve(args.calib.as_ref().unwrap_or(&args.data))),
        ..QuantConfig::bits(args.bits)
    };
    let crypto = CryptoConfig {
        p_error: Some(args.p_error),
        threads: Some(u32::try_from(threads)?),
        ..Default::default()
    };
    let t = Instant::now();
    let hooks = Hooks::silent();
    let model = fhec_driver::import_model(&model_path, &Default::default())?;
    let calibration =
        fhec_driver::samples::calibration_for(&model.graph, &quant, &model_path, &hooks)?;
    let compiled = fhec_driver::quantise(&model.graph, &quant, calibration.samples, &model_path)?;
    let (circuit, _) =
        fhec_driver::build_circuit(&compiled, &crypto, &model_path, &model.output_names)?;
    circuit.save(&out)?;
    Ok((out, t.elapsed().as_secs_f64()))
}

/// The first `k` test samples of `path`, fitted to the circuit's (single) input by the
/// driver's dataset loader, with their labels.
fn load_samples(
    path: &Path,
    program: &Program,
    k: usize,
) -> Result<Vec<(ArrayD<f32>, Option<i64>)>> {
    use fhec_driver::data::{load_dataset, DataKeys, Split};
    let [spec] = program.inputs.as_slice() else {
        bail!(
            "the benchmark feeds one input; the circuit takes {}",
            program.inputs.len()
        );
    };
    let ds = load_dataset(path, Split::Test, &DataKeys::default())?;
    if ds.len() < k {
        bail!(
            "{} holds {} test samples, {k} requested",
            path.display(),
            ds.len()
        );
    }
    let ds = ds.head(k);
    let fact = fhec_ir::TensorFact::f32(spec.shape.clone());
    let (samples, _) = fhec_driver::samples::model_samples(&ds, &spec.name, &fact, path, "data")?;
    Ok(samples
        .into_iter()
        .enumerate()
        .map(|(i, x)| (x, ds.y.as_ref().map(|y| y[i])))
        .collect())
}

fn argmax(a: &ArrayD<f32>) -> usize {
    a.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The first table lookup of the program (a `Tlu`, else a max-pool comparison), with the
/// range and delta of its operand and its output delta.
fn first_lookup(program: &Program) -> Option<(usize, &Lut, ValueInfo, u32)> {
    let tlu = program
        .instructions
        .iter()
        .enumerate()
        .find_map(|(i, ins)| match ins {
            Instruction::Tlu { input, lut } => Some((
                i,
                lut,
                program.values[*input].clone(),
                program.values[i].delta_log2,
            )),
            _ => None,
        });
    tlu.or_else(|| {
        program
            .instructions
            .iter()
            .enumerate()
            .find_map(|(i, ins)| match ins {
                Instruction::MaxPool { relu, .. } => {
                    let info = ValueInfo {
                        shape: vec![1],
                        min: relu.input_min,
                        max: -relu.input_min,
                        delta_log2: relu.input_delta_log2(),
                        noise_factor: 1.0,
                    };
                    Some((i, relu, info, program.values[i].delta_log2))
                }
                _ => None,
            })
    })
}

/// Result of the single-bootstrap measurement.
struct PbsCost {
    instruction: usize,
    precision: u32,
    pbs_per_element: u64,
    /// Median seconds per bootstrap on one thread.
    single_s: f64,
    /// Median CPU seconds per bootstrap on one thread (the cost without other processes).
    single_cpu_s: f64,
    /// Median seconds per bootstrap with the whole pool.
    parallel_s: f64,
    /// Lookups of the last single-thread batch that decrypted to another value than the
    /// clear table (expected: about batch × p_error).
    wrong: usize,
}

fn measure_pbs(
    circuit: &Circuit,
    client: &ClientKey,
    server: &ServerKey,
    pool: &ThreadPool,
    batch: usize,
    reps: usize,
) -> Result<PbsCost> {
    let program = &circuit.program;
    let (instruction, lut, info, out_delta) =
        first_lookup(program).ok_or_else(|| anyhow!("the circuit has no table lookup"))?;
    let d_in = lut.input_delta_log2();
    // Operands at the centre of a table entry (multiples of 2^shift above the table's
    // input_min, within the operand's range), spread over the whole range: a lookup that
    // decrypts to another entry is then a noise failure, not a rounding boundary.
    let shift = lut.shift();
    let first = (info.min - lut.input_min + (1 << shift) - 1).max(0) >> shift;
    let last = ((info.max - lut.input_min) >> shift)
        .min((1i64 << lut.precision) - 1)
        .max(first);
    let values: Vec<i64> = (0..batch)
        .map(|i| {
            let idx = first + (last - first) * i as i64 / (batch.max(2) - 1) as i64;
            lut.input_min + (idx << shift)
        })
        .collect();
    let tables: Vec<usize> = (0..batch).map(|i| i % lut.tables.len().max(1)).collect();
    let cts: Vec<Ct> = values
        .iter()
        .map(|&v| client.encrypt_value(v, d_in))
        .collect();
    let refs: Vec<&Ct> = cts.iter().collect();
    let engine = FheEngine::new(server);
    let pbs = (batch as u64 * lut.pbs_per_element()) as f64;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    // (wall seconds per PBS, CPU seconds per PBS, outputs of the last repetition)
    let time = |pool: &ThreadPool| -> Result<(f64, f64, Vec<Ct>)> {
        let mut secs = Vec::with_capacity(reps);
        let mut cpu = Vec::with_capacity(reps);
        let mut last = Vec::new();
        for _ in 0..reps.max(1) {
            let sched = SchedStat::now();
            let t = Instant::now();
            last = pool.install(|| engine.lookup(lut, &info, out_delta, &refs, &tables))?;
            secs.push(t.elapsed().as_secs_f64());
            cpu.push(SchedStat::now().since(&sched).cpu_s);
        }
        Ok((median(&secs) / pbs, median(&cpu) / pbs, last))
    };
    let (single_s, single_cpu_s, outs) = time(&one)?;
    let (parallel_s, _, _) = time(pool)?;
    let wrong = outs
        .iter()
        .zip(values.iter().zip(&tables))
        .filter(|(ct, (&v, &t))| Some(client.decrypt_raw(ct, out_delta).0) != lut.lookup(t, v))
        .count();
    Ok(PbsCost {
        instruction,
        precision: lut.precision,
        pbs_per_element: lut.pbs_per_element(),
        single_s,
        single_cpu_s,
        parallel_s,
        wrong,
    })
}

/// One lookup batch of a profiled run.
struct LookupRecord {
    /// Instruction the table belongs to (`None`: not found in the program).
    instruction: Option<usize>,
    elements: usize,
    pbs: u64,
    /// Seconds since the start of the run when the batch started / ended.
    start: f64,
    end: f64,
}

/// An [`FheEngine`] that times every lookup batch.
struct TimingEngine<'k> {
    inner: FheEngine<'k>,
    program: &'k Program,
    origin: Instant,
    records: Mutex<Vec<LookupRecord>>,
}

impl TimingEngine<'_> {
    fn instruction_of(&self, lut: &Lut) -> Option<usize> {
        self.program.instructions.iter().position(|ins| match ins {
            Instruction::Tlu { lut: l, .. } | Instruction::MaxPool { relu: l, .. } => {
                std::ptr::eq(l, lut)
            }
            _ => false,
        })
    }
}

impl Engine for TimingEngine<'_> {
    type Ct = Ct;

    fn trivial(&self, value: i64, delta_log2: u32) -> Ct {
        self.inner.trivial(value, delta_log2)
    }
    fn add_assign(&self, acc: &mut Ct, x: &Ct) {
        self.inner.add_assign(acc, x)
    }
    fn sub_assign(&self, acc: &mut Ct, x: &Ct) {
        self.inner.sub_assign(acc, x)
    }
    fn mul_add_assign(&self, acc: &mut Ct, x: &Ct, weight: i64) {
        self.inner.mul_add_assign(acc, x, weight)
    }
    fn mul_assign(&self, x: &mut Ct, weight: i64) {
        self.inner.mul_assign(x, weight)
    }
    fn add_const_assign(&self, x: &mut Ct, constant: i64, delta_log2: u32) {
        self.inner.add_const_assign(x, constant, delta_log2)
    }
    fn rescale(&self, x: &mut Ct, shift: u32) {
        self.inner.rescale(x, shift)
    }

    fn lookup(
        &self,
        lut: &Lut,
        input: &ValueInfo,
        output_delta_log2: u32,
        inputs: &[&Ct],
        tables: &[usize],
    ) -> Result<Vec<Ct>, RuntimeError> {
        let start = self.origin.elapsed().as_secs_f64();
        let out = self
            .inner
            .lookup(lut, input, output_delta_log2, inputs, tables)?;
        let end = self.origin.elapsed().as_secs_f64();
        let record = LookupRecord {
            instruction: self.instruction_of(lut),
            elements: inputs.len(),
            pbs: inputs.len() as u64 * lut.pbs_per_element(),
            start,
            end,
        };
        self.records
            .lock()
            .map_err(|_| RuntimeError::Mismatch("timing records poisoned".into()))?
            .push(record);
        Ok(out)
    }
}

/// Phase breakdown of one run.
struct Profile {
    expand_s: f64,
    execute_s: f64,
    lookup_s: f64,
    /// Sum over batches of `pbs × single ÷ threads`.
    lookup_bound_s: f64,
    /// Sum over batches of `ceil(elements ÷ threads) × pbs_per_element × single` (the bound
    /// when a batch is split into waves of `threads` elements).
    lookup_wave_bound_s: f64,
    records: Vec<LookupRecord>,
}

/// Runs `circuit` like [`fhe::run`] (without its identity checks, which the caller's keys
/// pass anyway) on a [`TimingEngine`]; returns the outputs and the phase breakdown.
fn profile_run(
    circuit: &Circuit,
    server: &ServerKey,
    encrypted: &EncryptedTensors,
    pool: &ThreadPool,
    threads: usize,
    single_s: f64,
) -> Result<(EncryptedTensors, Profile)> {
    let program = &circuit.program;
    let lwe_size = circuit.params.big_lwe_dimension() + 1;
    pool.install(|| -> Result<(EncryptedTensors, Profile)> {
        let t = Instant::now();
        let mut arrays = Vec::new();
        for (tensor, spec) in encrypted.tensors.iter().zip(&program.inputs) {
            let cts = tensor.ciphertexts.expand(lwe_size)?;
            arrays.push(ArrayD::from_shape_vec(IxDyn(&spec.shape), cts)?);
        }
        let expand_s = t.elapsed().as_secs_f64();
        let engine = TimingEngine {
            inner: FheEngine::new(server),
            program,
            origin: Instant::now(),
            records: Mutex::new(Vec::new()),
        };
        let outputs = execute(program, &engine, arrays)?;
        let execute_s = engine.origin.elapsed().as_secs_f64();
        let tensors = outputs
            .into_iter()
            .map(|a| EncryptedTensor {
                shape: a.shape().to_vec(),
                ciphertexts: Ciphertexts::Full {
                    lwe_size,
                    data: a.iter().flat_map(|c| c.as_ref().iter().copied()).collect(),
                },
            })
            .collect();
        let result = EncryptedTensors {
            key_id: server.key_id,
            fingerprint: circuit.params.fingerprint(),
            tensors,
        };
        let records = engine
            .records
            .into_inner()
            .map_err(|_| anyhow!("timing records poisoned"))?;
        let lookup_s = records.iter().map(|r| r.end - r.start).sum();
        let lookup_bound_s = records
            .iter()
            .map(|r| r.pbs as f64 * single_s / threads as f64)
            .sum();
        let lookup_wave_bound_s = records
            .iter()
            .map(|r| {
                let per = r.pbs / r.elements.max(1) as u64;
                r.elements.div_ceil(threads) as f64 * per as f64 * single_s
            })
            .sum();
        let profile = Profile {
            expand_s,
            execute_s,
            lookup_s,
            lookup_bound_s,
            lookup_wave_bound_s,
            records,
        };
        Ok((result, profile))
    })
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    model: String,
    bits: u32,
    rounding_bits: u32,
    rounding_mode: Option<String>,
    p_error: f64,
    params: String,
    cpu: String,
    threads: usize,
    pbs_count: u64,
    single_pbs_ms: f64,
    parallel_pbs_ms: f64,
    pbs_bound_s: f64,
    run_s_median: f64,
    run_s_mean: f64,
    /// Fastest run: on a shared machine, the one least disturbed by other processes.
    run_s_min: f64,
    ratio: f64,
    /// Measured run ÷ (pbs_count × per-PBS time of the parallel batch): above 1, the executor
    /// loses time beyond what the same machine achieves on one full batch.
    ratio_throughput: f64,
    /// CPU time of one bootstrap on one thread, ms.
    single_pbs_cpu_ms: f64,
    /// CPU time of a run ÷ (pbs_count × single_pbs_cpu): the work done beyond the bootstraps,
    /// whatever the machine's load (1 = nothing but bootstraps).
    cpu_ratio: f64,
    /// CPU time of every thread of the process during the run, and the time its runnable
    /// threads waited for a core (other processes): high waits mean a shared machine.
    run_cpu_s_median: f64,
    run_wait_s_median: f64,
    predicted_latency_s: f64,
    predicted_pbs_ms: f64,
    predicted_threads: usize,
    keygen_s: f64,
    expand_s: f64,
    server_key_bytes: u64,
    encrypt_s_median: f64,
    decrypt_s_median: f64,
    samples: usize,
    agreement: f64,
    exact_agreement: f64,
    /// Decrypted integer outputs that differ from the clear execution, over every sample.
    differing_output_elements: usize,
    output_elements: usize,
    max_output_diff: i64,
    label_accuracy: Option<f64>,
    single_batch_wrong: usize,
    profile_lookup_s: Option<f64>,
    profile_between_lookups_s: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bench {
        println!(
            "fhe_latency: run with `cargo bench --bench fhe_latency` (add `-- --help` for options)"
        );
        return Ok(());
    }
    let bench = Bench::new(args)?;
    let dir = tempfile::tempdir()?;
    let (circuit, model_name) = bench.circuit(dir.path())?;
    let keys = bench.keys(&circuit, dir.path())?;
    let pbs = bench.single_pbs(&circuit, &keys)?;
    let mut runs = bench.end_to_end(&circuit, &keys, &pbs)?;

    // Profile (an extra run unless the first sample was profiled).
    if let (Some(enc), false, None) = (&runs.first_encrypted, bench.args.no_profile, &runs.profile)
    {
        runs.profile = Some(
            profile_run(
                &circuit,
                &keys.server,
                enc,
                &bench.pool,
                bench.threads,
                pbs.single_s,
            )?
            .1,
        );
    }

    let report = bench.report(model_name, &circuit, &keys, &pbs, &runs);
    if let Some(p) = &runs.profile {
        print_profile(p, bench.threads, pbs.single_s);
    }
    print_table(&report);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The benchmark's settings and thread pool, shared by its phases.
struct Bench {
    args: Args,
    threads: usize,
    pool: ThreadPool,
    cpu: String,
}

/// Keys of the circuit's parameters, and what generating them cost.
struct Keys {
    client: ClientKey,
    server: ServerKey,
    keygen_s: f64,
    expand_s: f64,
    /// Size of the compressed server key file.
    server_key_bytes: u64,
}

/// Measurements of the end-to-end runs, over every sample.
#[derive(Default)]
struct Runs {
    samples: usize,
    enc_s: Vec<f64>,
    run_s: Vec<f64>,
    dec_s: Vec<f64>,
    /// CPU and wait time of the process during each run ([`SchedStat`]).
    cpu_s: Vec<f64>,
    wait_s: Vec<f64>,
    /// Samples whose decrypted argmax equals the clear one.
    agree: usize,
    /// Samples whose decrypted integer outputs equal the clear ones.
    exact: usize,
    /// Labelled samples, and those the decrypted argmax classifies correctly.
    labelled: usize,
    correct: usize,
    diff_elements: usize,
    max_diff: i64,
    out_elements: usize,
    first_encrypted: Option<EncryptedTensors>,
    /// The first run's profile, with `--profile-first`.
    profile: Option<Profile>,
}

impl Bench {
    /// Builds the run phase's thread pool and prints the machine line.
    fn new(args: Args) -> Result<Bench> {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let cpu = cpu_model();
        println!(
            "machine: {cpu}; {threads} threads (of {} available); load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average()
        );
        Ok(Bench {
            args,
            threads,
            pool,
            cpu,
        })
    }

    /// The circuit to measure (`--circuit`, or `--model` compiled into `dir`) and the name
    /// of the model it came from; prints its parameters and the compiler's prediction.
    fn circuit(&self, dir: &Path) -> Result<(Circuit, String)> {
        let args = &self.args;
        let (circuit_path, model_name) = match &args.circuit {
            Some(p) => (resolve(p), p.display().to_string()),
            None => {
                let (p, secs) = compile(args, self.threads, dir)?;
                println!("compiled {} in {secs:.1} s", args.model.display());
                (p, args.model.display().to_string())
            }
        };
        let circuit = Circuit::load(&circuit_path)?;
        let program = &circuit.program;
        let pred = &circuit.prediction;
        println!("params: {}", circuit.params);
        println!(
            "circuit: {} instructions, {} PBS per inference, predicted {:.3} ms/PBS, {:.3} s/inference on {} threads",
            program.instructions.len(),
            pred.pbs_count,
            pred.pbs_latency_s * 1e3,
            pred.latency_s,
            pred.threads
        );
        Ok((circuit, model_name))
    }

    /// Generates the keys (the compressed server key saved in `dir` to measure its size)
    /// and expands the server key.
    fn keys(&self, circuit: &Circuit, dir: &Path) -> Result<Keys> {
        let pool = &self.pool;
        let t = Instant::now();
        let (client, compressed) = pool.install(|| ClientKey::generate(&circuit.params))?;
        let keygen_s = t.elapsed().as_secs_f64();
        let key_path = dir.join("server.key");
        compressed.save(&key_path)?;
        let server_key_bytes = std::fs::metadata(&key_path)?.len();
        let t = Instant::now();
        let server = pool.install(|| compressed.expand());
        let expand_s = t.elapsed().as_secs_f64();
        drop(compressed);
        println!(
            "keygen {keygen_s:.2} s, expansion {expand_s:.2} s, compressed server key {:.1} MiB",
            server_key_bytes as f64 / (1u64 << 20) as f64
        );
        Ok(Keys {
            client,
            server,
            keygen_s,
            expand_s,
            server_key_bytes,
        })
    }

    /// Measures (and prints) the cost of one bootstrap.
    fn single_pbs(&self, circuit: &Circuit, keys: &Keys) -> Result<PbsCost> {
        let args = &self.args;
        let pbs = measure_pbs(
            circuit,
            &keys.client,
            &keys.server,
            &self.pool,
            args.batch,
            args.reps,
        )?;
        println!(
            "single PBS (instruction {}, {}-bit table, {} PBS/element, batch {}): {:.3} ms on 1 thread, {:.3} ms/PBS on {} threads ({:.2}x); {} of {} lookups off",
            pbs.instruction,
            pbs.precision,
            pbs.pbs_per_element,
            args.batch,
            pbs.single_s * 1e3,
            pbs.parallel_s * 1e3,
            self.threads,
            pbs.single_s / pbs.parallel_s,
            pbs.wrong,
            args.batch
        );
        Ok(pbs)
    }

    /// Encrypts, runs and decrypts each of the `--samples` test samples (profiling the first
    /// run with `--profile-first`), comparing the outputs with the clear execution; prints
    /// a line per sample.
    fn end_to_end(&self, circuit: &Circuit, keys: &Keys, pbs: &PbsCost) -> Result<Runs> {
        let (args, pool, program) = (&self.args, &self.pool, &circuit.program);
        let (client, server) = (&keys.client, &keys.server);
        let samples = load_samples(&resolve(&args.data), program, args.samples)?;
        let mut runs = Runs {
            samples: samples.len(),
            ..Runs::default()
        };
        for (i, (x, label)) in samples.iter().enumerate() {
            let inputs = std::slice::from_ref(x);
            let clear = run_clear(program, inputs)?;
            let clear_int = run_clear_integers(program, inputs)?;
            let t = Instant::now();
            let encrypted = pool.install(|| client.encrypt(program, inputs))?;
            runs.enc_s.push(t.elapsed().as_secs_f64());
            let sched = SchedStat::now();
            let t = Instant::now();
            let result = if i == 0 && args.profile_first {
                let (result, p) = profile_run(
                    circuit,
                    server,
                    &encrypted,
                    pool,
                    self.threads,
                    pbs.single_s,
                )?;
                runs.profile = Some(p);
                result
            } else {
                pool.install(|| fhe::run(circuit, server, &encrypted))?
            };
            runs.run_s.push(t.elapsed().as_secs_f64());
            let used = SchedStat::now().since(&sched);
            runs.cpu_s.push(used.cpu_s);
            runs.wait_s.push(used.wait_s);
            let t = Instant::now();
            let ints = client.decrypt_integers(program, &result)?;
            runs.dec_s.push(t.elapsed().as_secs_f64());
            let y = dequantize_outputs(program, &ints);
            let (fa, ca) = (argmax(&y[0]), argmax(&clear[0]));
            runs.agree += usize::from(fa == ca);
            runs.exact += usize::from(ints == clear_int);
            let (sample_diff, sample_max_diff, elements) = output_differences(&ints, &clear_int);
            runs.out_elements += elements;
            runs.max_diff = runs.max_diff.max(sample_max_diff);
            runs.diff_elements += sample_diff;
            if sample_diff > 0 && ints[0].len() <= 16 {
                let show = |a: &ArrayD<i64>| format!("{:?}", a.iter().collect::<Vec<_>>());
                println!(
                    "sample {i}: integer outputs fhe {} / clear {}",
                    show(&ints[0]),
                    show(&clear_int[0])
                );
            }
            if let Some(l) = label {
                runs.labelled += 1;
                runs.correct += usize::from(fa as i64 == *l);
            }
            println!(
                "sample {i}: run {:.3} s (cpu {:.2} s, waiting for a core {:.2} s), argmax fhe {fa} / clear {ca}, {sample_diff} output elements differ{}",
                runs.run_s[i],
                used.cpu_s,
                used.wait_s,
                label.map(|l| format!(", label {l}")).unwrap_or_default()
            );
            if runs.first_encrypted.is_none() {
                runs.first_encrypted = Some(encrypted);
            }
        }
        Ok(runs)
    }

    /// The results, against the bootstrap bound and the compiler's prediction.
    fn report(
        &self,
        model_name: String,
        circuit: &Circuit,
        keys: &Keys,
        pbs: &PbsCost,
        runs: &Runs,
    ) -> Report {
        let (args, threads, pred) = (&self.args, self.threads, &circuit.prediction);
        let k = runs.samples;
        let profile = &runs.profile;
        let pbs_bound_s = pred.pbs_count as f64 * pbs.single_s / threads as f64;
        let run_med = median(&runs.run_s);
        Report {
            bench: "fhe_latency",
            model: model_name,
            bits: args.bits,
            rounding_bits: args.rounding_bits,
            rounding_mode: args.rounding_mode.clone(),
            p_error: args.p_error,
            params: circuit.params.to_string(),
            cpu: self.cpu.clone(),
            threads,
            pbs_count: pred.pbs_count,
            single_pbs_ms: pbs.single_s * 1e3,
            parallel_pbs_ms: pbs.parallel_s * 1e3,
            pbs_bound_s,
            run_s_median: run_med,
            run_s_mean: mean(&runs.run_s),
            run_s_min: runs.run_s.iter().copied().fold(f64::INFINITY, f64::min),
            ratio: run_med / pbs_bound_s,
            ratio_throughput: run_med / (pred.pbs_count as f64 * pbs.parallel_s),
            single_pbs_cpu_ms: pbs.single_cpu_s * 1e3,
            cpu_ratio: median(&runs.cpu_s) / (pred.pbs_count as f64 * pbs.single_cpu_s),
            run_cpu_s_median: median(&runs.cpu_s),
            run_wait_s_median: median(&runs.wait_s),
            predicted_latency_s: pred.latency_s,
            predicted_pbs_ms: pred.pbs_latency_s * 1e3,
            predicted_threads: pred.threads,
            keygen_s: keys.keygen_s,
            expand_s: keys.expand_s,
            server_key_bytes: keys.server_key_bytes,
            encrypt_s_median: median(&runs.enc_s),
            decrypt_s_median: median(&runs.dec_s),
            samples: k,
            agreement: runs.agree as f64 / k as f64,
            exact_agreement: runs.exact as f64 / k as f64,
            differing_output_elements: runs.diff_elements,
            output_elements: runs.out_elements,
            max_output_diff: runs.max_diff,
            label_accuracy: (runs.labelled > 0).then(|| runs.correct as f64 / runs.labelled as f64),
            single_batch_wrong: pbs.wrong,
            profile_lookup_s: profile.as_ref().map(|p| p.lookup_s),
            profile_between_lookups_s: profile.as_ref().map(|p| p.execute_s - p.lookup_s),
        }
    }
}

/// Integer output elements of one sample that differ between the decrypted and the clear
/// outputs, the largest difference (0 if none), and the number of elements compared.
fn output_differences(ints: &[ArrayD<i64>], clear_int: &[ArrayD<i64>]) -> (usize, i64, usize) {
    let (mut differ, mut max_diff, mut elements) = (0, 0i64, 0);
    for (a, b) in ints.iter().zip(clear_int) {
        for (&u, &v) in a.iter().zip(b.iter()) {
            elements += 1;
            if u != v {
                differ += 1;
                max_diff = max_diff.max(u.wrapping_sub(v).saturating_abs());
            }
        }
    }
    (differ, max_diff, elements)
}

fn print_profile(p: &Profile, threads: usize, single_s: f64) {
    println!();
    println!("profile of one run ({threads} threads):");
    println!(
        "  {:>5} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "instr", "elements", "PBS", "gap s", "lookup s", "bound s", "ratio", "wave bnd s"
    );
    let mut prev_end = 0.0;
    for r in &p.records {
        let bound = r.pbs as f64 * single_s / threads as f64;
        let per = r.pbs / r.elements.max(1) as u64;
        let wave = r.elements.div_ceil(threads) as f64 * per as f64 * single_s;
        println!(
            "  {:>5} {:>10} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>8.2} {:>10.3}",
            r.instruction.map_or("?".into(), |i| i.to_string()),
            r.elements,
            r.pbs,
            r.start - prev_end,
            r.end - r.start,
            bound,
            (r.end - r.start) / bound,
            wave
        );
        prev_end = r.end;
    }
    println!(
        "  input expansion {:.3} s; execute {:.3} s = lookups {:.3} s (bound {:.3} s, with waves {:.3} s) + between lookups {:.3} s (of which after the last {:.3} s)",
        p.expand_s,
        p.execute_s,
        p.lookup_s,
        p.lookup_bound_s,
        p.lookup_wave_bound_s,
        p.execute_s - p.lookup_s,
        p.execute_s - prev_end
    );
}

fn print_table(r: &Report) {
    let rows: Vec<(&str, String)> = vec![
        ("model", r.model.clone()),
        (
            "quantisation",
            format!(
                "{} bits, rounding {} ({})",
                r.bits,
                r.rounding_bits,
                r.rounding_mode.as_deref().unwrap_or("default")
            ),
        ),
        ("p_error / PBS", format!("{}", r.p_error)),
        ("params", r.params.clone()),
        ("cpu / threads", format!("{} / {}", r.cpu, r.threads)),
        ("pbs_count", r.pbs_count.to_string()),
        (
            "single_pbs_ms (1 thread)",
            format!("{:.3} (cpu {:.3})", r.single_pbs_ms, r.single_pbs_cpu_ms),
        ),
        ("pbs_ms (all threads)", format!("{:.3}", r.parallel_pbs_ms)),
        ("pbs_bound_s", format!("{:.3}", r.pbs_bound_s)),
        (
            "run_s median / mean / min",
            format!(
                "{:.3} / {:.3} / {:.3} (ratio of the min {:.3})",
                r.run_s_median,
                r.run_s_mean,
                r.run_s_min,
                r.run_s_min / r.pbs_bound_s
            ),
        ),
        ("ratio (goal <= 1.15)", format!("{:.3}", r.ratio)),
        (
            "ratio vs parallel batch",
            format!("{:.3}", r.ratio_throughput),
        ),
        (
            "run cpu_s / wait_s",
            format!(
                "{:.2} / {:.2} (median; {:.2} busy threads)",
                r.run_cpu_s_median,
                r.run_wait_s_median,
                r.run_cpu_s_median / r.run_s_median
            ),
        ),
        ("cpu ratio (work / PBS work)", format!("{:.3}", r.cpu_ratio)),
        (
            "predicted latency_s",
            format!(
                "{:.3} ({:.3} ms/PBS, {} threads)",
                r.predicted_latency_s, r.predicted_pbs_ms, r.predicted_threads
            ),
        ),
        (
            "keygen_s / expand_s",
            format!("{:.2} / {:.2}", r.keygen_s, r.expand_s),
        ),
        (
            "server_key_bytes",
            format!(
                "{} ({:.1} MiB)",
                r.server_key_bytes,
                r.server_key_bytes as f64 / (1u64 << 20) as f64
            ),
        ),
        (
            "encrypt / decrypt s",
            format!("{:.4} / {:.4}", r.encrypt_s_median, r.decrypt_s_median),
        ),
        (
            "argmax agreement",
            format!(
                "{:.3} over {} samples (identical outputs {:.3}; {} of {} output integers differ, max |diff| {})",
                r.agreement,
                r.samples,
                r.exact_agreement,
                r.differing_output_elements,
                r.output_elements,
                r.max_output_diff
            ),
        ),
        (
            "label accuracy",
            r.label_accuracy.map_or("n/a".into(), |a| format!("{a:.3}")),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!();
    println!("| {:w$} | value", "metric");
    println!("|{}|------", "-".repeat(w + 2));
    for (k, v) in rows {
        println!("| {k:w$} | {v}");
    }
    println!();
}

/// CPU and run-queue wait time of every thread of this process (`/proc/self/task/*/schedstat`:
/// nanoseconds on a CPU, nanoseconds runnable but waiting). Threads that exit in between are
/// lost; the rayon pools of this benchmark live for the whole run.
struct SchedStat {
    cpu_s: f64,
    wait_s: f64,
}

impl SchedStat {
    fn now() -> SchedStat {
        let (mut cpu, mut wait) = (0u64, 0u64);
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                    continue;
                };
                let mut fields = text
                    .split_whitespace()
                    .map(|f| f.parse::<u64>().unwrap_or(0));
                cpu += fields.next().unwrap_or(0);
                wait += fields.next().unwrap_or(0);
            }
        }
        SchedStat {
            cpu_s: cpu as f64 * 1e-9,
            wait_s: wait as f64 * 1e-9,
        }
    }

    fn since(&self, before: &SchedStat) -> SchedStat {
        SchedStat {
            cpu_s: self.cpu_s - before.cpu_s,
            wait_s: self.wait_s - before.wait_s,
        }
    }
}
