//! Calibration, quantisation and lowering of a float graph to an integer graph.
//!
//! The float graph (after canonicalisation and pruning) is walked in topological order and
//! rebuilt as an integer graph whose semantics are exactly those of the FHE circuit:
//!
//! - a graph input becomes a client-side `Quantize` (unsigned, `input_bits`, range from
//!   calibration, or the model's own `QuantizeLinear` for QAT graphs);
//! - a linear op (Gemm/MatMul/Conv, average pooling, layout ops) runs on the integers with
//!   integer weights (symmetric, `weight_bits`, or the model's own dequantised integers); the
//!   input zero point and the bias fold into one integer bias, so the accumulator stands for
//!   `scale_w * scale_x * acc`;
//! - every chain of univariate ops after an accumulator (bias, activation, batch-norm,
//!   rescale, QAT quantize/clip/dequantize) becomes ONE table lookup whose output is the next
//!   activation quantised to `activation_bits` (PTQ, range from calibration) or to the QAT
//!   grid of the chain's final `DequantizeLinear`;
//! - max pooling is an integer max (one `max(a, b) = a + relu(b - a)` lookup per comparison in
//!   FHE); graph outputs are dequantised on the client.

mod lower;
mod pass;

pub use pass::{CALIBRATE, QUANTIZE};

pub use lower::{quantize, QuantError, QuantOptions, Quantized};

use std::collections::HashMap;

use fhec_ir::{interp, Graph, NodeId, Tensor};

/// What calibration saw of every float node: its range and a deterministic subsample of
/// its values (for choosing clipping ranges at low bit widths).
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    pub ranges: HashMap<NodeId, (f32, f32)>,
    pub samples: HashMap<NodeId, Vec<f32>>,
}

/// Values kept per node for clipping search.
const SAMPLES_PER_NODE: usize = 8192;

/// Runs the float graph on calibration samples (one `Vec` of graph inputs per sample) and
/// records the range and a subsample of the values every node took.
pub fn calibrate(
    graph: &Graph,
    samples: &[Vec<Tensor>],
) -> Result<Calibration, interp::InterpError> {
    let mut cal = Calibration::default();
    let per_sample = SAMPLES_PER_NODE / samples.len().max(1) + 1;
    for sample in samples {
        let values = interp::run_trace(graph, sample)?;
        for (id, t) in values {
            let (lo, hi) = t
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                });
            let e = cal.ranges.entry(id).or_insert((lo, hi));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
            let step = (t.len() / per_sample).max(1);
            let kept = cal.samples.entry(id).or_default();
            kept.extend(t.iter().step_by(step).take(per_sample));
        }
    }
    Ok(cal)
}
