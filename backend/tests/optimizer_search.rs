//! What the parameter search finds for typical lookups, how it explains impossible targets,
//! and that its accounting (bootstrap count, latency, max-pool comparisons) is right.

use std::time::Instant;

use fhec_backend::optimizer::{
    choose_param_sets, choose_params, pbs_latency_s, predict, OptimizerError, PErrorTarget, Remedy,
    SetOptions,
};
use fhec_runtime::circuit::{
    InputSpec, Instruction, Lut, OutputSpec, Program, QParams, Rounding, RoundingMode, ValueInfo,
    Window,
};
use fhec_runtime::noise::{lookup_classes, NoiseModel};
use fhec_runtime::CryptoParams;

fn info(shape: &[usize], max: i64, delta_log2: u32, noise_factor: f64) -> ValueInfo {
    ValueInfo {
        shape: shape.to_vec(),
        min: 0,
        max,
        delta_log2,
        noise_factor,
    }
}

fn lut(precision: u32, rounding: Option<Rounding>) -> Lut {
    Lut {
        input_min: 0,
        precision,
        rounding,
        tables: vec![(0..1i64 << precision).collect()],
        axis: None,
        sets: Default::default(),
    }
}

/// Several chains of `Input -> Tlu` sharing one input tensor of `elements` elements.
fn program(lookups: &[(u32, Option<Rounding>, f64)], elements: usize) -> Program {
    let mut values = Vec::new();
    let mut instructions = Vec::new();
    let mut inputs = Vec::new();
    for (i, &(precision, rounding, nf)) in lookups.iter().enumerate() {
        let l = lut(precision, rounding);
        inputs.push(InputSpec {
            name: format!("x{i}"),
            shape: vec![1, elements],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: precision,
                signed: false,
            },
        });
        values.push(info(
            &[1, elements],
            (1 << precision) - 1,
            l.input_delta_log2(),
            nf,
        ));
        instructions.push(Instruction::Input { index: i });
        values.push(info(&[1, elements], (1 << precision) - 1, 40, 1.0));
        instructions.push(Instruction::Tlu {
            input: 2 * i,
            lut: l,
        });
    }
    Program {
        inputs,
        outputs: vec![OutputSpec {
            name: "y".into(),
            value: 1,
            scale: 1.0,
            zero_point: 0,
            channel_scales: vec![],
        }],
        values,
        instructions,
    }
}

fn approx(shift: u32) -> Option<Rounding> {
    Some(Rounding {
        shift,
        mode: RoundingMode::Approximate,
    })
}

fn exact(shift: u32) -> Option<Rounding> {
    Some(Rounding {
        shift,
        mode: RoundingMode::Exact,
    })
}

#[test]
fn six_bit_lookups_at_large_noise_get_a_2048_polynomial() {
    let program = program(&[(6, None, 15000.0)], 1000);
    let (params, prediction) = choose_params(&program, PErrorTarget::PerPbs(0.008), 1).unwrap();
    eprintln!("6 bits, nf 15000, p 0.008: {params}, {prediction:?}");
    assert_eq!(params.glwe_dimension, 1, "{params}");
    assert!(params.polynomial_size <= 4096, "{params}");
    assert!((700..=1000).contains(&params.lwe_dimension), "{params}");
    assert!(prediction.p_error_per_pbs <= 0.008);
    // About the cost of tfhe-rs's 4-bit set (22-26 ms measured), far from its 6-bit set.
    assert!(prediction.pbs_latency_s < 0.06, "{prediction:?}");
    assert_eq!(prediction.pbs_count, 1000);
    assert!(
        (prediction.latency_s - 1000.0 * prediction.pbs_latency_s).abs()
            < 0.05 * prediction.latency_s
    );
}

