//! The security of every key the optimizer can emit, judged by published lattice-estimator
//! results instead of tfhe-rs's curve function (which `security_audit.rs` and the runtime's
//! own check both use): a second opinion from other people's runs of the estimator.
//!
//! Two sources, both for LWE with a 64-bit torus and Gaussian noise of std `2^-m`:
//!
//! - **2023 grid**: security in bits for `n` in 256..=2048 (step 256) and `m` in 8..=40
//!   (step 4), computed with the lattice estimator (Albrecht et al.) and published as
//!   `lwe-security-db.yaml` in github.com/fakub/LWE-Estimates (values copied below). Keys
//!   inside the grid are judged by bilinear interpolation; the same file's off-grid points
//!   (n = 384, 640, 896, ...; m = 14, 22, 26) are held out to measure how well that
//!   interpolation predicts the estimator.
//! - **2020 points**: Concrete's `LWE128_*` constants ("128 bits of security ... LWE estimator,
//!   September 15th 2020", concrete 0.1.x `lwe_params.rs`), minimal `log2 std` at 128 bits
//!   for n = 256 ... 4096. They reach the GLWE keys (`k*N` up to 2^15, std down to 2^-62)
//!   that the grid does not cover.
//!
//! Finding recorded here: the 2023 grid judges tfhe-rs's 132-bit curve at 124.7-130 bits for
//! n in 500..=1200 (the estimator's newer attacks on binary secrets cost a few bits at small
//! n); the tests below assert at least 124 bits by that grid, and at least the 2020 128-bit
//! noise everywhere. A key 2^3 below the curve's noise fails both.

use fhec_backend::optimizer::candidate_params;
use fhec_runtime::noise::{minimal_secure_std_glwe, minimal_secure_std_lwe};

/// (n, m, bits): security of LWE dimension `n` with noise std `2^-m`, from the 2023 grid.
#[rustfmt::skip]
const GRID_2023: [(usize, u32, f64); 72] = [
    (256, 8, 76.0), (256, 12, 58.4), (256, 16, 47.6), (256, 20, 41.7), (256, 24, 41.4),
    (256, 28, 41.3), (256, 32, 41.2), (256, 36, 41.2), (256, 40, 41.1),
    (512, 8, 143.1), (512, 12, 108.1), (512, 16, 86.8), (512, 20, 72.9), (512, 24, 63.3),
    (512, 28, 56.0), (512, 32, 50.3), (512, 36, 44.4), (512, 40, 42.8),
    (768, 8, 207.2), (768, 12, 161.3), (768, 16, 128.8), (768, 20, 107.1), (768, 24, 91.8),
    (768, 28, 80.7), (768, 32, 72.2), (768, 36, 65.4), (768, 40, 60.1),
    (1024, 8, 271.4), (1024, 12, 216.7), (1024, 16, 173.1), (1024, 20, 143.4),
    (1024, 24, 122.3), (1024, 28, 106.7), (1024, 32, 94.8), (1024, 36, 85.4), (1024, 40, 77.9),
    (1280, 8, 335.7), (1280, 12, 273.3), (1280, 16, 218.7), (1280, 20, 181.1),
    (1280, 24, 154.2), (1280, 28, 134.1), (1280, 32, 118.6), (1280, 36, 106.5), (1280, 40, 96.6),
    (1536, 8, 399.9), (1536, 12, 331.1), (1536, 16, 265.5), (1536, 20, 220.1),
    (1536, 24, 187.1), (1536, 28, 162.5), (1536, 32, 143.4), (1536, 36, 128.4), (1536, 40, 116.3),
    (1792, 8, 464.0), (1792, 12, 389.6), (1792, 16, 313.3), (1792, 20, 259.8),
    (1792, 24, 221.0), (1792, 28, 191.7), (1792, 32, 169.1), (1792, 36, 151.2), (1792, 40, 136.7),
    (2048, 8, 503.1), (2048, 12, 448.8), (2048, 16, 361.7), (2048, 20, 300.4),
    (2048, 24, 255.7), (2048, 28, 221.8), (2048, 32, 195.4), (2048, 36, 174.4), (2048, 40, 157.4),
];

/// Points of the same 2023 file off the grid above: (n, m, bits).
#[rustfmt::skip]
const HELD_OUT_2023: [(usize, f64, f64); 24] = [
    (544, 22.0, 71.5), (512, 22.0, 67.6), (544, 24.0, 66.8),
    (768, 14.0, 143.4), (640, 14.0, 119.4), (512, 14.0, 96.2), (640, 20.0, 89.7),
    (768, 26.0, 85.8), (640, 26.0, 72.5), (512, 26.0, 59.5), (640, 16.0, 107.5),
    (640, 24.0, 77.4), (640, 32.0, 61.2), (896, 16.0, 150.7), (896, 24.0, 106.9),
    (896, 32.0, 83.3), (1152, 16.0, 195.7), (1152, 24.0, 138.1), (1152, 32.0, 106.6),
    (1408, 16.0, 242.0), (1408, 24.0, 170.5), (384, 14.0, 73.9), (384, 16.0, 67.1),
    (384, 20.0, 56.8),
];

fn grid(n: usize, m: u32) -> f64 {
    GRID_2023
        .iter()
        .find(|&&(gn, gm, _)| gn == n && gm == m)
        .map(|&(_, _, bits)| bits)
        .unwrap_or_else(|| panic!("no grid point ({n}, {m})"))
}

