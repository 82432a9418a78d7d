//! Security and soundness audit of the parameter optimizer: every parameter set it emits is
//! secure and meets its failure target, insecure sets are refused, the noise model agrees
//! with tfhe-rs's own parameter sets, and harder targets never get cheaper.

use fhec_backend::optimizer::{choose_params, OptimizerError, PErrorTarget};
use fhec_runtime::circuit::{
    InputSpec, Instruction, Lut, OutputSpec, Program, QParams, Rounding, RoundingMode, ValueInfo,
};
use fhec_runtime::noise::{
    minimal_secure_std_glwe, minimal_secure_std_lwe, p_fail, params_are_secure, NoiseModel,
};
use fhec_runtime::CryptoParams;

/// `elements` lookups of `precision` bits (with `rounding`) on an input of noise factor
/// `noise_factor`.
fn lookup_program(
    precision: u32,
    rounding: Option<Rounding>,
    noise_factor: f64,
    elements: usize,
) -> Program {
    let shift = rounding.map_or(0, |r| r.shift);
    let lut = Lut {
        input_min: 0,
        precision,
        rounding,
        tables: vec![(0..1i64 << precision).collect()],
        axis: None,
        sets: Default::default(),
    };
    let d = lut.input_delta_log2();
    let info = |nf: f64, max: i64, delta: u32| ValueInfo {
        shape: vec![1, elements],
        min: 0,
        max,
        delta_log2: delta,
        noise_factor: nf,
    };
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, elements],
            quantization: QParams {
                scale: 1.0,
                zero_point: 0,
                bits: precision + shift,
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
            info(noise_factor, (1i64 << precision) - 1, d),
            info(1.0, (1i64 << precision) - 1, 40),
        ],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Tlu { input: 0, lut },
        ],
    }
}

