//! `fhec compile`: ONNX model → quantised integer graph (the pass pipeline) → circuit program
//! with TFHE parameters (the backend) → a versioned `.fhec` file, all through the driver.
//!
//! The report says what the circuit costs and promises: bootstraps per inference, table
//! precisions, accumulator width, the chosen parameters, the failure probability per
//! bootstrap and per inference, and the predicted latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use fhec_driver::config::{CryptoConfig, QuantSummary};
use fhec_driver::report::{CircuitReport, TableRangesJson};
use fhec_driver::Hooks;
use serde::Serialize;

use super::progress::Progress;
use super::quant_args::QuantArgs;
use super::text::{circuit_text, ranges_text};
use super::{advise, json_text, print_out, ImportArgs, CALIB_HINT};

/// `--p-error` / `--global-p-error` / `--threads`, shared by every command that compiles
/// for FHE.
#[derive(Args, Debug, Clone, Default)]
pub struct CryptoArgs {
    /// Failure probability of one bootstrap (table lookup) [default: 2^-40].
    #[arg(long, value_name = "P", value_parser = parse_probability, conflicts_with = "global_p_error", help_heading = "FHE")]
    pub p_error: Option<f64>,
    /// Failure probability of a whole inference (split evenly over its bootstraps).
    #[arg(long, value_name = "P", value_parser = parse_probability, help_heading = "FHE")]
    pub global_p_error: Option<f64>,
    /// Threads the latency prediction assumes [default: the threads of this machine].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..), help_heading = "FHE")]
    pub threads: Option<u32>,
    /// Put every bootstrap on one parameter set instead of one set per class of lookups
    /// (table precision, max-pool comparisons, bit extractions of exact rounding).
    #[arg(long, help_heading = "FHE")]
    pub single_param_set: bool,
    /// Keep every parameter set on the one big key ciphertexts live under (each reading it
    /// in its own ring shape) instead of letting a class take a big key of its own, whose
    /// outputs are keyswitched back.
    #[arg(long, help_heading = "FHE", conflicts_with = "single_param_set")]
    pub shared_big_key: bool,
    /// Largest server key (expanded, all parameter sets) the compiler may choose, MiB.
    #[arg(long, value_name = "MIB", value_parser = parse_mib, help_heading = "FHE")]
    pub max_server_key_mib: Option<f64>,
}

fn parse_mib(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
        _ => Err(format!(
            "'{s}' is not a positive size in MiB (for example 512)"
        )),
    }
}

pub(crate) fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a probability"))?;
    if !(p > 0.0 && p < 0.5) {
        return Err(format!(
            "{s} is not a failure probability in (0, 0.5) (for example 0.008 or 1e-12)"
        ));
    }
    Ok(p)
}

impl CryptoArgs {
    /// The options as the driver takes them.
    pub fn config(&self) -> CryptoConfig {
        CryptoConfig {
            p_error: self.p_error,
            global_p_error: self.global_p_error,
            threads: self.threads,
            single_param_set: self.single_param_set,
            shared_big_key: self.shared_big_key,
            max_server_key_mib: self.max_server_key_mib,
        }
    }
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The ONNX model to compile.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Where to write the circuit.
    #[arg(long, short = 'o', value_name = "MODEL.fhec")]
    pub output: PathBuf,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub crypto: CryptoArgs,
    #[command(flatten)]
    pub import: ImportArgs,
}

#[derive(Serialize, Debug)]
struct CompileJson {
    model: String,
    output: String,
    quantization: QuantSummary,
    target: String,
    #[serde(flatten)]
    circuit: CircuitReport,
    table_ranges: TableRangesJson,
    circuit_bytes: u64,
    compile_s: f64,
    /// Where the compile time went, in order: loading, each pass, lowering, parameter search,
    /// writing.
    phases: Vec<PhaseJson>,
}

#[derive(Serialize, Debug, Clone)]
struct PhaseJson {
    phase: &'static str,
    seconds: f64,
}

/// Keeps the backend's cause chain (lowering/optimizer details) in the report.
pub fn backend_error(e: fhec_backend::BackendError) -> anyhow::Error {
    use fhec_backend::{BackendError, OptimizerError};
    match e {
        BackendError::Lower(l) => anyhow::Error::new(l),
        BackendError::Optimize(o) => match &o {
            OptimizerError::NoParameters { remedies, .. } => {
                anyhow!("{o} {}", remedy_advice(remedies))
            }
            _ => anyhow::Error::new(o),
        },
    }
}

