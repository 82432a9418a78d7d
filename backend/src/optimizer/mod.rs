//! Choice of the TFHE parameters of a circuit: the fastest parameter set (by a calibrated
//! latency model) whose every bootstrap meets the failure-probability target, under the same
//! noise model the simulator uses ([`fhec_runtime::noise`]).
//!
//! Search space: GLWE dimension `k` in 1..=3, polynomial size `N` in 2^9..=2^15 (with sets
//! per class: `k` in 1..=8, `N` in 2^8..=2^15) with `k*N <= 2^15`, LWE dimension `n` in 500..=1200 (step 8), PBS decomposition level 1..=6 and
//! keyswitch level 1..=12 with `base_log * level <= 64`. Noise levels are the minimal secure
//! ones for each key (132-bit security by construction). The program's bootstraps are first
//! grouped by lookup kind (precision, rounding), keeping the largest input noise factor of
//! each kind: failure probability grows with the noise factor, so those are the binding
//! constraints. Both noise formulas are linear in `n`-independent terms per decomposition, so
//! for each `(k, N)` the best PBS base per level is found once, and for each `(k*N, n)` the
//! best keyswitch base per level; the latency model then orders the candidates and only
//! cheaper ones are checked.
//!
//! Latency model of one keyswitch + bootstrap (thread-seconds): blind rotation is `n`
//! external products, each `(k+1)*level` forward and `k+1` inverse FFTs of size `N` plus
//! `(k+1)^2*level` pointwise products; the keyswitch is `k*N*level_ks*(n+1)` multiply-adds.
//! The constants are fitted to the engine's batched lookups measured on the development
//! machine (see [`COST`]).

mod sets;

pub use sets::{choose_param_sets, SetOptions};

use fhec_runtime::circuit::{Instruction, LookupSets, Prediction, Program};
use fhec_runtime::noise::{
    self, lookup_classes, minimal_secure_std_glwe, minimal_secure_std_lwe, CircuitNoise,
    LookupClass, LookupKind, NoiseModel,
};
use fhec_runtime::{CryptoParams, ParamSets, ReturnKeyswitch, RuntimeError};

/// Failure-probability target of a compilation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PErrorTarget {
    /// Every bootstrap fails with at most this probability.
    PerPbs(f64),
    /// One inference (all its bootstraps) fails with at most this probability; split evenly
    /// over the bootstraps: `p = 1 - (1 - P)^(1/n_pbs)`.
    Global(f64),
}

impl Default for PErrorTarget {
    fn default() -> Self {
        PErrorTarget::PerPbs(2f64.powi(-40))
    }
}

impl PErrorTarget {
    /// The probability given by the user.
    pub fn value(&self) -> f64 {
        match *self {
            PErrorTarget::PerPbs(p) | PErrorTarget::Global(p) => p,
        }
    }

    /// The failure probability every one of `pbs_count` bootstraps must meet.
    pub fn per_pbs(&self, pbs_count: u64) -> f64 {
        match *self {
            PErrorTarget::PerPbs(p) => p,
            PErrorTarget::Global(p) if pbs_count <= 1 => p,
            PErrorTarget::Global(p) => -((-p).ln_1p() / pbs_count as f64).exp_m1(),
        }
    }
}

/// Why no parameters could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    #[error("cannot analyse the circuit: {0}")]
    Program(#[from] RuntimeError),
    #[error("invalid failure probability {0}: it must be strictly between 0 and 1")]
    InvalidTarget(f64),
    /// Even one parameter set for the whole circuit needs a larger server key than allowed.
    #[error(
        "the smallest server key found takes {:.1} MiB, above the limit of {:.1} MiB",
        *bytes as f64 / 1048576.0,
        *limit as f64 / 1048576.0
    )]
    ServerKeyTooLarge { bytes: u64, limit: u64 },
    /// No parameter set of the search space satisfies `constraint` for the lookups of the
    /// given kind; `remedies` says what would help, in the compiler's terms (the CLI names
    /// its flags for them).
    #[error(
        "no TFHE parameters found: {constraint} ({precision}-bit lookups{rounding}, input noise \
         factor {noise_factor:.0}: best failure probability found {best_p:.3e}, target \
         {target:.3e} per bootstrap)."
    )]
    NoParameters {
        constraint: String,
        precision: u32,
        /// ", rounding N bits exactly/approximately" or empty.
        rounding: String,
        noise_factor: f64,
        best_p: f64,
        target: f64,
        remedies: Vec<Remedy>,
    },
}

