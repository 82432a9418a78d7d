//! Image-scale benchmark: per-image time of float, clear (integer) and simulated execution,
//! and compile time by phase, on the 128x128 RGB CNN of `tests/fixtures/scale/` (four
//! stride-2 convolutions and a linear layer, 51,512 table lookups per image) with its
//! MedMNIST-layout data (300 train images calibrate, 40 test images are run).
//!
//! ```text
//! cargo bench --bench image_scale                      # 6 bits, rounding 6, every thread
//! cargo bench --bench image_scale -- --threads 1 --runs 5
//! ```
//! Calls the driver as `fhec` does: [`fhec_driver::job::compile_model`] gives the compile
//! phases, [`fhec_driver::evaluate`] in simulate mode the float, clear and simulate times over
//! the test images (the fastest of `--runs` runs each). Results: a table, then one JSON line starting
//! with `{"bench"`. The goals: clear and simulate within 3x of float per image, compile with
//! 300 calibration images under 5 s.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use fhec_driver::config::RoundingBits;
use fhec_driver::eval::{EvalMode, EvalRequest};
use fhec_driver::{CryptoConfig, Hooks, QuantConfig};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "Image-scale benchmark: float/clear/simulate per image, compile phases")]
struct Args {
    #[arg(long, default_value = "tests/fixtures/scale/cnn_torch_rgb_128.onnx")]
    model: PathBuf,
    #[arg(
        long,
        default_value = "tests/fixtures/data/digits_medmnist_rgb_128.npz"
    )]
    data: PathBuf,
    #[arg(long, default_value_t = 6)]
    bits: u32,
    #[arg(long, default_value_t = 6)]
    rounding_bits: u32,
    /// Calibration images (from the train split).
    #[arg(long, default_value_t = 300)]
    calib_limit: usize,
    /// Threads of the runs [default: all].
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions; the fastest of each measurement is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Passed by `cargo bench`; without it the binary only prints how to run it.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Serialize, Debug, Default)]
struct Report {
    bench: &'static str,
    model: String,
    bits: u32,
    rounding_bits: u32,
    threads: usize,
    samples: usize,
    calibration_samples: usize,
    float_ms_per_image: f64,
    clear_ms_per_image: f64,
    simulate_ms_per_image: f64,
    clear_over_float: f64,
    simulate_over_float: f64,
    compile_s: f64,
    phases: Vec<(String, f64)>,
    tlu_count: u64,
    clear_accuracy: f64,
    simulate_accuracy: f64,
    float_accuracy: f64,
}

fn quant(args: &Args) -> QuantConfig {
    QuantConfig {
        rounding_bits: (args.rounding_bits > 0).then_some(RoundingBits::Keep(args.rounding_bits)),
        calib: Some(args.data.clone()),
        calib_limit: args.calib_limit,
        ..QuantConfig::bits(args.bits)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bench {
        println!(
            "image_scale: run with `cargo bench --bench image_scale` (`-- --help` for options)"
        );
        return Ok(());
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let hooks = Hooks {
        threads: Some(threads),
        ..Hooks::silent()
    };
    let crypto = CryptoConfig {
        threads: Some(u32::try_from(threads)?),
        ..Default::default()
    };
    let mut report = Report {
        bench: "image_scale",
        model: args.model.display().to_string(),
        bits: args.bits,
        rounding_bits: args.rounding_bits,
        threads,
        float_ms_per_image: f64::INFINITY,
        clear_ms_per_image: f64::INFINITY,
        simulate_ms_per_image: f64::INFINITY,
        compile_s: f64::INFINITY,
        ..Default::default()
    };
    for _ in 0..args.runs.max(1) {
        let t = std::time::Instant::now();
        let c = hooks.install(|| {
            fhec_driver::job::compile_model(
                &args.model,
                &Default::default(),
                &quant(&args),
                &crypto,
                &hooks,
            )
            .map_err(anyhow::Error::new)
        })??;
        let compile_s = t.elapsed().as_secs_f64();
        if compile_s < report.compile_s {
            report.compile_s = compile_s;
            report.tlu_count = fhec_driver::report::CircuitReport::new(&c.circuit).tlu_count;
            report.phases = c
                .phases
                .iter()
                .map(|(name, d)| (name.to_string(), d.as_secs_f64()))
                .collect();
        }

        let request = EvalRequest {
            model: &args.model,
            import: Default::default(),
            data: &args.data,
            keys: Default::default(),
            mode: EvalMode::Simulate,
            limit: None,
            seed: 0,
            quant: quant(&args),
            crypto: crypto.clone(),
        };
        let e = fhec_driver::evaluate(&request, &hooks)?.report;
        let n = e.samples as f64;
        report.samples = e.samples;
        report.calibration_samples = e.calibration_samples;
        let per = |ms: Option<f64>| ms.map(|ms| ms / n).context("a mode did not run");
        let t = &e.timings_ms;
        report.float_ms_per_image = report.float_ms_per_image.min(t.float / n);
        report.clear_ms_per_image = report.clear_ms_per_image.min(per(t.clear)?);
        report.simulate_ms_per_image = report.simulate_ms_per_image.min(per(t.simulate)?);
        report.float_accuracy = e.float_accuracy;
        report.clear_accuracy = e.clear_accuracy.context("no clear accuracy")?;
        report.simulate_accuracy = e.accuracy;
    }
    report.clear_over_float = report.clear_ms_per_image / report.float_ms_per_image;
    report.simulate_over_float = report.simulate_ms_per_image / report.float_ms_per_image;

    println!(
        "{} at {} bits, rounding {}, {} thread(s); {} test images, {} calibration images",
        report.model,
        args.bits,
        args.rounding_bits,
        threads,
        report.samples,
        report.calibration_samples
    );
    println!("  lookups per image   {}", report.tlu_count);
    for (what, ms, acc) in [
        ("float", report.float_ms_per_image, report.float_accuracy),
        ("clear", report.clear_ms_per_image, report.clear_accuracy),
        (
            "simulate",
            report.simulate_ms_per_image,
            report.simulate_accuracy,
        ),
    ] {
        println!(
            "  {what:<9} {ms:9.2} ms/image  ({:5.1}x float)  accuracy {acc:.4}",
            ms / report.float_ms_per_image
        );
    }
    println!("  compile   {:9.2} s", report.compile_s);
    for (phase, s) in &report.phases {
        println!("    {phase:<24} {s:8.3} s");
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
