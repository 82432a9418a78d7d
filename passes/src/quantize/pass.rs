//! The calibration and quantisation steps as pipeline passes.

use fhec_ir::{Graph, IrError};

use super::{calibrate, quantize, QuantError};
use crate::context::PassContext;
use crate::Pass;

pub const CALIBRATE: Pass = Pass {
    name: "calibrate",
    summary: "run the float graph on calibration data to get each tensor's range",
    run: run_calibrate,
};

pub const QUANTIZE: Pass = Pass {
    name: "quantize",
    summary: "quantise (PTQ or the model's QAT scales) and lower to integers with one table per univariate chain",
    run: run_quantize,
};

fn run_calibrate(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    if ctx.options.quantization.is_none() {
        return Ok(());
    }
    let cal = calibrate(g, &ctx.calibration_inputs).map_err(|e| IrError::Unsupported {
        node: "(calibration)".into(),
        op: "run",
        message: e.to_string(),
    })?;
    ctx.note(format!(
        "{} sample(s), {} tensor ranges",
        ctx.calibration_inputs.len(),
        cal.ranges.len()
    ));
    ctx.calibration = Some(cal);
    Ok(())
}

fn run_quantize(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let Some(opts) = ctx.options.quantization.clone() else {
        return Ok(());
    };
    crate::int_values::check_quantisable(g)?;
    let cal = ctx.calibration.take().unwrap_or_default();
    let q = quantize(g, &cal, &opts).map_err(|e| match e {
        QuantError::Unsupported { node, op, message } => IrError::Unsupported { node, op, message },
        QuantError::NoRange { node } => IrError::NeedsCalibration { node },
        other => IrError::Invalid(other.to_string()),
    })?;
    let tlus = q
        .graph
        .node_ids()
        .filter(|&n| matches!(q.graph.node(n).op, fhec_ir::Op::Tlu(_)))
        .count();
    ctx.note(format!(
        "{} -> {} nodes, {tlus} table lookup node(s)",
        g.node_count(),
        q.graph.node_count()
    ));
    *g = q.graph;
    Ok(())
}
