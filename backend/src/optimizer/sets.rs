//! One parameter set per class of lookups.
//!
//! The lookups of a circuit are grouped by role and precision (activation tables of each
//! precision, max-pool comparisons of each precision) plus one group for every bit
//! extraction of exact rounding; each group gets the cheapest set that serves it. All sets
//! share the big key (`k * N` and its noise, see [`ParamSets`]), so values move between
//! groups without extra keyswitches: the search is over that common dimension `D`.
//!
//! The groups are coupled only through the noise of the values they read, which any set
//! may have produced. The search bounds it by a common ceiling `V` on every set's output
//! variance (the unit noise factors count in): at a given `(D, V)` each group's constraints
//! depend on its own set alone (`var_pbs <= V` and, per bootstrap, `A * V + var_ks +
//! var_ms <= (half_width / z)^2`, where `A` is the largest noise amplification of the group
//! and `z` the failure target's Gaussian quantile), so each group takes its cheapest set
//! independently, and the best `(D, V)` minimises the total. `V` runs over a grid of
//! quarter bits of variance; the chosen circuit is then checked with the exact noise model.

use std::collections::BTreeMap;

use fhec_runtime::circuit::{Instruction, LookupSets, Lut, Prediction, Program};
use fhec_runtime::noise::{lookup_classes, p_fail, LookupClass, LookupRole};
use fhec_runtime::{CryptoParams, ParamSets};

use super::{
    blind_rotation_s, choose_params, for_each_point, keyswitch_s, linear_ops, predict_classes,
    with_levels, OptimizerError, PErrorTarget, COST, SET_GLWE_DIMENSIONS,
};

/// How [`choose_param_sets`] may split a circuit's bootstraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions {
    /// One set per class of lookups; `false` puts every bootstrap on one set.
    pub per_class: bool,
    /// Largest expanded server key accepted (all sets' keys), bytes.
    pub max_server_key_bytes: Option<u64>,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            per_class: true,
            max_server_key_bytes: None,
        }
    }
}

/// Bytes of the expanded server key: per set, the Fourier bootstrap key (`n * (k+1)^2 *
/// level * N / 2` complex f64) and the keyswitch key (`k*N * level * (n + 1)` words).
pub fn server_key_bytes(params: &ParamSets) -> u64 {
    params
        .sets()
        .iter()
        .map(|p| {
            let k1 = (p.glwe_dimension + 1) as u64;
            let bsk = p.lwe_dimension as u64
                * k1
                * k1
                * p.pbs_level as u64
                * p.polynomial_size as u64
                * 8;
            let ksk =
                p.big_lwe_dimension() as u64 * p.ks_level as u64 * (p.lwe_dimension as u64 + 1) * 8;
            bsk + ksk
        })
        .sum()
}

/// A group of bootstraps that shares one parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// The table bootstraps of lookups in `role` reading `precision` bits.
    Table { role: LookupRole, precision: u32 },
    /// Every bit extraction of exact rounding (a one-bit sign table, quarter-torus margin).
    Bits,
}

impl Group {
    fn precision(self) -> u32 {
        match self {
            Group::Table { precision, .. } => precision,
            Group::Bits => 1,
        }
    }

    fn half_width(self) -> f64 {
        match self {
            Group::Table { precision, .. } => 2f64.powi(-(precision as i32 + 2)),
            Group::Bits => 0.25,
        }
    }
}

/// What a group asks of its set.
#[derive(Clone, Copy, Debug)]
struct Need {
    /// Bootstraps per inference.
    count: u64,
    /// Largest coefficient of `V` in the input variance of one of its bootstraps.
    amplification: f64,
}

/// The groups of `classes` and their needs.
fn needs(classes: &[LookupClass]) -> BTreeMap<Group, Need> {
    let mut out: BTreeMap<Group, Need> = BTreeMap::new();
    let mut add = |group: Group, count: u64, amplification: f64| {
        let need = out.entry(group).or_insert(Need {
            count: 0,
            amplification: 0.0,
        });
        need.count += count;
        need.amplification = need.amplification.max(amplification);
    };
    for c in classes {
        let kind = c.kind;
        let alpha = c.noise_factor;
        let group = Group::Table {
            role: c.role,
            precision: kind.precision,
        };
        if kind.exact {
            let b = kind.input_bits() as i32;
            // Bit j reads (alpha + j bit outputs) scaled by 4^(B-j); j = 0 or the last one
            // is the largest.
            let worst = (0..kind.shift as i32)
                .map(|j| 4f64.powi(b - j) * (alpha + j as f64))
                .fold(0.0, f64::max);
            add(Group::Bits, c.elements * kind.shift as u64, worst);
            add(group, c.elements, alpha + kind.shift as f64);
        } else {
            add(group, c.elements, alpha);
        }
    }
    out
}