/// A change to the compilation that makes parameters easier to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Quantise to fewer bits (smaller tables, smaller accumulators).
    FewerBits,
    /// Round accumulators to fewer bits before each lookup.
    RoundAccumulators,
    /// Approximate instead of exact rounding: fewer bootstraps, each reading fewer bits.
    ApproximateRounding,
    /// Allow a larger failure probability (per bootstrap or per inference, as the target was
    /// given).
    LargerFailureProbability { per_inference: bool },
    /// The noise factor grows with the squared weights: smaller weights help.
    SmallerWeights,
}

/// Seconds per elementary operation of the latency model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Per `N*log2(N)` of one FFT and per coefficient of one pointwise product.
    pub fft_op_s: f64,
    /// Per multiply-add of the keyswitch.
    pub ks_mac_s: f64,
    /// Per ciphertext word touched by a linear operation (multiply-add of `k*N + 1` words).
    pub linear_word_s: f64,
}

/// Fitted to the engine as circuits run it (`cargo run --release -p fhec-runtime --example
/// pbs_timing -- --fit`: 256 lookups on 2 threads with batch blind rotations, and 256
/// keyswitches alone, over 13 sets from k=6 and k=8 at N=256 to k=1 N=4096 level 4), in
/// thread-seconds per lookup, on the 2-core development machine (AMD EPYC, 2026-12-07): every
/// set within 7 % of its measurement. E.g. n=570 k=6 N=256 level 2: 4.7 ms; n=850 k=1
/// N=2048: level 1 10.3 ms, level 4 22.5 ms; n=850 k=1 N=4096 level 4 50.0 ms. (The previous constants,
/// fitted to tfhe-rs's shortint sets one bootstrap at a time, over-predicted the batched
/// engine about 2x and keyswitches 3x.)
pub const COST: CostModel = CostModel {
    fft_op_s: 0.0950e-9,
    ks_mac_s: 0.223e-9,
    linear_word_s: 0.3e-9,
};

/// Predicted thread-seconds of one keyswitch + programmable bootstrap (as the engine runs
/// them, in batches).
pub fn pbs_latency_s(params: &CryptoParams) -> f64 {
    pbs_latency_parts(
        params.lwe_dimension,
        params.glwe_dimension,
        params.polynomial_size,
        params.pbs_level,
        params.ks_level,
    )
}

fn pbs_latency_parts(n: usize, k: usize, poly: usize, level: usize, ks_level: usize) -> f64 {
    blind_rotation_s(n, k, poly, level) + keyswitch_s(n, k * poly, ks_level)
}

/// The blind rotation's share of [`pbs_latency_parts`].
fn blind_rotation_s(n: usize, k: usize, poly: usize, level: usize) -> f64 {
    let (n, k, poly, l) = (n as f64, k as f64, poly as f64, level as f64);
    let ffts = n * (k + 1.0) * (l + 1.0) * poly * poly.log2();
    let products = n * (k + 1.0) * (k + 1.0) * l * poly;
    COST.fft_op_s * (ffts + products)
}

/// The keyswitch's share of [`pbs_latency_parts`] (`big` = `k * N`).
fn keyswitch_s(n: usize, big: usize, ks_level: usize) -> f64 {
    COST.ks_mac_s * (big * ks_level * (n + 1)) as f64
}

/// Predicted single-thread latency of one bootstrap of set `index` of `params`: keyswitch
/// from the circuit big key, blind rotation and, for a set with its own big key, the return
/// keyswitch (`k*N * level * (main + 1)` multiply-adds).
pub fn set_latency_s(params: &ParamSets, index: usize) -> f64 {
    let p = &params.sets()[index];
    let main = params.big_lwe_dimension();
    let rotation = blind_rotation_s(
        p.lwe_dimension,
        p.glwe_dimension,
        p.polynomial_size,
        p.pbs_level,
    );
    let ret = params.return_keyswitch(index).map_or(0.0, |r| {
        return_keyswitch_s(p.big_lwe_dimension(), main, r.level)
    });
    rotation + keyswitch_s(p.lwe_dimension, main, p.ks_level) + ret
}

