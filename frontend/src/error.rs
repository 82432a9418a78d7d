//! Frontend errors: each names the file, node, op and opset (or field) at fault and says what
//! the user can do.

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{file}' is not a valid ONNX model ({reason}); check the file is a complete .onnx export, not truncated or another format")]
    Decode { file: String, reason: String },
    #[error("'{file}': {message}")]
    Model { file: String, message: String },
    #[error("node '{node}': op {op} (domain '{domain}', opset {opset}) is not supported; supported ops are listed by `fhec inspect --supported-ops`")]
    UnsupportedOp {
        node: String,
        op: String,
        domain: String,
        opset: i64,
    },
    #[error("node '{node}' ({op}, opset {opset}): attribute '{attr}' {problem}")]
    UnsupportedAttribute {
        node: String,
        op: String,
        opset: i64,
        attr: String,
        problem: String,
    },
    #[error("node '{node}' ({op}, opset {opset}): input '{input}' is not produced by any node, initializer or graph input")]
    MissingInput {
        node: String,
        op: String,
        opset: i64,
        input: String,
    },
    #[error("graph input '{input}': dimension {axis} is '{dim}', which cannot be resolved statically; pass --input-shape {input}=D0,D1,... with every dimension")]
    UnresolvedDim {
        input: String,
        axis: usize,
        dim: String,
    },
    #[error("graph input '{input}': {message}")]
    BadInput { input: String, message: String },
    #[error("tensor '{name}': {message}")]
    BadTensor { name: String, message: String },
    #[error("node '{node}' ({op}, opset {opset}): {message}")]
    Node {
        node: String,
        op: String,
        opset: i64,
        message: String,
    },
}