#[test]
fn reported_configurations() {
    // The configurations the optimizer report quotes; each must be feasible and consistent
    // with `predict`.
    for (name, lookups, p) in [
        (
            "6-bit approx, p 0.008",
            vec![(6, approx(3), 15000.0)],
            0.008,
        ),
        (
            "6-bit approx, p 2^-40",
            vec![(6, approx(3), 15000.0)],
            2f64.powi(-40),
        ),
        ("4-bit, p 0.008", vec![(4, approx(3), 15000.0)], 0.008),
        (
            "6-bit exact shift 9, p 0.008",
            vec![(6, exact(9), 15000.0)],
            0.008,
        ),
    ] {
        let program = program(&lookups, 1000);
        match choose_params(&program, PErrorTarget::PerPbs(p), 1) {
            Ok((params, prediction)) => {
                eprintln!(
                    "{name}: {params}; {:.2} ms per PBS, p/PBS {:.3e}, {} PBS",
                    prediction.pbs_latency_s * 1e3,
                    prediction.p_error_per_pbs,
                    prediction.pbs_count
                );
                assert_eq!(predict(&program, &params.into(), 1).unwrap(), prediction);
                assert!(prediction.p_error_per_pbs <= p * (1.0 + 1e-9));
            }
            Err(e) => panic!("{name}: the optimizer found no parameters: {e}"),
        }
    }
}

#[test]
fn impossible_targets_explain_what_failed() {
    // 12-bit lookups of a noisy accumulator at 2^-60.
    let twelve = program(&[(3, None, 1.0), (12, None, 1e4)], 100);
    let err = choose_params(&twelve, PErrorTarget::PerPbs(2f64.powi(-60)), 1).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    match &err {
        OptimizerError::NoParameters {
            precision,
            noise_factor,
            best_p,
            target,
            remedies,
            ..
        } => {
            assert_eq!(*precision, 12);
            assert_eq!(*noise_factor, 1e4);
            assert!(best_p > target);
            // No rounding yet, a per-bootstrap target, a noisy accumulator.
            assert_eq!(
                remedies,
                &[
                    Remedy::FewerBits,
                    Remedy::RoundAccumulators,
                    Remedy::LargerFailureProbability {
                        per_inference: false
                    },
                    Remedy::SmallerWeights,
                ]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    for needle in ["12-bit", "noise factor 10000"] {
        assert!(msg.contains(needle), "missing '{needle}' in: {msg}");
    }

    // A table too wide for any polynomial size.
    let wide = program(&[(16, None, 1.0)], 10);
    let msg = choose_params(&wide, PErrorTarget::PerPbs(0.05), 1)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("polynomial size"), "{msg}");

    // A global target: the remedy is a larger failure probability per inference.
    let global = program(&[(12, None, 1e4)], 100);
    match choose_params(&global, PErrorTarget::Global(2f64.powi(-50)), 1).unwrap_err() {
        OptimizerError::NoParameters { remedies, .. } => assert!(
            remedies.contains(&Remedy::LargerFailureProbability {
                per_inference: true
            }),
            "{remedies:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn noisier_or_wider_lookups_never_get_cheaper() {
    let mut last = 0.0;
    for nf in [1.0, 10.0, 100.0, 1e3, 1e4, 1e5] {
        let (_, pred) = choose_params(
            &program(&[(5, None, nf)], 100),
            PErrorTarget::PerPbs(2f64.powi(-40)),
            1,
        )
        .unwrap();
        assert!(pred.pbs_latency_s >= last, "nf {nf}");
        last = pred.pbs_latency_s;
    }
    let mut last = 0.0;
    for precision in 1..=7 {
        let (_, pred) = choose_params(
            &program(&[(precision, None, 100.0)], 100),
            PErrorTarget::PerPbs(2f64.powi(-40)),
            1,
        )
        .unwrap();
        assert!(pred.pbs_latency_s >= last, "{precision} bits");
        last = pred.pbs_latency_s;
    }
}

#[test]
fn latency_model_matches_tfhe_timings() {
    // The engine's lookups measured with `pbs_timing --fit` (2 threads, batch blind
    // rotations; thread-milliseconds per lookup) on the development machine, 2026-12-07.
    let set = |n, k, poly, (pb, pl), (kb, kl)| CryptoParams {
        lwe_dimension: n,
        glwe_dimension: k,
        polynomial_size: poly,
        lwe_noise_std: 1e-12,
        glwe_noise_std: 1e-18,
        pbs_base_log: pb,
        pbs_level: pl,
        ks_base_log: kb,
        ks_level: kl,
    };
    let ms = |p: CryptoParams| pbs_latency_s(&p) * 1e3;
    for (p, measured) in [
        (set(600, 1, 512, (23, 1), (3, 4)), 1.39),
        (set(570, 6, 256, (16, 2), (3, 4)), 4.70),
        (set(570, 8, 256, (12, 3), (3, 4)), 8.90),
        (set(600, 4, 512, (16, 2), (3, 4)), 6.87),
        (set(850, 1, 2048, (23, 1), (3, 5)), 10.31),
        (set(850, 1, 2048, (9, 4), (2, 8)), 22.47),
        (set(850, 2, 2048, (15, 2), (5, 3)), 21.61),
        (set(850, 1, 4096, (9, 4), (2, 8)), 50.00),
        (set(1000, 1, 2048, (11, 3), (3, 6)), 20.76),
    ] {
        let predicted = ms(p);
        assert!(
            (predicted / measured - 1.0).abs() < 0.1,
            "{p}: predicted {predicted:.2} ms, measured {measured} ms"
        );
    }
}

#[test]
fn bootstraps_are_counted_per_element_and_threads_divide_latency() {
    let program = program(&[(4, exact(3), 5.0), (3, approx(2), 5.0)], 50);
    let (params, one) = choose_params(&program, PErrorTarget::PerPbs(0.01), 1).unwrap();
    assert_eq!(one.pbs_count, 50 * 4 + 50);
    let four = predict(&program, &params.into(), 4).unwrap();
    assert_eq!(four.threads, 4);
    assert!((four.latency_s * 4.0 - one.latency_s).abs() < 1e-12 * one.latency_s.max(1.0));
    assert!(one.global_p_error >= one.p_error_per_pbs);
    assert!(one.global_p_error <= 250.0 * one.p_error_per_pbs * (1.0 + 1e-9));
}

/// Input [1, 2, 6, 6] -> MaxPool 3x3 stride 3 (2x2 output): 9 taps, 8 comparisons per output.
fn maxpool_program() -> Program {
    let relu = Lut {
        input_min: -8,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| (i - 8).max(0)).collect()],
        axis: None,
        sets: Default::default(),
    };
    let d = relu.input_delta_log2();
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, 2, 6, 6],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 3,
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
            info(&[1, 2, 6, 6], 7, d, 3.0),
            info(&[1, 2, 2, 2], 7, d, 7.0),
        ],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::MaxPool {
                input: 0,
                window: Window {
                    kernel: vec![3, 3],
                    strides: vec![3, 3],
                    dilations: vec![1, 1],
                    pads: vec![(0, 0), (0, 0)],
                },
                relu,
            },
        ],
    }
}

