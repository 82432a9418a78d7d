//! The simulation engine against the clear engine and against the noise model: identical
//! results when the predicted failure probability is negligible, empirical flip rates
//! matching the predicted ones when it is not, reproducible randomness.

mod common;

use common::circuit;
use fhec_runtime::circuit::{
    InputSpec, Instruction, Lut, OutputSpec, Program, QParams, Rounding, RoundingMode, ValueInfo,
};
use fhec_runtime::clear::run_clear;
use fhec_runtime::noise::{
    minimal_secure_std_glwe, minimal_secure_std_lwe, CircuitNoise, NoiseModel,
};
use fhec_runtime::simulate::simulate;
use fhec_runtime::{execute, ClearEngine, CryptoParams, Engine, SimulationEngine};
use ndarray::{ArrayD, IxDyn};

/// tfhe-rs's Gaussian message-2-carry-2 shape (n=866, k=1, N=2048) with secure noise.
fn params() -> CryptoParams {
    CryptoParams {
        lwe_dimension: 866,
        glwe_dimension: 1,
        polynomial_size: 2048,
        lwe_noise_std: minimal_secure_std_lwe(866),
        glwe_noise_std: minimal_secure_std_glwe(1, 2048),
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    }
}

/// A model whose failure probabilities are astronomically small.
fn quiet() -> NoiseModel {
    NoiseModel {
        var_pbs: 2f64.powi(-70),
        var_ks: 2f64.powi(-70),
        var_ms: 2f64.powi(-70),
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

/// Input [1, 8] (4-bit) -> Dense 8->4 -> a 4-bit lookup with 6 bits rounded exactly, and
/// (after a rescale) a 6-bit lookup with 2 bits rounded exactly. (Approximate rounding is
/// left out: an accumulator exactly on a rounding boundary goes either way under any noise,
/// in FHE as in simulation.)
fn program() -> Program {
    let (inf, outf) = (8usize, 4usize);
    let weights: Vec<i64> = (0..outf * inf)
        .map(|j| ((j % inf + j / inf) % 5) as i64 - 2)
        .collect();
    let bias = vec![3i64, -7, 0, 11];
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut alpha = 0f64;
    for o in 0..outf {
        let row = &weights[o * inf..(o + 1) * inf];
        lo = lo.min(bias[o] + row.iter().map(|&w| (w * 15).min(0)).sum::<i64>());
        hi = hi.max(bias[o] + row.iter().map(|&w| (w * 15).max(0)).sum::<i64>());
        alpha = alpha.max(row.iter().map(|&w| (w * w) as f64).sum());
    }
    let exact = Lut {
        input_min: lo,
        precision: 4,
        rounding: Some(Rounding {
            shift: 6,
            mode: RoundingMode::Exact,
        }),
        tables: vec![(0..16).map(|i| i * i - 20).collect()],
        axis: None,
        sets: Default::default(),
    };
    let wide = Lut {
        input_min: lo,
        precision: 6,
        rounding: Some(Rounding {
            shift: 2,
            mode: RoundingMode::Exact,
        }),
        tables: vec![(0..64).map(|i| (i * 37 % 101) - 50).collect()],
        axis: None,
        sets: Default::default(),
    };
    assert!(exact.index(hi).is_some() && wide.index(hi).is_some());
    let d = exact.input_delta_log2();
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, inf],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: 4,
                signed: false,
            },
        }],
        outputs: vec![
            OutputSpec {
                name: "exact".into(),
                value: 2,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            },
            OutputSpec {
                name: "wide".into(),
                value: 4,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            },
        ],
        values: vec![
            info(&[1, inf], 0, 15, d, 1.0),
            info(&[1, outf], lo, hi, d, alpha),
            info(&[1, outf], -20, 205, 40, 1.0),
            info(&[1, outf], lo, hi, wide.input_delta_log2(), alpha),
            info(&[1, outf], -50, 50, 40, 1.0),
        ],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Dense {
                input: 0,
                weights,
                in_features: inf,
                out_features: outf,
                bias,
            },
            Instruction::Tlu {
                input: 1,
                lut: exact,
            },
            Instruction::Rescale {
                input: 1,
                shift: wide.input_delta_log2() - d,
            },
            Instruction::Tlu {
                input: 3,
                lut: wide,
            },
        ],
    }
}

