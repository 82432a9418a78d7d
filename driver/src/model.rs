//! Reading an ONNX model into the IR: the file, the static shapes given for symbolic input
//! dimensions (checked against the graph's inputs before the import, whose own message would
//! be about an unresolved dimension), and what a file that is not ONNX looks like.

use std::collections::HashSet;
use std::path::Path;

use fhec_frontend::{FrontendError, ImportOptions, ImportedModel};
use prost::Message;

use crate::error::{DriverError, Result};
use crate::npy::sniff;

/// Reads and imports a model.
pub fn import_model(path: &Path, options: &ImportOptions) -> Result<ImportedModel> {
    let bytes = read_model_bytes(path)?;
    import_model_bytes(&bytes, path, options)
}

/// Reads a model file, naming it in the error.
pub fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DriverError::Read {
        what: "model",
        path: path.to_path_buf(),
        source,
    })
}

/// Imports a model already read into memory (`path` names it in messages).
pub fn import_model_bytes(
    bytes: &[u8],
    path: &Path,
    options: &ImportOptions,
) -> Result<ImportedModel> {
    check_input_shapes(bytes, path, options)?;
    fhec_frontend::import_bytes(bytes, &path.display().to_string(), options)
        .map_err(|e| import_error(e, bytes, path))
}

/// A frontend error with what the file looks like when it is not ONNX at all.
pub fn import_error(source: FrontendError, bytes: &[u8], path: &Path) -> DriverError {
    let looks_like = match (&source, sniff(bytes)) {
        (FrontendError::Decode { .. }, Some(kind)) if kind != "an ONNX (protobuf) model" => {
            Some(kind)
        }
        _ => None,
    };
    DriverError::Import {
        path: path.to_path_buf(),
        looks_like,
        source,
    }
}

/// Refuses input shapes that name no graph input, or more unnamed ones than there are
/// inputs.
fn check_input_shapes(bytes: &[u8], path: &Path, options: &ImportOptions) -> Result<()> {
    if options.input_shapes.is_empty() {
        return Ok(());
    }
    let Ok(model) = tract_onnx::pb::ModelProto::decode(bytes) else {
        return Ok(()); // the import reports it
    };
    let Some(g) = &model.graph else {
        return Ok(());
    };
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<String> = g
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !inits.contains(n.as_str()))
        .collect();
    for s in &options.input_shapes {
        if let Some(name) = &s.name {
            if !inputs.contains(name) {
                return Err(DriverError::UnknownShapeInput {
                    model: path.to_path_buf(),
                    name: name.clone(),
                    inputs,
                });
            }
        }
    }
    let given = options
        .input_shapes
        .iter()
        .filter(|s| s.name.is_none())
        .count();
    if given > inputs.len() {
        return Err(DriverError::TooManyInputShapes {
            model: path.to_path_buf(),
            given,
            inputs,
        });
    }
    Ok(())
}
