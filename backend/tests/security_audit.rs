//! Independent security audit of the parameter optimizer.
//!
//! Every parameter set the optimizer can emit ([`candidate_params`]) is checked against
//! tfhe-rs's own secure-noise curves, called directly from the `tfhe` crate (not through
//! `fhec_runtime::noise`): `minimal_lwe_variance_for_132_bits_security_gaussian`, a fit of the
//! lattice estimator for 132 bits of security (a 4-bit margin above 128) with binary secret
//! keys and Gaussian noise, modulus 2^64. The curve's constants are also re-derived here from
//! the tfhe-rs 1.8.2 source, so a change of the curve in a tfhe update is noticed. Published
//! tfhe-rs parameter sets must be judged secure; clearly insecure sets must be refused by
//! the noise check, by key generation and by loading a circuit.

use fhec_backend::optimizer::{candidate_params, choose_params, OptimizerError, PErrorTarget};
use fhec_runtime::circuit::{
    Circuit, InputSpec, Instruction, Lut, OutputSpec, Prediction, Program, QParams, Rounding,
    RoundingMode, ValueInfo,
};
use fhec_runtime::fhe::insecure_test_params;
use fhec_runtime::noise::params_are_secure;
use fhec_runtime::{ClientKey, CryptoParams, RuntimeError};
use tfhe::core_crypto::commons::noise_formulas::secure_noise::{
    minimal_glwe_variance_for_132_bits_security_gaussian,
    minimal_lwe_variance_for_132_bits_security_gaussian,
};
use tfhe::core_crypto::commons::parameters::{GlweDimension, LweDimension, PolynomialSize};

/// The native ciphertext modulus 2^64 as a float.
const MODULUS: f64 = 18_446_744_073_709_551_616.0;

/// tfhe-rs's minimal secure variance (normalised torus) of an LWE key of dimension `n`.
fn tfhe_min_lwe_variance(n: usize) -> f64 {
    minimal_lwe_variance_for_132_bits_security_gaussian(LweDimension(n), MODULUS).0
}

/// tfhe-rs's minimal secure variance of a GLWE key of dimension `k` and polynomial size `N`.
fn tfhe_min_glwe_variance(k: usize, poly: usize) -> f64 {
    minimal_glwe_variance_for_132_bits_security_gaussian(
        GlweDimension(k),
        PolynomialSize(poly),
        MODULUS,
    )
    .0
}

/// Relative tolerance for parameters set to exactly the minimal std (`sqrt` then squared).
const ROUND_OFF: f64 = 1e-12;

/// Why `p` is below tfhe-rs's 132-bit curve, if it is.
fn tfhe_verdict(p: &CryptoParams) -> Result<(), String> {
    let lwe_min = tfhe_min_lwe_variance(p.lwe_dimension);
    let lwe_var = p.lwe_noise_std * p.lwe_noise_std;
    if lwe_var.is_nan() || lwe_var < lwe_min * (1.0 - ROUND_OFF) {
        return Err(format!(
            "LWE key n = {}: variance {lwe_var:e} < tfhe minimum {lwe_min:e}",
            p.lwe_dimension
        ));
    }
    let glwe_min = tfhe_min_glwe_variance(p.glwe_dimension, p.polynomial_size);
    let glwe_var = p.glwe_noise_std * p.glwe_noise_std;
    if glwe_var.is_nan() || glwe_var < glwe_min * (1.0 - ROUND_OFF) {
        return Err(format!(
            "GLWE key k = {}, N = {}: variance {glwe_var:e} < tfhe minimum {glwe_min:e}",
            p.glwe_dimension, p.polynomial_size
        ));
    }
    Ok(())
}

#[test]
fn curve_matches_the_tfhe_source() {
    // tfhe-rs 1.8.2, src/core_crypto/commons/noise_formulas/secure_noise.rs,
    // minimal_lwe_variance_for_132_bits_security_gaussian_impl:
    //   2^(4 - 2.88539008177793 * ln q) + 2^(5.31469187675068 - 0.0497829131652661 * n)
    // The first term is a floor at 2^-124 (std 2^-62) for q = 2^64.
    let rederived = |n: f64| {
        (4.0 - 2.885_390_081_777_93 * MODULUS.ln()).exp2()
            + (5.314_691_876_750_68 - 0.049_782_913_165_266_1 * n).exp2()
    };
    for n in (256..=70_000).step_by(7) {
        let (ours, theirs) = (rederived(n as f64), tfhe_min_lwe_variance(n));
        assert!(
            ((ours - theirs) / theirs).abs() < 1e-12,
            "n = {n}: {ours:e} vs {theirs:e}"
        );
    }
    // GLWE keys are judged as LWE keys of dimension k*N.
    assert_eq!(tfhe_min_glwe_variance(4, 512), tfhe_min_lwe_variance(2048));
    // A few points of the curve, as log2 of the minimal std.
    for (n, log2_std) in [
        (500usize, -9.788),
        (630, -13.024),
        (866, -18.898),
        (1024, -22.83),
    ] {
        let got = tfhe_min_lwe_variance(n).sqrt().log2();
        assert!((got - log2_std).abs() < 0.01, "n = {n}: 2^{got}");
    }
}