/// Latency of a return keyswitch from dimension `own` to the circuit big key `main`.
fn return_keyswitch_s(own: usize, main: usize, level: usize) -> f64 {
    keyswitch_s(main, own, level)
}

/// Bytes of the expanded server key: per set, the Fourier bootstrap key (`n * (k+1)^2 *
/// level * N / 2` complex f64), the keyswitch key (`main * level * (n + 1)` words, `main` the
/// circuit big key's dimension) and, for a set with its own big key, the return keyswitch
/// key (`k*N * level * (main + 1)` words).
pub fn server_key_bytes(params: &ParamSets) -> u64 {
    let main = params.big_lwe_dimension() as u64;
    params
        .sets()
        .iter()
        .zip(params.returns())
        .map(|(p, ret)| {
            let k1 = (p.glwe_dimension + 1) as u64;
            let bsk = p.lwe_dimension as u64
                * k1
                * k1
                * p.pbs_level as u64
                * p.polynomial_size as u64
                * 8;
            let ksk = main * p.ks_level as u64 * (p.lwe_dimension as u64 + 1) * 8;
            let ret = ret.map_or(0, |r: ReturnKeyswitch| {
                p.big_lwe_dimension() as u64 * r.level as u64 * (main + 1) * 8
            });
            bsk + ksk + ret
        })
        .sum()
}

/// Ciphertext-level operations of the linear instructions of one inference (each costs
/// `k*N + 1` word operations).
pub fn linear_ops(program: &Program) -> u64 {
    let len = |id: usize| program.values.get(id).map_or(0, |v| v.len() as u64);
    program
        .instructions
        .iter()
        .enumerate()
        .map(|(i, ins)| match ins {
            Instruction::Input { .. } => 0,
            Instruction::Dense { in_features, .. } => len(i) * *in_features as u64,
            Instruction::Conv { weight_shape, .. } => {
                len(i) * weight_shape.iter().skip(1).product::<usize>() as u64
            }
            Instruction::SumPool { window, .. } => {
                len(i) * window.kernel.iter().product::<usize>() as u64
            }
            Instruction::MaxPool { window, .. } => {
                2 * len(i) * window.kernel.iter().product::<usize>() as u64
            }
            _ => len(i),
        })
        .sum()
}

/// What `params` give for one inference of `program` on `threads` threads (each lookup on
/// the sets it names).
pub fn predict(
    program: &Program,
    params: &ParamSets,
    threads: usize,
) -> Result<Prediction, OptimizerError> {
    let classes = lookup_classes(program)?;
    predict_classes(&classes, linear_ops(program), params, threads)
}

fn predict_classes(
    classes: &[LookupClass],
    linear: u64,
    params: &ParamSets,
    threads: usize,
) -> Result<Prediction, OptimizerError> {
    let threads = threads.max(1);
    let failure = CircuitNoise::for_classes(params, classes)?.classes_failure(classes)?;
    let mut pbs_per_set = vec![0u64; params.len()];
    for c in classes {
        pbs_per_set[c.sets.table] += c.elements;
        if c.kind.exact {
            pbs_per_set[c.sets.bits] += c.elements * c.kind.shift as u64;
        }
    }
    let latencies: Vec<f64> = (0..params.len())
        .map(|i| set_latency_s(params, i))
        .collect();
    let pbs_s: f64 = pbs_per_set
        .iter()
        .zip(&latencies)
        .map(|(&n, l)| n as f64 * l)
        .sum();
    let linear_s = linear as f64 * (params.big_lwe_dimension() + 1) as f64 * COST.linear_word_s;
    Ok(Prediction {
        pbs_count: failure.pbs_count,
        p_error_per_pbs: failure.p_error_per_pbs,
        global_p_error: failure.global_p_error,
        pbs_latency_s: if failure.pbs_count > 0 {
            pbs_s / failure.pbs_count as f64
        } else {
            latencies[0]
        },
        latency_s: (pbs_s + linear_s) / threads as f64,
        threads,
        pbs_per_set,
        pbs_latency_per_set_s: latencies,
        server_key_bytes: server_key_bytes(params),
    })
}

/// The `(k, N)` shapes a search visits.
#[derive(Clone, Debug)]
struct Shapes {
    glwe_dimensions: std::ops::RangeInclusive<usize>,
    log2_polys: std::ops::RangeInclusive<u32>,
}

