//! `fhec eval`: accuracy of a model on a labelled dataset, in float and quantised (clear)
//! execution, simulated or encrypted, with what quantisation costs: table lookups,
//! accumulator widths per layer, pruned neurons, ops before and after the pipeline. The
//! evaluation is the driver's ([`fhec_driver::evaluate`]); info and progress lines go to
//! stderr, the report (or, with `--json`, one JSON object) to stdout.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use fhec_driver::config::QuantConfig;
use fhec_driver::data::DataKeys;
use fhec_driver::eval::{EvalMode, EvalReport, EvalRequest};
use fhec_driver::{Compiled, Hooks};

use super::compile::CryptoArgs;
use super::progress::Progress;
use super::quant_args::QuantArgs;
use super::text::{circuit_text, histogram_text, layers_table};
use super::{advise, json_text, print_out, ImportArgs, DATA_CALIB_HINT};

#[derive(Args, Debug)]
#[command(after_long_help = super::layout_note())]
pub struct EvalArgs {
    /// The ONNX model to evaluate.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Labelled data (.npz, .csv, .tsv); its test split is evaluated (layouts below).
    /// Samples stored NCHW for a model taking NHWC images are transposed automatically.
    #[arg(long, value_name = "D.npz")]
    pub data: PathBuf,
    /// The .npz array holding the test features (read verbatim).
    #[arg(long, value_name = "KEY")]
    pub x_key: Option<String>,
    /// The .npz array (or CSV column) holding the labels.
    #[arg(long, value_name = "KEY")]
    pub y_key: Option<String>,
    /// float: the float model only; clear: also the quantised model (needs --bits);
    /// simulate / fhe: also the compiled circuit, simulated or encrypted.
    /// [default: clear with --bits, float without]
    #[arg(long, value_enum)]
    pub mode: Option<EvalMode>,
    /// Evaluate only the first K test samples.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Seed of the simulation's noise (simulate mode).
    #[arg(long, default_value = "0")]
    pub seed: u64,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub crypto: CryptoArgs,
    #[command(flatten)]
    pub import: ImportArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let mode = args.mode.unwrap_or(if args.quant.bits.is_some() {
        EvalMode::Clear
    } else {
        EvalMode::Float
    });
    if mode != EvalMode::Float && args.quant.bits.is_none() {
        bail!(
            "--mode {} needs --bits N (2..=8): the quantisation width of weights, activations and inputs",
            mode.name()
        );
    }
    let progress = Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let request = EvalRequest {
        model: &args.model,
        import: args.import.options(),
        data: &args.data,
        keys: DataKeys {
            x_key: args.x_key.clone(),
            y_key: args.y_key.clone(),
        },
        mode,
        limit: args.limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        seed: args.seed,
        quant: args.quant.config(),
        crypto: args.crypto.config(),
    };
    let evaluation =
        fhec_driver::evaluate(&request, &hooks).map_err(|e| advise(e, DATA_CALIB_HINT))?;
    drop(sink);
    if args.json {
        print_out(&json_text(&evaluation.report))
    } else {
        print_out(&render_text(
            &evaluation.report,
            evaluation.compiled.as_ref(),
            &evaluation.quant,
        ))
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The human-readable report.
pub fn render_text(r: &EvalReport, c: Option<&Compiled>, q: &QuantConfig) -> String {
    let mut o = String::new();
    write_setup(&mut o, r, c, q);
    write_accuracies(&mut o, r);
    write_circuit(&mut o, r);
    if c.is_some() {
        write_quantisation(&mut o, r);
    }
    write_timings(&mut o, r);
    o
}

/// What was evaluated: model, data, layout, calibration, mode, quantisation, samples.
fn write_setup(o: &mut String, r: &EvalReport, c: Option<&Compiled>, q: &QuantConfig) {
    let _ = writeln!(o, "model:        {}", r.model);
    let _ = writeln!(o, "data:         {}", r.data);
    if let Some(l) = &r.layout {
        let _ = writeln!(o, "layout:       {l}");
    }
    if let Some(cal) = &r.calibration {
        let _ = writeln!(o, "calibration:  {cal} ({} samples)", r.calibration_samples);
    } else if c.is_some() {
        let _ = writeln!(o, "calibration:  none");
    }
    let _ = writeln!(o, "mode:         {}", r.mode);
    let _ = writeln!(o, "quantisation: {}", q.describe());
    let _ = writeln!(o, "samples:      {}", r.samples);
    let _ = writeln!(o);
}

/// Float, clear and quantised (simulated / FHE) accuracies and agreements.
fn write_accuracies(o: &mut String, r: &EvalReport) {
    let n = r.samples;
    let _ = writeln!(
        o,
        "float accuracy:      {:.4} ({}/{n}, {})",
        r.float_accuracy,
        r.float_correct,
        pct(r.float_accuracy)
    );
    if let Some(clear) = r.clear_accuracy {
        let _ = writeln!(o, "clear accuracy:      {clear:.4} ({})", pct(clear));
    }
    if let Some(k) = r.samples_outside_table_domain.filter(|&k| k > 0) {
        let _ = writeln!(
            o,
            "left a table domain: {k}/{n} samples (tables on observed ranges: such a lookup \
             reads a wrapped entry, in FHE too)"
        );
    }
    if let (Some(acc), Some(agree)) = (r.quantized_accuracy, r.agreement) {
        let label = match r.mode {
            "simulate" => "simulated accuracy: ",
            "fhe" => "FHE accuracy:       ",
            _ => "quantised accuracy: ",
        };
        let _ = writeln!(
            o,
            "{label} {acc:.4} ({}/{n}, {}, {:+.2} points)",
            r.correct,
            pct(acc),
            100.0 * (acc - r.float_accuracy)
        );
        let _ = writeln!(
            o,
            "agreement:           {agree:.4} ({}/{n} argmax equal to float)",
            (agree * n as f64).round() as usize
        );
    }
    if let Some(ca) = r.clear_agreement {
        let _ = writeln!(
            o,
            "agreement with clear: {ca:.4} ({}/{n} argmax equal to the clear quantised model)",
            (ca * n as f64).round() as usize
        );
    }
}

/// The compiled circuit's summary and, in FHE mode, the key and per-sample timings.
fn write_circuit(o: &mut String, r: &EvalReport) {
    if let Some(c) = &r.circuit {
        let _ = writeln!(o, "\ncircuit:");
        o.push_str(&circuit_text(c));
    }
    if let Some(t) = &r.fhe_timings {
        let _ = writeln!(
            o,
            "FHE timings:     keygen {:.2} s, server key expansion {:.2} s; per sample: encrypt {:.3} s, run {:.3} s, decrypt {:.4} s",
            t.keygen_s,
            t.server_key_s,
            t.encrypt_s,
            t.run_s,
            t.decrypt_s
        );
    }
}

/// What quantisation costs: table lookups, accumulator widths, rounding, client
/// post-processing, pruned neurons, ops before and after the pipeline.
fn write_quantisation(o: &mut String, r: &EvalReport) {
    let _ = writeln!(o);
    if let Some(t) = r.tlu_count {
        let _ = writeln!(o, "table lookups:       {t} per inference");
    }
    if let Some(b) = r.max_accumulator_bits {
        let _ = writeln!(o, "max accumulator:     {b} bits (worst case)");
    }
    match &r.rounding {
        Some(ro) => {
            let _ = writeln!(
                o,
                "rounding:            top {} bits ({}), {} table(s) narrowed",
                ro.bits, ro.mode, ro.tables_rounded
            );
        }
        None => {
            let _ = writeln!(o, "rounding:            none");
        }
    }
    if r.postprocessing.is_empty() {
        let _ = writeln!(o, "client post-proc.:   none");
    } else {
        let ops: Vec<String> = r
            .postprocessing
            .iter()
            .map(|p| format!("output {}: {}{} ({})", p.output, p.op, p.attrs, p.node))
            .collect();
        let _ = writeln!(o, "client post-proc.:   {}", ops.join("; "));
    }
    if !r.layers.is_empty() {
        let _ = writeln!(
            o,
            "\naccumulator bits per layer (worst case / observed on calibration):"
        );
        o.push_str(&layers_table(&r.layers));
    }
    if r.pruned.is_empty() {
        let _ = writeln!(o, "\npruned neurons:      none");
    } else {
        let _ = writeln!(o, "\npruned neurons:");
        for p in &r.pruned {
            let _ = writeln!(
                o,
                "  {}: {} -> {} ({} constant, {} dead)",
                p.layer, p.before, p.after, p.constant, p.dead
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "ops before ({} nodes): {}",
        r.nodes_before,
        histogram_text(&r.ops_before)
    );
    if let (Some(after), Some(na)) = (&r.ops_after, r.nodes_after) {
        let _ = writeln!(o, "ops after  ({na} nodes): {}", histogram_text(after));
    }
}

/// The closing `timings:` line: each phase's wall time, per sample where it scales.
fn write_timings(o: &mut String, r: &EvalReport) {
    let n = r.samples;
    let t = &r.timings_ms;
    let mut times = vec![
        format!("import {:.0} ms", t.import),
        format!("data {:.0} ms", t.load_data),
    ];
    if let Some(c) = t.compile {
        times.push(format!("compile {c:.0} ms"));
    }
    times.push(format!("float {:.0} ms", t.float));
    if let Some(c) = t.clear {
        times.push(format!(
            "clear {c:.0} ms ({:.2} ms/sample)",
            c / n.max(1) as f64
        ));
    }
    if let Some(c) = t.simulate {
        times.push(format!(
            "simulate {c:.0} ms ({:.2} ms/sample)",
            c / n.max(1) as f64
        ));
    }
    if let Some(c) = t.fhe {
        times.push(format!("fhe {:.1} s", c / 1e3));
    }
    times.push(format!("total {:.0} ms", t.total));
    let _ = writeln!(o, "\ntimings: {}", times.join(", "));
}
