//! What quantisation does with the integer-typed values of a float graph (integer graph
//! inputs, casts, QAT's quantized tensors).
//!
//! Quantisation treats every value as a real number on a grid and turns chains of element-wise
//! ops into table lookups computed with real arithmetic. That is right for integer values
//! that are only moved, compared, cast or dequantised (an int32 input cast to float, the
//! uint8 output of a `QuantizeLinear`), so those are quantised like any other value. It is not
//! right for integer *arithmetic*, whose ONNX semantics (wrap-around on overflow, truncating
//! division; see `fhec_ir::interp`) a table over real values does not keep, nor for an
//! integer-typed graph output, which the circuit would return as dequantised reals: both are
//! refused here, naming the node and its type, before the quantisation pass runs.

use fhec_ir::{Graph, IrError, Op, UnaryOp};

/// Refuses integer-typed arithmetic nodes and integer-typed graph outputs (see the module doc).
pub fn check_quantisable(g: &Graph) -> Result<(), IrError> {
    for id in g.topo_order() {
        let node = g.node(id);
        let dtype = node.fact.dtype;
        let arithmetic = matches!(node.op, Op::Binary(_) | Op::Unary(UnaryOp::Neg));
        if dtype.is_int() && arithmetic {
            return Err(IrError::Unsupported {
                node: node.name.clone(),
                op: node.op.name(),
                message: format!(
                    "{dtype} arithmetic cannot be quantised: table lookups compute with reals, \
                     without ONNX's integer wrap-around and truncating division; cast the \
                     operands to float in the model if real arithmetic is meant"
                ),
            });
        }
    }
    for &o in g.outputs() {
        let node = g.node(o);
        if node.fact.dtype.is_int() {
            return Err(IrError::Unsupported {
                node: node.name.clone(),
                op: node.op.name(),
                message: format!(
                    "graph output of type {}: a compiled circuit returns dequantised reals; \
                     cast the output to float in the model",
                    node.fact.dtype
                ),
            });
        }
    }
    Ok(())
}
