//! The noise trace (`fhe::run_traced`): on a small hand-built program (Input → Dense → Tlu →
//! Dense → Tlu with approximate rounding → Reshape → MaxPool) it decrypts every lookup with
//! the client key, finds the clear values, measures noise close to the model's prediction and
//! reports a positive margin; its output ciphertexts decrypt to the clear execution.

mod common;

use common::circuit;
use fhec_runtime::circuit::{
    InputSpec, Instruction, Lut, OutputSpec, Program, QParams, Rounding, RoundingMode, ValueInfo,
    Window,
};
use fhec_runtime::fhe::{insecure_test_params, run_traced, ClientKey};
use fhec_runtime::noise::NoiseModel;
use fhec_runtime::{execute, ClearEngine};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

const ROWS: usize = 4;
const FEATURES: usize = 16;

fn info(shape: &[usize], min: i64, max: i64, delta_log2: u32, noise_factor: f64) -> ValueInfo {
    ValueInfo {
        shape: shape.to_vec(),
        min,
        max,
        delta_log2,
        noise_factor,
    }
}

/// A dense layer whose row `o` has weight `w[j]` at column `(o + cols[j]) % FEATURES`.
fn dense(input: usize, cols: &[usize], w: &[i64]) -> Instruction {
    let mut weights = vec![0i64; FEATURES * FEATURES];
    for o in 0..FEATURES {
        for (&c, &wj) in cols.iter().zip(w) {
            weights[o * FEATURES + (o + c) % FEATURES] = wj;
        }
    }
    Instruction::Dense {
        input,
        weights,
        in_features: FEATURES,
        out_features: FEATURES,
        bias: vec![0; FEATURES],
    }
}

fn program() -> Program {
    let shape = [ROWS, FEATURES];
    // Dense 1: x0 + x5 - x11 over inputs 0..=3: [-3, 6]. Noise factor 3 (fresh inputs).
    let lut1 = Lut {
        input_min: -3,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i * 7 + 1) % 4).collect()],
        axis: None,
        sets: Default::default(),
    };
    // Dense 2: y0 + y3 + y7 - y12 over 0..=3: [-3, 9], read with one bit rounded away.
    let lut2 = Lut {
        input_min: -3,
        precision: 4,
        rounding: Some(Rounding {
            shift: 1,
            mode: RoundingMode::Approximate,
        }),
        tables: vec![(0..16).map(|i| (i * 5 + 2) % 8).collect()],
        axis: None,
        sets: Default::default(),
    };
    let relu = Lut {
        input_min: -7,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i - 7).max(0)).collect()],
        axis: None,
        sets: Default::default(),
    };
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: shape.to_vec(),
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 2,
                signed: false,
            },
        }],
        outputs: vec![
            OutputSpec {
                name: "pooled".into(),
                value: 6,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            },
            OutputSpec {
                name: "hidden".into(),
                value: 2,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            },
        ],
        values: vec![
            info(&shape, 0, 3, 59, 1.0),
            info(&shape, -3, 6, 59, 3.0),
            info(&shape, 0, 3, 58, 1.0),
            info(&shape, -3, 9, 58, 4.0),
            info(&shape, 0, 7, 59, 1.0),
            info(&[1, 4, 4, 4], 0, 7, 59, 1.0),
            info(&[1, 4, 2, 2], 0, 7, 59, 3.0),
        ],
        instructions: vec![
            Instruction::Input { index: 0 },
            dense(0, &[0, 5, 11], &[1, 1, -1]),
            Instruction::Tlu {
                input: 1,
                lut: lut1,
            },
            dense(2, &[0, 3, 7, 12], &[1, 1, 1, -1]),
            Instruction::Tlu {
                input: 3,
                lut: lut2,
            },
            Instruction::Reshape { input: 4 },
            Instruction::MaxPool {
                input: 5,
                window: Window {
                    kernel: vec![2, 2],
                    strides: vec![2, 2],
                    dilations: vec![1, 1],
                    pads: vec![(0, 0), (0, 0)],
                },
                relu,
            },
        ],
    }
}

