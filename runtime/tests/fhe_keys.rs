//! Keys, encryption round trips, key/ciphertext files and the checks that refuse artifacts
//! that do not belong together.

mod common;

use common::{circuit, identity_program, sample, seeded_keys};
use fhec_runtime::fhe::{self, insecure_test_params, ClientKey, CompressedServerKey};
use fhec_runtime::RuntimeError;

#[test]
fn encrypt_decrypt_round_trip_at_several_deltas() {
    let params = insecure_test_params();
    let (client, _) = ClientKey::generate_insecure_for_tests(params).unwrap();
    for delta in [32u32, 40, 52, 59, 60] {
        for v in [-8i64, -1, 0, 1, 7] {
            let ct = client.encrypt_value(v, delta);
            let (got, noise) = client.decrypt_raw(&ct, delta);
            assert_eq!(got, v, "delta {delta}");
            assert!(noise.abs() < 0.5, "delta {delta}: noise {noise}");
        }
        // Seeded tensors through the program-level API.
        let program = identity_program(delta);
        let enc = client.encrypt_integers(&program, &[sample()]).unwrap();
        assert!(matches!(
            enc.tensors[0].ciphertexts,
            fhe::Ciphertexts::Seeded { .. }
        ));
        let dec = client.decrypt_integers(&program, &enc).unwrap();
        assert_eq!(dec, vec![sample()], "delta {delta}");
    }
    // Noise of a fresh encryption (std 2^-40) is tiny at delta 2^60, visible at 2^30.
    let (_, noise) = client.decrypt_raw(&client.encrypt_value(3, 60), 60);
    assert!(noise.abs() < 1e-6);
    let noises: Vec<f64> = (0..20)
        .map(|_| client.decrypt_raw(&client.encrypt_value(3, 30), 30).1.abs())
        .collect();
    assert!(noises.iter().any(|&n| n > 1e-3), "{noises:?}");
}

#[test]
fn files_round_trip_and_run_checks_keys() {
    let dir = tempfile::tempdir().unwrap();
    let params = insecure_test_params();
    let (client, server) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let program = identity_program(59);

    // Keys survive their files.
    let ck_path = dir.path().join("client.key");
    let sk_path = dir.path().join("server.key");
    client.save(&ck_path).unwrap();
    server.save(&sk_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ck_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let client2 = ClientKey::load(&ck_path).unwrap();
    assert_eq!(client2.key_id, client.key_id);
    assert_eq!(client2.big_lwe(), client.big_lwe());
    let server2 = CompressedServerKey::load(&sk_path).unwrap();
    assert_eq!(server2.sets[0].bsk, server.sets[0].bsk);
    assert_eq!(server2.sets[0].ksk, server.sets[0].ksk);
    // The seeded bootstrap key is 1/(k+1) of the full one.
    let full_bsk = params.lwe_dimension
        * params.pbs_level
        * (params.glwe_dimension + 1)
        * (params.glwe_dimension + 1)
        * params.polynomial_size;
    assert_eq!(
        server2.sets[0].bsk.as_ref().len() * (params.glwe_dimension + 1),
        full_bsk
    );
    let server_key = server2.expand();

    // Seeded input ciphertexts are small: 8 bytes per element plus the header.
    let enc = client2.encrypt_integers(&program, &[sample()]).unwrap();
    let ct_path = dir.path().join("in.ct");
    enc.save(&ct_path).unwrap();
    let size = std::fs::metadata(&ct_path).unwrap().len();
    assert!(size < 400, "seeded ciphertext file of {size} bytes");
    let loaded = fhe::EncryptedTensors::load(&ct_path).unwrap();
    assert_eq!(loaded, enc);

    // The server runs the (identity) circuit and the client decrypts.
    let c = circuit(program.clone(), params);
    let out = fhe::run(&c, &server_key, &loaded).unwrap();
    assert!(matches!(
        out.tensors[0].ciphertexts,
        fhe::Ciphertexts::Full { .. }
    ));
    let out_path = dir.path().join("out.ct");
    out.save(&out_path).unwrap();
    let out = fhe::EncryptedTensors::load(&out_path).unwrap();
    assert_eq!(
        client.decrypt_integers(&program, &out).unwrap(),
        vec![sample()]
    );
    // The real-valued API: quantise (scale 1, 4-bit signed, saturating) and dequantise.
    let real = sample().mapv(|v| v as f32 + 0.2);
    let enc_real = client.encrypt(&program, &[real]).unwrap();
    let out_real = fhe::run(&c, &server_key, &enc_real).unwrap();
    let decoded = client.decrypt(&program, &out_real).unwrap();
    assert_eq!(decoded, vec![sample().mapv(|v| v as f32)]);

    // Another client key: the server refuses the inputs, the client refuses the outputs.
    let (other, other_server) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let other_enc = other.encrypt_integers(&program, &[sample()]).unwrap();
    let err = fhe::run(&c, &server_key, &other_enc).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Mismatch(m) if m.contains("another client key")),
        "{err}"
    );
    let err = other.decrypt_integers(&program, &out).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Mismatch(m) if m.contains("another client key")),
        "{err}"
    );
    assert!(client.check_server_key(&other_server).is_err());
    assert!(client.check_server_key(&server).is_ok());

    // A server key for other parameters.
    let mut params_b = params;
    params_b.lwe_dimension = 600;
    let (_, server_b) = ClientKey::generate_insecure_for_tests(params_b).unwrap();
    let err = fhe::run(&c, &server_b.expand(), &loaded).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Mismatch(m) if m.contains("other TFHE parameters")),
        "{err}"
    );

    // A corrupted ciphertext file.
    let mut bytes = std::fs::read(&ct_path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&ct_path, &bytes).unwrap();
    let err = fhe::EncryptedTensors::load(&ct_path).unwrap_err();
    assert!(matches!(err, RuntimeError::Format { .. }), "{err}");
    // A key file where a ciphertext file is expected.
    let err = fhe::EncryptedTensors::load(&sk_path).unwrap_err();
    assert!(matches!(err, RuntimeError::Format { .. }), "{err}");
}

