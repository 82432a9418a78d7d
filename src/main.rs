//! `fhec`: the command-line driver.
//!
//! `main` parses the command line (clap), dispatches to one module per command under
//! [`cli`], and turns every failure — including an unexpected panic — into an
//! `error: ...` report on stderr with exit code 2.

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Parser, Subcommand};

/// See the `mimalloc` note in Cargo.toml: large tensors are reused instead of re-faulted.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod plot;

/// Compile ONNX neural networks into TFHE circuits and run them on encrypted data.
#[derive(Parser, Debug)]
#[command(name = "fhec", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe an ONNX model: inputs, outputs, ops, parameters, the lifted IR and
    /// anything fhec cannot import (exit code 2 when the model is not supported).
    Inspect(cli::inspect::InspectArgs),
    /// Run a model on inputs from .npy files and write its first output to a .npy file
    /// (float, or quantised and executed in the clear with --mode clear).
    Predict(cli::predict::PredictArgs),
    /// Accuracy of a model on a labelled dataset, float and quantised (clear), with the
    /// circuit's cost: table lookups, accumulator widths, pruned neurons.
    Eval(cli::eval::EvalArgs),
    /// Compile a model to an FHE circuit (.fhec): quantise, lower, choose TFHE parameters
    /// for the failure probability you set; prints cost, parameters and predicted latency.
    Compile(cli::compile::CompileArgs),
    /// Generate a client (secret) key and a server (evaluation) key for a circuit.
    Keygen(cli::fhe::KeygenArgs),
    /// Quantise and encrypt inputs (.npy) for a circuit with the client key.
    Encrypt(cli::fhe::EncryptArgs),
    /// Run a circuit on encrypted inputs with the server key (no secret needed).
    Run(cli::fhe::RunArgs),
    /// Decrypt a circuit's encrypted outputs with the client key and write them as .npy.
    Decrypt(cli::fhe::DecryptArgs),
    /// Evaluate a model over datasets x bits x rounding x p_error (x pruning): one CSV and
    /// JSON-lines row per configuration (accuracies, cost, parameters, latency); resumable.
    Sweep(cli::sweep::SweepArgs),
    /// Find the fastest configuration (bits, rounding, p_error, pruning rate) whose simulated
    /// accuracy on a validation slice reaches a target; writes its circuit and every
    /// candidate's record; resumable.
    Tune(cli::tune::TuneArgs),
    /// Prune a float model by rate (as --prune-rate does before quantisation) and write it
    /// back as ONNX, to fine-tune it in its framework.
    Prune(cli::prune::PruneArgs),
    /// Draw accuracy and latency plots of `fhec sweep` result CSVs (PNG and SVG).
    Plot(cli::plot::PlotArgs),
}

/// Exit code of every failure (clap's usage errors use the same).
const FAILURE: u8 = 2;

/// Message of the last panic, recorded by the panic hook for the error report.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    let cli = Cli::parse();
    panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(format!("{msg}{at}"));
        }
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(cli))).unwrap_or_else(|_| {
        let msg = PANIC_MESSAGE
            .lock()
            .ok()
            .and_then(|mut m| m.take())
            .unwrap_or_else(|| "unknown panic".into());
        Err(anyhow::anyhow!(
            "internal error (this is a bug in fhec, please report it): {msg}"
        ))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(FAILURE)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => cli::inspect::run(&args),
        Command::Predict(args) => cli::predict::run(&args),
        Command::Eval(args) => cli::eval::run(&args),
        Command::Compile(args) => cli::compile::run(&args),
        Command::Keygen(args) => cli::fhe::keygen(&args),
        Command::Encrypt(args) => cli::fhe::encrypt(&args),
        Command::Run(args) => cli::fhe::run(&args),
        Command::Decrypt(args) => cli::fhe::decrypt(&args),
        Command::Sweep(args) => cli::sweep::run(&args),
        Command::Tune(args) => cli::tune::run(&args),
        Command::Prune(args) => cli::prune::run(&args),
        Command::Plot(args) => cli::plot::run(&args),
    }
}

/// Prints `error: <message>` and one `caused by:` line per underlying cause.
fn report(e: &anyhow::Error) {
    use std::io::Write;
    let mut text = format!("error: {e}\n");
    for cause in e.chain().skip(1) {
        text.push_str(&format!("  caused by: {cause}\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}