/// The largest noise std (relative to the half width) whose two-sided Gaussian tail stays
/// within `p`: `1 / (sqrt(2) * erfcinv(p))`, by bisection.
fn std_per_half_width(p: f64) -> f64 {
    let (mut lo, mut hi) = (1e-6f64, 1e3f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if p_fail(1.0, mid) <= p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Grid of the output-variance ceiling `V`: `2^(LOG2_V_MIN + i / STEPS)`.
const LOG2_V_MIN: f64 = -130.0;
const LOG2_V_MAX: f64 = -8.0;
const STEPS: f64 = 4.0;

fn grid_len() -> usize {
    ((LOG2_V_MAX - LOG2_V_MIN) * STEPS) as usize + 1
}

fn grid_v(i: usize) -> f64 {
    2f64.powf(LOG2_V_MIN + i as f64 / STEPS)
}

/// First grid index whose `V` is at least `var` (`grid_len()` if none).
fn first_at_least(var: f64) -> usize {
    let x = ((var.log2() - LOG2_V_MIN) * STEPS).ceil();
    if x <= 0.0 {
        0
    } else {
        (x as usize).min(grid_len())
    }
}

/// Per grid index and group, the cheapest set found: (latency of one KS+PBS, set).
type Table = Vec<Vec<Option<(f64, CryptoParams)>>>;

/// The cheapest sets per group and `V`, for every big-key dimension `D`.
fn search(groups: &[(Group, Need)], per_pbs: f64) -> BTreeMap<usize, Table> {
    let sigma = std_per_half_width(per_pbs);
    let budgets: Vec<f64> = groups
        .iter()
        .map(|(g, _)| (g.half_width() * sigma).powi(2))
        .collect();
    let len = grid_len();
    let mut by_dimension: BTreeMap<usize, Table> = BTreeMap::new();
    for_each_point(SET_GLWE_DIMENSIONS, 0, |base, pbs, ks, var_ms| {
        let (n, k, poly) = (
            base.lwe_dimension,
            base.glwe_dimension,
            base.polynomial_size,
        );
        let big = base.big_lwe_dimension();
        // Cheapest blind rotation whose output variance is at most grid V, per index.
        let mut rotation: Vec<Option<(f64, usize)>> = vec![None; len];
        for (l, &(_, var)) in pbs.iter().enumerate() {
            let cost = blind_rotation_s(n, k, poly, l + 1);
            for slot in rotation.iter_mut().skip(first_at_least(var)) {
                if slot.is_none_or(|(c, _)| cost < c) {
                    *slot = Some((cost, l));
                }
            }
        }
        let table = by_dimension
            .entry(big)
            .or_insert_with(|| vec![vec![None; groups.len()]; len]);
        for (g, ((group, need), budget)) in groups.iter().zip(&budgets).enumerate() {
            if (poly as u64) < 2u64 << group.precision() {
                continue;
            }
            for (i, rot) in rotation.iter().enumerate() {
                let Some((rot_cost, l)) = *rot else {
                    continue;
                };
                let room = budget - var_ms - need.amplification * grid_v(i);
                if room <= 0.0 {
                    break; // larger V only leaves less room
                }
                let cheapest_ks = ks
                    .iter()
                    .enumerate()
                    .filter(|(_, &(_, var))| var <= room)
                    .map(|(m, _)| (keyswitch_s(n, big, m + 1), m))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                let Some((ks_cost, m)) = cheapest_ks else {
                    continue;
                };
                let cost = rot_cost + ks_cost;
                let slot = &mut table[i][g];
                if slot.is_none_or(|(c, _)| cost < c) {
                    *slot = Some((cost, with_levels(base, (l + 1, pbs[l].0), (m + 1, ks[m].0))));
                }
            }
        }
    });
    by_dimension
}

/// The cheapest sets of `groups`, one per group (identical sets merged), with the index of
/// each group's set.
fn best_sets(
    groups: &[(Group, Need)],
    per_pbs: f64,
    linear: u64,
) -> Option<(Vec<CryptoParams>, Vec<usize>)> {
    let mut best: Option<(f64, Vec<CryptoParams>)> = None;
    for (big, table) in search(groups, per_pbs) {
        let linear_s = linear as f64 * (big + 1) as f64 * COST.linear_word_s;
        for cheapest in &table {
            let mut total = linear_s;
            let mut chosen = Vec::with_capacity(groups.len());
            for ((_, need), found) in groups.iter().zip(cheapest) {
                match *found {
                    Some((cost, params)) => {
                        total += need.count as f64 * cost;
                        chosen.push(params);
                    }
                    None => {
                        total = f64::INFINITY;
                        break;
                    }
                }
            }
            if total.is_finite() && best.as_ref().is_none_or(|(c, _)| total < *c) {
                best = Some((total, chosen));
            }
        }
    }
    let (_, chosen) = best?;
    let mut sets: Vec<CryptoParams> = Vec::new();
    let index = chosen
        .iter()
        .map(|p| match sets.iter().position(|s| s == p) {
            Some(i) => i,
            None => {
                sets.push(*p);
                sets.len() - 1
            }
        })
        .collect();
    Some((sets, index))
}

/// The sets reordered by bootstraps per inference, most first (set 0 is what one-set
/// summaries such as the sweep's parameter columns show), and the groups' indices with them.
fn busiest_first(
    sets: Vec<CryptoParams>,
    index: Vec<usize>,
    groups: &[(Group, Need)],
) -> (Vec<CryptoParams>, Vec<usize>) {
    let mut count = vec![0u64; sets.len()];
    for ((_, need), &i) in groups.iter().zip(&index) {
        count[i] += need.count;
    }
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(count[i]));
    let mut new_index = vec![0; sets.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    (
        order.iter().map(|&i| sets[i]).collect(),
        index.iter().map(|&i| new_index[i]).collect(),
    )
}

/// Names on every lookup of `program` the sets of its groups.
fn assign(program: &mut Program, groups: &[(Group, Need)], index: &[usize]) {
    let set_of = |group: Group| {
        groups
            .iter()
            .position(|(g, _)| *g == group)
            .map_or(0, |i| index[i])
    };
    let name = |lut: &mut Lut, role: LookupRole| {
        lut.sets = LookupSets {
            table: set_of(Group::Table {
                role,
                precision: lut.precision,
            }),
            bits: if lut.rounds_exactly() {
                set_of(Group::Bits)
            } else {
                0
            },
        };
    };
    for instruction in &mut program.instructions {
        match instruction {
            Instruction::Tlu { lut, .. } => name(lut, LookupRole::Table),
            Instruction::MaxPool { relu, .. } => name(relu, LookupRole::MaxPool),
            _ => {}
        }
    }
}

/// Every lookup of `program` on set 0.
fn assign_single(program: &mut Program) {
    for instruction in &mut program.instructions {
        match instruction {
            Instruction::Tlu { lut, .. } => lut.sets = LookupSets::default(),
            Instruction::MaxPool { relu, .. } => relu.sets = LookupSets::default(),
            _ => {}
        }
    }
}

/// Chooses the parameter sets of `program` with the lowest predicted latency whose every
/// bootstrap meets `target`, names them on its lookups, and returns them with what they
/// predict for one inference on `threads` threads.
///
/// With `options.per_class`, both the per-class sets and the best single set are priced and
/// the faster within `options.max_server_key_bytes` wins (the per-class search is
/// conservative about noise, so one set can still win on small circuits).
pub fn choose_param_sets(
    program: &mut Program,
    target: PErrorTarget,
    threads: usize,
    options: SetOptions,
) -> Result<(ParamSets, Prediction), OptimizerError> {
    let single = choose_params(program, target, threads);
    let fits = |p: &Prediction| {
        options
            .max_server_key_bytes
            .is_none_or(|limit| p.server_key_bytes <= limit)
    };
    let mut best: Option<(ParamSets, Prediction, Program)> = None;
    if let Ok((params, prediction)) = &single {
        if fits(prediction) {
            let mut single_program = program.clone();
            assign_single(&mut single_program);
            best = Some((
                ParamSets::single(*params),
                prediction.clone(),
                single_program,
            ));
        }
    }
    if options.per_class {
        if let Some(found) = per_class(program, target, threads)? {
            let faster = best
                .as_ref()
                .is_none_or(|(_, p, _)| found.1.latency_s < p.latency_s);
            if fits(&found.1) && faster {
                best = Some(found);
            }
        }
    }
    match (best, single) {
        (Some((params, prediction, assigned)), _) => {
            *program = assigned;
            Ok((params, prediction))
        }
        (None, Err(e)) => Err(e),
        (None, Ok((_, prediction))) => Err(OptimizerError::ServerKeyTooLarge {
            bytes: prediction.server_key_bytes,
            limit: options.max_server_key_bytes.unwrap_or(0),
        }),
    }
}

/// The per-class sets of `program`, checked with the exact noise model; `None` when the
/// search finds none (the single-set search then explains why).
fn per_class(
    program: &Program,
    target: PErrorTarget,
    threads: usize,
) -> Result<Option<(ParamSets, Prediction, Program)>, OptimizerError> {
    let classes = lookup_classes(program)?;
    let pbs_count: u64 = classes
        .iter()
        .map(|c| c.elements * c.kind.pbs_per_element())
        .sum();
    let per_pbs = target.per_pbs(pbs_count);
    let groups: Vec<(Group, Need)> = needs(&classes).into_iter().collect();
    let linear = linear_ops(program);
    let Some((sets, index)) = best_sets(&groups, per_pbs, linear) else {
        return Ok(None);
    };
    let (sets, index) = busiest_first(sets, index, &groups);
    let params = ParamSets::new(sets)?;
    let mut assigned = program.clone();
    assign(&mut assigned, &groups, &index);
    let classes = lookup_classes(&assigned)?;
    let prediction = predict_classes(&classes, linear, &params, threads)?;
    // The grid search bounds every noise from above; the exact model must agree.
    if prediction.p_error_per_pbs > per_pbs * (1.0 + 1e-9) {
        return Ok(None);
    }
    Ok(Some((params, prediction, assigned)))
}