#[test]
fn quiet_simulation_matches_clear_engine_on_every_input() {
    let program = program();
    program.validate().unwrap();
    let sim = SimulationEngine::with_model(CircuitNoise::from_models(vec![quiet()]), 7);
    for sample in 0..200i64 {
        let x: Vec<i64> = (0..8)
            .map(|i| (sample * 7 + i * 5 + sample / 16) % 16)
            .collect();
        let input = ArrayD::from_shape_vec(IxDyn(&[1, 8]), x).unwrap();
        let clear = execute(&program, &ClearEngine, vec![input.clone()]).unwrap();
        let simulated = execute(&program, &sim, vec![input]).unwrap();
        assert_eq!(clear, simulated, "sample {sample}");
    }
}

#[test]
fn tfhe_shaped_params_match_clear_engine_at_box_centres() {
    // With the 2_2-shaped parameters a 5-bit lookup (noise factor 40) fails with p ~ 1e-9;
    // with approximate rounding, accumulators at the centre of their box get that margin.
    let lut = Lut {
        input_min: -300,
        precision: 5,
        rounding: Some(Rounding {
            shift: 5,
            mode: RoundingMode::Approximate,
        }),
        tables: vec![(0..32).map(|i| (i * 7 % 23) - 11).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], -300, 700, lut.input_delta_log2(), 40.0);
    let model = NoiseModel::new(&params());
    assert!(model.lookup_failure_probability(&lut, 40.0) < 1e-8);
    let sim = SimulationEngine::new(&params().into(), 3);
    let accs: Vec<i64> = (0..50_000).map(|i| -300 + 32 * (i % 32)).collect();
    let refs: Vec<&i64> = accs.iter().collect();
    let tables = vec![0; refs.len()];
    let clear = ClearEngine
        .lookup(&lut, &input, 40, &refs, &tables)
        .unwrap();
    let simulated = sim.lookup(&lut, &input, 40, &refs, &tables).unwrap();
    assert_eq!(clear, simulated);
}

/// Binomial check: `failures` out of `n` is within 5 standard deviations of `p * n`.
fn assert_rate(failures: usize, n: usize, p: f64) {
    let mean = p * n as f64;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (failures as f64 - mean).abs() <= 5.0 * sd + 1.0,
        "{failures} failures in {n}, predicted {mean:.1} ± {sd:.1}"
    );
}

/// A model with only keyswitch noise, sized so that a lookup of `half_width` fails with
/// probability `p`.
fn model_for(p: f64, half_width: f64) -> NoiseModel {
    // Solve erfc(h / (sqrt(2) sigma)) = p by bisection on sigma.
    let (mut lo, mut hi) = (1e-12f64, 1.0f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if fhec_runtime::noise::p_fail(half_width, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    NoiseModel {
        var_pbs: 0.0,
        var_ks: lo * lo,
        var_ms: 0.0,
    }
}

fn flip_count(engine: &SimulationEngine, lut: &Lut, input: &ValueInfo, accs: &[i64]) -> usize {
    let refs: Vec<&i64> = accs.iter().collect();
    let tables = vec![0; refs.len()];
    let clear = ClearEngine.lookup(lut, input, 30, &refs, &tables).unwrap();
    let simulated = engine.lookup(lut, input, 30, &refs, &tables).unwrap();
    clear.iter().zip(&simulated).filter(|(a, b)| a != b).count()
}

#[test]
fn empirical_flip_rate_matches_prediction_without_rounding() {
    // 4-bit table with distinct entries: any box change changes the output.
    let lut = Lut {
        input_min: -5,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).map(|i| 3 * i + 1).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], -5, 10, 59, 1.0);
    let model = model_for(0.05, 2f64.powi(-6));
    let p = model.lookup_failure_probability(&lut, 1.0);
    assert!((p - 0.05).abs() < 1e-6, "{p}");
    let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![model]), 11);
    let accs: Vec<i64> = (0..40_000).map(|i| -5 + i % 16).collect();
    assert_rate(flip_count(&engine, &lut, &input, &accs), accs.len(), p);
}

