//! The importer registry: finds the importer of a node's op type and domain in the op
//! tables (the default domain's in `ops.rs`, the QONNX quantisers' in `qonnx.rs`), and lists
//! the supported ops. It only reads the tables; they know nothing of it.

use crate::node::Importer;
use crate::{ops, qonnx};

/// The importer of an op type of the default domain, if supported.
fn importer(op_type: &str) -> Option<Importer> {
    ops::IMPORTERS
        .iter()
        .find(|(n, _)| *n == op_type)
        .map(|(_, f)| *f)
}

/// The importer of an op type in `domain`: the default domain's table, or the QONNX
/// quantisers in their custom domains.
pub(crate) fn importer_in(domain: &str, op_type: &str) -> Option<Importer> {
    if domain.is_empty() || domain == "ai.onnx" {
        return importer(op_type);
    }
    if !qonnx::DOMAINS.contains(&domain) {
        return None;
    }
    qonnx::IMPORTERS
        .iter()
        .find(|(n, _)| *n == op_type)
        .map(|(_, f)| *f)
}

/// Supported op type names, sorted (the QONNX ops as `domain::op`).
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = ops::IMPORTERS.iter().map(|(n, _)| *n).collect();
    v.sort_unstable();
    v.extend(QONNX_OPS);
    v
}

/// The QONNX quantisers, as `inspect --supported-ops` lists them.
const QONNX_OPS: &[&str] = &[
    "onnx.brevitas::BipolarQuant",
    "onnx.brevitas::Quant",
    "onnx.brevitas::Trunc",
    "qonnx.custom_op.general::BipolarQuant",
    "qonnx.custom_op.general::IntQuant",
    "qonnx.custom_op.general::Quant",
    "qonnx.custom_op.general::Trunc",
];
