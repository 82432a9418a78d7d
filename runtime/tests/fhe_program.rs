//! A hand-built program (Input → Dense → Tlu → Dense → Tlu with exact rounding → MaxPool)
//! executed on ciphertexts equals the clear reference.

mod common;

use fhec_runtime::circuit::{
    InputSpec, Instruction, Lut, OutputSpec, Program, QParams, Rounding, RoundingMode, ValueInfo,
    Window,
};
use fhec_runtime::fhe::{self, insecure_test_params, ClientKey};
use fhec_runtime::{execute, ClearEngine};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

const W1: [i64; 12] = [1, -1, 1, -1, -1, 0, 1, 1, 1, 0, -1, 1];
const B1: [i64; 4] = [0, 2, -4, 1];
const W3: [i64; 16] = [2, -1, 1, 0, -2, 2, 0, 1, 1, 1, 1, 1, 0, -2, -1, 2];
const B3: [i64; 4] = [3, 0, -5, 1];

fn lut1() -> Lut {
    Lut {
        input_min: -4,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i - 4).max(0)).collect()],
        axis: None,
        sets: Default::default(),
    }
}

fn lut2() -> Lut {
    Lut {
        input_min: -17,
        precision: 4,
        rounding: Some(Rounding {
            shift: 2,
            mode: RoundingMode::Exact,
        }),
        tables: (0..4)
            .map(|c| (0..16).map(|i| (i * (c + 1) + c) % 8).collect())
            .collect(),
        axis: Some(1),
        sets: Default::default(),
    }
}

fn relu() -> Lut {
    Lut {
        input_min: -7,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i - 7).max(0)).collect()],
        axis: None,
        sets: Default::default(),
    }
}

fn info(shape: &[usize], min: i64, max: i64, delta_log2: u32, noise_factor: f64) -> ValueInfo {
    ValueInfo {
        shape: shape.to_vec(),
        min,
        max,
        delta_log2,
        noise_factor,
    }
}

fn program() -> Program {
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, 3],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 2,
                signed: false,
            },
        }],
        outputs: vec![
            OutputSpec {
                name: "max".into(),
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
            info(&[1, 3], 0, 3, 59, 1.0),
            info(&[1, 4], -4, 6, 59, 3.0),
            info(&[1, 4], 0, 6, 57, 1.0),
            info(&[1, 4], -17, 21, 57, 9.0),
            info(&[1, 4], 0, 7, 59, 1.0),
            info(&[1, 1, 2, 2], 0, 7, 59, 1.0),
            info(&[1, 1, 1, 1], 0, 7, 59, 3.0),
        ],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Dense {
                input: 0,
                weights: W1.to_vec(),
                in_features: 3,
                out_features: 4,
                bias: B1.to_vec(),
            },
            Instruction::Tlu {
                input: 1,
                lut: lut1(),
            },
            Instruction::Dense {
                input: 2,
                weights: W3.to_vec(),
                in_features: 4,
                out_features: 4,
                bias: B3.to_vec(),
            },
            Instruction::Tlu {
                input: 3,
                lut: lut2(),
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
                relu: relu(),
            },
        ],
    }
}