/// Search bounds of the one-set search.
const ONE_SET: Shapes = Shapes {
    glwe_dimensions: 1..=3,
    log2_polys: 9..=15,
};
/// With one set per class, wider shapes: a class of small tables (a 1-bit extraction) runs
/// cheapest on a small `N` with a larger `k` (Concrete ML runs them at k=6 N=256).
const PER_CLASS: Shapes = Shapes {
    glwe_dimensions: 1..=8,
    log2_polys: 8..=15,
};
const MAX_BIG_LWE_DIMENSION: usize = 1 << 15;
const LWE_DIMENSIONS: std::ops::RangeInclusive<usize> = 500..=1200;
const LWE_STEP: usize = 8;
const PBS_LEVELS: usize = 6;
const KS_LEVELS: usize = 12;

/// A binding constraint: the noisiest input of one lookup kind.
#[derive(Clone, Copy, Debug)]
struct Constraint {
    kind: LookupKind,
    noise_factor: f64,
}

fn constraints(classes: &[LookupClass]) -> Vec<Constraint> {
    let mut out: Vec<Constraint> = Vec::new();
    for c in classes {
        match out.iter_mut().find(|x| x.kind == c.kind) {
            Some(x) => x.noise_factor = x.noise_factor.max(c.noise_factor),
            None => out.push(Constraint {
                kind: c.kind,
                noise_factor: c.noise_factor,
            }),
        }
    }
    out
}

/// Best decomposition base (smallest variance) per level, with that variance.
fn best_bases(levels: usize, variance: impl Fn(usize, usize) -> f64) -> Vec<(usize, f64)> {
    (1..=levels)
        .map(|level| {
            (1..=64 / level)
                .map(|b| (b, variance(b, level)))
                .fold(
                    (0, f64::INFINITY),
                    |best, x| if x.1 < best.1 { x } else { best },
                )
        })
        .collect()
}

/// Calls `visit` for every `(k, N, n)` of the search space whose tables fit (`N >= 2^(R+1)`)
/// with, per PBS level, the best base and resulting variance, and the modulus-switch
/// variance (keyswitches depend on the key they read: [`keyswitch_bases`]).
fn for_each_point(
    shapes: Shapes,
    max_precision: u32,
    mut visit: impl FnMut(&CryptoParams, &[(usize, f64)], f64),
) {
    for k in shapes.glwe_dimensions {
        for log_poly in shapes.log2_polys.clone() {
            let poly = 1usize << log_poly;
            if k * poly > MAX_BIG_LWE_DIMENSION || (poly as u64) < 2u64 << max_precision.min(62) {
                continue;
            }
            let glwe_std = minimal_secure_std_glwe(k, poly);
            // The PBS variance is proportional to n: find the best bases at n = 1.
            let pbs_unit = best_bases(PBS_LEVELS, |b, l| {
                noise::pbs_variance(1, k, poly, b, l, glwe_std)
            });
            for n in LWE_DIMENSIONS.step_by(LWE_STEP) {
                let lwe_std = minimal_secure_std_lwe(n);
                let pbs: Vec<(usize, f64)> =
                    pbs_unit.iter().map(|&(b, v)| (b, v * n as f64)).collect();
                let params = CryptoParams {
                    lwe_dimension: n,
                    glwe_dimension: k,
                    polynomial_size: poly,
                    lwe_noise_std: lwe_std,
                    glwe_noise_std: glwe_std,
                    pbs_base_log: 0,
                    pbs_level: 0,
                    ks_base_log: 0,
                    ks_level: 0,
                };
                visit(&params, &pbs, noise::ms_variance(n, poly));
            }
        }
    }
}

/// Per keyswitch level, the best base and resulting variance of a keyswitch from dimension
/// `input` to the small key of `point` (at its noise).
fn keyswitch_bases(input: usize, point: &CryptoParams) -> Vec<(usize, f64)> {
    let (n, lwe_std) = (point.lwe_dimension, point.lwe_noise_std);
    best_bases(KS_LEVELS, |b, l| {
        noise::ks_variance(input, n, b, l, lwe_std)
    })
}