/// The optimizer's remedies as the flags that apply them.
fn remedy_advice(remedies: &[fhec_backend::Remedy]) -> String {
    use fhec_backend::Remedy;
    let mut steps = vec![];
    let mut note = "";
    for r in remedies {
        match r {
            Remedy::FewerBits => steps.push("use fewer bits (--bits)".to_string()),
            Remedy::RoundAccumulators => steps
                .push("round accumulators to fewer bits before each lookup (--rounding-bits)".into()),
            Remedy::ApproximateRounding => steps.push(
                "approximate instead of exact rounding (--rounding-mode approximate: fewer bootstraps, each reading fewer bits)"
                    .into(),
            ),
            Remedy::LargerFailureProbability { per_inference } => steps.push(format!(
                "allow a larger {}",
                if *per_inference { "--global-p-error" } else { "--p-error" }
            )),
            Remedy::SmallerWeights => {
                note = " (the noise factor grows with the squared weights: smaller weights also help)"
            }
        }
    }
    let mut text = match steps.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{}, or {last}", rest.join(", ")),
        None => String::new(),
    };
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    format!("{text}{note}.")
}

pub fn run(args: &CompileArgs) -> Result<()> {
    let start = Instant::now();
    if args.quant.bits.is_none() {
        bail!("compile needs --bits N (2..=8): the quantisation width of weights, activations and inputs");
    }
    // Fail on an unwritable output before the work.
    check_writable(&args.output)?;
    let mut inputs = vec![args.model.as_path()];
    inputs.extend(args.quant.calib.as_deref());
    check_not_an_input(&args.output, &inputs)?;
    let progress = Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let crypto = args.crypto.config();
    let out = fhec_driver::job::compile_model(
        &args.model,
        &args.import.options(),
        &args.quant.config(),
        &crypto,
        &hooks,
    )
    .map_err(|e| advise(e, CALIB_HINT))?;
    let written = Instant::now();
    out.circuit
        .save(&args.output)
        .with_context(|| format!("cannot write the circuit '{}'", args.output.display()))?;
    let phases = out
        .phases
        .iter()
        .copied()
        .chain([("write", written.elapsed())])
        .map(|(phase, d)| PhaseJson {
            phase,
            seconds: d.as_secs_f64(),
        })
        .collect();
    let (quant, compiled, circuit) = (&out.quant, &out.compiled, &out.circuit);
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    let report = CircuitReport::new(circuit);
    let ranges = compiled.table_ranges();
    if args.json {
        print_out(&json_text(&CompileJson {
            model: args.model.display().to_string(),
            output: args.output.display().to_string(),
            quantization: quant.summary(),
            target: crypto.describe(),
            circuit: report,
            table_ranges: ranges,
            circuit_bytes: bytes,
            compile_s: start.elapsed().as_secs_f64(),
            phases,
        }))
    } else {
        print_out(&format!(
            "wrote '{}' ({:.1} KiB) in {:.2} s\n\
             model:           {}\n\
             quantisation:    {}\n\
             table domains:   {}\n\
             target:          {}\n{}",
            args.output.display(),
            bytes as f64 / 1024.0,
            start.elapsed().as_secs_f64(),
            args.model.display(),
            quant.describe(),
            ranges_text(&ranges),
            crypto.describe(),
            circuit_text(&report)
        ))
    }
}

/// Refuses an output path that names one of the command's own input files: writing it would
/// destroy the input (e.g. `fhec keygen m.fhec --client-key m.fhec` replacing the circuit).
pub fn check_not_an_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(()); // the output does not exist yet, so it is none of the inputs
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            bail!(
                "'{}' is both an input and the output of this command; writing it would destroy \
                 the input: choose another output path",
                output.display()
            );
        }
    }
    Ok(())
}

/// Refuses an output path whose directory does not exist or cannot be written, before
/// any expensive work.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write '{}': directory '{}' does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write '{}': it is a directory", path.display());
    }
    let probe = dir.join(format!(".fhec-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write '{}': directory '{}' is not writable",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod remedy_tests {
    use super::remedy_advice;
    use fhec_backend::Remedy;

    #[test]
    fn remedies_name_the_flags_that_apply_them() {
        let text = remedy_advice(&[
            Remedy::FewerBits,
            Remedy::ApproximateRounding,
            Remedy::LargerFailureProbability {
                per_inference: true,
            },
            Remedy::SmallerWeights,
        ]);
        assert!(text.starts_with("Use fewer bits (--bits), "), "{text}");
        for flag in [
            "--rounding-mode approximate",
            ", or allow a larger --global-p-error",
        ] {
            assert!(text.contains(flag), "{text}");
        }
        assert!(text.ends_with("smaller weights also help)."), "{text}");
        let per_pbs = remedy_advice(&[Remedy::LargerFailureProbability {
            per_inference: false,
        }]);
        assert_eq!(per_pbs, "Allow a larger --p-error.");
    }
}