fn dense(x: &[i64], w: &[i64], b: &[i64]) -> Vec<i64> {
    let n_in = x.len();
    b.iter()
        .enumerate()
        .map(|(o, &bias)| bias + (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum::<i64>())
        .collect()
}

/// The program computed by hand: (max, hidden).
fn reference(x: &[i64]) -> (i64, Vec<i64>) {
    let h: Vec<i64> = dense(x, &W1, &B1)
        .iter()
        .map(|&a| lut1().lookup(0, a).unwrap())
        .collect();
    let y: Vec<i64> = dense(&h, &W3, &B3)
        .iter()
        .enumerate()
        .map(|(c, &a)| lut2().lookup(c, a).unwrap())
        .collect();
    (*y.iter().max().unwrap(), h)
}

#[test]
fn encrypted_program_matches_reference() {
    let program = program();
    let circuit = common::circuit(program.clone(), insecure_test_params());
    let (client, server) = ClientKey::generate_insecure_for_tests(&circuit.params).unwrap();
    let server = server.expand();
    let mut rng = rand::rng();
    let mut cases: Vec<[i64; 3]> = vec![[0, 0, 0], [3, 3, 3], [3, 0, 3], [0, 3, 0]];
    for _ in 0..4 {
        cases.push(std::array::from_fn(|_| rng.random_range(0..4)));
    }
    check_against_reference(&circuit, &client, &server, &cases);
}

/// Runs `circuit` encrypted on every input of `cases` and checks the decrypted outputs
/// against [`reference`] and the clear engine.
fn check_against_reference(
    circuit: &fhec_runtime::Circuit,
    client: &ClientKey,
    server: &fhec_runtime::ServerKey,
    cases: &[[i64; 3]],
) {
    let program = &circuit.program;
    for x in cases {
        let input = ArrayD::from_shape_vec(IxDyn(&[1, 3]), x.to_vec()).unwrap();
        let enc = client
            .encrypt_integers(program, std::slice::from_ref(&input))
            .unwrap();
        let out = fhe::run(circuit, server, &enc).unwrap();
        let got = client.decrypt_integers(program, &out).unwrap();
        let (max, hidden) = reference(x);
        assert_eq!(
            got[0].iter().copied().collect::<Vec<_>>(),
            vec![max],
            "x = {x:?}"
        );
        assert_eq!(
            got[1].iter().copied().collect::<Vec<_>>(),
            hidden,
            "x = {x:?}"
        );
        // And the clear engine agrees.
        let clear = execute(program, &ClearEngine, vec![input]).unwrap();
        assert_eq!(clear, got, "x = {x:?}");
    }
}

/// A table narrower than its input (as `--ranges observed` builds them): inputs outside the
/// domain read the negacyclic wrap in FHE, and the clear and simulation engines return exactly
/// the same integers (checked against the values worked out by hand).
#[test]
fn lookups_outside_a_narrowed_domain_wrap_identically_in_every_engine() {
    // Domain [2, 6] (5 entries, 3-bit precision) on inputs 0..=15.
    let cases = [
        (
            None,
            vec![0, 0, 1, 2, 3, 4, 5, 0, 0, 0, -1, -2, -3, -4, -5, 0],
        ),
        (
            Some(Rounding {
                shift: 1,
                mode: RoundingMode::Exact,
            }),
            vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0, 0, 0, 0],
        ),
    ];
    for (rounding, expected) in cases {
        let lut = Lut {
            input_min: 2,
            precision: 3,
            rounding,
            tables: vec![vec![1, 2, 3, 4, 5]],
            axis: None,
            sets: Default::default(),
        };
        let d_in = lut.input_delta_log2();
        let program = Program {
            inputs: vec![InputSpec {
                name: "x".into(),
                shape: vec![1, 16],
                quantization: QParams {
                    scale: 1.0,
                    zero_point: 0,
                    bits: 4,
                    signed: false,
                },
            }],
            outputs: vec![OutputSpec {
                name: "y".into(),
                value: 1,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            }],
            values: vec![
                info(&[1, 16], 0, 15, d_in, 1.0),
                info(&[1, 16], -5, 5, 59, 1.0),
            ],
            instructions: vec![
                Instruction::Input { index: 0 },
                Instruction::Tlu { input: 0, lut },
            ],
        };
        let circuit = common::circuit(program.clone(), insecure_test_params());
        let input = ArrayD::from_shape_vec(IxDyn(&[1, 16]), (0..16).collect()).unwrap();
        let (client, server) = ClientKey::generate_insecure_for_tests(&circuit.params).unwrap();
        let server = server.expand();
        let enc = client
            .encrypt_integers(&program, std::slice::from_ref(&input))
            .unwrap();
        let out = fhe::run(&circuit, &server, &enc).unwrap();
        let fhe: Vec<i64> = client.decrypt_integers(&program, &out).unwrap()[0]
            .iter()
            .copied()
            .collect();
        assert_eq!(fhe, expected, "FHE, rounding {rounding:?}");
        let real = input.mapv(|v| v as f32);
        let clear =
            fhec_runtime::clear::run_clear_integers(&program, std::slice::from_ref(&real)).unwrap();
        assert_eq!(clear[0].iter().copied().collect::<Vec<_>>(), expected);
        let sim = fhec_runtime::simulate::simulate_program(&program, &circuit.params, &[real], 7)
            .unwrap();
        assert_eq!(sim[0].iter().copied().collect::<Vec<_>>(), expected);
    }
}

