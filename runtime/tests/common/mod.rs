//! Small programs and circuits shared by the runtime's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use fhec_runtime::circuit::{
    Circuit, InputSpec, Instruction, OutputSpec, Prediction, Program, QParams, ValueInfo,
};
use fhec_runtime::CryptoParams;
use ndarray::{ArrayD, IxDyn};

pub mod seeded;
#[allow(unused_imports)] // each test binary uses its own subset
pub use seeded::seeded_keys;

/// Input → output, one tensor of shape [2, 5] at `delta_log2`, values in [-8, 7].
pub fn identity_program(delta_log2: u32) -> Program {
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![2, 5],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 4,
                signed: true,
            },
        }],
        outputs: vec![OutputSpec {
            name: "y".into(),
            value: 0,
            scale: 1.0,
            zero_point: 0,
            channel_scales: vec![],
        }],
        values: vec![ValueInfo {
            shape: vec![2, 5],
            min: -8,
            max: 7,
            delta_log2,
            noise_factor: 1.0,
        }],
        instructions: vec![Instruction::Input { index: 0 }],
    }
}

/// A circuit around `program` with an empty prediction (tests do not need one).
pub fn circuit(program: Program, params: CryptoParams) -> Circuit {
    Circuit {
        program,
        params: params.into(),
        prediction: Prediction {
            threads: 1,
            ..Default::default()
        },
        postprocessing: vec![],
    }
}

/// A sample for [`identity_program`], covering its whole range.
pub fn sample() -> ArrayD<i64> {
    ArrayD::from_shape_vec(IxDyn(&[2, 5]), vec![-8, -3, -1, 0, 1, 2, 3, 5, 6, 7]).unwrap()
}