#[test]
fn maxpool_comparisons_are_counted_with_their_tree_noise() {
    let program = maxpool_program();
    let classes = lookup_classes(&program).unwrap();
    let total: u64 = classes.iter().map(|c| c.elements).sum();
    assert_eq!(total, 8 * 8);
    // 9 taps: levels of 4, 2, 1, 1 comparisons at noise 2*(3 + L).
    let mut by_level: Vec<(f64, u64)> = classes
        .iter()
        .map(|c| (c.noise_factor, c.elements))
        .collect();
    by_level.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(by_level, vec![(6.0, 32), (8.0, 16), (10.0, 8), (12.0, 8)]);
    let (params, pred) = choose_params(&program, PErrorTarget::PerPbs(1e-6), 1).unwrap();
    assert_eq!(pred.pbs_count, 64);
    // The binding comparison is the noisiest level.
    let model = NoiseModel::new(&params);
    let Instruction::MaxPool { relu, .. } = &program.instructions[1] else {
        unreachable!()
    };
    assert_eq!(
        pred.p_error_per_pbs,
        model.lookup_failure_probability(relu, 12.0)
    );
}

#[test]
fn search_is_fast_for_many_lookup_kinds() {
    // A CNN-like mix: a dozen lookup kinds, some with exact rounding.
    let lookups: Vec<(u32, Option<Rounding>, f64)> = (0..12)
        .map(|i| {
            let rounding = match i % 3 {
                0 => None,
                1 => approx(2 + i % 4),
                _ => exact(1 + i % 3),
            };
            (2 + i % 5, rounding, 10f64.powi(1 + (i % 4) as i32))
        })
        .collect();
    let program = program(&lookups, 5000);
    let start = Instant::now();
    let result = choose_params(&program, PErrorTarget::Global(0.01), 2);
    let elapsed = start.elapsed();
    eprintln!("search took {elapsed:?}: {result:?}");
    assert!(result.is_ok());
    // Generous for unoptimised test builds; release builds take well under a second.
    assert!(elapsed.as_secs_f64() < 20.0, "{elapsed:?}");
}