/// A batch file runs each sample exactly as that sample alone: `run_samples` on 3 samples
/// gives, bit for bit, the stacked outputs of `run` on each sample split off the batch, and
/// each decrypts to the reference. The file stacks independently seeded samples, survives a
/// save/load, and a batch whose tensors disagree on the number of samples is refused.
#[test]
fn a_batch_runs_each_sample_as_alone() {
    use fhec_runtime::fhe::{input_specs, Ciphertexts, EncryptedTensors};
    let program = program();
    let circuit = common::circuit(program.clone(), insecure_test_params());
    let (client, server) = ClientKey::generate_insecure_for_tests(&circuit.params).unwrap();
    let server = server.expand();
    let xs: [[i64; 3]; 3] = [[0, 3, 1], [3, 3, 3], [2, 0, 1]];
    let samples: Vec<Vec<ArrayD<f32>>> = xs
        .iter()
        .map(|x| {
            let v = x.iter().map(|&q| q as f32).collect();
            vec![ArrayD::from_shape_vec(IxDyn(&[1, 3]), v).unwrap()]
        })
        .collect();
    let batch = client.encrypt_samples(&program, &samples).unwrap();
    assert_eq!(batch.tensors[0].shape, [3, 1, 3]);
    let Ciphertexts::SeededBatch { seeds, .. } = &batch.tensors[0].ciphertexts else {
        panic!("a batch of fresh encryptions is seeded per sample")
    };
    assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2] && seeds[0] != seeds[2]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.ct");
    batch.save(&path).unwrap();
    let batch = EncryptedTensors::load(&path).unwrap();

    let (out, n) = fhe::run_samples(&circuit, &server, &batch).unwrap();
    assert_eq!(n, 3);
    assert_eq!(out.tensors[0].shape, [3, 1, 1, 1, 1]);
    assert_eq!(out.tensors[1].shape, [3, 1, 4]);
    let alone: Vec<EncryptedTensors> = batch
        .split_samples(&input_specs(&program), "input")
        .unwrap()
        .expect("a batch")
        .iter()
        .map(|s| fhe::run(&circuit, &server, s).unwrap())
        .collect();
    // (`assert!`, not `assert_eq!`: a failure would print megabytes of ciphertexts)
    assert!(
        out == EncryptedTensors::stack_samples(&alone).unwrap(),
        "a batch run differs from the runs of its samples alone"
    );
    let (decrypted, batched) = client.decrypt_samples(&program, &out).unwrap();
    assert!(batched);
    assert_eq!(decrypted.len(), 3);
    for (x, got) in xs.iter().zip(&decrypted) {
        let (max, hidden) = reference(x);
        assert_eq!(got[0].iter().map(|&v| v as i64).collect::<Vec<_>>(), [max]);
        let h: Vec<i64> = got[1].iter().map(|&v| v as i64).collect();
        assert_eq!(h, hidden, "x = {x:?}");
    }

    // One sample stays in the single-sample layout and runs as before.
    let one = client.encrypt(&program, &samples[0]).unwrap();
    let (out1, n1) = fhe::run_samples(&circuit, &server, &one).unwrap();
    assert_eq!(
        (n1, out1.tensors[0].shape.as_slice()),
        (1, &[1, 1, 1, 1][..])
    );
    assert_eq!(out1, fhe::run(&circuit, &server, &one).unwrap());

    // Tensors that disagree on the number of samples.
    let mut bad = batch.clone();
    let two = client.encrypt_samples(&program, &samples[..2]).unwrap();
    bad.tensors.push(two.tensors[0].clone());
    let mut two_inputs = program.clone();
    two_inputs.inputs.push(two_inputs.inputs[0].clone());
    let err = bad
        .samples(&input_specs(&two_inputs), "input")
        .unwrap_err()
        .to_string();
    assert!(err.contains("different numbers of samples"), "{err}");
    // A batch tensor whose per-sample shape is not the circuit's.
    let mut wrong = batch.clone();
    wrong.tensors[0].shape = vec![3, 3, 1];
    let err = fhe::run_samples(&circuit, &server, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[3, 3, 1]") && err.contains("[N, 1, 3]"),
        "{err}"
    );
}

/// Three parameter sets sharing one big key (`k*N = 1024` read as k=1 N=1024, k=2 N=512 and
/// k=4 N=256, each with its own small key): the first table on set 1, the exact rounding's
/// bit extractions on set 2 and its table on set 0, the max-pool comparisons on set 1.
fn three_sets() -> fhec_runtime::ParamSets {
    let base = insecure_test_params();
    let shaped = |k: usize, n: usize| fhec_runtime::CryptoParams {
        glwe_dimension: k,
        polynomial_size: 1024 / k,
        lwe_dimension: n,
        ..base
    };
    fhec_runtime::ParamSets::new(vec![base, shaped(2, 600), shaped(4, 700)]).unwrap()
}

fn program_on_three_sets() -> Program {
    use fhec_runtime::circuit::LookupSets;
    let mut program = program();
    for instruction in &mut program.instructions {
        match instruction {
            Instruction::Tlu { lut, input: 1 } => lut.sets = LookupSets { table: 1, bits: 0 },
            Instruction::Tlu { lut, .. } => lut.sets = LookupSets { table: 0, bits: 2 },
            Instruction::MaxPool { relu, .. } => relu.sets = LookupSets { table: 1, bits: 0 },
            _ => {}
        }
    }
    program
}

/// Inputs of the multi-set tests: every max-pool and table branch.
const SET_CASES: [[i64; 3]; 5] = [[0, 0, 0], [3, 3, 3], [3, 0, 3], [0, 3, 0], [1, 2, 3]];