#[test]
fn every_parameter_set_the_optimizer_can_emit_is_secure() {
    let candidates = candidate_params();
    // The whole documented search space: (k, N) with k in 1..=8 and N in 2^8..=2^15 (the
    // one-set search uses k <= 3, N >= 2^9 of them), k*N <= 2^15; n in 500..=1200 step 8;
    // PBS levels 1..=6 and keyswitch levels 1..=12.
    let kn_pairs = (1..=8usize)
        .flat_map(|k| (8..=15u32).map(move |l| k << l))
        .filter(|&kn| kn <= 1 << 15)
        .count();
    assert_eq!(kn_pairs, 47);
    assert_eq!(candidates.len(), kn_pairs * 88 * 6 * 12);
    let mut min_margin_bits = f64::INFINITY;
    for p in &candidates {
        tfhe_verdict(p).unwrap_or_else(|e| panic!("optimizer candidate {p} is insecure: {e}"));
        // The runtime's own check agrees (it gates key generation and circuit loading).
        params_are_secure(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!((500..=1200).contains(&p.lwe_dimension), "{p}");
        assert!(p.glwe_dimension * p.polynomial_size <= 1 << 15, "{p}");
        let margin = (p.lwe_noise_std.powi(2) / tfhe_min_lwe_variance(p.lwe_dimension))
            .min(
                p.glwe_noise_std.powi(2)
                    / tfhe_min_glwe_variance(p.glwe_dimension, p.polynomial_size),
            )
            .log2();
        min_margin_bits = min_margin_bits.min(margin);
    }
    // The optimizer uses exactly the minimal secure noise: no slack is wasted either.
    assert!(min_margin_bits.abs() < 1e-9, "{min_margin_bits}");
}

/// `elements` lookups of `precision` bits on an input of noise factor `noise_factor`.
fn lookup_program(precision: u32, rounding: Option<Rounding>, noise_factor: f64) -> Program {
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
    let info = |nf: f64, delta: u32| ValueInfo {
        shape: vec![1, 10],
        min: 0,
        max: (1i64 << precision) - 1,
        delta_log2: delta,
        noise_factor: nf,
    };
    Program {
        inputs: vec![InputSpec {
            name: "x".into(),
            shape: vec![1, 10],
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
        values: vec![info(noise_factor, d), info(1.0, 40)],
        instructions: vec![
            Instruction::Input { index: 0 },
            Instruction::Tlu { input: 0, lut },
        ],
    }
}

#[test]
fn chosen_parameters_come_from_the_audited_candidates() {
    let candidates = candidate_params();
    let mut chosen = 0;
    for precision in [1u32, 3, 5, 7] {
        for rounding in [
            None,
            Some(Rounding {
                shift: 2,
                mode: RoundingMode::Exact,
            }),
        ] {
            for p in [0.05, 2f64.powi(-40), 2f64.powi(-80)] {
                let program = lookup_program(precision, rounding, 100.0);
                match choose_params(&program, PErrorTarget::PerPbs(p), 1) {
                    Ok((params, _)) => {
                        assert!(
                            candidates.contains(&params),
                            "{params} is not among the audited candidates"
                        );
                        tfhe_verdict(&params).unwrap();
                        chosen += 1;
                    }
                    Err(OptimizerError::NoParameters { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    assert!(chosen >= 16, "only {chosen} programs got parameters");
}

/// (name, n, k, N, LWE std, GLWE std) of tfhe-rs 1.8.2's Gaussian 2^-128 KS-PBS shortint
/// sets, from src/shortint/parameters/v1_4/classic/gaussian/p_fail_2_minus_128/ks_pbs.rs
/// (`V1_4_PARAM_<name>_KS_PBS_GAUSSIAN_2M128`). tfhe-rs sets their noise to the minimal
/// secure noise, so they lie on the curve: secure, and refused by any noise reduction.
const TFHE_SETS: [(&str, usize, usize, usize, f64, f64); 8] = [
    (
        "MESSAGE_1_CARRY_0",
        747,
        6,
        256,
        1.5944604865450687e-05,
        1.9524392655548086e-11,
    ),
    (
        "MESSAGE_1_CARRY_1",
        837,
        4,
        512,
        3.3747142481837397e-06,
        2.845267479601915e-15,
    ),
    (
        "MESSAGE_1_CARRY_2",
        885,
        2,
        1024,
        1.4742441118914234e-06,
        2.845267479601915e-15,
    ),
    (
        "MESSAGE_2_CARRY_0",
        846,
        3,
        512,
        2.889344520786227e-06,
        1.9524392655548086e-11,
    ),
    (
        "MESSAGE_2_CARRY_2",
        866,
        1,
        2048,
        2.046151696979124e-06,
        2.845267479601915e-15,
    ),
    (
        "MESSAGE_3_CARRY_3",
        1006,
        1,
        8192,
        1.8277101294215978e-07,
        2.168404344971009e-19,
    ),
    (
        "MESSAGE_4_CARRY_4",
        1098,
        1,
        65536,
        3.73718341270979e-08,
        2.168404344971009e-19,
    ),
    (
        "MESSAGE_1_CARRY_6",
        1060,
        1,
        16384,
        7.199150706330062e-08,
        2.168404344971009e-19,
    ),
];

fn set(n: usize, k: usize, poly: usize, lwe_std: f64, glwe_std: f64) -> CryptoParams {
    CryptoParams {
        lwe_dimension: n,
        glwe_dimension: k,
        polynomial_size: poly,
        lwe_noise_std: lwe_std,
        glwe_noise_std: glwe_std,
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    }
}

#[test]
fn published_tfhe_sets_are_secure_and_lie_on_the_curve() {
    for (name, n, k, poly, lwe_std, glwe_std) in TFHE_SETS {
        let p = set(n, k, poly, lwe_std, glwe_std);
        tfhe_verdict(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        params_are_secure(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        // 1% less noise on either key is below the curve.
        let mut less = p;
        less.lwe_noise_std *= 0.99;
        assert!(
            tfhe_verdict(&less).is_err() && params_are_secure(&less).is_err(),
            "{name}"
        );
        let mut less = p;
        less.glwe_noise_std *= 0.99;
        assert!(
            tfhe_verdict(&less).is_err() && params_are_secure(&less).is_err(),
            "{name}"
        );
    }
}

/// Parameter sets far below 128-bit security.
fn insecure_sets() -> Vec<(&'static str, CryptoParams)> {
    let secure_glwe = TFHE_SETS[4].5;
    vec![
        // n = 500 needs std >= 2^-9.79; 2^-20 is about 10 bits of std short.
        (
            "n = 500, std 2^-20",
            set(500, 1, 2048, 2f64.powi(-20), secure_glwe),
        ),
        ("insecure_test_params()", insecure_test_params()),
        // A secure LWE key with a GLWE key of k*N = 1024 at std 2^-40 (needs 2^-22.8).
        (
            "k*N = 1024, std 2^-40",
            set(866, 1, 1024, TFHE_SETS[4].4, 2f64.powi(-40)),
        ),
    ]
}

fn circuit_with(params: CryptoParams) -> Circuit {
    Circuit {
        program: lookup_program(3, None, 1.0),
        params: params.into(),
        prediction: Prediction {
            pbs_count: 10,
            threads: 1,
            ..Default::default()
        },
        postprocessing: vec![],
    }
}

#[test]
fn insecure_parameters_are_refused_everywhere() {
    let dir = std::env::temp_dir().join(format!("fhec-security-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, p) in insecure_sets() {
        assert!(
            tfhe_verdict(&p).is_err(),
            "{name}: tfhe's curve should refuse it"
        );
        let err = params_are_secure(&p).unwrap_err();
        assert!(
            err.contains("below the minimal secure std"),
            "{name}: {err}"
        );

        // Key generation refuses before any key material exists.
        let err = ClientKey::generate(p).unwrap_err();
        assert!(
            matches!(&err, RuntimeError::Mismatch(m) if m.contains("128-bit security")),
            "{name}: {err}"
        );

        // A circuit written with such parameters (valid header and checksum) is refused
        // when loaded.
        let path = dir.join("insecure.fhec");
        circuit_with(p).save(&path).unwrap();
        let err = Circuit::load(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, RuntimeError::Format { .. })
                && text.contains("insecure.fhec")
                && text.contains("128-bit security"),
            "{name}: {text}"
        );
    }
    // The same circuit with a published secure set loads.
    let (_, n, k, poly, lwe, glwe) = TFHE_SETS[4];
    let path = dir.join("secure.fhec");
    circuit_with(set(n, k, poly, lwe, glwe))
        .save(&path)
        .unwrap();
    let loaded = Circuit::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    loaded.unwrap();
}