/// An MLP-like mix: 6-bit tables after exact rounding of 6 bits (the bit extractions read
/// 12-bit accumulators), and 4-bit tables without rounding.
fn exact_mix() -> Program {
    program(&[(6, exact(6), 40.0), (4, None, 10.0)], 100)
}

#[test]
fn exact_rounding_gets_its_bit_extractions_on_their_own_cheaper_set() {
    let target = PErrorTarget::PerPbs(0.008);
    let (single, single_pred) = choose_params(&exact_mix(), target, 1).unwrap();
    let mut program = exact_mix();
    let (sets, pred) = choose_param_sets(&mut program, target, 1, SetOptions::default()).unwrap();
    eprintln!("single {single}: {single_pred:?}\nper class {sets}: {pred:?}");
    assert!(sets.len() > 1, "{sets}");
    // Faster than the best single set, and every bootstrap still meets the target under
    // the exact noise model (recomputed here from the assigned program).
    assert!(
        pred.latency_s < 0.8 * single_pred.latency_s,
        "{} vs {}",
        pred.latency_s,
        single_pred.latency_s
    );
    let again = predict(&program, &sets, 1).unwrap();
    assert_eq!(again, pred);
    assert!(pred.p_error_per_pbs <= 0.008, "{}", pred.p_error_per_pbs);
    assert_sets_audited(&sets);
    // The bit extractions and the 6-bit tables sit on different sets; counts add up.
    let mut exact_luts = program.instructions.iter().filter_map(|i| match i {
        Instruction::Tlu { lut, .. } if lut.shift() > 0 => Some(lut.sets),
        _ => None,
    });
    let s = exact_luts.next().unwrap();
    assert_ne!(s.bits, s.table);
    assert_eq!(pred.pbs_per_set.iter().sum::<u64>(), pred.pbs_count);
    assert_busiest_first(&sets, &pred);
    assert_eq!(pred.pbs_per_set[s.bits], 100 * 6);
    assert_eq!(pred.pbs_count, 100 * 7 + 100);
}

/// Every set is secure, and its keys (dimensions and noise; a keyswitch base depends on the
/// circuit big key it reads) are those of an audited candidate.
fn assert_sets_audited(sets: &fhec_runtime::ParamSets) {
    let candidates = fhec_backend::optimizer::candidate_params();
    for set in sets.sets() {
        fhec_runtime::noise::params_are_secure(set).unwrap();
        assert!(
            candidates
                .iter()
                .any(|c| c.lwe_dimension == set.lwe_dimension
                    && c.glwe_dimension == set.glwe_dimension
                    && c.polynomial_size == set.polynomial_size
                    && c.lwe_noise_std == set.lwe_noise_std
                    && c.glwe_noise_std == set.glwe_noise_std
                    && c.pbs_base_log == set.pbs_base_log
                    && c.pbs_level == set.pbs_level),
            "{set} is not among the audited candidates"
        );
    }
}

/// Sets on the circuit big key come first (set 0 defines it), then sets with keys of their
/// own; each kind runs the most bootstraps first (set 0 is what one-set summaries show).
fn assert_busiest_first(sets: &fhec_runtime::ParamSets, pred: &fhec_runtime::circuit::Prediction) {
    let key = |i: usize| {
        (
            sets.return_keyswitch(i).is_some(),
            u64::MAX - pred.pbs_per_set[i],
        )
    };
    assert!(
        (1..sets.len()).all(|i| key(i - 1) <= key(i)),
        "{sets}: {pred:?}"
    );
}

