//! The noise model shared by the parameter optimizer and the simulator: how much noise one
//! keyswitch + programmable bootstrap adds, how likely each table lookup is to read the wrong
//! box, and which noise levels are secure.
//!
//! Every variance is on the normalised torus (ciphertext modulus 2^64) and comes from
//! tfhe-rs's own noise formulas (`core_crypto::commons::noise_formulas`), so the optimizer,
//! the simulator and tfhe-rs's declared failure probabilities agree:
//!
//! - `var_pbs`: output noise of one bootstrap (`pbs_variance_132_bits_security_gaussian_fft_mul`,
//!   f64 FFT), corrected for the bootstrap key's actual noise when it is above the minimal
//!   secure noise the formula assumes;
//! - `var_ks`: noise added by the keyswitch from the big key (`k*N`) to the small key (`n`),
//!   corrected the same way for the keyswitch key's noise;
//! - `var_ms`: noise added by the centered modulus switch to `2N`.
//!
//! A lookup whose input has noise factor `alpha` sees `alpha*var_pbs + var_ks + var_ms` and
//! fails when that noise exceeds half a box (`2^-(R+2)` for an `R`-bit table). Exact rounding
//! adds one bit-extraction bootstrap per dropped bit (see the crate conventions in
//! [`crate::circuit`]); each is checked against its own margin of a quarter torus.
//! Reproduces tfhe-rs's declared p-fail of its Gaussian shortint sets (see the tests).

use tfhe::core_crypto::commons::noise_formulas::centered_mean_shifted_modulus_switch::centered_binary_shifted_modulus_switch_additive_variance;
use tfhe::core_crypto::commons::noise_formulas::lwe_keyswitch::keyswitch_additive_variance_132_bits_security_gaussian;
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::pbs_variance_132_bits_security_gaussian_fft_mul;
use tfhe::core_crypto::commons::noise_formulas::secure_noise::minimal_lwe_variance_for_132_bits_security_gaussian;
use tfhe::core_crypto::commons::parameters::{
    DecompositionBaseLog, DecompositionLevelCount, GlweDimension, LweDimension, PolynomialSize,
};

use crate::circuit::{Instruction, LookupSets, Lut, Program, Window};
use crate::error::RuntimeError;
use crate::params::{CryptoParams, ParamSets, ReturnKeyswitch};

/// The ciphertext modulus as a float (native 2^64 modulus).
pub const MODULUS: f64 = 18_446_744_073_709_551_616.0;

/// Mantissa bits of the f64 FFT tfhe-rs uses for bootstrapping.
pub const FFT_MANTISSA_BITS: f64 = 53.0;

/// Noise added by the steps of one keyswitch + programmable bootstrap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseModel {
    /// Variance of a bootstrap's output under the circuit big key (for a set with a big key
    /// of its own: after the return keyswitch, whose noise it includes).
    pub var_pbs: f64,
    /// Variance the keyswitch adds.
    pub var_ks: f64,
    /// Variance the (centered) modulus switch to `2N` adds.
    pub var_ms: f64,
}

/// Variance of the output of a bootstrap with these parameters, on the normalised torus.
///
/// tfhe-rs's formula assumes a bootstrap key encrypted with the minimal secure GLWE noise;
/// the key-noise term is linear in that variance, so a noisier key is accounted for exactly.
pub fn pbs_variance(
    lwe_dimension: usize,
    glwe_dimension: usize,
    polynomial_size: usize,
    base_log: usize,
    level: usize,
    glwe_noise_std: f64,
) -> f64 {
    let formula = pbs_variance_132_bits_security_gaussian_fft_mul(
        LweDimension(lwe_dimension),
        GlweDimension(glwe_dimension),
        PolynomialSize(polynomial_size),
        DecompositionBaseLog(base_log),
        DecompositionLevelCount(level),
        FFT_MANTISSA_BITS,
        MODULUS,
    )
    .0;
    let assumed = minimal_secure_variance(glwe_dimension * polynomial_size);
    let base = 2f64.powi(base_log as i32);
    let key_terms = (lwe_dimension * level * polynomial_size * (glwe_dimension + 1)) as f64
        * (base * base / 12.0 + 1.0 / 6.0);
    formula + key_terms * (glwe_noise_std * glwe_noise_std - assumed)
}