/// A point of the search space with the PBS level `pbs_level` and keyswitch level
/// `ks_level` and their bases: the one way the search turns a point into parameters.
fn with_levels(
    base: &CryptoParams,
    (pbs_level, pbs_base_log): (usize, usize),
    (ks_level, ks_base_log): (usize, usize),
) -> CryptoParams {
    CryptoParams {
        pbs_base_log,
        pbs_level,
        ks_base_log,
        ks_level,
        ..*base
    }
}

/// Every parameter set [`choose_params`] and [`choose_param_sets`] can return: each `(k, N, n)`
/// of the search space with its noise levels and, per PBS and keyswitch level, the base the
/// search would pick (the keyswitch base for a keyswitch from the set's own `k*N`; a set
/// with a big key of its own keyswitches from the circuit big key, whose base differs, and
/// its return keyswitch key is encrypted under the circuit big key at that key's noise).
/// For audits (the security test checks every key of them against tfhe-rs's curves).
pub fn candidate_params() -> Vec<CryptoParams> {
    let mut out = Vec::new();
    for_each_point(PER_CLASS, 0, |base, pbs, _| {
        let ks = keyswitch_bases(base.big_lwe_dimension(), base);
        for (l, &(pbs_base, _)) in pbs.iter().enumerate() {
            for (m, &(ks_base, _)) in ks.iter().enumerate() {
                out.push(with_levels(base, (l + 1, pbs_base), (m + 1, ks_base)));
            }
        }
    });
    out
}

fn worst_p(model: &NoiseModel, constraints: &[Constraint]) -> f64 {
    constraints
        .iter()
        .map(|c| model.kind_failure_probability(c.kind, c.noise_factor))
        .fold(0.0, f64::max)
}

/// Classes equal but for their role or sets, merged (same noise, same count in total).
fn merge_classes(classes: Vec<LookupClass>) -> Vec<LookupClass> {
    let mut out: Vec<LookupClass> = Vec::new();
    for c in classes {
        match out
            .iter_mut()
            .find(|x| x.kind == c.kind && x.noise_factor == c.noise_factor && x.sets == c.sets)
        {
            Some(x) => x.elements += c.elements,
            None => out.push(c),
        }
    }
    out
}

/// Chooses the one parameter set with the lowest predicted latency whose every bootstrap
/// meets `target`, and what it predicts for one inference on `threads` threads (every
/// lookup on it). [`choose_param_sets`] gives each class of lookups its own set.
pub fn choose_params(
    program: &Program,
    target: PErrorTarget,
    threads: usize,
) -> Result<(CryptoParams, Prediction), OptimizerError> {
    let p = target.value();
    if !(p > 0.0 && p < 1.0) {
        return Err(OptimizerError::InvalidTarget(p));
    }
    let mut classes = lookup_classes(program)?;
    // One set for everything: whatever sets the lookups named, they all use set 0 here.
    for c in &mut classes {
        c.sets = LookupSets::default();
    }
    let classes = merge_classes(classes);
    let linear = linear_ops(program);
    let pbs_count: u64 = classes
        .iter()
        .map(|c| c.elements * c.kind.pbs_per_element())
        .sum();
    let per_pbs = target.per_pbs(pbs_count);
    let constraints = constraints(&classes);
    let max_precision = constraints
        .iter()
        .map(|c| c.kind.precision)
        .max()
        .unwrap_or(1);

    let mut best: Option<(f64, CryptoParams)> = None;
    for_each_point(ONE_SET, max_precision, |base, pbs, var_ms| {
        let ks = keyswitch_bases(base.big_lwe_dimension(), base);
        let big = base.big_lwe_dimension();
        let linear_s = linear as f64 * (big + 1) as f64 * COST.linear_word_s;
        for (l, &(pbs_base, var_pbs)) in pbs.iter().enumerate() {
            for (m, &(ks_base, var_ks)) in ks.iter().enumerate() {
                let (level, ks_level) = (l + 1, m + 1);
                let latency = pbs_count as f64
                    * pbs_latency_parts(
                        base.lwe_dimension,
                        base.glwe_dimension,
                        base.polynomial_size,
                        level,
                        ks_level,
                    )
                    + linear_s;
                if best.as_ref().is_some_and(|(c, _)| latency >= *c) {
                    continue;
                }
                let model = NoiseModel {
                    var_pbs,
                    var_ks,
                    var_ms,
                };
                if worst_p(&model, &constraints) <= per_pbs {
                    let params = with_levels(base, (level, pbs_base), (ks_level, ks_base));
                    best = Some((latency, params));
                }
            }
        }
    });

    match best {
        Some((_, params)) => {
            let prediction =
                predict_classes(&classes, linear, &ParamSets::single(params), threads)?;
            Ok((params, prediction))
        }
        None => Err(diagnose(&constraints, max_precision, per_pbs, target)),
    }
}

