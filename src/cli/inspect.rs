//! `fhec inspect`: what a model is made of and whether fhec can import it.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use fhec_frontend::ImportedModel;
use fhec_ir::Op;
use prost::Message;
use serde::Serialize;
use serde_json::Value as Json;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;

use super::quant_args::QuantArgs;
use super::text::histogram_text;
use super::{advise, ir_dtype_name, json_text, onnx_dtype_name, print_out, ImportArgs, CALIB_HINT};
use fhec_driver::model::{import_model_bytes, read_model_bytes};
use fhec_driver::report::PipelineSummary;
use fhec_driver::Hooks;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The ONNX model to describe.
    #[arg(value_name = "MODEL.onnx", required_unless_present = "supported_ops")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub import: ImportArgs,
    /// Print one JSON object (stable keys) instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// List the ONNX ops fhec can import (MODEL is then optional).
    #[arg(long)]
    pub supported_ops: bool,
    /// Zero-weight statistics of every prunable layer (a Gemm or Conv feeding another
    /// through per-channel ops): per neuron the fraction of zero incoming and outgoing
    /// weights (|w| <= --prune-threshold), neurons removable exactly, and the bootstraps
    /// that pruning 25/50/75 % of the neurons would save.
    #[arg(long)]
    pub prune_stats: bool,
    /// With --bits: also compile the model through the pass pipeline with quantisation on
    /// and show what each pass did, the table lookups, accumulator widths and final IR.
    #[command(flatten)]
    pub quant: QuantArgs,
}

/// A graph input or output.
#[derive(Serialize, Debug, Clone)]
pub struct IoInfo {
    pub name: String,
    /// The static shape fhec uses (batch fixed to 1) when the import succeeded; otherwise the
    /// declared one (symbolic dimensions as strings, unknown ones as null); null when the
    /// model declares none.
    pub shape: Option<Vec<Json>>,
    /// The shape as the ONNX file declares it.
    pub declared_shape: Option<Vec<Json>>,
    /// Numpy-style element type (`float32`, `uint8`, ...).
    pub dtype: Option<String>,
}

/// An ONNX node fhec has no importer for.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub node: String,
    pub op: String,
    pub domain: String,
}

/// Everything `inspect` reports; serialised as is by `--json`.
#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub model: String,
    pub producer: Option<String>,
    /// Opset of the default (`ai.onnx`) domain.
    pub opset: Option<i64>,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub onnx_nodes: Option<usize>,
    /// Nodes of the imported IR graph (inputs and constants included).
    pub ir_nodes: Option<usize>,
    /// ONNX op histogram (`domain:Op` for ops outside the default domain).
    pub ops: BTreeMap<String, usize>,
    /// IR op histogram of the imported graph.
    pub ir_ops: Option<BTreeMap<String, usize>>,
    /// Total elements of the constants of the imported graph.
    pub parameters: Option<usize>,
    pub supported: bool,
    pub unsupported: Vec<Unsupported>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_ops: Option<Vec<&'static str>>,
    #[serde(skip)]
    pub ir_text: Option<String>,
    /// What the pass pipeline did (only with `--bits`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineSummary>,
    /// Text of the pipeline report and the compiled IR (only with `--bits`).
    #[serde(skip)]
    pub pipeline_text: Option<String>,
    /// Zero-weight statistics per prunable layer (only with `--prune-stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_stats: Option<Vec<super::prune_stats::LayerJson>>,
    #[serde(skip)]
    pub prune_stats_text: Option<String>,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let supported_ops = args.supported_ops.then(fhec_frontend::supported_ops);
    let Some(path) = &args.model else {
        let ops = supported_ops.unwrap_or_default();
        let text = if args.json {
            let v = serde_json::json!({ "supported_ops": ops });
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        } else {
            format!("{}\n", ops.join("\n"))
        };
        return print_out(&text);
    };
    // --prune-threshold also sets what --prune-stats counts as zero.
    let mut pipeline_options = args.quant.clone();
    if args.prune_stats {
        pipeline_options.prune_threshold = 0.0;
    }
    if pipeline_options.any_given() && args.quant.bits.is_none() {
        anyhow::bail!(
            "the quantisation options (--calib, --prune-threshold, ...) need --bits N to run \
             the pipeline (--prune-threshold alone also sets what --prune-stats counts as zero)"
        );
    }
    let (mut report, model, mut err) = build_report(path, &args.import);
    report.supported_ops = supported_ops;
    if let (Some(model), None, true) = (&model, &err, args.prune_stats) {
        let threshold = args.quant.prune_threshold;
        match super::prune_stats::compute(&model.graph, threshold, path)
            .map_err(|e| advise(e, CALIB_HINT))
        {
            Ok(layers) => {
                report.prune_stats_text = Some(super::prune_stats::render(&layers, threshold));
                report.prune_stats = Some(layers);
            }
            Err(e) => {
                report.error = Some(error_text(&e));
                err = Some(e);
            }
        }
    }
    if let (Some(model), None) = (&model, &err) {
        if args.quant.bits.is_some() {
            if let Err(e) = run_pipeline_report(path, model, &args.quant, &mut report) {
                report.error = Some(error_text(&e));
                err = Some(e);
            }
        }
    }
    if args.json {
        print_out(&json_text(&report))?;
    } else if report.onnx_nodes.is_some() {
        print_out(&render_text(&report))?;
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn dim_json(d: &pb::tensor_shape_proto::Dimension) -> Json {
    match &d.value {
        Some(dimension::Value::DimValue(v)) if *v >= 0 => Json::from(*v),
        Some(dimension::Value::DimParam(p)) if !p.is_empty() => Json::from(p.clone()),
        _ => Json::Null,
    }
}

/// Declared shape and dtype of a value.
fn declared(v: &pb::ValueInfoProto) -> (Option<Vec<Json>>, Option<String>) {
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(tt)) => (
            tt.shape
                .as_ref()
                .map(|s| s.dim.iter().map(dim_json).collect()),
            (tt.elem_type != 0).then(|| onnx_dtype_name(tt.elem_type)),
        ),
        _ => (None, None),
    }
}