#[test]
fn every_emitted_parameter_set_is_secure_and_meets_its_target() {
    let targets = [2f64.powi(-40), 2f64.powi(-20), 0.008, 0.05];
    let mut found = 0;
    for precision in 1..=8u32 {
        for noise_factor in [1.0, 100.0, 1e4] {
            for rounding in [
                None,
                Some(Rounding {
                    shift: 3,
                    mode: RoundingMode::Approximate,
                }),
                Some(Rounding {
                    shift: 2,
                    mode: RoundingMode::Exact,
                }),
            ] {
                let program = lookup_program(precision, rounding, noise_factor, 100);
                for &p in &targets {
                    match choose_params(&program, PErrorTarget::PerPbs(p), 1) {
                        Ok((params, prediction)) => {
                            found += 1;
                            params_are_secure(&params).unwrap_or_else(|e| {
                                panic!("insecure set for {precision} bits, nf {noise_factor}: {e}")
                            });
                            assert!(params.pbs_base_log * params.pbs_level <= 64);
                            assert!(params.ks_base_log * params.ks_level <= 64);
                            assert!(params.polynomial_size >= 2 << precision);
                            assert!(
                                prediction.p_error_per_pbs <= p * (1.0 + 1e-9),
                                "{precision} bits, nf {noise_factor}, {rounding:?}: {} > {p}",
                                prediction.p_error_per_pbs
                            );
                            let model = NoiseModel::new(&params);
                            let Instruction::Tlu { lut, .. } = &program.instructions[1] else {
                                unreachable!()
                            };
                            assert!(
                                model.lookup_failure_probability(lut, noise_factor)
                                    <= p * (1.0 + 1e-9)
                            );
                        }
                        Err(OptimizerError::NoParameters { .. }) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
        }
    }
    // Most of the grid is feasible (only the hardest corners are not).
    assert!(found > 8 * 3 * 3 * 4 / 2, "only {found} feasible");
}

fn reference_set() -> CryptoParams {
    // tfhe-rs 1.8.2, src/shortint/parameters/v1_4/classic/gaussian/p_fail_2_minus_128/ks_pbs.rs:
    // V1_4_PARAM_MESSAGE_2_CARRY_2_KS_PBS_GAUSSIAN_2M128 (centered modulus switch),
    // declared p-fail 2^-128.597, 2-norm 5.
    CryptoParams {
        lwe_dimension: 866,
        glwe_dimension: 1,
        polynomial_size: 2048,
        lwe_noise_std: 2.046151696979124e-06,
        glwe_noise_std: 2.845267479601915e-15,
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    }
}

#[test]
fn minimal_secure_stds_match_tfhe_parameter_sets() {
    // Noise stds of tfhe-rs 1.8.2's Gaussian shortint sets, which use the minimal secure
    // noise: v1_4 ..._MESSAGE_2_CARRY_2_KS_PBS_GAUSSIAN_2M128 (n = 866, k*N = 2048),
    // v1_1 ..._MESSAGE_2_CARRY_2_KS_PBS_GAUSSIAN_2M64 (n = 833), v1_4 ..._MESSAGE_3_CARRY_3_
    // KS_PBS_GAUSSIAN_2M128 (n = 1006, k*N = 8192).
    let close = |a: f64, b: f64| ((a - b) / b).abs() < 1e-9;
    assert!(close(minimal_secure_std_lwe(866), 2.046151696979124e-06));
    assert!(close(minimal_secure_std_lwe(833), 3.6158408373309336e-06));
    assert!(close(minimal_secure_std_lwe(1006), 1.8277101294215978e-07));
    assert!(close(
        minimal_secure_std_glwe(1, 2048),
        2.845267479601915e-15
    ));
    assert!(close(
        minimal_secure_std_glwe(4, 512),
        2.845267479601915e-15
    ));
    assert!(close(
        minimal_secure_std_glwe(1, 8192),
        2.168404344971009e-19
    ));
    params_are_secure(&reference_set()).unwrap();
}

#[test]
fn insecure_noise_is_refused() {
    let mut params = reference_set();
    params.lwe_noise_std *= 0.9;
    let err = params_are_secure(&params).unwrap_err();
    assert!(err.contains("lwe_noise_std"), "{err}");

    let mut params = reference_set();
    params.glwe_noise_std *= 0.5;
    let err = params_are_secure(&params).unwrap_err();
    assert!(err.contains("glwe_noise_std"), "{err}");

    // The same std is insecure for a smaller dimension.
    let mut params = reference_set();
    params.lwe_dimension = 700;
    assert!(params_are_secure(&params).is_err());

    let mut params = reference_set();
    params.lwe_noise_std = f64::NAN;
    assert!(params_are_secure(&params).is_err());
}

/// log2 of the failure probability of a tfhe-rs shortint set: `msg_bits` message + carry
/// bits, inputs of 2-norm `norm` (variance `norm^2 * var_pbs`).
fn log2_p_fail(params: &CryptoParams, msg_bits: u32, norm: f64) -> f64 {
    let model = NoiseModel::new(params);
    let std = model.lookup_input_std(norm * norm);
    p_fail(2f64.powi(-(msg_bits as i32 + 2)), std).log2()
}

#[test]
fn noise_model_reproduces_tfhe_declared_p_fail() {
    // The declared values of the three Gaussian 2^-128 KS-PBS sets of tfhe-rs 1.8.2
    // (src/shortint/parameters/v1_4/classic/gaussian/p_fail_2_minus_128/ks_pbs.rs).
    let p22 = reference_set();
    let got = log2_p_fail(&p22, 4, 5.0);
    assert!((got - -128.597).abs() < 0.1, "message 2 carry 2: 2^{got}");

    let p11 = CryptoParams {
        lwe_dimension: 837,
        glwe_dimension: 4,
        polynomial_size: 512,
        lwe_noise_std: 3.3747142481837397e-06,
        glwe_noise_std: 2.845267479601915e-15,
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 5,
        ks_level: 3,
    };
    let got = log2_p_fail(&p11, 2, 3.0);
    assert!((got - -128.186).abs() < 0.1, "message 1 carry 1: 2^{got}");

    let p33 = CryptoParams {
        lwe_dimension: 1006,
        glwe_dimension: 1,
        polynomial_size: 8192,
        lwe_noise_std: 1.8277101294215978e-07,
        glwe_noise_std: 2.168404344971009e-19,
        pbs_base_log: 15,
        pbs_level: 2,
        ks_base_log: 3,
        ks_level: 7,
    };
    let got = log2_p_fail(&p33, 6, 9.0);
    assert!((got - -128.115).abs() < 0.1, "message 3 carry 3: 2^{got}");
}

#[test]
fn noisier_keys_make_noisier_bootstraps() {
    // The formulas assume minimal key noise; larger key noise must be accounted for.
    let base = NoiseModel::new(&reference_set());
    let mut noisy = reference_set();
    noisy.glwe_noise_std *= 1024.0;
    noisy.lwe_noise_std *= 4.0;
    let model = NoiseModel::new(&noisy);
    assert!(model.var_pbs > 2.0 * base.var_pbs, "{model:?} vs {base:?}");
    assert!(model.var_ks > 2.0 * base.var_ks, "{model:?} vs {base:?}");
    assert_eq!(model.var_ms, base.var_ms);
}

#[test]
fn harder_targets_never_get_cheaper() {
    for (precision, rounding, noise_factor) in [
        (4, None, 100.0),
        (6, None, 1000.0),
        (
            5,
            Some(Rounding {
                shift: 3,
                mode: RoundingMode::Exact,
            }),
            50.0,
        ),
    ] {
        let program = lookup_program(precision, rounding, noise_factor, 1000);
        let mut last = 0.0;
        for p in [
            0.2,
            0.05,
            0.008,
            2f64.powi(-20),
            2f64.powi(-40),
            2f64.powi(-64),
        ] {
            let Ok((_, prediction)) = choose_params(&program, PErrorTarget::PerPbs(p), 1) else {
                // Once infeasible, every harder target is too.
                for q in [2f64.powi(-64), 2f64.powi(-80)] {
                    if q < p {
                        assert!(choose_params(&program, PErrorTarget::PerPbs(q), 1).is_err());
                    }
                }
                break;
            };
            assert!(
                prediction.latency_s >= last,
                "{precision} bits at p = {p}: {} s < {last} s",
                prediction.latency_s
            );
            last = prediction.latency_s;
        }
        assert!(last > 0.0);
    }
}

#[test]
fn global_target_is_split_over_every_bootstrap() {
    let n = 5000u64;
    let global = PErrorTarget::Global(0.01);
    let per = global.per_pbs(n);
    // 1 - (1 - per)^n = 0.01.
    assert!(((1.0 - (1.0 - per).powf(n as f64)) - 0.01).abs() < 1e-12);
    assert_eq!(PErrorTarget::PerPbs(0.01).per_pbs(n), 0.01);
    assert_eq!(
        PErrorTarget::default(),
        PErrorTarget::PerPbs(2f64.powi(-40))
    );

    let program = lookup_program(5, None, 200.0, n as usize);
    let (params_g, pred_g) = choose_params(&program, global, 4).unwrap();
    let (params_p, pred_p) = choose_params(&program, PErrorTarget::PerPbs(per), 4).unwrap();
    assert_eq!(params_g, params_p);
    assert_eq!(pred_g, pred_p);
    assert_eq!(pred_g.pbs_count, n);
    assert!(pred_g.global_p_error <= 0.01 * (1.0 + 1e-9));
    assert!(pred_g.p_error_per_pbs <= per * (1.0 + 1e-9));
    // The global probability follows from the per-bootstrap one.
    let implied = 1.0 - (1.0 - pred_g.p_error_per_pbs).powf(n as f64);
    assert!((pred_g.global_p_error - implied).abs() <= 1e-9 * implied.max(1e-300));
}

#[test]
fn invalid_targets_are_refused() {
    let program = lookup_program(3, None, 1.0, 10);
    for p in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(matches!(
            choose_params(&program, PErrorTarget::PerPbs(p), 1),
            Err(OptimizerError::InvalidTarget(_))
        ));
    }
}
