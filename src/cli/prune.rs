//! `fhec prune MODEL --prune-rate R --calib D -o pruned.onnx`: the float model pruned as
//! `--prune-rate` prunes it before quantisation (exact pruning, then by rate), written back as
//! ONNX so it can be fine-tuned in its framework and compiled again.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fhec_driver::config::QuantConfig;
use fhec_driver::data::DataKeys;
use fhec_driver::predict::{correct, float_predictions};
use fhec_driver::samples::{load_calibration, load_test_set, single_input};
use fhec_driver::sweep::table::write_atomic;
use fhec_driver::Hooks;
use serde::Serialize;

use super::compile::check_not_an_input;
use super::quant_args::{parse_prune_rates, parse_threshold, PruneMethod, PruneRates};
use super::{advise, import_model, json_text, print_out, ImportArgs, CALIB_HINT};

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The float ONNX model to prune.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Where to write the pruned model (ONNX, opset 20, any batch size).
    #[arg(short = 'o', long = "output", value_name = "OUT.onnx")]
    pub output: PathBuf,
    /// Remove the fraction R (0 <= R < 1) of the neurons of every prunable layer, or
    /// `R1:R2:...` one rate per layer (see `eval --help`).
    #[arg(long, value_name = "R|R1:R2:...", value_parser = parse_prune_rates)]
    pub prune_rate: PruneRates,
    /// How neurons are chosen and replaced.
    #[arg(long, value_enum, value_name = "METHOD", default_value = "refit")]
    pub prune_method: PruneMethod,
    /// A weight counts as zero when |w| <= T.
    #[arg(long, value_name = "T", value_parser = parse_threshold, default_value = "0")]
    pub prune_threshold: f32,
    /// Calibration data (the means and fits are taken on it): .npz train split, .csv, .npy.
    #[arg(long, value_name = "FILE")]
    pub calib: PathBuf,
    /// Use at most K calibration samples (the first K).
    #[arg(long, value_name = "K", default_value = "500", value_parser = clap::value_parser!(u64).range(1..))]
    pub calib_limit: u64,
    /// Labelled data: report the float accuracy before and after pruning on its test split.
    #[arg(long, value_name = "D.npz")]
    pub data: Option<PathBuf>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub import: ImportArgs,
}

#[derive(Serialize)]
struct PruneReport {
    model: String,
    output: String,
    prune_rate: Vec<f32>,
    prune_method: &'static str,
    layers: Vec<LayerReport>,
    /// Float accuracy on `--data`'s test split before and after.
    accuracy_before: Option<f64>,
    accuracy_after: Option<f64>,
    bytes: u64,
}

#[derive(Serialize)]
struct LayerReport {
    layer: String,
    before: usize,
    after: usize,
    by_rate: usize,
    constant: usize,
    dead: usize,
    /// The neurons removed, numbered as in the input model's layer.
    removed: Vec<usize>,
}

pub fn run(args: &PruneArgs) -> Result<()> {
    check_not_an_input(&args.output, &[&args.model, &args.calib])?;
    let model = import_model(&args.model, &args.import)?;
    let graph = &model.graph;
    let limit = usize::try_from(args.calib_limit).unwrap_or(usize::MAX);
    let progress = super::progress::Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let advise = |e| advise(e, CALIB_HINT);
    let calibration = load_calibration(
        &args.calib,
        &DataKeys::default(),
        graph,
        &args.model,
        limit,
        true,
        &hooks,
    )
    .map_err(advise)?;
    let options = QuantConfig {
        prune_threshold: args.prune_threshold,
        prune_rate: Some(args.prune_rate.0.clone()),
        prune_method: args.prune_method,
        ..Default::default()
    };
    let calibrated =
        fhec_driver::compile::calibrate(graph, &options, calibration.samples, &args.model)
            .map_err(advise)
            .with_context(|| format!("cannot prune '{}'", args.model.display()))?;
    let (pruned, pipeline) = (calibrated.graph(), calibrated.report());
    if pipeline.pruned.is_empty() {
        bail!(
            "'{}' has no prunable layer (a Gemm or Conv feeding another through per-channel \
             ops): nothing to write",
            args.model.display()
        );
    }
    let onnx = fhec_frontend::export::export(pruned, &model.output_names, "fhec prune")
        .with_context(|| format!("cannot write '{}' as ONNX", args.model.display()))?;
    let bytes = prost::Message::encode_to_vec(&onnx);
    write_atomic(&args.output, &bytes)?;

    let (accuracy_before, accuracy_after) = match &args.data {
        None => (None, None),
        Some(d) => {
            let (input, fact) = single_input(graph, &args.model).map_err(advise)?;
            let test = load_test_set(d, &DataKeys::default(), None, input, fact).map_err(advise)?;
            let n = test.labels.len() as f64;
            let acc = |g| -> Result<f64> {
                let preds = float_predictions(g, &test.samples, &hooks).map_err(advise)?;
                Ok(correct(&preds, &test.labels) as f64 / n)
            };
            (Some(acc(graph)?), Some(acc(pruned)?))
        }
    };
    let report = PruneReport {
        model: args.model.display().to_string(),
        output: args.output.display().to_string(),
        prune_rate: args.prune_rate.0.clone(),
        prune_method: args.prune_method.name(),
        layers: pipeline
            .pruned
            .iter()
            .map(|p| LayerReport {
                layer: p.layer.clone(),
                before: p.before,
                after: p.after,
                by_rate: p.by_rate,
                constant: p.constant,
                dead: p.dead,
                removed: p.removed.clone(),
            })
            .collect(),
        accuracy_before,
        accuracy_after,
        bytes: bytes.len() as u64,
    };
    if args.json {
        return print_out(&json_text(&report));
    }
    let mut text = format!(
        "wrote '{}' ({:.1} KiB): pruned by rate {} ({})\n",
        report.output,
        report.bytes as f64 / 1024.0,
        report
            .prune_rate
            .iter()
            .map(f32::to_string)
            .collect::<Vec<_>>()
            .join(":"),
        report.prune_method
    );
    for l in &report.layers {
        let removed: Vec<String> = l.removed.iter().map(usize::to_string).collect();
        text.push_str(&format!(
            "  {}: {} -> {} neurons ({} by rate, {} constant, {} dead; removed {})\n",
            l.layer,
            l.before,
            l.after,
            l.by_rate,
            l.constant,
            l.dead,
            removed.join(",")
        ));
    }
    if let (Some(a), Some(b)) = (accuracy_before, accuracy_after) {
        text.push_str(&format!(
            "float accuracy on the test split: {a:.4} before, {b:.4} after\n"
        ));
    }
    print_out(&text)
}