fn rounding_text(kind: LookupKind) -> String {
    match (kind.shift, kind.exact) {
        (0, _) => String::new(),
        (s, true) => format!(", {s} low bits rounded exactly"),
        (s, false) => format!(", {s} low bits rounded approximately"),
    }
}

/// Explains an empty search: the table that cannot fit, or the lookup kind whose best
/// failure probability is furthest from the target.
fn diagnose(
    constraints: &[Constraint],
    max_precision: u32,
    per_pbs: f64,
    target: PErrorTarget,
) -> OptimizerError {
    let per_inference = matches!(target, PErrorTarget::Global(_));
    let worst_kind = constraints
        .iter()
        .copied()
        .max_by_key(|c| c.kind.precision)
        .unwrap_or(Constraint {
            kind: LookupKind {
                precision: max_precision,
                shift: 0,
                exact: false,
            },
            noise_factor: 1.0,
        });
    let max_poly = 1u64 << ONE_SET.log2_polys.end();
    if (2u64 << max_precision.min(62)) > max_poly {
        return OptimizerError::NoParameters {
            constraint: format!(
                "a {max_precision}-bit table needs a polynomial size of at least 2^{}, above \
                 the largest supported 2^{}",
                max_precision + 1,
                ONE_SET.log2_polys.end()
            ),
            precision: max_precision,
            rounding: rounding_text(worst_kind.kind),
            noise_factor: worst_kind.noise_factor,
            best_p: 1.0,
            target: per_pbs,
            remedies: vec![Remedy::FewerBits, Remedy::RoundAccumulators],
        };
    }
    // Smallest failure probability each constraint reaches anywhere in the search space.
    let mut best_p = vec![f64::INFINITY; constraints.len()];
    let mut best_at: Vec<Option<CryptoParams>> = vec![None; constraints.len()];
    for_each_point(ONE_SET, max_precision, |base, pbs, var_ms| {
        let ks = keyswitch_bases(base.big_lwe_dimension(), base);
        let (l, &(pbs_base, var_pbs)) = pbs
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .expect("at least one PBS level");
        let (m, &(ks_base, var_ks)) = ks
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .expect("at least one keyswitch level");
        let model = NoiseModel {
            var_pbs,
            var_ks,
            var_ms,
        };
        for (i, c) in constraints.iter().enumerate() {
            let p = model.kind_failure_probability(c.kind, c.noise_factor);
            if p < best_p[i] {
                best_p[i] = p;
                best_at[i] = Some(with_levels(base, (l + 1, pbs_base), (m + 1, ks_base)));
            }
        }
    });
    // The hardest constraint: furthest (in log scale) above the target.
    let hardest = (0..constraints.len()).max_by(|&a, &b| best_p[a].total_cmp(&best_p[b]));
    let Some(i) = hardest else {
        return OptimizerError::InvalidTarget(target.value());
    };
    let c = constraints[i];
    let joint = best_p[i] <= per_pbs;
    let constraint = if joint {
        "no single parameter set meets the failure target of every lookup kind at once; the \
         hardest kind"
            .to_string()
    } else {
        format!(
            "the failure probability target cannot be met (closest parameters: {})",
            best_at[i].map_or_else(|| "none".into(), |p| p.to_string())
        )
    };
    let mut remedies = vec![Remedy::FewerBits];
    remedies.push(if c.kind.exact && c.kind.shift > 0 {
        Remedy::ApproximateRounding
    } else {
        Remedy::RoundAccumulators
    });
    remedies.push(Remedy::LargerFailureProbability { per_inference });
    if c.noise_factor > 1.0 {
        remedies.push(Remedy::SmallerWeights);
    }
    OptimizerError::NoParameters {
        constraint,
        precision: c.kind.precision,
        rounding: rounding_text(c.kind),
        noise_factor: c.noise_factor,
        best_p: best_p[i],
        target: per_pbs,
        remedies,
    }
}