/// Variance a keyswitch from dimension `input_dimension` (`k*N`) to `output_dimension` (`n`)
/// adds, with a keyswitch key encrypted with `lwe_noise_std`.
pub fn ks_variance(
    input_dimension: usize,
    output_dimension: usize,
    base_log: usize,
    level: usize,
    lwe_noise_std: f64,
) -> f64 {
    let formula = keyswitch_additive_variance_132_bits_security_gaussian(
        LweDimension(input_dimension),
        LweDimension(output_dimension),
        DecompositionBaseLog(base_log),
        DecompositionLevelCount(level),
        MODULUS,
        MODULUS,
    )
    .0;
    let assumed = minimal_secure_variance(output_dimension);
    let base = 2f64.powi(base_log as i32);
    let key_terms = (level * input_dimension) as f64 * (base * base / 12.0 + 1.0 / 6.0);
    formula + key_terms * (lwe_noise_std * lwe_noise_std - assumed)
}

/// Variance the centered modulus switch of an `lwe_dimension` ciphertext to `2N` adds.
pub fn ms_variance(lwe_dimension: usize, polynomial_size: usize) -> f64 {
    centered_binary_shifted_modulus_switch_additive_variance(
        LweDimension(lwe_dimension),
        MODULUS,
        2.0 * polynomial_size as f64,
    )
    .0
}

/// Variance the return keyswitch of a set with its own big key (dimension `own`) adds on the
/// way back to the circuit big key (dimension `main`, key noise that of the circuit big key).
pub fn return_ks_variance(own: usize, main: usize, r: ReturnKeyswitch, params: &ParamSets) -> f64 {
    ks_variance(own, main, r.base_log, r.level, params.glwe_noise_std())
}

fn minimal_secure_variance(dimension: usize) -> f64 {
    minimal_lwe_variance_for_132_bits_security_gaussian(LweDimension(dimension), MODULUS).0
}

/// Smallest Gaussian noise std (normalised torus) that gives 132-bit security to an LWE key
/// of this dimension (tfhe-rs's lattice-estimator fit).
pub fn minimal_secure_std_lwe(dimension: usize) -> f64 {
    minimal_secure_variance(dimension).sqrt()
}

/// Smallest secure Gaussian noise std for a GLWE key of dimension `k` and polynomial size `N`
/// (the same as an LWE key of dimension `k*N`).
pub fn minimal_secure_std_glwe(glwe_dimension: usize, polynomial_size: usize) -> f64 {
    minimal_secure_std_lwe(glwe_dimension * polynomial_size)
}

/// Checks that both noise levels are at least the minimal secure noise of their key
/// (132 bits of security); the error says which one is not.
pub fn params_are_secure(params: &CryptoParams) -> Result<(), String> {
    // A relative slack far below anything that matters for security absorbs float round-off
    // of parameters that were set to exactly the minimum.
    const SLACK: f64 = 1.0 - 1e-9;
    let lwe_min = minimal_secure_std_lwe(params.lwe_dimension);
    if params.lwe_noise_std.is_nan() || params.lwe_noise_std < lwe_min * SLACK {
        return Err(format!(
            "lwe_noise_std {:e} is below the minimal secure std {:e} for lwe_dimension {}",
            params.lwe_noise_std, lwe_min, params.lwe_dimension
        ));
    }
    let glwe_min = minimal_secure_std_glwe(params.glwe_dimension, params.polynomial_size);
    if params.glwe_noise_std.is_nan() || params.glwe_noise_std < glwe_min * SLACK {
        return Err(format!(
            "glwe_noise_std {:e} is below the minimal secure std {:e} for k*N = {}*{}",
            params.glwe_noise_std, glwe_min, params.glwe_dimension, params.polynomial_size
        ));
    }
    Ok(())
}

