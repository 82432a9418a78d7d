//! ONNX protobuf builders for hand-made test models.

use tract_onnx::pb;

/// ONNX `TensorProto.DataType` of `f32`.
pub const FLOAT: i32 = 1;

/// A graph input or output of element type `elem_type` (ONNX `TensorProto.DataType`) and a
/// fixed shape.
pub fn value_info(name: &str, elem_type: i32, shape: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An `f32` initializer of this shape holding `data`.
pub fn float_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: data,
        ..Default::default()
    }
}

/// A string attribute.
pub fn str_attr(name: &str, value: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}