/// A CNN-like mix: many 6-bit tables and a few 7-bit ones (like the max-pool comparisons of
/// a 6-bit CNN, which read the difference of two 6-bit values).
fn wide_few_mix() -> Program {
    let mut lookups = vec![(6, approx(2), 8.0); 20];
    lookups.push((7, None, 16.0));
    program(&lookups, 200)
}

#[test]
fn a_few_wide_lookups_get_a_big_key_of_their_own() {
    let target = PErrorTarget::PerPbs(0.008);
    let shared_only = SetOptions {
        own_keys: false,
        ..SetOptions::default()
    };
    let (shared, shared_pred) =
        choose_param_sets(&mut wide_few_mix(), target, 1, shared_only).unwrap();
    assert!(shared.returns().iter().all(Option::is_none), "{shared}");
    let mut program = wide_few_mix();
    let (sets, pred) = choose_param_sets(&mut program, target, 1, SetOptions::default()).unwrap();
    eprintln!("shared {shared}: {shared_pred:?}\nown keys {sets}: {pred:?}");
    let set_of = |precision: u32| {
        program
            .instructions
            .iter()
            .find_map(|i| match i {
                Instruction::Tlu { lut, .. } if lut.precision == precision => Some(lut.sets.table),
                _ => None,
            })
            .unwrap()
    };
    let (wide, narrow) = (set_of(7), set_of(6));
    // The 7-bit tables take a larger ring with a key of their own and a keyswitch back; the
    // 6-bit tables stay on the smaller circuit big key.
    assert!(sets.return_keyswitch(wide).is_some(), "{sets}");
    assert!(sets.return_keyswitch(narrow).is_none(), "{sets}");
    assert!(
        sets.sets()[wide].big_lwe_dimension() > sets.big_lwe_dimension(),
        "{sets}"
    );
    assert!(
        pred.latency_s < 0.8 * shared_pred.latency_s,
        "{} vs {}",
        pred.latency_s,
        shared_pred.latency_s
    );
    // The exact noise model (return keyswitch included) agrees, and the keys are audited.
    assert_eq!(predict(&program, &sets, 1).unwrap(), pred);
    assert!(pred.p_error_per_pbs <= 0.008, "{}", pred.p_error_per_pbs);
    assert_sets_audited(&sets);
    assert_busiest_first(&sets, &pred);
    assert_eq!(pred.pbs_per_set[wide], 200);
    assert_eq!(pred.pbs_count, 21 * 200);
}

#[test]
fn the_server_key_limit_falls_back_to_one_set_or_explains_itself() {
    let target = PErrorTarget::PerPbs(0.008);
    let mut program = exact_mix();
    let (_, per_class) = choose_param_sets(&mut program, target, 1, SetOptions::default()).unwrap();
    let (single, single_pred) = choose_params(&exact_mix(), target, 1).unwrap();
    assert!(per_class.server_key_bytes > single_pred.server_key_bytes);
    let limit = SetOptions {
        per_class: true,
        max_server_key_bytes: Some(single_pred.server_key_bytes),
        ..SetOptions::default()
    };
    let mut program = exact_mix();
    let (sets, pred) = choose_param_sets(&mut program, target, 1, limit).unwrap();
    assert_eq!(sets.sets(), &[single]);
    assert_eq!(pred.server_key_bytes, single_pred.server_key_bytes);
    let tight = SetOptions {
        per_class: true,
        max_server_key_bytes: Some(single_pred.server_key_bytes - 1),
        ..SetOptions::default()
    };
    match choose_param_sets(&mut exact_mix(), target, 1, tight) {
        Err(OptimizerError::ServerKeyTooLarge { bytes, limit }) => {
            assert_eq!(
                (bytes, limit),
                (
                    single_pred.server_key_bytes,
                    single_pred.server_key_bytes - 1
                )
            )
        }
        other => panic!("expected ServerKeyTooLarge, got {other:?}"),
    }
    // Without per-class sets, the single set and nothing else.
    let one = SetOptions {
        per_class: false,
        ..SetOptions::default()
    };
    let (sets, _) = choose_param_sets(&mut exact_mix(), target, 1, one).unwrap();
    assert_eq!(sets.sets(), &[single]);
}