#[test]
fn empirical_flip_rate_matches_prediction_with_approximate_rounding() {
    // Rounding 3 bits: the boxes are 8 accumulator values wide; an accumulator in the middle
    // of a box (offset 0 after rounding) is as far from the edges as a lookup without
    // rounding, values near an edge fail more often. Use box centres only.
    let lut = Lut {
        input_min: 0,
        precision: 3,
        rounding: Some(Rounding {
            shift: 3,
            mode: RoundingMode::Approximate,
        }),
        tables: vec![(0..8).map(|i| 10 - i).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], 0, 59, 57, 1.0);
    let model = model_for(0.02, 2f64.powi(-5));
    let p = model.lookup_failure_probability(&lut, 1.0);
    assert!((p - 0.02).abs() < 1e-6, "{p}");
    let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![model]), 12);
    let accs: Vec<i64> = (0..30_000).map(|i| 8 * (i % 8)).collect();
    // Approximate rounding reads half an input unit above the accumulator (so that a value
    // on a boundary rounds up as in the clear): from a box centre the edges are 3.5 and 4.5
    // units away instead of 4 and 4.
    let sigma = 4.0 / (std::f64::consts::SQRT_2 * erfc_inverse(p));
    let shifted = 0.5
        * (libm::erfc(3.5 / (std::f64::consts::SQRT_2 * sigma))
            + libm::erfc(4.5 / (std::f64::consts::SQRT_2 * sigma)));
    assert!(shifted > p);
    assert_rate(
        flip_count(&engine, &lut, &input, &accs),
        accs.len(),
        shifted,
    );
}

#[test]
fn exact_rounding_final_lookup_flips_at_predicted_rate() {
    // Only keyswitch noise: the bit extractions (margin 1/4) never fail, the final 3-bit
    // lookup (margin 1/32) fails with the predicted probability, whatever the dropped bits.
    let lut = Lut {
        input_min: -100,
        precision: 3,
        rounding: Some(Rounding {
            shift: 4,
            mode: RoundingMode::Exact,
        }),
        tables: vec![(0..8).map(|i| 2 * i - 7).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], -100, 19, 56, 1.0);
    let model = model_for(0.05, 2f64.powi(-5));
    let bootstraps = model.bootstraps(fhec_runtime::noise::LookupKind::of(&lut), 1.0);
    assert_eq!(bootstraps.len(), 5);
    assert!(bootstraps[..4].iter().all(|b| b.p_fail() < 1e-40));
    let p = model.lookup_failure_probability(&lut, 1.0);
    assert!((p - 0.05).abs() < 1e-6, "{p}");
    let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![model]), 13);
    let accs: Vec<i64> = (0..40_000).map(|i| -100 + i % 120).collect();
    assert_rate(flip_count(&engine, &lut, &input, &accs), accs.len(), p);
}

#[test]
fn exact_rounding_extraction_noise_breaks_results_no_more_than_predicted() {
    // Bootstrap-output noise amplified by 4^(B-j) makes the extractions fail; an element is
    // wrong only if one of its bootstraps failed, so the empirical rate is at most the union.
    let lut = Lut {
        input_min: 0,
        precision: 2,
        rounding: Some(Rounding {
            shift: 3,
            mode: RoundingMode::Exact,
        }),
        tables: vec![vec![5, -3, 8, 1]],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], 0, 27, 58, 2.0);
    // B = 5: extraction 0 sees 4^5 * 2 * var_pbs.
    let model = NoiseModel {
        var_pbs: 2f64.powi(-17),
        var_ks: 2f64.powi(-16),
        var_ms: 0.0,
    };
    let kind = fhec_runtime::noise::LookupKind::of(&lut);
    let union = model.element_failure_probability(kind, 2.0);
    assert!(union > 0.01, "{union}");
    let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![model]), 14);
    let accs: Vec<i64> = (0..40_000).map(|i| i % 28).collect();
    let flips = flip_count(&engine, &lut, &input, &accs);
    let n = accs.len() as f64;
    assert!(flips > 0);
    assert!(
        flips as f64 <= union * n + 5.0 * (n * union).sqrt(),
        "{flips} wrong of {n}, union bound {union}"
    );
}

#[test]
fn randomness_is_reproducible_and_thread_count_independent() {
    let lut = Lut {
        input_min: 0,
        precision: 4,
        rounding: None,
        tables: vec![(0..16).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], 0, 15, 59, 1.0);
    let model = model_for(0.3, 2f64.powi(-6));
    let accs: Vec<i64> = (0..10_000).map(|i| i % 16).collect();
    let refs: Vec<&i64> = accs.iter().collect();
    let tables = vec![0; refs.len()];
    let run = |threads: usize, seed: u64| {
        let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![model]), seed);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| engine.lookup(&lut, &input, 30, &refs, &tables).unwrap())
    };
    let a = run(1, 5);
    assert_eq!(a, run(3, 5));
    assert_ne!(a, run(1, 6));
}