fn io_info(v: &pb::ValueInfoProto) -> IoInfo {
    let (shape, dtype) = declared(v);
    IoInfo {
        name: v.name.clone(),
        shape: shape.clone(),
        declared_shape: shape,
        dtype,
    }
}

fn error_text(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// Compiles the model through the pass pipeline and records what it did in the report.
fn run_pipeline_report(
    path: &Path,
    model: &ImportedModel,
    quant: &QuantArgs,
    report: &mut Report,
) -> Result<()> {
    let progress = super::progress::Progress::stderr();
    let sink = progress.sink();
    let hooks = Hooks {
        on_event: Some(&sink),
        ..Hooks::default()
    };
    let config = quant.config();
    let calibration = fhec_driver::samples::calibration_for(&model.graph, &config, path, &hooks)
        .map_err(|e| advise(e, CALIB_HINT))?
        .samples;
    let n_calib = calibration.len();
    let compiled = fhec_driver::quantise(&model.graph, &config, calibration, path)
        .map_err(|e| advise(e, CALIB_HINT))?;
    let summary = compiled.summary();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "pipeline: {} ({n_calib} calibration sample{})",
        config.describe(),
        if n_calib == 1 { "" } else { "s" }
    );
    for line in compiled.report.to_string().lines() {
        let _ = writeln!(text, "  {line}");
    }
    if let Some(t) = summary.tlu_count {
        let _ = writeln!(text, "table lookups:   {t} per inference");
    }
    if let Some(b) = summary.max_accumulator_bits {
        let _ = writeln!(text, "max accumulator: {b} bits (worst case)");
    }
    let _ = writeln!(
        text,
        "nodes:           {} -> {}",
        model.graph.node_count(),
        compiled.graph.node_count()
    );
    let _ = writeln!(
        text,
        "\ncompiled IR:\n{}",
        fhec_ir::print::print_graph(&compiled.graph).trim_end()
    );
    report.pipeline = Some(summary);
    report.pipeline_text = Some(text);
    Ok(())
}

/// Builds the report (with the imported model when the import succeeded); the error (if any)
/// is why the model cannot be used.
pub fn build_report(
    path: &Path,
    import: &ImportArgs,
) -> (Report, Option<ImportedModel>, Option<anyhow::Error>) {
    let mut report = Report {
        model: path.display().to_string(),
        ..Default::default()
    };
    let bytes = match read_model_bytes(path).map_err(|e| advise(e, CALIB_HINT)) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(error_text(&e));
            return (report, None, Some(e));
        }
    };

    // What the file says about itself, even when it cannot be imported.
    let file = path.display().to_string();
    if let Ok(scan) = fhec_frontend::scan_unsupported(&bytes, &file) {
        report.unsupported = scan
            .into_iter()
            .map(|(node, op, domain)| Unsupported {
                node,
                op,
                domain: if domain.is_empty() {
                    "ai.onnx".into()
                } else {
                    domain
                },
            })
            .collect();
        if let Ok(model) = pb::ModelProto::decode(bytes.as_slice()) {
            describe_onnx(&model, &mut report);
        }
    }

    match import_model_bytes(&bytes, path, &import.options()).map_err(|e| advise(e, CALIB_HINT)) {
        Ok(m) => {
            describe_ir(&m, &mut report);
            report.supported = true;
            (report, Some(m), None)
        }
        Err(e) => {
            report.error = Some(error_text(&e));
            (report, None, Some(e))
        }
    }
}

fn describe_onnx(model: &pb::ModelProto, report: &mut Report) {
    let producer = format!("{} {}", model.producer_name, model.producer_version);
    let producer = producer.trim();
    report.producer = (!producer.is_empty()).then(|| producer.to_string());
    report.opset = Some(
        model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(1),
    );
    let Some(g) = &model.graph else { return };
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    report.inputs = g
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(io_info)
        .collect();
    report.outputs = g.output.iter().map(io_info).collect();
    report.onnx_nodes = Some(g.node.len());
    for n in &g.node {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *report.ops.entry(key).or_default() += 1;
    }
}

