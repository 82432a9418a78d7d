//! Lowering of the integer graph (what `fhec_passes::run_pipeline` produces with quantisation
//! on) to a circuit [`Program`].
//!
//! Three steps:
//! 1. [`build`]: one or more instructions per graph node, in topological order, with the
//!    shape and the guaranteed integer range of every value (interval arithmetic over the
//!    instructions built; every table is checked to cover its input range);
//! 2. [`encode`]: the encoding delta of every value (lookups fix their input delta, outputs
//!    get the smallest delta their range allows, linear operands follow their result),
//!    `Rescale` instructions where one value feeds consumers needing different deltas, noise
//!    factors, and numbering so that instruction `i` defines value `i`;
//! 3. the runtime's structural check of the result.
//!
//! A `MaxPool` instruction computes at the delta of its comparison table, which is usually
//! larger than the delta its consumers (wide accumulators) need; since a delta can only be
//! raised, such a max-pooling is expanded into the same comparison tree built from
//! depthwise one-hot `Conv`s, `Sub`, `Tlu` and `Add` (same bootstraps, free choice of the
//! output delta, but the comparisons then read values scaled up by the delta gap, whose noise
//! grows with its square), or re-encoded: the `MaxPool` stays one instruction and an identity
//! table lookup per output moves the maximum to the delta its consumers need (one bootstrap
//! more per output, no noise growth). [`lower_variants`] gives both; the backend keeps the
//! one its parameter search prices cheaper. A `MaxPool` whose consumers accept its delta
//! stays one instruction.

mod build;
mod encode;

use std::collections::BTreeSet;

use fhec_ir::Graph;
use fhec_runtime::circuit::Program;
use fhec_runtime::RuntimeError;

/// Why an integer graph cannot be lowered to a circuit.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// An op (or a form of it) the circuit has no instruction for.
    #[error("node '{node}' ({op}): {message}")]
    Unsupported {
        node: String,
        op: &'static str,
        message: String,
    },
    /// A value whose range does not fit the bits its encoding leaves.
    #[error("node '{node}' ({op}): {message}")]
    Range {
        node: String,
        op: &'static str,
        message: String,
    },
    /// A graph input that does not feed exactly one `Quantize`.
    #[error("graph input '{name}': {message}")]
    Input { name: String, message: String },
    /// A graph output that is not the `Dequantize` of an encrypted integer value.
    #[error("graph output '{name}' ({op}): {message}")]
    Output {
        name: String,
        op: &'static str,
        message: String,
    },
    /// The program built fails the runtime's structural check (a bug of this module).
    #[error("the lowered program is invalid: {0}")]
    Invalid(#[from] RuntimeError),
}

/// Lowers an integer graph to a circuit program: inputs become `Input`s with the client's
/// quantisation, outputs the dequantisation parameters of their `Dequantize`, everything
/// between one or more instructions (see the module documentation).
pub fn lower(graph: &Graph) -> Result<Program, LowerError> {
    lower_with(graph, MaxPoolConflicts::Expand)
}

/// How a max-pooling whose consumers need a smaller delta than its comparisons is lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxPoolConflicts {
    /// A comparison tree of one-hot convolutions, subtractions and lookups.
    Expand,
    /// The `MaxPool` instruction, then an identity lookup per output.
    Reencode,
}

/// The program with each way of lowering conflicting max-poolings; one program when the
/// graph has none (both ways give the same program).
pub fn lower_variants(graph: &Graph) -> Result<Vec<Program>, LowerError> {
    let expanded = lower_with(graph, MaxPoolConflicts::Expand)?;
    let has_max_pool = graph
        .node_ids()
        .any(|n| matches!(graph.node(n).op, fhec_ir::Op::MaxPool(_)));
    if !has_max_pool {
        return Ok(vec![expanded]);
    }
    let reencoded = lower_with(graph, MaxPoolConflicts::Reencode)?;
    Ok(if reencoded == expanded {
        vec![expanded]
    } else {
        vec![expanded, reencoded]
    })
}

/// [`lower`] with a chosen way of lowering conflicting max-poolings.
pub fn lower_with(graph: &Graph, conflicts: MaxPoolConflicts) -> Result<Program, LowerError> {
    let mut expand = BTreeSet::new();
    loop {
        let pre = build::build(graph, &expand, conflicts)?;
        match encode::encode(&pre)? {
            encode::Encoded::Done(program) => {
                program.validate()?;
                return Ok(program);
            }
            // Max-poolings whose consumers need a smaller delta than their comparisons:
            // expand them and start again (the expansion only changes what they compute
            // from, never what their consumers need, so one more round suffices).
            encode::Encoded::ExpandMaxPools(nodes) => {
                let before = expand.len();
                expand.extend(nodes);
                if expand.len() == before {
                    return Err(LowerError::Unsupported {
                        node: "(graph)".into(),
                        op: "MaxPool",
                        message: "max-pooling expansion did not converge".into(),
                    });
                }
            }
        }
    }
}
