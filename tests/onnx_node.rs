//! ONNX backend conformance: every vendored node test listed in
//! `tests/onnx-node/supported.txt` is imported by the frontend, run by the float interpreter
//! and compared with the expected outputs the ONNX suite ships.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use fhec_frontend::{decode_tensor_file, import_bytes, ConstValue, ImportOptions, InputShape};
use prost::Message;

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

struct Case {
    name: String,
    /// Graph inputs fed at run time; `None` means all of them.
    runtime_inputs: Option<Vec<String>>,
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx-node")
}

fn cases() -> Vec<Case> {
    let list = std::fs::read_to_string(suite_dir().join("supported.txt")).expect("supported.txt");
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().expect("name").to_string();
            let runtime_inputs = parts.find_map(|p| p.strip_prefix("input:")).map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            });
            Case {
                name,
                runtime_inputs,
            }
        })
        .collect()
}

fn case_dir(name: &str) -> PathBuf {
    let node = suite_dir().join("node").join(name);
    if node.exists() {
        node
    } else {
        suite_dir().join("pytorch-converted").join(name)
    }
}

/// Runs one case; `Err` describes the failure.
fn run_case(case: &Case) -> Result<(), String> {
    let dir = case_dir(&case.name);
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let model = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let graph = model.graph.as_ref().ok_or("no graph")?;
    let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let graph_inputs: Vec<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !inits.contains(n))
        .collect();
    let data = dir.join("test_data_set_0");
    let mut opts = ImportOptions::default();
    let mut feeds = vec![];
    for (i, name) in graph_inputs.iter().enumerate() {
        let t = decode_tensor_file(
            &std::fs::read(data.join(format!("input_{i}.pb"))).map_err(|e| e.to_string())?,
        )?;
        let runtime = case
            .runtime_inputs
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == name));
        if runtime {
            opts.input_shapes.push(InputShape {
                name: Some(name.to_string()),
                dims: t.shape().to_vec(),
            });
            feeds.push(t.to_f32());
        } else {
            opts.constant_inputs.insert(name.to_string(), t);
        }
    }
    let imported = import_bytes(&bytes, &case.name, &opts).map_err(|e| format!("import: {e}"))?;
    let outputs = fhec_ir::interp::run(&imported.graph, &feeds).map_err(|e| format!("run: {e}"))?;
    for (i, got) in outputs.iter().enumerate() {
        let path = data.join(format!("output_{i}.pb"));
        let want = decode_tensor_file(&std::fs::read(&path).map_err(|e| e.to_string())?)?;
        let want = match want {
            ConstValue::Float(a) => a,
            other => other.to_f32(),
        };
        if got.shape() != want.shape() {
            return Err(format!(
                "output {i}: shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
        }
        for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            let ok = (g - w).abs() <= ATOL + RTOL * w.abs() || (g.is_nan() && w.is_nan());
            if !ok {
                return Err(format!("output {i}[{k}]: got {g}, expected {w}"));
            }
        }
    }
    Ok(())
}

fn ops_of(name: &str) -> Vec<String> {
    let bytes = std::fs::read(case_dir(name).join("model.onnx")).unwrap_or_default();
    let Ok(model) = tract_onnx::pb::ModelProto::decode(bytes.as_slice()) else {
        return vec![];
    };
    let mut ops: Vec<String> = model
        .graph
        .map(|g| g.node.into_iter().map(|n| n.op_type).collect())
        .unwrap_or_default();
    ops.sort();
    ops.dedup();
    ops
}

#[test]
fn onnx_node_conformance() {
    let cases = cases();
    assert!(
        cases.len() > 200,
        "the vendored suite lists {} tests",
        cases.len()
    );
    let mut per_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures: HashMap<String, String> = HashMap::new();
    for case in &cases {
        let res = run_case(case);
        for op in ops_of(&case.name) {
            let e = per_op.entry(op).or_default();
            e.1 += 1;
            if res.is_ok() {
                e.0 += 1;
            }
        }
        if let Err(e) = res {
            failures.insert(case.name.clone(), e);
        }
    }
    println!("ONNX node tests passing per op:");
    for (op, (ok, n)) in &per_op {
        println!("  {op:<20} {ok}/{n}");
    }
    let mut names: Vec<_> = failures.keys().cloned().collect();
    names.sort();
    for n in &names {
        println!("FAIL {n}: {}", failures[n]);
    }
    assert!(
        failures.is_empty(),
        "{} of {} node tests failed",
        failures.len(),
        cases.len()
    );
}