fn describe_ir(m: &ImportedModel, report: &mut Report) {
    let g = &m.graph;
    let static_io = |names: &[String], ids: &[fhec_ir::NodeId], list: &mut Vec<IoInfo>| {
        for (name, &id) in names.iter().zip(ids) {
            let fact = &g.node(id).fact;
            let shape = Some(fact.shape.iter().map(|&d| Json::from(d)).collect());
            match list.iter_mut().find(|i| &i.name == name) {
                Some(info) => {
                    info.shape = shape;
                    if info.dtype.is_none() {
                        info.dtype = Some(ir_dtype_name(fact.dtype).into());
                    }
                }
                None => list.push(IoInfo {
                    name: name.clone(),
                    shape,
                    declared_shape: None,
                    dtype: Some(ir_dtype_name(fact.dtype).into()),
                }),
            }
        }
    };
    static_io(&m.input_names, g.inputs(), &mut report.inputs);
    static_io(&m.output_names, g.outputs(), &mut report.outputs);
    // Inputs the import turned into constants are not inputs any more.
    report.inputs.retain(|i| m.input_names.contains(&i.name));

    let mut ir_ops: BTreeMap<String, usize> = BTreeMap::new();
    let mut params = 0usize;
    for id in g.node_ids() {
        let node = g.node(id);
        *ir_ops.entry(node.op.name().to_string()).or_default() += 1;
        if let Op::Const(t) = &node.op {
            params += t.len();
        }
    }
    report.producer = report.producer.take().or_else(|| {
        let p = m.producer.trim();
        (!p.is_empty()).then(|| p.to_string())
    });
    report.opset = Some(m.opset);
    report.onnx_nodes = Some(m.onnx_node_count);
    report.ir_nodes = Some(g.node_count());
    report.ir_ops = Some(ir_ops);
    report.parameters = Some(params);
    report.ir_text = Some(fhec_ir::print::print_graph(g));
}

fn dims_text(dims: &[Json]) -> String {
    let s: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            _ => "?".into(),
        })
        .collect();
    format!("[{}]", s.join(","))
}

fn io_text(out: &mut String, title: &str, list: &[IoInfo]) {
    let _ = writeln!(out, "{title}:");
    if list.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let width = list.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in list {
        let shape = i.shape.as_deref().map(dims_text).unwrap_or("?".into());
        let mut line = format!(
            "  {:width$}  {} {}",
            i.name,
            i.dtype.as_deref().unwrap_or("?"),
            shape
        );
        if let Some(d) = &i.declared_shape {
            if i.shape.as_deref() != Some(d.as_slice()) {
                let _ = write!(line, "  (declared {})", dims_text(d));
            }
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The human-readable report.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model:      {}", r.model);
    let _ = writeln!(
        out,
        "producer:   {}",
        r.producer.as_deref().unwrap_or("(unknown)")
    );
    if let Some(o) = r.opset {
        let _ = writeln!(out, "opset:      {o}");
    }
    io_text(&mut out, "inputs", &r.inputs);
    io_text(&mut out, "outputs", &r.outputs);
    let onnx = r.onnx_nodes.unwrap_or(0);
    match r.ir_nodes {
        Some(ir) => {
            let _ = writeln!(out, "nodes:      {onnx} ONNX -> {ir} IR");
        }
        None => {
            let _ = writeln!(out, "nodes:      {onnx} ONNX");
        }
    }
    let _ = writeln!(out, "ONNX ops:   {}", histogram_text(&r.ops));
    if let Some(h) = &r.ir_ops {
        let _ = writeln!(out, "IR ops:     {}", histogram_text(h));
    }
    if let Some(p) = r.parameters {
        let _ = writeln!(out, "parameters: {p}");
    }
    let _ = writeln!(
        out,
        "supported:  {}",
        if r.supported { "yes" } else { "no" }
    );
    if !r.unsupported.is_empty() {
        let _ = writeln!(out, "unsupported ops ({}):", r.unsupported.len());
        for u in &r.unsupported {
            let _ = writeln!(out, "  node '{}': {} (domain '{}')", u.node, u.op, u.domain);
        }
    }
    if let Some(ir) = &r.ir_text {
        let _ = writeln!(out, "\nIR:\n{}", ir.trim_end());
    }
    if let Some(p) = &r.pipeline_text {
        let _ = writeln!(out, "\n{}", p.trim_end());
    }
    if let Some(p) = &r.prune_stats_text {
        out.push_str(p);
    }
    if let Some(ops) = &r.supported_ops {
        let _ = writeln!(
            out,
            "\nsupported ONNX ops ({}):\n  {}",
            ops.len(),
            ops.join("\n  ")
        );
    }
    out
}
