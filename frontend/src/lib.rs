//! ONNX frontend: decodes a `ModelProto` (tract-onnx's prost types) and lifts it into the fhec
//! graph IR with static shapes (batch fixed to 1); [`export`] writes a float IR graph back
//! (the ONNX boundary both ways).
//!
//! Each ONNX op goes through one importer in the importer table (`ops.rs`), which resolves
//! attributes and opset differences into the IR's single form. Values known at import time
//! (initializers, `Constant`, `Shape` of a static tensor and integer arithmetic on them) are
//! folded as they are met, so exporter patterns such as Keras's Shape/Gather/Concat/Reshape
//! flatten become a plain `Reshape`.

mod error;
pub mod export;
mod import;
mod ops;
pub use ops::supported_ops;
mod qonnx;
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