/// Smallest `lo` and largest `hi` with `P(X < lo) <= tail` and `P(X > hi) <= tail` for
/// `X ~ Binomial(n, p)`: the interval a count of failures in `n` independent lookups of
/// failure probability `p` falls in with probability at least `1 - 2 * tail` (measurements
/// that check the model against real bootstraps use it).
pub fn binomial_interval(n: usize, p: f64, tail: f64) -> (usize, usize) {
    let mut pmf = Vec::with_capacity(n + 1);
    let mut log_c = 0.0f64; // ln C(n, k)
    for k in 0..=n {
        if k > 0 {
            log_c += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        pmf.push((log_c + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()).exp());
    }
    let (mut lo, mut below) = (0, 0.0);
    while lo < n && below + pmf[lo] <= tail {
        below += pmf[lo];
        lo += 1;
    }
    let (mut hi, mut above) = (n, 0.0);
    while hi > 0 && above + pmf[hi] <= tail {
        above += pmf[hi];
        hi -= 1;
    }
    (lo, hi)
}

/// Probability that centred Gaussian noise of std `std` leaves `[-half_width, half_width]`.
pub fn p_fail(half_width: f64, std: f64) -> f64 {
    if std <= 0.0 {
        return 0.0;
    }
    libm::erfc(half_width / (std::f64::consts::SQRT_2 * std))
}

/// What decides the failure probability of a lookup: its table precision and rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupKind {
    pub precision: u32,
    /// Low bits dropped before the lookup (0 without rounding).
    pub shift: u32,
    /// Exact rounding: `shift` bit extractions before the lookup.
    pub exact: bool,
}

impl LookupKind {
    pub fn of(lut: &Lut) -> Self {
        LookupKind {
            precision: lut.precision,
            shift: lut.shift(),
            exact: lut.rounds_exactly(),
        }
    }

    /// Bootstraps per element.
    pub fn pbs_per_element(&self) -> u64 {
        if self.exact {
            1 + self.shift as u64
        } else {
            1
        }
    }

    /// Bits below the padding bit of the lookup input (`precision + shift`).
    pub fn input_bits(&self) -> u32 {
        self.precision + self.shift
    }
}

/// Variance and failure margin of one bootstrap of a lookup element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootstrapNoise {
    /// Noise variance of the bootstrap's input after keyswitch and modulus switch
    /// (normalised torus).
    pub variance: f64,
    /// The bootstrap reads the wrong value when the noise exceeds this (normalised torus).
    pub half_width: f64,
}

impl BootstrapNoise {
    pub fn p_fail(&self) -> f64 {
        p_fail(self.half_width, self.variance.sqrt())
    }
}

/// Failure accounting of one inference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgramNoise {
    /// Bootstraps per inference.
    pub pbs_count: u64,
    /// Largest failure probability of one bootstrap.
    pub p_error_per_pbs: f64,
    /// Probability that at least one bootstrap fails: `1 - prod(1 - p_i)`.
    pub global_p_error: f64,
}

/// What a lookup computes: the optimizer gives each role (and precision) its own parameter
/// set, since their noise and table sizes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupRole {
    /// A `Tlu` instruction (activation, requantisation).
    Table,
    /// A comparison of a `MaxPool` (`relu(b - a)`).
    MaxPool,
}

/// A group of identical bootstraps of a program: one lookup kind at one input noise factor,
/// in one role, on the same parameter sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LookupClass {
    pub kind: LookupKind,
    /// Noise factor of the lookup input.
    pub noise_factor: f64,
    /// Lookup elements (each costs `kind.pbs_per_element()` bootstraps).
    pub elements: u64,
    pub role: LookupRole,
    pub sets: LookupSets,
}

impl NoiseModel {
    /// The noise of parameter set `index` of `params`: its keyswitch reads the circuit big
    /// key, and a set with a key of its own adds the return keyswitch's noise to its output.
    pub fn of_set(params: &ParamSets, index: usize) -> Result<Self, RuntimeError> {
        Ok(Self::in_circuit(
            params,
            params.get(index)?,
            params.return_keyswitch(index),
        ))
    }

    fn in_circuit(params: &ParamSets, set: &CryptoParams, ret: Option<ReturnKeyswitch>) -> Self {
        let main = params.big_lwe_dimension();
        let mut model = NoiseModel::new(set);
        model.var_ks = ks_variance(
            main,
            set.lwe_dimension,
            set.ks_base_log,
            set.ks_level,
            set.lwe_noise_std,
        );
        if let Some(r) = ret {
            model.var_pbs += return_ks_variance(set.big_lwe_dimension(), main, r, params);
        }
        model
    }

