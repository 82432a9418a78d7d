//! Image-scale benchmark: per-image time of float, clear (integer) and simulated execution,
//! and compile time by phase, on the 128x128 RGB CNN of `tests/fixtures/scale/` (four
//! stride-2 convolutions and a linear layer, 51,512 table lookups per image) with its
//! MedMNIST-layout data (300 train images calibrate, 40 test images are run).
//!
//! ```text
//! cargo bench --bench image_scale                      # 6 bits, rounding 6, every thread
//! cargo bench --bench image_scale -- --threads 1 --runs 5
//! ```
//! Runs the built `fhec` (like the other benchmarks): `fhec compile --json` gives the compile
//! phases, `fhec eval --mode simulate --json` the float, clear and simulate times over the test
//! images (the fastest of `--runs` runs each). Results: a table, then one JSON line starting
//! with `{"bench"`. The goals: clear and simulate within 3x of float per image, compile with
//! 300 calibration images under 5 s.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use serde_json::Value;

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
    /// Threads (RAYON_NUM_THREADS of the runs) [default: all].
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

fn fhec(args: &Args, threads: usize, argv: &[String]) -> Result<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(argv)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .context("running fhec")?;
    if !out.status.success() {
        bail!(
            "fhec {} failed on {}: {}",
            argv.join(" "),
            args.model.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("fhec --json output")
}

fn number(v: &Value, path: &[&str]) -> Result<f64> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .with_context(|| format!("no number at {} in the JSON output", path.join(".")))
}

fn quant_args(args: &Args) -> Vec<String> {
    let mut v = vec![
        "--bits".to_string(),
        args.bits.to_string(),
        "--calib".into(),
        args.data.display().to_string(),
        "--calib-limit".into(),
        args.calib_limit.to_string(),
    ];
    if args.rounding_bits > 0 {
        v.extend(["--rounding-bits".into(), args.rounding_bits.to_string()]);
    }
    v
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
    let dir = tempfile::tempdir()?;
    let circuit = dir.path().join("model.fhec");
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
        let mut argv = vec!["compile".to_string(), args.model.display().to_string()];
        argv.extend(quant_args(&args));
        argv.extend(["--json".into(), "-o".into(), circuit.display().to_string()]);
        let c = fhec(&args, threads, &argv)?;
        let compile_s = number(&c, &["compile_s"])?;
        if compile_s < report.compile_s {
            report.compile_s = compile_s;
            report.tlu_count = number(&c, &["tlu_count"])? as u64;
            report.phases = c["phases"]
                .as_array()
                .context("no phases in `fhec compile --json`")?
                .iter()
                .map(|p| {
                    let name = p["phase"].as_str().unwrap_or("?").to_string();
                    (name, p["seconds"].as_f64().unwrap_or(f64::NAN))
                })
                .collect();
        }

        let mut argv = vec!["eval".to_string(), args.model.display().to_string()];
        argv.extend(["--data".into(), args.data.display().to_string()]);
        argv.extend(["--mode".into(), "simulate".into(), "--json".into()]);
        argv.extend(quant_args(&args));
        let e = fhec(&args, threads, &argv)?;
        let n = number(&e, &["samples"])?;
        report.samples = n as usize;
        report.calibration_samples = number(&e, &["calibration_samples"])? as usize;
        let per = |key: &str| number(&e, &["timings_ms", key]).map(|ms| ms / n);
        report.float_ms_per_image = report.float_ms_per_image.min(per("float")?);
        report.clear_ms_per_image = report.clear_ms_per_image.min(per("clear")?);
        report.simulate_ms_per_image = report.simulate_ms_per_image.min(per("simulate")?);
        report.float_accuracy = number(&e, &["float_accuracy"])?;
        report.clear_accuracy = number(&e, &["clear_accuracy"])?;
        report.simulate_accuracy = number(&e, &["accuracy"])?;
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
