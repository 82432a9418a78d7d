//! The `fhec` binary end to end: `inspect` and `predict` on the fixture models, and every
//! class of user error exiting with code 2 and a message that names what is at fault.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fails, fhec, fixture_models, fixtures, node, ok, reference, stderr, stdout};
use fhec_testkit::{float_tensor, str_attr};
use ndarray::{ArrayD, Axis, IxDyn};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

// ---------------------------------------------------------------------------------------------
// helpers

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write_npy<T: ndarray_npy::WritableElement>(dir: &Path, name: &str, a: &ArrayD<T>) -> PathBuf {
    let p = dir.join(name);
    ndarray_npy::write_npy(&p, a).expect("write npy");
    p
}

fn read_npy(p: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(p).expect("read output npy")
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// --- tiny ONNX models built in the tests ----------------------------------------------------

enum D {
    V(i64),
    P(&'static str),
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;

fn value_info(name: &str, elem_type: i32, dims: &[D]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::V(v) => dimension::Value::DimValue(*v),
                D::P(p) => dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, dims: &[i64], data: Vec<i64>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        int64_data: data,
        ..Default::default()
    }
}

struct ModelSpec {
    nodes: Vec<pb::NodeProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    initializers: Vec<pb::TensorProto>,
}

fn encode(spec: ModelSpec, opset: i64) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        producer_name: "fhec-tests".into(),
        producer_version: "1".into(),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: spec.nodes,
            input: spec.inputs,
            output: spec.outputs,
            initializer: spec.initializers,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn write_model(dir: &Path, name: &str, spec: ModelSpec, opset: i64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, encode(spec, opset)).expect("write model");
    p
}

/// x[1,4] -> Relu -> TopK (unsupported) -> values, plus a custom-domain node.
fn unsupported_model(dir: &Path) -> PathBuf {
    let mut custom = node("my_custom", "FancyOp", &["r"], &["c"]);
    custom.domain = "com.example".into();
    let spec = ModelSpec {
        nodes: vec![
            node("relu", "Relu", &["x"], &["r"]),
            node("my_topk", "TopK", &["r", "k"], &["values", "indices"]),
            custom,
        ],
        inputs: vec![value_info("x", FLOAT, &[D::P("N"), D::V(4)])],
        outputs: vec![
            value_info("values", FLOAT, &[D::P("N"), D::V(2)]),
            value_info("c", FLOAT, &[D::P("N"), D::V(4)]),
        ],
        initializers: vec![int64_tensor("k", &[1], vec![2])],
    };
    write_model(dir, "topk.onnx", spec, 13)
}

/// x[N,C] -> Relu, with C symbolic.
fn symbolic_dim_model(dir: &Path) -> PathBuf {
    let spec = ModelSpec {
        nodes: vec![node("relu", "Relu", &["x"], &["y"])],
        inputs: vec![value_info("x", FLOAT, &[D::P("N"), D::P("C")])],
        outputs: vec![value_info("y", FLOAT, &[D::P("N"), D::P("C")])],
        initializers: vec![],
    };
    write_model(dir, "symbolic.onnx", spec, 13)
}

// ---------------------------------------------------------------------------------------------
// top level

#[test]
fn version_and_help() {
    let out = ok(&fhec(["--version"]));
    assert!(out.starts_with("fhec "), "{out}");
    let help = ok(&fhec(["--help"]));
    assert!(
        help.contains("inspect") && help.contains("predict") && help.contains("eval"),
        "{help}"
    );
    for cmd in ["inspect", "predict", "eval"] {
        let h = ok(&fhec([cmd, "--help"]));
        assert!(h.contains("--input-shape"), "{cmd} --help: {h}");
        for flag in ["--bits", "--rounding-bits", "--calib", "--calib-limit"] {
            assert!(h.contains(flag), "{cmd} --help lacks {flag}: {h}");
        }
    }
    let h = ok(&fhec(["eval", "--help"]));
    assert!(h.contains("MedMNIST") && h.contains("NHWC"), "{h}");
}

#[test]
fn usage_errors_exit_2() {
    let o = fhec(["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    // inspect needs a model unless --supported-ops is given.
    let o = fhec(["inspect"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("MODEL"), "{}", stderr(&o));
    // Unknown mode, missing --mode, missing --output.
    let m = fixture("mlp_torch.onnx");
    let x = fixture("data/breast_cancer_sample.npy");
    let base = [
        "predict".as_ref(),
        m.as_os_str(),
        "--input".as_ref(),
        x.as_os_str(),
    ];
    let o = fhec(base.iter().chain(&[
        "--mode".as_ref(),
        "fhe".as_ref(),
        "-o".as_ref(),
        "y.npy".as_ref(),
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs --bits"), "{}", stderr(&o));
    let o = fhec(base.iter().chain(&["-o".as_ref(), "y.npy".as_ref()]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mode"), "{}", stderr(&o));
    let o = fhec(base.iter().chain(&["--mode".as_ref(), "float".as_ref()]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--output"), "{}", stderr(&o));
    // A malformed --input-shape.
    let o = fhec([
        "inspect".as_ref(),
        m.as_os_str(),
        "--input-shape".as_ref(),
        "x=1,a".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'a'"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_text_of_a_fixture() {
    let model = fixture("cnn_torch_28.onnx");
    let out = ok(&fhec(["inspect".as_ref(), model.as_os_str()]));
    for needle in [
        "producer:   pytorch",
        "opset:      14",
        "input  float32 [1,1,28,28]  (declared [batch,1,28,28])",
        "nodes:      9 ONNX -> 20 IR",
        "Conv\u{d7}2",
        "parameters: ",
        "supported:  yes",
        "graph {",
        "return %",
    ] {
        assert!(
            out.contains(needle),
            "inspect output lacks {needle:?}:\n{out}"
        );
    }
}

#[test]
fn inspect_json_on_every_fixture() {
    let models = fixture_models();
    assert!(models.len() >= 12, "{models:?}");
    for stem in models {
        let path = fixture(&format!("{stem}.onnx"));
        let out = ok(&fhec([
            "inspect".as_ref(),
            path.as_os_str(),
            "--json".as_ref(),
        ]));
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{stem}: {e}\n{out}"));
        for key in [
            "producer",
            "opset",
            "inputs",
            "outputs",
            "onnx_nodes",
            "ir_nodes",
            "ops",
            "parameters",
            "supported",
            "unsupported",
            "error",
        ] {
            assert!(v.get(key).is_some(), "{stem}: no key {key}: {out}");
        }
        assert_eq!(v["supported"], true, "{stem}: {out}");
        assert!(v["error"].is_null(), "{stem}");
        assert_eq!(v["unsupported"].as_array().map(Vec::len), Some(0), "{stem}");
        assert!(v["opset"].as_i64().unwrap() >= 13, "{stem}");
        assert!(v["onnx_nodes"].as_u64().unwrap() > 0, "{stem}");
        assert!(v["ir_nodes"].as_u64().unwrap() > 0, "{stem}");
        assert!(v["parameters"].as_u64().unwrap() > 0, "{stem}");
        let onnx_ops: u64 = v["ops"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(onnx_ops, v["onnx_nodes"].as_u64().unwrap(), "{stem}");
        let inputs = v["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1, "{stem}");
        assert_eq!(inputs[0]["shape"][0], 1, "{stem}: batch fixed to 1");
        assert!(inputs[0]["dtype"].is_string(), "{stem}");
        assert!(inputs[0]["name"].is_string(), "{stem}");
        assert_eq!(v["outputs"].as_array().unwrap().len(), 1, "{stem}");
    }
}

#[test]
fn inspect_supported_ops() {
    let out = ok(&fhec(["inspect", "--supported-ops"]));
    let ops: Vec<&str> = out.lines().collect();
    for op in ["Conv", "Gemm", "Relu", "QuantizeLinear"] {
        assert!(ops.contains(&op), "{out}");
    }
    assert!(!ops.contains(&"TopK"));
    let json = ok(&fhec(["inspect", "--supported-ops", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["supported_ops"].as_array().unwrap().len(), ops.len());
}

#[test]
fn inspect_lists_unsupported_ops_and_exits_2() {
    let dir = tmp();
    let m = unsupported_model(dir.path());
    let o = fhec(["inspect".as_ref(), m.as_os_str()]);
    fails(&o, &["my_topk", "TopK", "opset 13", "--supported-ops"]);
    let out = stdout(&o);
    assert!(out.contains("supported:  no"), "{out}");
    assert!(
        out.contains("node 'my_topk': TopK (domain 'ai.onnx')"),
        "{out}"
    );
    assert!(
        out.contains("node 'my_custom': FancyOp (domain 'com.example')"),
        "{out}"
    );
    assert!(out.contains("producer:   fhec-tests 1"), "{out}");

    let o = fhec(["inspect".as_ref(), m.as_os_str(), "--json".as_ref()]);
    fails(&o, &["TopK"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json on failure");
    assert_eq!(v["supported"], false);
    assert_eq!(v["opset"], 13);
    assert_eq!(v["onnx_nodes"], 3);
    assert!(v["ir_nodes"].is_null());
    assert_eq!(v["ops"]["TopK"], 1);
    assert_eq!(v["ops"]["com.example:FancyOp"], 1);
    let unsupported = v["unsupported"].as_array().unwrap();
    assert_eq!(unsupported.len(), 2, "{v}");
    assert_eq!(
        unsupported[0],
        serde_json::json!({"node": "my_topk", "op": "TopK", "domain": "ai.onnx"})
    );
    assert_eq!(
        unsupported[1],
        serde_json::json!({"node": "my_custom", "op": "FancyOp", "domain": "com.example"})
    );
    assert!(v["error"].as_str().unwrap().contains("TopK"));
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["N", 4]));
}

// ---------------------------------------------------------------------------------------------
// import errors (through both commands)

#[test]
fn unsupported_op_fails_predict() {
    let dir = tmp();
    let m = unsupported_model(dir.path());
    let x = write_npy(dir.path(), "x.npy", &ArrayD::<f32>::zeros(IxDyn(&[1, 4])));
    let out = dir.path().join("y.npy");
    let o = fhec([
        "predict".as_ref(),
        m.as_os_str(),
        "--input".as_ref(),
        x.as_os_str(),
        "--mode".as_ref(),
        "float".as_ref(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    fails(&o, &["topk.onnx", "node 'my_topk'", "op TopK", "opset 13"]);
    assert!(!out.exists());
}

#[test]
fn unsupported_attribute_values() {
    let dir = tmp();
    // Conv with auto_pad="BOGUS".
    let mut conv = node("my_conv", "Conv", &["x", "w"], &["y"]);
    conv.attribute.push(str_attr("auto_pad", "BOGUS"));
    let spec = ModelSpec {
        nodes: vec![conv],
        inputs: vec![value_info(
            "x",
            FLOAT,
            &[D::V(1), D::V(1), D::V(4), D::V(4)],
        )],
        outputs: vec![value_info("y", FLOAT, &[])],
        initializers: vec![float_tensor("w", &[1, 1, 3, 3], vec![0.1; 9])],
    };
    let m = write_model(dir.path(), "conv.onnx", spec, 13);
    fails(
        &fhec(["inspect".as_ref(), m.as_os_str()]),
        &["my_conv", "Conv", "opset 13", "auto_pad", "BOGUS"],
    );

    // Pad with mode="wrap".
    let mut pad = node("my_pad", "Pad", &["x", "pads"], &["y"]);
    pad.attribute.push(str_attr("mode", "wrap"));
    let spec = ModelSpec {
        nodes: vec![pad],
        inputs: vec![value_info("x", FLOAT, &[D::V(1), D::V(4)])],
        outputs: vec![value_info("y", FLOAT, &[])],
        initializers: vec![int64_tensor("pads", &[4], vec![0, 1, 0, 1])],
    };
    let m = write_model(dir.path(), "pad.onnx", spec, 13);
    fails(
        &fhec(["inspect".as_ref(), m.as_os_str(), "--json".as_ref()]),
        &["my_pad", "Pad", "opset 13", "'mode'", "wrap"],
    );
}

#[test]
fn malformed_protobuf() {
    let dir = tmp();
    // Deterministic pseudo-random bytes.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let m = dir.path().join("random.onnx");
    std::fs::write(&m, bytes).unwrap();
    fails(
        &fhec(["inspect".as_ref(), m.as_os_str()]),
        &["random.onnx", "not a valid ONNX model"],
    );
    let o = fhec(["inspect".as_ref(), m.as_os_str(), "--json".as_ref()]);
    fails(&o, &["random.onnx"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["supported"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("not a valid ONNX model"));
}

#[test]
fn truncated_protobuf() {
    let dir = tmp();
    let full = std::fs::read(fixture("mlp_torch.onnx")).unwrap();
    let m = dir.path().join("half.onnx");
    std::fs::write(&m, &full[..full.len() / 2]).unwrap();
    fails(
        &fhec(["inspect".as_ref(), m.as_os_str()]),
        &["half.onnx", "not a valid ONNX model", "truncated"],
    );
}

#[test]
fn missing_initializer() {
    let dir = tmp();
    let spec = ModelSpec {
        nodes: vec![node("my_gemm", "Gemm", &["x", "W", "b"], &["y"])],
        inputs: vec![value_info("x", FLOAT, &[D::V(1), D::V(3)])],
        outputs: vec![value_info("y", FLOAT, &[])],
        initializers: vec![float_tensor("b", &[2], vec![0.0, 0.0])],
    };
    let m = write_model(dir.path(), "missing.onnx", spec, 13);
    fails(
        &fhec(["inspect".as_ref(), m.as_os_str()]),
        &["my_gemm", "Gemm", "opset 13", "input 'W'", "not produced"],
    );
}

#[test]
fn unresolvable_dimension_and_input_shape() {
    let dir = tmp();
    let m = symbolic_dim_model(dir.path());
    let err = fails(
        &fhec(["inspect".as_ref(), m.as_os_str()]),
        &["graph input 'x'", "dimension 1", "'C'", "--input-shape"],
    );
    assert!(err.contains("--input-shape x="), "{err}");

    // --input-shape resolves it, named or positional.
    for shape in ["x=1,5", "1,5"] {
        let out = ok(&fhec([
            "inspect".as_ref(),
            m.as_os_str(),
            "--input-shape".as_ref(),
            shape.as_ref(),
            "--json".as_ref(),
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["supported"], true);
        assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 5]));
        assert_eq!(
            v["inputs"][0]["declared_shape"],
            serde_json::json!(["N", "C"])
        );
    }
    // A shape naming no input is refused.
    fails(
        &fhec([
            "inspect".as_ref(),
            m.as_os_str(),
            "--input-shape".as_ref(),
            "nope=1,5".as_ref(),
        ]),
        &["nope", "--input-shape"],
    );

    // predict with the resolved shape runs a batch.
    let x =
        ArrayD::from_shape_vec(IxDyn(&[3, 5]), (0..15).map(|v| v as f32 - 7.0).collect()).unwrap();
    let xp = write_npy(dir.path(), "x.npy", &x);
    let out = dir.path().join("y.npy");
    ok(&fhec([
        "predict".as_ref(),
        m.as_os_str(),
        "--input-shape".as_ref(),
        "x=1,5".as_ref(),
        "--input".as_ref(),
        xp.as_os_str(),
        "--mode".as_ref(),
        "float".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert_eq!(read_npy(&out), x.mapv(|v| v.max(0.0)));
}

#[test]
fn wrong_model_file() {
    // A .npy passed as the model.
    let npy = fixture("data/breast_cancer_sample.npy");
    fails(
        &fhec(["inspect".as_ref(), npy.as_os_str()]),
        &[
            "breast_cancer_sample.npy",
            "NumPy .npy array, not an ONNX model",
        ],
    );
    let dir = tmp();
    let out = dir.path().join("y.npy");
    fails(
        &fhec([
            "predict".as_ref(),
            npy.as_os_str(),
            "--input".as_ref(),
            npy.as_os_str(),
            "--mode".as_ref(),
            "float".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ]),
        &["breast_cancer_sample.npy", "not an ONNX model"],
    );
    // A missing file.
    let missing = dir.path().join("nope.onnx");
    fails(
        &fhec(["inspect".as_ref(), missing.as_os_str()]),
        &["nope.onnx", "cannot read model", "No such file"],
    );
    fails(
        &fhec(["inspect".as_ref(), missing.as_os_str(), "--json".as_ref()]),
        &["nope.onnx"],
    );
    assert!(files_in(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// predict

/// Runs `predict --mode float` and returns the output array.
fn predict(model: &Path, inputs: &[&Path], out: &Path) -> Output {
    let mut args: Vec<std::ffi::OsString> = vec!["predict".into(), model.into()];
    for i in inputs {
        args.push("--input".into());
        args.push(i.into());
    }
    args.extend([
        "--mode".into(),
        "float".into(),
        "--output".into(),
        out.into(),
    ]);
    fhec(args)
}

#[test]
fn predict_reproduces_mlp_reference_batch() {
    let dir = tmp();
    let (x, y) = reference("mlp_torch");
    assert_eq!(x.shape(), &[8, 30]);
    let xp = write_npy(dir.path(), "x.npy", &x);
    let out = dir.path().join("y.npy");
    let text = ok(&predict(&fixture("mlp_torch.onnx"), &[&xp], &out));
    assert!(text.contains("8 samples"), "{text}");
    let got = read_npy(&out);
    assert_eq!(got.shape(), y.shape());
    let err = max_abs_diff(&got, &y);
    assert!(err <= 1e-4, "max abs error {err}");
    // Only the output is left: no temporary files.
    assert_eq!(files_in(dir.path()), ["x.npy", "y.npy"]);
}

#[test]
fn predict_reproduces_every_fixture_reference() {
    let dir = tmp();
    for stem in fixture_models() {
        let (x, y) = reference(&stem);
        let xp = write_npy(dir.path(), &format!("{stem}_x.npy"), &x);
        let out = dir.path().join(format!("{stem}_y.npy"));
        ok(&predict(&fixture(&format!("{stem}.onnx")), &[&xp], &out));
        let err = max_abs_diff(&read_npy(&out), &y);
        assert!(err <= 2e-4, "{stem}: max abs error {err}");
    }
}

#[test]
fn predict_single_sample_forms() {
    let dir = tmp();
    let (x, y) = reference("mlp_torch");
    let model = fixture("mlp_torch.onnx");
    let first = y.index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();

    // The quick-start sample [1,30]: output keeps the model's shape [1,2].
    let out = dir.path().join("one.npy");
    let text = ok(&predict(
        &model,
        &[&fixture("data/breast_cancer_sample.npy")],
        &out,
    ));
    assert!(text.contains("1 sample,"), "{text}");
    let got = read_npy(&out);
    assert_eq!(got.shape(), &[1, 2]);
    assert!(max_abs_diff(&got, &first) <= 1e-4);

    // Without the batch axis: [30] -> [1,2].
    let flat = x.index_axis(Axis(0), 0).to_owned();
    let xp = write_npy(dir.path(), "flat.npy", &flat);
    let out = dir.path().join("flat_y.npy");
    ok(&predict(&model, &[&xp], &out));
    assert!(max_abs_diff(&read_npy(&out), &first) <= 1e-4);

    // float64 input is converted.
    let xp = write_npy(dir.path(), "x64.npy", &x.mapv(f64::from));
    let out = dir.path().join("y64.npy");
    ok(&predict(&model, &[&xp], &out));
    assert!(max_abs_diff(&read_npy(&out), &y) <= 1e-4);

    // A CNN sample [1,1,28,28].
    let out = dir.path().join("cnn.npy");
    ok(&predict(
        &fixture("cnn_torch_28.onnx"),
        &[&fixture("data/digits_28_sample.npy")],
        &out,
    ));
    assert_eq!(read_npy(&out).shape(), &[1, 10]);
}

#[test]
fn predict_overwrites_existing_output() {
    let dir = tmp();
    let out = dir.path().join("y.npy");
    std::fs::write(&out, b"old").unwrap();
    ok(&predict(
        &fixture("mlp_torch.onnx"),
        &[&fixture("data/breast_cancer_sample.npy")],
        &out,
    ));
    assert_eq!(read_npy(&out).shape(), &[1, 2]);
}

#[test]
fn input_shape_mismatch() {
    let dir = tmp();
    let xp = write_npy(
        dir.path(),
        "wrong.npy",
        &ArrayD::<f32>::zeros(IxDyn(&[1, 31])),
    );
    let out = dir.path().join("y.npy");
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&xp], &out),
        &["wrong.npy", "[1,31]", "graph input 'input'", "[1,30]"],
    );
    // Wrong rank too.
    let xp = write_npy(
        dir.path(),
        "rank.npy",
        &ArrayD::<f32>::zeros(IxDyn(&[2, 1, 30])),
    );
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&xp], &out),
        &["rank.npy", "[2,1,30]"],
    );
    // Integer data for a float input.
    let xp = write_npy(
        dir.path(),
        "int.npy",
        &ArrayD::<i64>::zeros(IxDyn(&[1, 30])),
    );
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&xp], &out),
        &["int.npy", "int64", "float32"],
    );
    // Not a .npy at all.
    fails(
        &predict(
            &fixture("mlp_torch.onnx"),
            &[&fixture("mlp_torch.onnx")],
            &out,
        ),
        &["mlp_torch.onnx", "not a .npy array"],
    );
    // A missing input file.
    let missing = dir.path().join("missing.npy");
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&missing], &out),
        &["missing.npy", "No such file"],
    );
    // One --input too many.
    let good = fixture("data/breast_cancer_sample.npy");
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&good, &good], &out),
        &["1 graph input", "2 --input"],
    );
    assert!(!out.exists());
}

#[test]
fn non_finite_input() {
    let dir = tmp();
    let (x, _) = reference("mlp_torch");
    let mut bad = x.clone();
    bad[[5, 7]] = f32::NAN;
    let xp = write_npy(dir.path(), "nan.npy", &bad);
    let out = dir.path().join("y.npy");
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&xp], &out),
        &["nan.npy", "sample 5, element [7]", "NaN", "finite"],
    );
    let mut bad = x.index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();
    bad[[0, 3]] = f32::INFINITY;
    let xp = write_npy(dir.path(), "inf.npy", &bad);
    fails(
        &predict(&fixture("mlp_torch.onnx"), &[&xp], &out),
        &["inf.npy", "element [0,3]", "inf"],
    );
    assert!(!out.exists());
}

#[test]
fn unwritable_output_leaves_nothing() {
    let dir = tmp();
    let model = fixture("mlp_torch.onnx");
    let x = fixture("data/breast_cancer_sample.npy");
    // A directory that does not exist.
    let out = dir.path().join("no_such_dir").join("y.npy");
    fails(
        &predict(&model, &[&x], &out),
        &["no_such_dir", "does not exist"],
    );
    assert!(!out.exists());
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
    // An existing directory as the output.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    fails(
        &predict(&model, &[&x], &dir.path().join("sub")),
        &["sub", "is a directory"],
    );
    assert_eq!(files_in(dir.path()), ["sub"]);
    assert!(files_in(&dir.path().join("sub")).is_empty());
}