    /// The noise of one keyswitch + bootstrap with `params` (one set: the keyswitch reads
    /// the set's own big key).
    pub fn new(params: &CryptoParams) -> Self {
        NoiseModel {
            var_pbs: pbs_variance(
                params.lwe_dimension,
                params.glwe_dimension,
                params.polynomial_size,
                params.pbs_base_log,
                params.pbs_level,
                params.glwe_noise_std,
            ),
            var_ks: ks_variance(
                params.big_lwe_dimension(),
                params.lwe_dimension,
                params.ks_base_log,
                params.ks_level,
                params.lwe_noise_std,
            ),
            var_ms: ms_variance(params.lwe_dimension, params.polynomial_size),
        }
    }

    /// Noise variance at the blind rotation of a bootstrap whose input has noise factor
    /// `alpha`: `alpha*var_pbs + var_ks + var_ms`.
    pub fn input_variance(&self, alpha: f64) -> f64 {
        alpha * self.var_pbs + self.var_ks + self.var_ms
    }

    /// Std of [`Self::input_variance`].
    pub fn lookup_input_std(&self, alpha: f64) -> f64 {
        self.input_variance(alpha).sqrt()
    }

    /// The bootstraps of one lookup element in execution order: for exact rounding the bit
    /// extractions `j = 0..shift`, then the table lookup itself.
    pub fn bootstraps(&self, kind: LookupKind, alpha: f64) -> Vec<BootstrapNoise> {
        element_bootstraps(self.var_pbs, self, self, kind, alpha)
    }

    /// Largest failure probability among the bootstraps of one lookup element (the main
    /// lookup and, with exact rounding, its bit extractions), input noise factor `alpha`.
    pub fn lookup_failure_probability(&self, lut: &Lut, input_noise_factor: f64) -> f64 {
        self.kind_failure_probability(LookupKind::of(lut), input_noise_factor)
    }

    /// [`Self::lookup_failure_probability`] for a lookup kind.
    pub fn kind_failure_probability(&self, kind: LookupKind, alpha: f64) -> f64 {
        self.bootstraps(kind, alpha)
            .iter()
            .map(BootstrapNoise::p_fail)
            .fold(0.0, f64::max)
    }

    /// Probability that at least one bootstrap of one lookup element fails.
    pub fn element_failure_probability(&self, kind: LookupKind, alpha: f64) -> f64 {
        let log_ok: f64 = self
            .bootstraps(kind, alpha)
            .iter()
            .map(|b| (-b.p_fail()).ln_1p())
            .sum();
        -log_ok.exp_m1()
    }

    /// Failure accounting over every bootstrap of one inference of `program`, every lookup
    /// on these parameters.
    pub fn program_failure(&self, program: &Program) -> Result<ProgramNoise, RuntimeError> {
        let mut classes = lookup_classes(program)?;
        for c in &mut classes {
            c.sets = LookupSets::default();
        }
        CircuitNoise::from_models(vec![*self]).classes_failure(&classes)
    }
}

/// The bootstraps of one lookup element whose input has noise `alpha * unit`, with its bit
/// extractions (exact rounding) on `bits` and its table on `table`.
fn element_bootstraps(
    unit: f64,
    bits: &NoiseModel,
    table: &NoiseModel,
    kind: LookupKind,
    alpha: f64,
) -> Vec<BootstrapNoise> {
    let mut out = Vec::with_capacity(kind.pbs_per_element() as usize);
    let mut input = alpha * unit;
    if kind.exact {
        let b = kind.input_bits() as i32;
        for j in 0..kind.shift as i32 {
            // t = x * 2^(B-j): the noise of x (its input noise plus j bit outputs) is scaled too.
            let scale = 4f64.powi(b - j);
            out.push(BootstrapNoise {
                variance: scale * input + bits.var_ks + bits.var_ms,
                half_width: 0.25,
            });
            input += bits.var_pbs;
        }
    }
    out.push(BootstrapNoise {
        variance: input + table.var_ks + table.var_ms,
        half_width: 2f64.powi(-(kind.precision as i32 + 2)),
    });
    out
}

