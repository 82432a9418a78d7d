//! One module per `fhec` command, plus the options and helpers they share.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use fhec_frontend::{FrontendError, ImportOptions, ImportedModel, InputShape};

pub mod compile;
pub mod eval;
pub mod feed;
pub mod fhe;
pub mod inspect;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod prune;
pub mod prune_stats;
pub mod quant_args;
pub mod sweep;
pub mod tune;

/// How a model is imported; shared by every command that reads an ONNX model.
#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// Static shape of a graph input whose dimensions the model leaves symbolic:
    /// NAME=D0,D1,... or D0,D1,... (unnamed ones apply to the graph inputs in order);
    /// repeat for several inputs. The batch dimension must be 1.
    #[arg(long = "input-shape", value_name = "[NAME=]D0,D1,...")]
    pub input_shapes: Vec<InputShape>,
}

impl ImportArgs {
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            input_shapes: self.input_shapes.clone(),
            ..Default::default()
        }
    }
}

/// Reads a model file, naming it in the error.
pub fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read model '{}'", path.display()))
}

/// Imports a model already read into memory; a file that is not ONNX at all says what it
/// looks like.
pub fn import_model_bytes(bytes: &[u8], path: &Path, args: &ImportArgs) -> Result<ImportedModel> {
    let file = path.display().to_string();
    check_input_shapes(bytes, path, args)?;
    fhec_frontend::import_bytes(bytes, &file, &args.options())
        .map_err(|e| import_error(e, bytes, path))
}

/// Refuses `--input-shape`s that name no graph input, or more unnamed ones than there are
/// inputs, before the import (whose own message would be about the unresolved dimension).
fn check_input_shapes(bytes: &[u8], path: &Path, args: &ImportArgs) -> Result<()> {
    use prost::Message;
    if args.input_shapes.is_empty() {
        return Ok(());
    }
    let Ok(model) = tract_onnx::pb::ModelProto::decode(bytes) else {
        return Ok(()); // the import reports it
    };
    let Some(g) = &model.graph else {
        return Ok(());
    };
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> = g
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !inits.contains(n))
        .collect();
    for s in &args.input_shapes {
        if let Some(name) = &s.name {
            if !inputs.contains(&name.as_str()) {
                anyhow::bail!(
                    "--input-shape {name}=...: model '{}' has no graph input '{name}'; its inputs are {inputs:?}",
                    path.display()
                );
            }
        }
    }
    let unnamed = args
        .input_shapes
        .iter()
        .filter(|s| s.name.is_none())
        .count();
    if unnamed > inputs.len() {
        anyhow::bail!(
            "{unnamed} unnamed --input-shape values given but model '{}' has {} graph input(s) {inputs:?}",
            path.display(),
            inputs.len()
        );
    }
    Ok(())
}

/// Reads and imports a model.
pub fn import_model(path: &Path, args: &ImportArgs) -> Result<ImportedModel> {
    let bytes = read_model_bytes(path)?;
    import_model_bytes(&bytes, path, args)
}

/// Wraps a frontend error with what the CLI knows about the file.
pub fn import_error(e: FrontendError, bytes: &[u8], path: &Path) -> anyhow::Error {
    let looks_like = match (&e, crate::npyio::sniff(bytes)) {
        (FrontendError::Decode { .. }, Some(kind)) if kind != "an ONNX (protobuf) model" => {
            format!(": it looks like {kind}, not an ONNX model")
        }
        _ => String::new(),
    };
    anyhow::Error::new(e).context(format!(
        "cannot import model '{}'{looks_like}",
        path.display()
    ))
}

/// Writes to stdout; a closed pipe (`fhec inspect ... | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// Numpy-style name of an ONNX element type code.
pub fn onnx_dtype_name(code: i32) -> String {
    use fhec_frontend::tensor::onnx_type;
    match code {
        onnx_type::FLOAT => "float32".into(),
        onnx_type::DOUBLE => "float64".into(),
        onnx_type::FLOAT16 => "float16".into(),
        onnx_type::UINT8 => "uint8".into(),
        onnx_type::INT8 => "int8".into(),
        onnx_type::UINT16 => "uint16".into(),
        onnx_type::INT16 => "int16".into(),
        onnx_type::INT32 => "int32".into(),
        onnx_type::INT64 => "int64".into(),
        onnx_type::UINT32 => "uint32".into(),
        onnx_type::BOOL => "bool".into(),
        13 => "uint64".into(),
        16 => "bfloat16".into(),
        other => onnx_type::name(other).to_lowercase(),
    }
}

/// Numpy-style name of an IR element type.
pub fn ir_dtype_name(d: fhec_ir::DType) -> &'static str {
    use fhec_ir::DType;
    match d {
        DType::F32 => "float32",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::I32 => "int32",
        DType::I64 => "int64",
    }
}

/// `[1,3,28,28]`.
pub fn shape_text(shape: &[usize]) -> String {
    let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", s.join(","))
}

/// Pretty JSON (two-space indentation, fields in declaration order), except that arrays
/// holding only numbers, booleans and nulls stay on one line (per-sample predictions,
/// ranges).
pub fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    let pretty = serde_json::to_string_pretty(value)?;
    let chars: Vec<char> = pretty.chars().collect();
    // End of the array opening at `start` when it holds no array, object or string.
    let scalar_array_end = |start: usize| -> Option<usize> {
        for (j, &c) in chars.iter().enumerate().skip(start + 1) {
            match c {
                '"' | '[' | '{' => return None,
                ']' => return Some(j),
                _ => {}
            }
        }
        None
    };
    let mut out = String::with_capacity(pretty.len());
    let mut in_str = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                }
                i += 1;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if let Some(end) = (c == '[').then(|| scalar_array_end(i)).flatten() {
            let inner: String = chars[i + 1..end].iter().collect();
            let items: Vec<&str> = inner
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            out.push('[');
            out.push_str(&items.join(" "));
            out.push(']');
            i = end;
        } else {
            out.push(c);
        }
        i += 1;
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_text_keeps_scalar_arrays_on_one_line() {
        let v = serde_json::json!({
            "b": [1, 2, 3],
            "a": [{"x": ["p]", "q\\\"["]}, [1]],
            "s": "[not, an array]",
            "e": [],
            "c": [true, null, -1.5],
        });
        let text = super::json_text(&v).unwrap();
        assert!(text.contains("\"b\": [1, 2, 3]"), "{text}");
        assert!(text.contains("\"c\": [true, null, -1.5]"), "{text}");
        assert!(!text.contains(r#""x": ["p]""#), "{text}");
        assert!(text.contains("\"e\": []"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
