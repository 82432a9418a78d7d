//! Integer-typed graph inputs and Casts: what the import accepts, the types it records and
//! the values the float interpreter then computes (ONNX integer semantics; see
//! `fhec_ir::interp`), and what it refuses, naming the input or node and the type.

use fhec_frontend::{import_bytes, ImportOptions, ImportedModel};
use fhec_ir::{interp, DType, Op, Tensor};
use fhec_testkit::value_info;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use tract_onnx::pb;

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const UINT16: i32 = 4;
const INT16: i32 = 5;
const INT32: i32 = 6;
const INT64: i32 = 7;
const UINT64: i32 = 13;

fn node(op: &str, inputs: &[&str], output: &str, to: Option<i32>) -> pb::NodeProto {
    pb::NodeProto {
        name: output.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: to
            .map(|t| pb::AttributeProto {
                name: "to".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: t as i64,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// An initializer of the given integer type (int32_data holds 8- to 32-bit types).
fn int_init(name: &str, elem_type: i32, v: &[i64]) -> pb::TensorProto {
    let mut t = pb::TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: elem_type,
        ..Default::default()
    };
    if elem_type == INT64 {
        t.int64_data = v.to_vec();
    } else {
        t.int32_data = v.iter().map(|&x| x as i32).collect();
    }
    t
}

fn model(
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    output: pb::ValueInfoProto,
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 9,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 20,
        }],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: inits,
            input: inputs,
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn import(bytes: &[u8]) -> Result<ImportedModel, String> {
    import_bytes(bytes, "test.onnx", &ImportOptions::default()).map_err(|e| e.to_string())
}

fn v(data: &[f32]) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(&[data.len()]), data.to_vec()).unwrap()
}

fn dtype_of(m: &ImportedModel, name: &str) -> DType {
    let g = &m.graph;
    let id = g
        .node_ids()
        .find(|&i| g.node(i).name == name)
        .unwrap_or_else(|| panic!("no node {name}"));
    g.node(id).fact.dtype
}

#[test]
fn int32_input_divides_with_truncation_then_casts_to_float() {
    let bytes = model(
        vec![
            node("Div", &["x", "two"], "q", None),
            node("Cast", &["q"], "y", Some(FLOAT)),
        ],
        vec![int_init("two", INT32, &[2])],
        vec![value_info("x", INT32, &[4])],
        value_info("y", FLOAT, &[4]),
    );
    let m = import(&bytes).unwrap();
    assert_eq!(dtype_of(&m, "x"), DType::I32);
    assert_eq!(dtype_of(&m, "q"), DType::I32);
    // The Cast to float is kept as such (an Identity would keep the integer type).
    assert_eq!(dtype_of(&m, "y"), DType::F32);
    let out = interp::run(&m.graph, &[v(&[-7., 7., 9., -1.])]).unwrap();
    assert_eq!(out[0], v(&[-3., 3., 4., 0.]));
}

#[test]
fn int64_and_int8_inputs_are_accepted() {
    for (t, d) in [(INT64, DType::I64), (INT8, DType::I8), (UINT8, DType::U8)] {
        let bytes = model(
            vec![node("Cast", &["x"], "y", Some(FLOAT))],
            vec![],
            vec![value_info("x", t, &[2])],
            value_info("y", FLOAT, &[2]),
        );
        let m = import(&bytes).unwrap();
        assert_eq!(dtype_of(&m, "x"), d);
        assert_eq!(
            interp::run(&m.graph, &[v(&[3., 4.])]).unwrap()[0],
            v(&[3., 4.])
        );
    }
}

#[test]
fn constant_dividend_over_an_integer_input_truncates() {
    let bytes = model(
        vec![node("Div", &["hundred", "x"], "y", None)],
        vec![int_init("hundred", INT8, &[100])],
        vec![value_info("x", INT8, &[2])],
        value_info("y", INT8, &[2]),
    );
    let m = import(&bytes).unwrap();
    assert_eq!(dtype_of(&m, "y"), DType::I8);
    assert_eq!(
        interp::run(&m.graph, &[v(&[3., -7.])]).unwrap()[0],
        v(&[33., -14.])
    );
}

#[test]
fn unsupported_integer_inputs_are_refused_by_name_and_type() {
    for (t, name) in [(INT16, "INT16"), (UINT16, "UINT16"), (UINT64, "UINT64")] {
        let bytes = model(
            vec![node("Identity", &["pixels"], "y", None)],
            vec![],
            vec![value_info("pixels", t, &[2])],
            value_info("y", t, &[2]),
        );
        let e = import(&bytes).unwrap_err();
        assert!(
            e.contains("pixels") && e.contains(name) && e.contains("int32"),
            "{e}"
        );
    }
}

#[test]
fn runtime_cast_wraps_and_unsupported_targets_are_refused() {
    // float -> int8: truncation toward zero, then the wrap-around (200.7 -> -56).
    let bytes = model(
        vec![node("Cast", &["x"], "y", Some(INT8))],
        vec![],
        vec![value_info("x", FLOAT, &[3])],
        value_info("y", INT8, &[3]),
    );
    let m = import(&bytes).unwrap();
    assert!(matches!(
        m.graph.node(m.graph.outputs()[0]).op,
        Op::Cast { to: DType::I8 }
    ));
    assert_eq!(
        interp::run(&m.graph, &[v(&[200.7, -1.5, 127.9])]).unwrap()[0],
        v(&[-56., -1., 127.])
    );
    // int16 has no IR type: refused, naming the node and the type.
    let bytes = model(
        vec![node("Cast", &["x"], "to16", Some(INT16))],
        vec![],
        vec![value_info("x", FLOAT, &[3])],
        value_info("to16", INT16, &[3]),
    );
    let e = import(&bytes).unwrap_err();
    assert!(e.contains("to16") && e.contains("INT16"), "{e}");
}

#[test]
fn constant_casts_wrap_like_runtime_ones() {
    // Cast(int32 [200, 300, -1] -> int8) folds to [-56, 44, -1], then x + that.
    let bytes = model(
        vec![
            node("Cast", &["c"], "c8", Some(INT8)),
            node("Add", &["x", "c8"], "y", None),
        ],
        vec![int_init("c", INT32, &[200, 300, -1])],
        vec![value_info("x", INT8, &[3])],
        value_info("y", INT8, &[3]),
    );
    let m = import(&bytes).unwrap();
    assert_eq!(
        interp::run(&m.graph, &[v(&[0., 100., -128.])]).unwrap()[0],
        // 100 + 44 = 144 wraps to -112; -128 - 1 wraps to 127.
        v(&[-56., -112., 127.])
    );
}