/// The noise of a circuit's bootstraps: one [`NoiseModel`] per parameter set, and the unit
/// every noise factor counts in: the largest output variance of the sets whose outputs leave
/// their lookup (table bootstraps, max-pool comparisons). The bit extractions of exact
/// rounding only feed the rest of their own lookup, whose noise counts them directly, so a
/// set serving nothing else does not set the unit.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitNoise {
    pub sets: Vec<NoiseModel>,
    pub unit: f64,
}

impl CircuitNoise {
    /// The noise of `params` with the unit over every set (what a circuit whose lookups are
    /// unknown, or all on one set, gets).
    pub fn new(params: &ParamSets) -> Self {
        Self::from_models(Self::models(params))
    }

    /// The noise of `params` as the lookups of `program` use them.
    pub fn for_program(params: &ParamSets, program: &Program) -> Result<Self, RuntimeError> {
        Self::for_classes(params, &lookup_classes(program)?)
    }

    /// The noise of `params` as lookups of these classes use them: the unit over the sets
    /// their tables are read on (over every set if there are none).
    pub fn for_classes(params: &ParamSets, classes: &[LookupClass]) -> Result<Self, RuntimeError> {
        let sets = Self::models(params);
        let mut unit = 0f64;
        for c in classes {
            params.get(c.sets.table)?;
            unit = unit.max(sets[c.sets.table].var_pbs);
        }
        if classes.is_empty() {
            return Ok(Self::from_models(sets));
        }
        Ok(CircuitNoise { sets, unit })
    }

    fn models(params: &ParamSets) -> Vec<NoiseModel> {
        params
            .sets()
            .iter()
            .zip(params.returns())
            .map(|(set, &ret)| NoiseModel::in_circuit(params, set, ret))
            .collect()
    }

    /// The noise of sets with these models (at least one).
    pub fn from_models(sets: Vec<NoiseModel>) -> Self {
        let unit = sets.iter().map(|m| m.var_pbs).fold(0.0, f64::max);
        CircuitNoise { sets, unit }
    }

    /// The model of parameter set `set`.
    pub fn set(&self, set: usize) -> Result<&NoiseModel, RuntimeError> {
        self.sets.get(set).ok_or_else(|| {
            RuntimeError::Mismatch(format!(
                "a lookup uses TFHE parameter set {set}, the circuit has {}",
                self.sets.len()
            ))
        })
    }

    /// The bootstraps of one lookup element on `sets`, input noise factor `alpha`.
    pub fn bootstraps(
        &self,
        kind: LookupKind,
        alpha: f64,
        sets: LookupSets,
    ) -> Result<Vec<BootstrapNoise>, RuntimeError> {
        let table = self.set(sets.table)?;
        let bits = if kind.exact {
            self.set(sets.bits)?
        } else {
            table
        };
        Ok(element_bootstraps(self.unit, bits, table, kind, alpha))
    }

    /// Largest failure probability among the bootstraps of one element of `lut`.
    pub fn lookup_failure_probability(&self, lut: &Lut, alpha: f64) -> Result<f64, RuntimeError> {
        Ok(self
            .bootstraps(LookupKind::of(lut), alpha, lut.sets)?
            .iter()
            .map(BootstrapNoise::p_fail)
            .fold(0.0, f64::max))
    }

    /// Probability that at least one bootstrap of one element fails.
    pub fn element_failure_probability(
        &self,
        kind: LookupKind,
        alpha: f64,
        sets: LookupSets,
    ) -> Result<f64, RuntimeError> {
        let log_ok: f64 = self
            .bootstraps(kind, alpha, sets)?
            .iter()
            .map(|b| (-b.p_fail()).ln_1p())
            .sum();
        Ok(-log_ok.exp_m1())
    }

    /// Failure accounting over every bootstrap of one inference of `program`.
    pub fn program_failure(&self, program: &Program) -> Result<ProgramNoise, RuntimeError> {
        self.classes_failure(&lookup_classes(program)?)
    }

    /// Failure accounting over the bootstraps of these classes.
    pub fn classes_failure(&self, classes: &[LookupClass]) -> Result<ProgramNoise, RuntimeError> {
        let mut pbs_count = 0u64;
        let mut worst = 0f64;
        let mut log_ok = 0f64;
        for class in classes {
            for b in self.bootstraps(class.kind, class.noise_factor, class.sets)? {
                let p = b.p_fail();
                worst = worst.max(p);
                log_ok += class.elements as f64 * (-p).ln_1p();
            }
            pbs_count += class.elements * class.kind.pbs_per_element();
        }
        Ok(ProgramNoise {
            pbs_count,
            p_error_per_pbs: worst,
            global_p_error: -log_ok.exp_m1(),
        })
    }
}

