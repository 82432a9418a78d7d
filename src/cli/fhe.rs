//! The client/server commands on a compiled circuit:
//!
//! - `fhec keygen` (client): secret client key + compressed evaluation (server) key;
//! - `fhec encrypt` (client): quantise and encrypt `.npy` inputs, one sample or a batch
//!   (one file of N independently encrypted samples);
//! - `fhec run` (server): execute the circuit on ciphertexts, no secret needed, the samples
//!   of a batch in parallel (`--debug-client-key`: the key owner's noise trace of one
//!   sample, see `fhec_runtime::fhe::trace`);
//! - `fhec decrypt` (client): decrypt, dequantise, post-process, write `.npy` (`[N, ...]`
//!   for a batch).
//!
//! Every artifact carries the format version and the parameter fingerprint; keys and
//! ciphertexts also carry the key pair's id, so mixing files is a clear error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fhec_runtime::fhe::{ClientKey, CompressedServerKey, EncryptedTensors};
use fhec_runtime::Circuit;
use serde::Serialize;

use super::compile::{check_not_an_input, check_writable};
use super::{json_text, print_out, shape_text};
use fhec_driver::feed::assemble;
use fhec_driver::npy::write_npy;
use fhec_runtime::atomic::{Access, PendingFile};

/// Loads a circuit, naming the file.
pub fn load_circuit(path: &Path) -> Result<Circuit> {
    Circuit::load(path).with_context(|| format!("cannot load circuit '{}'", path.display()))
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The compiled circuit whose parameters the keys are for.
    #[arg(value_name = "MODEL.fhec")]
    pub circuit: PathBuf,
    /// Where to write the secret client key (owner-only permissions).
    #[arg(long, value_name = "C.key")]
    pub client_key: PathBuf,
    /// Where to write the evaluation key for the server (compressed; shareable).
    #[arg(long, value_name = "S.key")]
    pub server_key: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct KeygenJson {
    client_key: String,
    server_key: String,
    client_key_bytes: u64,
    server_key_bytes: u64,
    keygen_s: f64,
    fingerprint: String,
}

pub fn keygen(args: &KeygenArgs) -> Result<()> {
    let circuit = load_circuit(&args.circuit)?;
    if args.client_key == args.server_key {
        bail!("--client-key and --server-key name the same file");
    }
    check_writable(&args.client_key)?;
    check_writable(&args.server_key)?;
    check_not_an_input(&args.client_key, &[&args.circuit])?;
    check_not_an_input(&args.server_key, &[&args.circuit])?;
    let t = Instant::now();
    let (client, server) = ClientKey::generate(&circuit.params)?;
    let keygen_s = t.elapsed().as_secs_f64();
    client
        .save(&args.client_key)
        .with_context(|| format!("cannot write client key '{}'", args.client_key.display()))?;
    if let Err(e) = server.save(&args.server_key) {
        // A client key without its server key is useless: leave neither behind.
        let _ = std::fs::remove_file(&args.client_key);
        return Err(e)
            .with_context(|| format!("cannot write server key '{}'", args.server_key.display()));
    }
    let report = KeygenJson {
        client_key: args.client_key.display().to_string(),
        server_key: args.server_key.display().to_string(),
        client_key_bytes: file_size(&args.client_key),
        server_key_bytes: file_size(&args.server_key),
        keygen_s,
        fingerprint: circuit.params.fingerprint_hex(),
    };
    if args.json {
        return print_out(&json_text(&report));
    }
    print_out(&format!(
        "wrote client key '{}' ({}, keep it secret) and server key '{}' ({}) in {:.2} s\n\
         parameters: {} (fingerprint {})\n",
        report.client_key,
        bytes_text(report.client_key_bytes),
        report.server_key,
        bytes_text(report.server_key_bytes),
        keygen_s,
        circuit.params,
        report.fingerprint
    ))
}

pub fn bytes_text(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[arg(value_name = "MODEL.fhec")]
    pub circuit: PathBuf,
    #[arg(long, value_name = "C.key")]
    pub client_key: PathBuf,
    /// One .npy per circuit input: one sample (the input's shape, with or without its
    /// leading batch 1) or a batch of N samples stacked along axis 0 (the same N in every
    /// file).
    #[arg(long = "input", short = 'i', value_name = "X.npy", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the ciphertexts (one file, whatever the number of samples).
    #[arg(long, short = 'o', value_name = "X.ct")]
    pub output: PathBuf,
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub fn encrypt(args: &EncryptArgs) -> Result<()> {
    let circuit = load_circuit(&args.circuit)?;
    check_writable(&args.output)?;
    let mut inputs = vec![args.circuit.as_path(), args.client_key.as_path()];
    inputs.extend(args.inputs.iter().map(PathBuf::as_path));
    check_not_an_input(&args.output, &inputs)?;
    let client = load_client_key(&args.client_key, &circuit)?;
    let inputs = fhec_driver::feed::read_inputs(&circuit.program, &args.inputs)?;
    let t = Instant::now();
    let cts = if inputs.batched {
        client.encrypt_samples(&circuit.program, &inputs.samples)?
    } else {
        // One sample: the single-sample layout, as before batches.
        client.encrypt(&circuit.program, &inputs.samples[0])?
    };
    let secs = t.elapsed().as_secs_f64();
    cts.save(&args.output)
        .with_context(|| format!("cannot write '{}'", args.output.display()))?;
    let n = inputs.samples.len();
    let what = if inputs.batched {
        format!(
            "a batch of {n} sample{} ({} input(s) each)",
            if n == 1 { "" } else { "s" },
            circuit.program.inputs.len()
        )
    } else {
        format!("{} input(s)", circuit.program.inputs.len())
    };
    print_out(&format!(
        "encrypted {what} into '{}' ({}) in {:.3} s\n",
        args.output.display(),
        bytes_text(file_size(&args.output)),
        secs
    ))
}

/// Loads a client key and checks it was made for `circuit`'s parameters.
pub fn load_client_key(path: &Path, circuit: &Circuit) -> Result<ClientKey> {
    let key = ClientKey::load(path)
        .with_context(|| format!("cannot load client key '{}'", path.display()))?;
    if key.params != circuit.params {
        bail!(
            "client key '{}' was generated for other parameters (fingerprint {}) than this circuit \
             (fingerprint {}); run `fhec keygen` for this circuit",
            path.display(),
            key.params.fingerprint_hex(),
            circuit.params.fingerprint_hex()
        );
    }
    Ok(key)
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(value_name = "MODEL.fhec")]
    pub circuit: PathBuf,
    /// The evaluation key from `fhec keygen` (no secret).
    #[arg(long, value_name = "S.key")]
    pub server_key: PathBuf,
    /// Input ciphertexts from `fhec encrypt` (one sample or a batch; the samples of a batch
    /// run in parallel).
    #[arg(long, short = 'i', value_name = "X.ct")]
    pub input: PathBuf,
    /// Where to write the output ciphertexts (as many samples as the input).
    #[arg(long, short = 'o', value_name = "Y.ct")]
    pub output: PathBuf,
    /// DEBUGGING ONLY, on the client's own machine: decrypt every table-lookup input and
    /// output with this CLIENT key and report the noise and margin of each lookup against the
    /// clear execution of the decrypted inputs. A server must never hold the client key.
    #[arg(long, value_name = "C.key")]
    pub debug_client_key: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RunJson {
    output: String,
    /// Bootstraps per sample.
    pbs_count: u64,
    load_key_s: f64,
    /// The whole file (every sample).
    run_s: f64,
    /// Samples in the file (1 for a single-sample file).
    samples: usize,
    /// `run_s / samples`.
    run_s_per_sample: f64,
    threads: usize,
    input_bytes: u64,
    output_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    noise_trace: Option<fhec_runtime::fhe::NoiseTrace>,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let circuit = load_circuit(&args.circuit)?;
    check_writable(&args.output)?;
    let mut inputs = vec![&*args.circuit, &*args.server_key, &*args.input];
    inputs.extend(args.debug_client_key.as_deref());
    check_not_an_input(&args.output, &inputs)?;
    let t = Instant::now();
    let compressed = CompressedServerKey::load(&args.server_key)
        .with_context(|| format!("cannot load server key '{}'", args.server_key.display()))?;
    if compressed.params != circuit.params {
        bail!(
            "server key '{}' was generated for other parameters (fingerprint {}) than this circuit \
             (fingerprint {}); generate keys for this circuit with `fhec keygen`",
            args.server_key.display(),
            compressed.params.fingerprint_hex(),
            circuit.params.fingerprint_hex()
        );
    }
    let debug_key = match &args.debug_client_key {
        Some(path) => {
            eprintln!(
                "warning: --debug-client-key decrypts intermediate values with the secret client \
                 key; use it only on the client's own machine, never on a server"
            );
            let key = load_client_key(path, &circuit)?;
            key.check_server_key(&compressed).with_context(|| {
                format!(
                    "client key '{}' and server key '{}' are not a key pair",
                    path.display(),
                    args.server_key.display()
                )
            })?;
            Some(key)
        }
        None => None,
    };
    let server = compressed.expand();
    let load_key_s = t.elapsed().as_secs_f64();
    let inputs = EncryptedTensors::load(&args.input)
        .with_context(|| format!("cannot load ciphertexts '{}'", args.input.display()))?;
    let t = Instant::now();
    let context = || {
        format!(
            "cannot run '{}' on '{}'",
            args.circuit.display(),
            args.input.display()
        )
    };
    let (outputs, samples, noise_trace) = match &debug_key {
        Some(key) => {
            let specs = fhec_runtime::fhe::input_specs(&circuit.program);
            if let Some(n) = inputs.samples(&specs, "input").with_context(context)? {
                bail!(
                    "'{}' holds a batch of {n} samples; --debug-client-key traces one sample: \
                     encrypt the sample to trace on its own",
                    args.input.display()
                );
            }
            let (outputs, trace) = fhec_runtime::fhe::run_traced(&circuit, &server, key, &inputs)
                .with_context(context)?;
            (outputs, 1, Some(trace))
        }
        None => {
            let (outputs, samples) =
                fhec_runtime::fhe::run_samples(&circuit, &server, &inputs).with_context(context)?;
            (outputs, samples, None)
        }
    };
    let run_s = t.elapsed().as_secs_f64();
    outputs
        .save(&args.output)
        .with_context(|| format!("cannot write '{}'", args.output.display()))?;
    let report = RunJson {
        output: args.output.display().to_string(),
        pbs_count: circuit.prediction.pbs_count,
        load_key_s,
        run_s,
        samples,
        run_s_per_sample: run_s / samples as f64,
        threads: rayon::current_num_threads(),
        input_bytes: file_size(&args.input),
        output_bytes: file_size(&args.output),
        noise_trace,
    };
    if args.json {
        return print_out(&json_text(&report));
    }
    let mut text = format!(
        "ran {} sample{} ({} bootstraps each) in {:.3} s, {:.3} s per sample, on {} thread(s) \
         (key loaded in {:.2} s)\nread '{}' ({}); wrote '{}' ({})\n",
        samples,
        if samples == 1 { "" } else { "s" },
        report.pbs_count,
        run_s,
        report.run_s_per_sample,
        report.threads,
        load_key_s,
        args.input.display(),
        bytes_text(report.input_bytes),
        report.output,
        bytes_text(report.output_bytes)
    );
    if let Some(trace) = &report.noise_trace {
        text.push_str(&trace.table());
    }
    print_out(&text)
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[arg(value_name = "MODEL.fhec")]
    pub circuit: PathBuf,
    #[arg(long, value_name = "C.key")]
    pub client_key: PathBuf,
    /// Output ciphertexts from `fhec run`.
    #[arg(long, short = 'i', value_name = "Y.ct")]
    pub input: PathBuf,
    /// Where to write the first output (.npy, float32, dequantised, post-processed; a batch
    /// of N samples as [N, ...], like `fhec predict`).
    #[arg(long, short = 'o', value_name = "Y.npy")]
    pub output: PathBuf,
}

pub fn decrypt(args: &DecryptArgs) -> Result<()> {
    let circuit = load_circuit(&args.circuit)?;
    check_not_an_input(
        &args.output,
        &[&args.circuit, &args.client_key, &args.input],
    )?;
    // Decrypted results are the client's private data: owner-only, like its key.
    let pending = PendingFile::create(&args.output, Access::Private)
        .with_context(|| format!("cannot write '{}'", args.output.display()))?;
    let client = load_client_key(&args.client_key, &circuit)?;
    let cts = EncryptedTensors::load(&args.input)
        .with_context(|| format!("cannot load ciphertexts '{}'", args.input.display()))?;
    let (samples, batched) = client
        .decrypt_samples(&circuit.program, &cts)
        .with_context(|| {
            format!(
                "cannot decrypt '{}' with client key '{}'",
                args.input.display(),
                args.client_key.display()
            )
        })?;
    let n = samples.len();
    let mut firsts = Vec::with_capacity(n);
    for outputs in samples {
        let outputs = fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outputs)?;
        let Some(first) = outputs.into_iter().next() else {
            bail!("the circuit has no output");
        };
        firsts.push(first);
    }
    // A batch is written [N, ...] like `fhec predict` writes one; one sample in the
    // circuit's own output shape.
    let first = assemble(firsts, batched)?;
    write_npy(pending, &first)?;
    let mut text = format!(
        "wrote '{}': output '{}' float32 {}{}\n",
        args.output.display(),
        circuit
            .program
            .outputs
            .first()
            .map_or("", |o| o.name.as_str()),
        shape_text(first.shape()),
        if batched {
            format!(" ({n} sample{})", if n == 1 { "" } else { "s" })
        } else {
            String::new()
        }
    );
    if first.len() <= 16 {
        let vals: Vec<String> = first.iter().map(|v| format!("{v:.6}")).collect();
        text.push_str(&format!("  [{}]\n", vals.join(", ")));
    }
    print_out(&text)
}
