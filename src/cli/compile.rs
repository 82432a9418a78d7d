//! `fhec compile`: ONNX model → quantised integer graph (the pass pipeline) → circuit program
//! with TFHE parameters (the backend) → a versioned `.fhec` file.
//!
//! The report says what the circuit costs and promises: bootstraps per inference, table
//! precisions, accumulator width, the chosen parameters, the failure probability per
//! bootstrap and per inference, and the predicted latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use fhec_backend::{CompileOptions, PErrorTarget};
use fhec_runtime::circuit::Instruction;
use fhec_runtime::{Circuit, CryptoParams};
use serde::Serialize;

use super::quant_args::{compile, load_calibration, Compiled, QuantArgs};
use super::{import_model, json_text, print_out, ImportArgs};
use crate::data::DataKeys;

/// `--p-error` / `--global-p-error`, shared by every command that compiles for FHE.
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
}

/// Default failure probability of one bootstrap.
pub const DEFAULT_P_ERROR: f64 = 9.094947017729282e-13; // 2^-40

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
    pub fn target(&self) -> PErrorTarget {
        match (self.p_error, self.global_p_error) {
            (_, Some(g)) => PErrorTarget::Global(g),
            (Some(p), None) => PErrorTarget::PerPbs(p),
            (None, None) => PErrorTarget::PerPbs(DEFAULT_P_ERROR),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
            .map(|t| t as usize)
            .unwrap_or_else(rayon::current_num_threads)
    }

    pub fn options(&self) -> CompileOptions {
        CompileOptions {
            target: self.target(),
            threads: self.threads(),
        }
    }

    pub fn describe(&self) -> String {
        match self.target() {
            PErrorTarget::PerPbs(p) => format!("p_error {p:e} per bootstrap"),
            PErrorTarget::Global(p) => format!("global p_error {p:e} per inference"),
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

/// What a compiled circuit costs and promises (`compile --json`, and part of eval/predict
/// reports).
#[derive(Serialize, Debug, Clone)]
pub struct CircuitReport {
    pub pbs_count: u64,
    /// Table lookups (elements), without the extra bootstraps of exact rounding.
    pub tlu_count: u64,
    pub max_accumulator_bits: u32,
    /// Largest table precision (bits read by a bootstrap).
    pub tlu_precision_bits: u32,
    /// Bootstraps per table precision.
    pub pbs_by_precision: std::collections::BTreeMap<u32, u64>,
    pub params: ParamsJson,
    pub p_error_per_pbs: f64,
    pub global_p_error: f64,
    pub predicted_pbs_ms: f64,
    pub predicted_latency_s: f64,
    pub threads: usize,
    pub fingerprint: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct ParamsJson {
    pub lwe_dimension: usize,
    pub glwe_dimension: usize,
    pub polynomial_size: usize,
    pub lwe_noise_std_log2: f64,
    pub glwe_noise_std_log2: f64,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
}

impl From<&CryptoParams> for ParamsJson {
    fn from(p: &CryptoParams) -> Self {
        let r = |x: f64| (x.log2() * 100.0).round() / 100.0;
        ParamsJson {
            lwe_dimension: p.lwe_dimension,
            glwe_dimension: p.glwe_dimension,
            polynomial_size: p.polynomial_size,
            lwe_noise_std_log2: r(p.lwe_noise_std),
            glwe_noise_std_log2: r(p.glwe_noise_std),
            pbs_base_log: p.pbs_base_log,
            pbs_level: p.pbs_level,
            ks_base_log: p.ks_base_log,
            ks_level: p.ks_level,
        }
    }
}

impl CircuitReport {
    pub fn new(circuit: &Circuit) -> Self {
        let program = &circuit.program;
        // Bootstraps per precision, from the same lookup classes the optimizer sizes
        // (tables, max-pool comparisons, and the 1-bit extractions of exact rounding).
        let mut pbs_by_precision = std::collections::BTreeMap::new();
        for class in fhec_runtime::noise::lookup_classes(program).unwrap_or_default() {
            *pbs_by_precision.entry(class.kind.precision).or_default() += class.elements;
            if class.kind.exact && class.kind.shift > 0 {
                *pbs_by_precision.entry(1).or_default() += class.elements * class.kind.shift as u64;
            }
        }
        let mut tlu_count = 0u64;
        let mut max_acc = 0u32;
        for (i, ins) in program.instructions.iter().enumerate() {
            let accumulator = match ins {
                Instruction::Tlu { input, .. } => {
                    tlu_count += program.values[i].len() as u64;
                    &program.values[*input]
                }
                Instruction::Dense { .. } | Instruction::Conv { .. } => &program.values[i],
                _ => continue,
            };
            max_acc = max_acc.max(fhec_ir::quant::int_bits(accumulator.min, accumulator.max));
        }
        let pred = &circuit.prediction;
        CircuitReport {
            pbs_count: pred.pbs_count,
            tlu_count,
            max_accumulator_bits: max_acc,
            tlu_precision_bits: pbs_by_precision.keys().copied().max().unwrap_or(0),
            pbs_by_precision,
            params: (&circuit.params).into(),
            p_error_per_pbs: pred.p_error_per_pbs,
            global_p_error: pred.global_p_error,
            predicted_pbs_ms: pred.pbs_latency_s * 1e3,
            predicted_latency_s: pred.latency_s,
            threads: pred.threads,
            fingerprint: circuit.params.fingerprint_hex(),
        }
    }

    /// The human-readable lines.
    pub fn text(&self) -> String {
        let precisions: Vec<String> = self
            .pbs_by_precision
            .iter()
            .map(|(b, n)| format!("{n}x{b}-bit"))
            .collect();
        let p = &self.params;
        format!(
            "bootstraps:      {} per inference ({})\n\
             accumulators:    up to {} bits; tables read up to {} bits\n\
             parameters:      n={} k={} N={} pbs 2^{}x{} ks 2^{}x{} (sigma 2^{:.1} / 2^{:.1}), fingerprint {}\n\
             failure:         {:.3e} per bootstrap, {:.3e} per inference\n\
             predicted:       {:.2} ms per bootstrap, {:.3} s per inference on {} thread(s)\n",
            self.pbs_count,
            precisions.join(", "),
            self.max_accumulator_bits,
            self.tlu_precision_bits,
            p.lwe_dimension,
            p.glwe_dimension,
            p.polynomial_size,
            p.pbs_base_log,
            p.pbs_level,
            p.ks_base_log,
            p.ks_level,
            p.lwe_noise_std_log2,
            p.glwe_noise_std_log2,
            self.fingerprint,
            self.p_error_per_pbs,
            self.global_p_error,
            self.predicted_pbs_ms,
            self.predicted_latency_s,
            self.threads,
        )
    }
}

#[derive(Serialize, Debug)]
struct CompileJson {
    model: String,
    output: String,
    quantization: super::quant_args::QuantSummary,
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

/// How the tables' input domains were chosen (`--ranges`), and what narrowing did.
#[derive(Serialize, Debug, Clone)]
pub struct TableRangesJson {
    /// `worst-case` or `observed:MARGIN`.
    pub ranges: String,
    /// Table-lookup nodes of the integer graph.
    pub tables: usize,
    /// Tables narrowed to their observed range (plus margin).
    pub narrowed: Vec<NarrowedJson>,
}

#[derive(Serialize, Debug, Clone)]
pub struct NarrowedJson {
    pub node: String,
    pub worst_case_domain: [i64; 2],
    pub domain: [i64; 2],
    pub observed: [i64; 2],
    /// Entries added on each side of the observed range.
    pub margin_entries: i64,
    pub bits_before: u32,
    pub bits_after: u32,
}

impl TableRangesJson {
    pub fn new(quant: &QuantArgs, compiled: &Compiled) -> Self {
        let tables = compiled
            .graph
            .node_ids()
            .filter(|&n| matches!(compiled.graph.node(n).op, fhec_ir::Op::Tlu(_)))
            .count();
        TableRangesJson {
            ranges: super::quant_args::ranges_text(quant.table_ranges()),
            tables,
            narrowed: compiled
                .report
                .narrowed_tables
                .iter()
                .map(|t| NarrowedJson {
                    node: t.node.clone(),
                    worst_case_domain: [t.before.0, t.before.1],
                    domain: [t.after.0, t.after.1],
                    observed: [t.observed.0, t.observed.1],
                    margin_entries: t.margin,
                    bits_before: t.bits_before,
                    bits_after: t.bits_after,
                })
                .collect(),
        }
    }

    /// One line for the text report.
    pub fn text(&self) -> String {
        if self.narrowed.is_empty() {
            return format!(
                "{}: every table covers its worst-case input range",
                self.ranges
            );
        }
        let bits: Vec<String> = self
            .narrowed
            .iter()
            .map(|t| format!("{}->{}", t.bits_before, t.bits_after))
            .collect();
        format!(
            "{}: {} of {} tables narrowed to the calibration range plus margin (input bits {}); \
             an input outside reads a wrong (wrapped) entry",
            self.ranges,
            self.narrowed.len(),
            self.tables,
            bits.join(", ")
        )
    }
}

/// Loads calibration data for a command that compiles (`--calib`, required unless QAT).
pub fn calibration_for(
    graph: &fhec_ir::Graph,
    quant: &QuantArgs,
    model: &Path,
) -> Result<Vec<Vec<fhec_ir::Tensor>>> {
    Ok(match &quant.calib {
        Some(path) => {
            load_calibration(
                path,
                &DataKeys::default(),
                graph,
                model,
                quant.calib_limit,
                true,
                &mut |line| eprintln!("{line}"),
            )?
            .samples
        }
        None => vec![],
    })
}

/// Quantises `graph` through the pipeline and compiles the result into a circuit.
pub fn compile_circuit(
    graph: &fhec_ir::Graph,
    quant: &QuantArgs,
    crypto: &CryptoArgs,
    calibration: Vec<Vec<fhec_ir::Tensor>>,
    model: &Path,
    output_names: &[String],
    calib_hint: &str,
) -> Result<(Compiled, Circuit, fhec_backend::BackendTimings)> {
    if quant.bits.is_none() {
        bail!("FHE needs a quantised model: pass --bits N (2..=8)");
    }
    let compiled = compile(graph, quant, calibration, model, calib_hint)?;
    let (mut circuit, timings) = fhec_backend::compile_timed(&compiled.graph, &crypto.options())
        .map_err(backend_error)
        .with_context(|| {
            format!(
                "cannot compile '{}' to a circuit ({}; {})",
                model.display(),
                quant.describe(),
                crypto.describe()
            )
        })?;
    // Outputs keep the model's names (the lowering names them after their last node).
    for (spec, name) in circuit.program.outputs.iter_mut().zip(output_names) {
        spec.name = name.clone();
    }
    circuit.postprocessing = compiled
        .report
        .postprocessing
        .iter()
        .filter(|p| !matches!(p.op, fhec_ir::Op::Identity))
        .map(|p| client_op(p.output, &p.op))
        .collect::<Result<_>>()?;
    Ok((compiled, circuit, timings))
}

/// The client-side post-processing of the pipeline report in the runtime's terms.
fn client_op(output: usize, op: &fhec_ir::Op) -> Result<fhec_runtime::circuit::ClientOp> {
    use fhec_runtime::circuit::{ClientOp, ClientStep};
    let step = match op {
        fhec_ir::Op::Softmax { axis } => ClientStep::Softmax { axis: *axis },
        fhec_ir::Op::Reshape { shape } => ClientStep::Reshape {
            shape: shape.clone(),
        },
        fhec_ir::Op::Transpose { perm } => ClientStep::Transpose { perm: perm.clone() },
        other => bail!(
            "client post-processing op {} has no runtime equivalent",
            other.name()
        ),
    };
    Ok(ClientOp { output, step })
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
    let model = import_model(&args.model, &args.import)?;
    let imported = start.elapsed();
    // `--rounding-bits auto`: chosen on a validation slice of the (labelled) --calib file.
    let quant = &match (&args.quant.rounding_bits, &args.quant.calib) {
        (Some(crate::cli::quant_args::RoundingBits::Auto { .. }), None) => bail!(
            "--rounding-bits auto needs labelled data to choose on: pass --calib D.npz (with \
             labels; its val split, or a part of its train split, scores the widths)"
        ),
        (_, Some(calib)) => crate::cli::tune::resolve_auto_rounding(
            &model.graph,
            &args.model,
            &args.quant,
            &args.crypto,
            calib,
            &DataKeys::default(),
        )?,
        (_, None) => args.quant.clone(),
    };
    let calibration = calibration_for(&model.graph, quant, &args.model)?;
    let loaded = start.elapsed();
    let (compiled, circuit, timings) = compile_circuit(
        &model.graph,
        quant,
        &args.crypto,
        calibration,
        &args.model,
        &model.output_names,
        "pass --calib FILE (representative inputs: a .npz train split, .csv or .npy)",
    )?;
    let compiled_at = start.elapsed();
    circuit
        .save(&args.output)
        .with_context(|| format!("cannot write the circuit '{}'", args.output.display()))?;
    let mut phases = vec![
        ("import", imported),
        ("load calibration data", loaded - imported),
    ];
    phases.extend(compiled.report.passes.iter().map(|p| (p.pass, p.elapsed)));
    phases.push(("lowering", timings.lowering));
    phases.push(("parameter search", timings.parameter_search));
    phases.push(("write", start.elapsed() - compiled_at));
    let phases = phases
        .into_iter()
        .map(|(phase, d)| PhaseJson {
            phase,
            seconds: d.as_secs_f64(),
        })
        .collect();
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    let report = CircuitReport::new(&circuit);
    let ranges = TableRangesJson::new(quant, &compiled);
    if args.json {
        print_out(&json_text(&CompileJson {
            model: args.model.display().to_string(),
            output: args.output.display().to_string(),
            quantization: quant.summary(),
            target: args.crypto.describe(),
            circuit: report,
            table_ranges: ranges,
            circuit_bytes: bytes,
            compile_s: start.elapsed().as_secs_f64(),
            phases,
        })?)
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
            ranges.text(),
            args.crypto.describe(),
            report.text()
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
