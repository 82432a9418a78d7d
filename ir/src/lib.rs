//! The fhec graph IR.
//!
//! A model is a [`Graph`]: a DAG (on petgraph) of single-output [`Node`]s, each carrying an
//! [`Op`] and the static [`TensorFact`] (dtype + shape, batch fixed to 1) of its output. The
//! frontend builds it, passes rewrite it, the backend lowers it. [`Graph::verify`] checks the
//! invariants after every transformation, [`print`] gives the stable text form that snapshot
//! tests compare, and [`interp`] executes it (float semantics, the reference for the frontend).

pub mod fact;
pub mod graph;
pub mod int_interp;
pub mod interp;
pub mod op;
pub mod print;
pub mod quant;

pub use fact::{DType, TensorFact};
pub use graph::{Graph, IrError, Node, NodeId};
pub use op::{
    BinaryOp, ConvAttrs, GemmAttrs, Op, PadMode, PoolAttrs, QuantAttrs, ShapeError, UnaryOp,
};
pub use quant::{QParams, Rounding, RoundingMode, Tlu};

/// Float tensor values. Integer-valued tensors of the float graph (quantized int8/uint8) are
/// held exactly in f32 too.
pub type Tensor = ndarray::ArrayD<f32>;