/// Security by the 2023 grid, bilinear in (n, m); `None` outside it.
fn security_2023(n: f64, m: f64) -> Option<f64> {
    if !(256.0..=2048.0).contains(&n) || !(8.0..=40.0).contains(&m) {
        return None;
    }
    let n0 = ((n / 256.0).floor() * 256.0).min(1792.0);
    let m0 = (((m - 8.0) / 4.0).floor() * 4.0 + 8.0).min(36.0);
    let (tn, tm) = ((n - n0) / 256.0, (m - m0) / 4.0);
    let at = |dn: f64, dm: f64| grid((n0 + dn) as usize, (m0 + dm) as u32);
    let low = at(0.0, 0.0) + tm * (at(0.0, 4.0) - at(0.0, 0.0));
    let high = at(256.0, 0.0) + tm * (at(256.0, 4.0) - at(256.0, 0.0));
    Some(low + tn * (high - low))
}

/// Concrete's `LWE128_*` points (2020): (n, log2 of the minimal std for 128 bits).
const POINTS_2020: [(usize, i32); 12] = [
    (256, -5),
    (512, -11),
    (630, -14),
    (650, -15),
    (688, -16),
    (710, -17),
    (750, -18),
    (800, -19),
    (830, -20),
    (1024, -25),
    (2048, -52),
    (4096, -105),
];

/// Minimal log2 std for 128 bits by the 2020 points, linear between neighbours (the
/// points lie on one line, `-0.0264 n + 2.01`, Concrete's fit of them).
fn min_log2_std_2020(n: usize) -> Option<f64> {
    let i = POINTS_2020.iter().rposition(|&(pn, _)| pn <= n)?;
    let (n0, l0) = POINTS_2020[i];
    // Past the last point, its noise still suffices: a larger dimension at the same noise
    // is at least as secure.
    let Some(&(n1, l1)) = POINTS_2020.get(i + 1) else {
        return Some(l0 as f64);
    };
    Some(l0 as f64 + (n - n0) as f64 / (n1 - n0) as f64 * (l1 - l0) as f64)
}

/// Bits by the 2023 grid (if inside it) and whether the 2020 points accept the key.
fn judge(n: usize, std: f64) -> (Option<f64>, bool) {
    let log2 = std.log2();
    let by_2020 = min_log2_std_2020(n).is_some_and(|min| log2 >= min);
    (security_2023(n as f64, -log2), by_2020)
}

/// Least security the 2023 grid may give an emitted key (see the module note).
const MIN_BITS_2023: f64 = 124.0;

#[test]
fn interpolation_predicts_the_held_out_estimates() {
    // Grid points are reproduced exactly.
    for &(n, m, bits) in &GRID_2023 {
        assert_eq!(security_2023(n as f64, m as f64), Some(bits), "({n}, {m})");
    }
    // Off-grid points within 2 bits where security is above 60 bits (below that the
    // estimates flatten towards the floor of the attack costs and the interpolation is
    // rougher; no emitted key is near there).
    for &(n, m, bits) in &HELD_OUT_2023 {
        let got = security_2023(n as f64, m).unwrap();
        if bits >= 60.0 {
            assert!(
                (got - bits).abs() <= 2.0,
                "({n}, 2^-{m}): {got:.1} interpolated, {bits} estimated"
            );
        }
    }
}

#[test]
fn every_emitted_key_is_secure_by_published_estimates() {
    let mut keys: Vec<(usize, f64, String)> = Vec::new();
    for p in candidate_params() {
        keys.push((p.lwe_dimension, p.lwe_noise_std, format!("LWE key of {p}")));
        keys.push((
            p.glwe_dimension * p.polynomial_size,
            p.glwe_noise_std,
            format!("GLWE key of {p}"),
        ));
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    keys.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let (mut in_grid, mut least) = (0, f64::INFINITY);
    for (n, std, what) in &keys {
        let (bits, by_2020) = judge(*n, *std);
        assert!(
            by_2020,
            "{what}: std 2^{:.2} below the 2020 estimate for 128 bits",
            std.log2()
        );
        if let Some(bits) = bits {
            in_grid += 1;
            least = least.min(bits);
            assert!(
                bits >= MIN_BITS_2023,
                "{what}: {bits:.1} bits by the 2023 estimates"
            );
        }
    }
    // Every small key and the GLWE keys of k*N <= 1536 are inside the 2023 grid.
    assert!(in_grid >= 88, "{in_grid} keys judged by the 2023 grid");
    eprintln!(
        "{} distinct keys; {in_grid} inside the 2023 grid, least {least:.1} bits",
        keys.len()
    );
}

#[test]
fn keys_below_the_curve_fail_the_published_estimates() {
    // Noise 8x below tfhe-rs's minimum (3 bits of std) fails both sources, for small keys
    // and GLWE keys alike; so the checks above are not vacuous. (At 2 bits the 2020 points,
    // laxer than tfhe-rs's curve by up to 2 bits of std, still accept some.)
    for n in [500usize, 640, 866, 1024, 1200] {
        let std = minimal_secure_std_lwe(n) / 8.0;
        let (bits, by_2020) = judge(n, std);
        assert!(bits.unwrap() < MIN_BITS_2023, "n = {n}: {bits:?}");
        assert!(!by_2020, "n = {n}");
    }
    // From k*N = 4096 on, the minimal std is tfhe-rs's floor of 2^-62 (far above the
    // security bound), so GLWE keys are probed below that.
    for (k, poly) in [(1usize, 1024usize), (1, 2048), (2, 1024)] {
        let std = minimal_secure_std_glwe(k, poly) / 16.0;
        assert!(!judge(k * poly, std).1, "k*N = {}", k * poly);
    }
}