/// Each structural check refuses its own field, reached without the security check in the
/// way (`generate_insecure_for_tests` skips it): the message names what is wrong.
#[test]
fn bad_parameters_are_refused() {
    type Edit = fn(&mut fhec_runtime::CryptoParams);
    let cases: [(&str, Edit, &str); 7] = [
        ("N = 1000", |p| p.polynomial_size = 1000, "power of two"),
        (
            "n = 0",
            |p| p.lwe_dimension = 0,
            "dimensions must be positive",
        ),
        (
            "k*N too large",
            |p| p.glwe_dimension = 1 << 11,
            "k*N must be at most",
        ),
        (
            "KS 2^20 x 4",
            |p| (p.ks_base_log, p.ks_level) = (20, 4),
            "keyswitch decomposition",
        ),
        (
            "PBS level 0",
            |p| p.pbs_level = 0,
            "bootstrap decomposition",
        ),
        ("LWE noise 0", |p| p.lwe_noise_std = 0.0, "lwe_noise_std"),
        (
            "GLWE noise NaN",
            |p| p.glwe_noise_std = f64::NAN,
            "glwe_noise_std",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut params = insecure_test_params();
        edit(&mut params);
        let err = match ClientKey::generate_insecure_for_tests(params) {
            Err(RuntimeError::Mismatch(e)) => e,
            Err(other) => panic!("{what}: unexpected error {other}"),
            Ok(_) => panic!("{what}: keys were generated"),
        };
        assert!(err.contains(needle), "{what}: {err}");
    }
    // And the security check is a separate refusal: the test parameters are structurally
    // fine but below 128 bits.
    let err = match ClientKey::generate(insecure_test_params()) {
        Err(RuntimeError::Mismatch(e)) => e,
        _ => panic!("insecure parameters were accepted"),
    };
    assert!(err.contains("below 128-bit security"), "{err}");
}

/// Seeded test keys reproduce: the same seed gives the same keys and the same ciphertexts,
/// another seed other ones; keys from the system seeder never repeat.
#[test]
fn seeded_keys_and_encryptions_reproduce() {
    let params = insecure_test_params();
    let encrypt = |client: &ClientKey| {
        let program = identity_program(40);
        client.encrypt_integers(&program, &[sample()]).unwrap()
    };
    let (a, sa) = seeded_keys(params, 42);
    let (b, sb) = seeded_keys(params, 42);
    let (c, _) = seeded_keys(params, 43);
    assert_eq!(a.key_id, b.key_id);
    assert_eq!(a.small_lwe, b.small_lwe);
    assert_eq!(a.big_lwe(), b.big_lwe());
    assert_eq!(sa.sets[0].bsk.as_ref(), sb.sets[0].bsk.as_ref());
    assert_eq!(sa.sets[0].ksk.as_ref(), sb.sets[0].ksk.as_ref());
    assert_eq!(encrypt(&a), encrypt(&b));
    assert_eq!(a.encrypt_value(3, 40), b.encrypt_value(3, 40));
    assert_ne!(a.key_id, c.key_id);
    assert_ne!(a.small_lwe, c.small_lwe);
    // Successive encryptions under one key draw fresh randomness.
    assert_ne!(encrypt(&a), encrypt(&a));
    let (d, _) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let (e, _) = ClientKey::generate_insecure_for_tests(params).unwrap();
    assert_ne!(d.key_id, e.key_id);
    assert_ne!(d.small_lwe, e.small_lwe);
}