#[test]
fn trace_measures_noise_and_margin_per_lookup() {
    let params = insecure_test_params();
    let program = program();
    program.validate().unwrap();
    let circuit = circuit(program, params);
    let program = &circuit.program;
    let (client, compressed) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let server = compressed.expand();
    let mut rng = rand::rng();
    let x = ArrayD::from_shape_fn(IxDyn(&[ROWS, FEATURES]), |_| rng.random_range(0..4i64));
    let encrypted = client
        .encrypt_integers(program, std::slice::from_ref(&x))
        .unwrap();

    let (outputs, trace) = run_traced(&circuit, &server, &client, &encrypted).unwrap();
    println!("{}", trace.table());

    // The outputs decrypt to the clear execution.
    let clear = execute(program, &ClearEngine, vec![x]).unwrap();
    let decrypted = client.decrypt_integers(program, &outputs).unwrap();
    assert_eq!(decrypted, clear);
    assert_eq!(trace.output_elements, 4 * 4 + ROWS * FEATURES);
    assert_eq!(trace.output_elements_wrong, 0);

    // One record per Tlu and per max-pool tree level, named by instruction.
    let names: Vec<(usize, &str, Option<usize>, usize)> = trace
        .lookups
        .iter()
        .map(|l| (l.instruction, l.op, l.level, l.elements))
        .collect();
    assert_eq!(
        names,
        vec![
            (2, "Tlu", None, 64),
            (4, "Tlu", None, 64),
            (6, "MaxPool", Some(0), 32),
            (6, "MaxPool", Some(1), 16),
        ]
    );

    let model = NoiseModel::new(&params);
    for l in &trace.lookups {
        let at = format!("instruction {} level {:?}", l.instruction, l.level);
        assert_eq!(l.inputs_wrong, 0, "{at}");
        assert_eq!(l.outputs_wrong, 0, "{at}");
        assert_eq!(l.rotation_out_of_box, 0, "{at}");
        assert!(l.p_fail_predicted < 1e-6, "{at}: {}", l.p_fail_predicted);
        assert_eq!(l.half_box, 2f64.powi(-6), "{at}");
        // The margin: positive, and consistent with the worst element.
        assert!(l.margin_bits > 0.0 && l.margin_bits.is_finite(), "{at}");
        // Without rounding every element sits at its box centre: the worst element is the
        // one with the largest noise. Approximate rounding leaves half an input unit less.
        let worst = l.half_box / 2f64.powf(l.margin_bits);
        if l.shift == 0 {
            assert!(
                (worst - l.rotation_max_abs).abs() <= 1e-9 * l.half_box,
                "{at}"
            );
        } else {
            // The element with the largest noise has at most 1.5 half boxes of room.
            assert!(
                l.margin_bits <= (1.5 * l.half_box / l.rotation_max_abs).log2(),
                "{at}"
            );
        }
        // The noise that decides failures: within a factor 2 of the model. Inputs straight
        // from the client (instruction 2) carry encryption noise, far below the bootstrap
        // noise the model conservatively counts; the keyswitch and modulus switch dominate.
        let ratio = l.rotation_std_measured / l.rotation_std_predicted;
        assert!(
            (0.5..2.0).contains(&ratio),
            "{at}: rotation noise std measured {:e}, predicted {:e}",
            l.rotation_std_measured,
            l.rotation_std_predicted
        );
        // Bootstrap outputs carry the bootstrap noise the model predicts.
        let ratio = l.output_std_measured / model.var_pbs.sqrt();
        assert!(
            (0.5..2.0).contains(&ratio),
            "{at}: output noise std measured {:e}, predicted {:e}",
            l.output_std_measured,
            model.var_pbs.sqrt()
        );
        // Operands built from bootstrap outputs: input noise as predicted.
        if l.instruction > 2 {
            let ratio = l.input_std_measured / l.input_std_predicted;
            assert!(
                (0.5..2.0).contains(&ratio),
                "{at}: input noise std measured {:e}, predicted {:e}",
                l.input_std_measured,
                l.input_std_predicted
            );
        } else {
            assert!(l.input_std_measured < l.input_std_predicted, "{at}");
        }
    }
    let table = trace.table();
    assert!(table.contains("margin bits"), "{table}");
    assert!(table.contains("MaxPool[1]"), "{table}");
}

#[test]
fn trace_refuses_a_client_key_of_another_pair() {
    let params = insecure_test_params();
    let circuit = circuit(program(), params);
    let (client, compressed) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let (other, _) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let server = compressed.expand();
    let x = ArrayD::from_elem(IxDyn(&[ROWS, FEATURES]), 1i64);
    let encrypted = client.encrypt_integers(&circuit.program, &[x]).unwrap();
    let err = run_traced(&circuit, &server, &other, &encrypted).unwrap_err();
    assert!(err.to_string().contains("not a key pair"), "{err}");
}