/// Outside its domain a lookup reads the negacyclic wrap, as the bootstrap does (and as the
/// clear engine's `Lut::read` says); a missing table is an error.
#[test]
fn out_of_domain_values_wrap_like_the_bootstrap() {
    let lut = Lut {
        input_min: 0,
        precision: 2,
        rounding: None,
        tables: vec![vec![1, 2, 3]],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], 0, 2, 61, 1.0);
    let engine = SimulationEngine::with_model(CircuitNoise::from_models(vec![quiet()]), 1);
    // Offsets -1 (box 7: -entry 3, past the end: 0), 3 (past the end: 0), 4 (-entry 0), 6
    // (-entry 2), 9 (box 1).
    for (acc, expected) in [(-1i64, 0), (3, 0), (4, -1), (6, -3), (9, 2)] {
        let got = engine.lookup(&lut, &input, 30, &[&acc], &[0]).unwrap();
        assert_eq!(got, vec![expected], "input {acc}");
        assert_eq!(lut.read(0, acc), Some(expected), "Lut::read({acc})");
    }
    let err = engine.lookup(&lut, &input, 30, &[&1], &[1]).unwrap_err();
    assert!(err.to_string().contains("table 1"), "{err}");
}

#[test]
fn a_million_simulated_lookups_take_well_under_seconds() {
    let lut = Lut {
        input_min: 0,
        precision: 6,
        rounding: Some(Rounding {
            shift: 2,
            mode: RoundingMode::Approximate,
        }),
        tables: vec![(0..64).collect()],
        axis: None,
        sets: Default::default(),
    };
    let input = info(&[1], 0, 251, lut.input_delta_log2(), 100.0);
    let engine = SimulationEngine::new(&params().into(), 9);
    let accs: Vec<i64> = (0..1_000_000).map(|i| 4 * (i % 63)).collect();
    let refs: Vec<&i64> = accs.iter().collect();
    let tables = vec![0; refs.len()];
    let start = std::time::Instant::now();
    let out = engine.lookup(&lut, &input, 30, &refs, &tables).unwrap();
    let elapsed = start.elapsed();
    eprintln!("1e6 simulated lookups: {elapsed:?}");
    assert_eq!(out.len(), accs.len());
    // Unoptimised test builds on a shared 2-core machine; release builds are ~10x faster.
    assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
}

#[test]
fn simulate_runs_a_circuit_from_real_inputs() {
    // tfhe-rs's message-3-carry-3 Gaussian set (n=1006, N=8192): every lookup of the program
    // fails with p < 1e-8, so the simulated outputs equal the clear ones.
    let params = CryptoParams {
        lwe_dimension: 1006,
        glwe_dimension: 1,
        polynomial_size: 8192,
        lwe_noise_std: minimal_secure_std_lwe(1006),
        glwe_noise_std: minimal_secure_std_glwe(1, 8192),
        pbs_base_log: 15,
        pbs_level: 2,
        ks_base_log: 3,
        ks_level: 7,
    };
    let program = program();
    let model = NoiseModel::new(&params);
    for ins in &program.instructions {
        if let Instruction::Tlu { input, lut } = ins {
            let p = model.lookup_failure_probability(lut, program.values[*input].noise_factor);
            assert!(p < 1e-8, "{p}");
        }
    }
    let circuit = circuit(program.clone(), params);
    for sample in 0..50u64 {
        let x: Vec<f32> = (0..8).map(|i| ((sample * 5 + i * 3) % 16) as f32).collect();
        let inputs = vec![ArrayD::from_shape_vec(IxDyn(&[1, 8]), x).unwrap()];
        let clear = run_clear(&program, &inputs).unwrap();
        let simulated = simulate(&circuit, &inputs, sample).unwrap();
        assert_eq!(clear, simulated, "sample {sample}");
    }
}

/// Inverse of erfc on (0, 1) by bisection (tests only).
fn erfc_inverse(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if libm::erfc(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
