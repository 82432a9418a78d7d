//! ONNX frontend: decodes a `ModelProto` (tract-onnx's prost types) and lifts it into the fhec
//! graph IR with static shapes (batch fixed to 1); [`export`] writes a float IR graph back
//! (the ONNX boundary both ways).
//!
//! Each ONNX op goes through one importer, which resolves attributes and opset differences
//! into the IR's single form: the default domain's importers are tabled in `ops.rs`, the QONNX
//! quantisers' in `qonnx.rs`, `registry.rs` looks a node's op up in them, and `node.rs` holds
//! what an importer sees and returns. Values known at import time (initializers, `Constant`,
//! `Shape` of a static tensor and integer arithmetic on them) are folded as they are met, so
//! exporter patterns such as Keras's Shape/Gather/Concat/Reshape flatten become a plain
//! `Reshape`.

mod error;
pub mod export;
mod import;
mod node;
mod ops;
mod qonnx;
mod registry;
pub use registry::supported_ops;
pub mod tensor;

pub use error::FrontendError;
pub use import::{
    import_bytes, import_file, scan_unsupported, ImportOptions, ImportedModel, InputShape,
};
pub use tensor::{decode_tensor, ConstValue};

/// Decodes a serialised `TensorProto` file (as the ONNX test suites ship them).
pub fn decode_tensor_file(bytes: &[u8]) -> Result<ConstValue, String> {
    use prost::Message;
    let t = tract_onnx::pb::TensorProto::decode(bytes).map_err(|e| e.to_string())?;
    decode_tensor(&t)
}