fn invalid(instruction: usize, op: &'static str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidCircuit {
        instruction,
        op,
        message: message.into(),
    }
}

/// Every bootstrap of one inference of `program`, grouped by lookup kind and input noise
/// factor: the `Tlu` instructions and the comparisons of each `MaxPool` (tree level `L`
/// compares with noise factor `2*(alpha_in + L)`; a window of `m` non-padding elements costs
/// `m - 1` comparisons).
pub fn lookup_classes(program: &Program) -> Result<Vec<LookupClass>, RuntimeError> {
    let mut classes: Vec<LookupClass> = Vec::new();
    let mut add = |role: LookupRole, lut: &Lut, noise_factor: f64, elements: u64| {
        if elements == 0 {
            return;
        }
        let kind = LookupKind::of(lut);
        match classes.iter_mut().find(|c| {
            c.kind == kind && c.noise_factor == noise_factor && c.role == role && c.sets == lut.sets
        }) {
            Some(c) => c.elements += elements,
            None => classes.push(LookupClass {
                kind,
                noise_factor,
                elements,
                role,
                sets: lut.sets,
            }),
        }
    };
    for (i, instruction) in program.instructions.iter().enumerate() {
        let op = instruction.name();
        let operand_info = |id: usize| {
            program
                .values
                .get(id)
                .ok_or_else(|| invalid(i, op, format!("operand {id} has no value info")))
        };
        match instruction {
            Instruction::Tlu { input, lut } => {
                let info = operand_info(*input)?;
                add(LookupRole::Table, lut, info.noise_factor, info.len() as u64);
            }
            Instruction::MaxPool {
                input,
                window,
                relu,
            } => {
                let info = operand_info(*input)?;
                let out = operand_info(i)?;
                let per_level = maxpool_comparisons(&info.shape, &out.shape, window)
                    .map_err(|m| invalid(i, op, m))?;
                for (level, count) in per_level.iter().enumerate() {
                    let alpha = 2.0 * (info.noise_factor + level as f64);
                    add(LookupRole::MaxPool, relu, alpha, *count);
                }
            }
            _ => {}
        }
    }
    Ok(classes)
}