/// Keys for `params`, written to files and read back (the circuit file refuses insecure
/// parameters, so only the keys and the bytes of the circuit's encoding go through files in
/// these tests).
fn keys_through_files(params: &fhec_runtime::ParamSets) -> (ClientKey, fhec_runtime::ServerKey) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let (ck, sk) = (dir.path().join("client.key"), dir.path().join("server.key"));
    client.save(&ck).unwrap();
    server.save(&sk).unwrap();
    let client = ClientKey::load(&ck).unwrap();
    let server = fhec_runtime::CompressedServerKey::load(&sk)
        .unwrap()
        .expand();
    (client, server)
}

#[test]
fn a_circuit_on_three_parameter_sets_matches_the_reference_after_a_file_round_trip() {
    let mut circuit = common::circuit(program_on_three_sets(), insecure_test_params());
    circuit.params = three_sets();
    circuit.check_lookup_sets().unwrap();
    let (client, server) = keys_through_files(&circuit.params);
    assert_eq!(server.sets.len(), 3);
    assert_eq!(client.small_lwe.len(), 3);
    assert_eq!(server.params, circuit.params);
    check_against_reference(&circuit, &client, &server, &SET_CASES);
}

/// Three parameter sets, two with big keys of their own: set 1 (k=1, N=2048: a larger
/// ring than the circuit big key's k*N = 1024) and set 2 (k=2, N=256: a smaller one), each
/// keyswitching its outputs back to the circuit big key.
fn sets_with_own_keys() -> fhec_runtime::ParamSets {
    use fhec_runtime::ReturnKeyswitch;
    let base = insecure_test_params();
    let own = |k: usize, poly: usize, n: usize| fhec_runtime::CryptoParams {
        glwe_dimension: k,
        polynomial_size: poly,
        lwe_dimension: n,
        ..base
    };
    let ret = ReturnKeyswitch {
        base_log: 10,
        level: 3,
    };
    fhec_runtime::ParamSets::with_own_keys(
        vec![base, own(1, 2048, 600), own(2, 256, 700)],
        vec![None, Some(ret), Some(ret)],
    )
    .unwrap()
}

#[test]
fn a_circuit_on_sets_with_their_own_big_keys_matches_the_reference_after_a_file_round_trip() {
    let mut circuit = common::circuit(program_on_three_sets(), insecure_test_params());
    circuit.params = sets_with_own_keys();
    circuit.check_lookup_sets().unwrap();
    let (client, server) = keys_through_files(&circuit.params);
    assert!(server.sets[0].ret.is_none());
    assert!(server.sets[1].ret.is_some() && server.sets[2].ret.is_some());
    assert_eq!(
        client.own_big_lwe(1).map(|k| k.lwe_dimension().0),
        Some(2048)
    );
    assert_eq!(
        client.own_big_lwe(2).map(|k| k.lwe_dimension().0),
        Some(512)
    );
    assert!(client.own_big_lwe(0).is_none());
    assert_eq!(server.params, circuit.params);
    check_against_reference(&circuit, &client, &server, &SET_CASES);
}

#[test]
fn a_lookup_naming_a_missing_or_too_small_parameter_set_is_refused() {
    use fhec_runtime::circuit::LookupSets;
    let mut circuit = common::circuit(program_on_three_sets(), insecure_test_params());
    circuit.params = three_sets();
    let set_tables = |circuit: &mut fhec_runtime::Circuit, sets: LookupSets| {
        for instruction in &mut circuit.program.instructions {
            if let Instruction::Tlu { lut, .. } = instruction {
                lut.sets = sets;
            }
        }
    };
    set_tables(&mut circuit, LookupSets { table: 3, bits: 0 });
    let err = circuit.check_lookup_sets().unwrap_err().to_string();
    assert!(
        err.contains("parameter set 3") && err.contains("has 3"),
        "{err}"
    );
    // Set 2 (N = 256) holds tables of at most 7 bits: a 4-bit table fits, 8 bits do not.
    set_tables(&mut circuit, LookupSets { table: 2, bits: 0 });
    circuit.check_lookup_sets().unwrap();
    for instruction in &mut circuit.program.instructions {
        if let Instruction::Tlu { lut, .. } = instruction {
            lut.precision = 8;
        }
    }
    let err = circuit.check_lookup_sets().unwrap_err().to_string();
    assert!(err.contains("8-bit table") && err.contains("2^9"), "{err}");
    // The engine refuses too, instead of reading a wrong table.
    let (_, server) = ClientKey::generate_insecure_for_tests(&circuit.params).unwrap();
    let server = server.expand();
    let engine = fhec_runtime::FheEngine::new(&server);
    let lut = Lut {
        sets: LookupSets { table: 7, bits: 0 },
        ..lut1()
    };
    let err = fhec_runtime::Engine::lookup(&engine, &lut, &info(&[1], 0, 3, 59, 1.0), 59, &[], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("parameter set 7"), "{err}");
}