/// Comparisons of a max-pool per tree level (index = level), over the whole output tensor.
pub fn maxpool_comparisons(
    input_shape: &[usize],
    output_shape: &[usize],
    window: &Window,
) -> Result<Vec<u64>, String> {
    let spatial = window.kernel.len();
    if input_shape.len() != spatial + 2 || output_shape.len() != spatial + 2 {
        return Err(format!(
            "input shape {input_shape:?} / output shape {output_shape:?} do not have 2 + {spatial} axes"
        ));
    }
    if window.strides.len() != spatial
        || window.dilations.len() != spatial
        || window.pads.len() != spatial
    {
        return Err(
            "window strides, dilations and pads must have one entry per kernel axis".into(),
        );
    }
    // Per axis: how many output positions see `c` in-range kernel taps.
    let mut axis_hist: Vec<Vec<(u64, u64)>> = Vec::with_capacity(spatial);
    for a in 0..spatial {
        let in_size = input_shape[a + 2] as i64;
        let mut hist: Vec<(u64, u64)> = Vec::new();
        for o in 0..output_shape[a + 2] as i64 {
            let mut c = 0u64;
            for k in 0..window.kernel[a] as i64 {
                let pos = o * window.strides[a] as i64 + k * window.dilations[a] as i64
                    - window.pads[a].0 as i64;
                if (0..in_size).contains(&pos) {
                    c += 1;
                }
            }
            match hist.iter_mut().find(|(taps, _)| *taps == c) {
                Some((_, n)) => *n += 1,
                None => hist.push((c, 1)),
            }
        }
        axis_hist.push(hist);
    }
    // Combine the axes: the window of an output position has the product of its taps.
    let mut combined: Vec<(u64, u64)> = vec![(1, 1)];
    for hist in &axis_hist {
        let mut next = Vec::new();
        for &(m, n) in &combined {
            for &(c, k) in hist {
                next.push((m * c, n * k));
            }
        }
        combined = next;
    }
    let outer = (output_shape[0] * output_shape[1]) as u64;
    let mut per_level: Vec<u64> = Vec::new();
    for (m, positions) in combined {
        let mut remaining = m;
        let mut level = 0;
        while remaining > 1 {
            let pairs = remaining / 2;
            if per_level.len() <= level {
                per_level.push(0);
            }
            per_level[level] += pairs * positions * outer;
            remaining -= pairs;
            level += 1;
        }
    }
    Ok(per_level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kernel: usize, stride: usize, pad: usize) -> Window {
        Window {
            kernel: vec![kernel, kernel],
            strides: vec![stride, stride],
            dilations: vec![1, 1],
            pads: vec![(pad, pad), (pad, pad)],
        }
    }

    #[test]
    fn maxpool_counts_window_minus_one_per_position() {
        // 2x2 windows, stride 2, no padding on 4x4: 4 positions * 3 comparisons per channel.
        let per_level =
            maxpool_comparisons(&[1, 2, 4, 4], &[1, 2, 2, 2], &window(2, 2, 0)).unwrap();
        assert_eq!(per_level, vec![2 * 4 * 2, 2 * 4]);
        // 3x3 windows, stride 1, pad 1 on 3x3: corner windows have 4 taps, edges 6, centre 9.
        let per_level =
            maxpool_comparisons(&[1, 1, 3, 3], &[1, 1, 3, 3], &window(3, 1, 1)).unwrap();
        let total: u64 = per_level.iter().sum();
        assert_eq!(total, 4 * 3 + 4 * 5 + 8);
        // 9 taps: levels of 4, 2, 1, 1 comparisons.
        assert_eq!(per_level.len(), 4);
    }

    #[test]
    fn the_unit_counts_only_sets_whose_outputs_leave_their_lookup() {
        let table = crate::fhe::insecure_test_params();
        // A smaller ring over the same key, much noisier: what bit extractions may run on.
        let bits = CryptoParams {
            glwe_dimension: 4,
            polynomial_size: 256,
            glwe_noise_std: table.glwe_noise_std,
            pbs_base_log: 20,
            pbs_level: 1,
            ..table
        };
        let params = ParamSets::new(vec![table, bits]).unwrap();
        let all = CircuitNoise::new(&params);
        assert!(all.sets[1].var_pbs > 4.0 * all.sets[0].var_pbs, "{all:?}");
        assert_eq!(all.unit, all.sets[1].var_pbs);
        let exact = LookupClass {
            kind: LookupKind {
                precision: 4,
                shift: 3,
                exact: true,
            },
            noise_factor: 2.0,
            elements: 10,
            role: LookupRole::Table,
            sets: LookupSets { table: 0, bits: 1 },
        };
        let noise = CircuitNoise::for_classes(&params, &[exact]).unwrap();
        assert_eq!(noise.unit, noise.sets[0].var_pbs);
        // The bit outputs still count, at their own variance, inside their lookup.
        let b = noise.bootstraps(exact.kind, 2.0, exact.sets).unwrap();
        let (s0, s1) = (&noise.sets[0], &noise.sets[1]);
        let last = b.last().unwrap().variance;
        let want = 2.0 * s0.var_pbs + 3.0 * s1.var_pbs + s0.var_ks + s0.var_ms;
        assert!((last / want - 1.0).abs() < 1e-12, "{last} vs {want}");
        // A class naming a missing set is refused.
        let wrong = LookupClass {
            sets: LookupSets { table: 2, bits: 0 },
            ..exact
        };
        assert!(CircuitNoise::for_classes(&params, &[wrong]).is_err());
    }

    #[test]
    fn p_fail_matches_gaussian_tail() {
        // Two-sided tail at 1, 2, 3 sigma.
        assert!((p_fail(1.0, 1.0) - 0.317_310_507_862_914_1).abs() < 1e-12);
        assert!((p_fail(2.0, 1.0) - 0.045_500_263_896_358_4).abs() < 1e-12);
        assert!((p_fail(3.0, 1.0) - 0.002_699_796_063_260_2).abs() < 1e-12);
        assert_eq!(p_fail(1.0, 0.0), 0.0);
    }
}
