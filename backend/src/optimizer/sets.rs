//! One parameter set per class of lookups.
//!
//! The lookups of a circuit are grouped by role and precision (activation tables of each
//! precision, max-pool comparisons of each precision) plus one group for every bit
//! extraction of exact rounding; each group gets the cheapest set that serves it. Values
//! live between bootstraps under the circuit big key (dimension `D`, see [`ParamSets`]); a
//! group's set either shares that key (its `k * N = D`: no extra cost) or has a big key of
//! its own of any `k * N` and keyswitches every output back to `D` (a return keyswitch,
//! priced and noise-counted). Every set's keyswitch reads the circuit big key. The search is
//! over `D`, with both kinds of set priced for every group.
//!
//! The groups are coupled only through the noise of the values they read, which any set
//! may have produced. The search bounds it by a common ceiling `V` on the output variance of
//! every set whose outputs leave their lookup (the unit noise factors count in), and a
//! ceiling `V * 2^m` on the bit extractions' (their outputs only feed the rest of their own
//! lookup; `m` from [`BIT_CEILINGS`]): at a given `(D, V, m)` each group's constraints
//! depend on its own set alone (output variance, return keyswitch included, under its
//! ceiling and, per bootstrap, `A * V + var_ks + var_ms <= (half_width / z)^2`, where `A` is
//! the group's largest noise amplification with bit outputs at their ceiling and `z` the
//! failure target's Gaussian quantile), so each group takes its cheapest set independently,
//! and the best `(D, V, m)` minimises the total (with at least one set on the circuit big
//! key: set 0 defines it). `V` runs over a grid of quarter bits of variance; the chosen
//! circuit is then checked with the exact noise model.

use std::collections::BTreeMap;

use fhec_runtime::circuit::{Instruction, LookupSets, Lut, Prediction, Program};
use fhec_runtime::noise::{ks_variance, minimal_secure_std_lwe};
use fhec_runtime::noise::{lookup_classes, p_fail, LookupClass, LookupRole};
use fhec_runtime::{CryptoParams, ParamSets, ReturnKeyswitch};

use super::{
    best_bases, blind_rotation_s, choose_params, for_each_point, keyswitch_bases, keyswitch_s,
    linear_ops, predict_classes, return_keyswitch_s, with_levels, OptimizerError, PErrorTarget,
    COST, PER_CLASS,
};

/// How [`choose_param_sets`] may split a circuit's bootstraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions {
    /// One set per class of lookups; `false` puts every bootstrap on one set.
    pub per_class: bool,
    /// Per class, sets may have a big key of their own (with a return keyswitch); `false`
    /// keeps every set on the circuit big key.
    pub own_keys: bool,
    /// Largest expanded server key accepted (all sets' keys), bytes.
    pub max_server_key_bytes: Option<u64>,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            per_class: true,
            own_keys: true,
            max_server_key_bytes: None,
        }
    }
}

/// Return keyswitch levels searched (the key is `k*N * level` ciphertexts of the circuit
/// big key: deep ones cost more than they save).
const RETURN_LEVELS: usize = 4;

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

/// Ceilings of the bit extractions' output variance tried, as `log2(V_bits / V)`: their
/// outputs only feed the rest of their own lookup (never a noise factor), so they may be
/// noisier (a smaller, cheaper ring) or quieter than the sets whose outputs leave a lookup.
const BIT_CEILINGS: [i32; 9] = [-4, -2, 0, 2, 4, 6, 8, 10, 12];

/// What a group asks of its set.
#[derive(Clone, Copy, Debug)]
struct Need {
    /// Bootstraps per inference.
    count: u64,
    /// Per bit ceiling of [`BIT_CEILINGS`]: the largest coefficient of `V` in the input
    /// variance of one of its bootstraps (bit outputs counted at their ceiling).
    amplification: [f64; BIT_CEILINGS.len()],
}

/// The groups of `classes` and their needs.
fn needs(classes: &[LookupClass]) -> BTreeMap<Group, Need> {
    let mut out: BTreeMap<Group, Need> = BTreeMap::new();
    let mut add = |group: Group, count: u64, amplification: &dyn Fn(f64) -> f64| {
        let need = out.entry(group).or_insert(Need {
            count: 0,
            amplification: [0.0; BIT_CEILINGS.len()],
        });
        need.count += count;
        for (a, &m) in need.amplification.iter_mut().zip(&BIT_CEILINGS) {
            *a = a.max(amplification(2f64.powi(m)));
        }
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
            let shift = kind.shift as i32;
            // Bit j reads (alpha + j bit outputs) scaled by 4^(B-j), a bit output being
            // `bits` times V.
            let worst = |bits: f64| {
                (0..shift)
                    .map(|j| 4f64.powi(b - j) * (alpha + j as f64 * bits))
                    .fold(0.0, f64::max)
            };
            add(Group::Bits, c.elements * kind.shift as u64, &worst);
            add(group, c.elements, &|bits| alpha + shift as f64 * bits);
        } else {
            add(group, c.elements, &|_| alpha);
        }
    }
    out
}

/// One way a group is searched: its margin, precision, coefficient of `V` and the ceiling of
/// its own output variance (`V * 2^ceiling`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Variant {
    half_width: f64,
    precision: u32,
    amplification: f64,
    ceiling: i32,
}

/// The distinct variants of `groups` over [`BIT_CEILINGS`], and per group and bit ceiling
/// the index of its variant (groups that read no bit output have one variant).
fn variants(groups: &[(Group, Need)]) -> (Vec<Variant>, Vec<[usize; BIT_CEILINGS.len()]>) {
    let mut out: Vec<Variant> = Vec::new();
    let index = groups
        .iter()
        .map(|(group, need)| {
            let mut at = [0; BIT_CEILINGS.len()];
            for (k, &m) in BIT_CEILINGS.iter().enumerate() {
                let v = Variant {
                    half_width: group.half_width(),
                    precision: group.precision(),
                    amplification: need.amplification[k],
                    ceiling: if *group == Group::Bits { m } else { 0 },
                };
                at[k] = out.iter().position(|x| *x == v).unwrap_or_else(|| {
                    out.push(v);
                    out.len() - 1
                });
            }
            at
        })
        .collect();
    (out, index)
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

/// A set for a group, with what one of its bootstraps costs (keyswitch from the circuit big
/// key, blind rotation, return keyswitch if it has a key of its own).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Choice {
    cost: f64,
    params: CryptoParams,
    ret: Option<ReturnKeyswitch>,
}

/// A group's cheapest choices at one `(D, V)`: among sets on the circuit big key, and among
/// all sets.
#[derive(Clone, Copy, Debug, Default)]
struct Cheapest {
    shared: Option<Choice>,
    any: Option<Choice>,
}

/// Per grid index and variant, the cheapest choices found.
type Table = Vec<Vec<Cheapest>>;

/// A point `(k, N, n)` of the search space: the best PBS base and variance per level, and
/// the modulus-switch variance.
struct Point {
    base: CryptoParams,
    pbs: Vec<(usize, f64)>,
    var_ms: f64,
}

/// A way to leave a bootstrap: PBS level, return keyswitch, cost and output variance.
#[derive(Clone, Copy)]
struct Exit {
    cost: f64,
    var: f64,
    pbs_level: usize,
    ret: Option<ReturnKeyswitch>,
}

/// Per grid index `i`, the cheapest exit with output variance `<= V_i`.
fn cheapest_exits(exits: &[Exit]) -> Vec<Option<Exit>> {
    let len = grid_len();
    let mut out: Vec<Option<Exit>> = vec![None; len];
    for e in exits {
        let i = first_at_least(e.var);
        if i < len && out[i].is_none_or(|x| e.cost < x.cost) {
            out[i] = Some(*e);
        }
    }
    for i in 1..len {
        if let Some(prev) = out[i - 1] {
            if out[i].is_none_or(|x| prev.cost < x.cost) {
                out[i] = Some(prev);
            }
        }
    }
    out
}

/// The cheapest choices per variant (see [`variants`]) and `V`, for every circuit big key
/// dimension `D`.
fn search(variants: &[Variant], per_pbs: f64, own_keys: bool) -> BTreeMap<usize, Table> {
    let sigma = std_per_half_width(per_pbs);
    let budgets: Vec<f64> = variants
        .iter()
        .map(|v| (v.half_width * sigma).powi(2))
        .collect();
    let mut points = Vec::new();
    for_each_point(PER_CLASS, 0, |base, pbs, var_ms| {
        points.push(Point {
            base: *base,
            pbs: pbs.to_vec(),
            var_ms,
        });
    });
    let mains: std::collections::BTreeSet<usize> =
        points.iter().map(|p| p.base.big_lwe_dimension()).collect();
    let len = grid_len();
    let mut by_dimension = BTreeMap::new();
    for main in mains {
        let main_std = minimal_secure_std_lwe(main);
        // Keyswitch (circuit big key → n) per n, and return keyswitch per own k*N: best base
        // per level, with (level, base, variance, cost).
        let mut ks_by_n: BTreeMap<usize, Vec<(usize, usize, f64, f64)>> = BTreeMap::new();
        let mut returns_by_dim: BTreeMap<usize, Vec<(ReturnKeyswitch, f64, f64)>> = BTreeMap::new();
        let mut table: Table = vec![vec![Cheapest::default(); variants.len()]; len];
        for point in &points {
            let (n, k, poly) = (
                point.base.lwe_dimension,
                point.base.glwe_dimension,
                point.base.polynomial_size,
            );
            let own_dim = k * poly;
            let shared = own_dim == main;
            if !shared && !own_keys {
                continue;
            }
            let ks = ks_by_n.entry(n).or_insert_with(|| {
                keyswitch_bases(main, &point.base)
                    .into_iter()
                    .enumerate()
                    .map(|(m, (base, var))| (m + 1, base, var, keyswitch_s(n, main, m + 1)))
                    .collect()
            });
            let returns: &[(ReturnKeyswitch, f64, f64)] = if shared {
                &[]
            } else {
                returns_by_dim.entry(own_dim).or_insert_with(|| {
                    best_bases(RETURN_LEVELS, |b, l| {
                        ks_variance(own_dim, main, b, l, main_std)
                    })
                    .into_iter()
                    .enumerate()
                    .map(|(r, (base_log, var))| {
                        let level = r + 1;
                        let ret = ReturnKeyswitch { base_log, level };
                        (ret, var, return_keyswitch_s(own_dim, main, level))
                    })
                    .collect()
                })
            };
            let mut exits = Vec::new();
            for (l, &(_, var)) in point.pbs.iter().enumerate() {
                let cost = blind_rotation_s(n, k, poly, l + 1);
                if shared {
                    exits.push(Exit {
                        cost,
                        var,
                        pbs_level: l + 1,
                        ret: None,
                    });
                }
                for &(ret, ret_var, ret_cost) in returns {
                    exits.push(Exit {
                        cost: cost + ret_cost,
                        var: var + ret_var,
                        pbs_level: l + 1,
                        ret: Some(ret),
                    });
                }
            }
            let exits = cheapest_exits(&exits);
            for (g, (variant, budget)) in variants.iter().zip(&budgets).enumerate() {
                if (poly as u64) < 2u64 << variant.precision {
                    continue;
                }
                // The room left for the keyswitch shrinks as V grows: the cheapest feasible
                // keyswitch level only moves up.
                let mut m = 0;
                // The exit whose output variance is at most V * 2^ceiling.
                let offset = variant.ceiling as isize * STEPS as isize;
                for (i, row) in table.iter_mut().enumerate() {
                    let Some(Some(exit)) = usize::try_from(i as isize + offset)
                        .ok()
                        .and_then(|j| exits.get(j))
                    else {
                        continue;
                    };
                    let room = budget - point.var_ms - variant.amplification * grid_v(i);
                    if room <= 0.0 {
                        break;
                    }
                    while m < ks.len() && ks[m].2 > room {
                        m += 1;
                    }
                    let Some(&(ks_level, ks_base, _, ks_cost)) = ks.get(m) else {
                        break;
                    };
                    let l = exit.pbs_level;
                    let choice = Choice {
                        cost: exit.cost + ks_cost,
                        params: with_levels(
                            &point.base,
                            (l, point.pbs[l - 1].0),
                            (ks_level, ks_base),
                        ),
                        ret: exit.ret,
                    };
                    let slot = &mut row[g];
                    if slot.any.is_none_or(|c| choice.cost < c.cost) {
                        slot.any = Some(choice);
                    }
                    if shared && slot.shared.is_none_or(|c| choice.cost < c.cost) {
                        slot.shared = Some(choice);
                    }
                }
            }
        }
        by_dimension.insert(main, table);
    }
    by_dimension
}

/// The cheapest choice per group at one `(D, V)` over the bit ceilings, and its total cost.
fn cheapest_total(
    groups: &[(Group, Need)],
    variant_of: &[[usize; BIT_CEILINGS.len()]],
    row: &[Cheapest],
) -> Option<(f64, Vec<Choice>)> {
    (0..BIT_CEILINGS.len())
        .filter_map(|k| {
            let cheapest: Vec<Cheapest> = variant_of.iter().map(|at| row[at[k]]).collect();
            cheapest_at(groups, &cheapest)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// The cheapest choice per group at one `(D, V)` and bit ceiling with at least one set on
/// the circuit big key, and its total cost (`None` if some group has no set).
fn cheapest_at(groups: &[(Group, Need)], cheapest: &[Cheapest]) -> Option<(f64, Vec<Choice>)> {
    let mut total = 0.0;
    let mut chosen = Vec::with_capacity(groups.len());
    for ((_, need), found) in groups.iter().zip(cheapest) {
        let any = found.any?;
        total += need.count as f64 * any.cost;
        chosen.push(any);
    }
    if chosen.iter().all(|c| c.ret.is_some()) {
        // Some group must hold the circuit big key: the one for which it costs least.
        let (g, extra) = groups
            .iter()
            .zip(cheapest)
            .enumerate()
            .filter_map(|(g, ((_, need), found))| {
                let shared = found.shared?;
                Some((g, need.count as f64 * (shared.cost - chosen[g].cost)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        chosen[g] = cheapest[g].shared?;
        total += extra;
    }
    Some((total, chosen))
}

/// The cheapest sets of `groups`, one per group (identical sets merged), with the index of
/// each group's set.
fn best_sets(
    groups: &[(Group, Need)],
    per_pbs: f64,
    linear: u64,
    own_keys: bool,
) -> Option<(Vec<Choice>, Vec<usize>)> {
    let mut best: Option<(f64, Vec<Choice>)> = None;
    let (variants, variant_of) = variants(groups);
    for (big, table) in search(&variants, per_pbs, own_keys) {
        let linear_s = linear as f64 * (big + 1) as f64 * COST.linear_word_s;
        for row in &table {
            let Some((total, chosen)) = cheapest_total(groups, &variant_of, row) else {
                continue;
            };
            let total = total + linear_s;
            if best.as_ref().is_none_or(|(c, _)| total < *c) {
                best = Some((total, chosen));
            }
        }
    }
    let (_, chosen) = best?;
    let mut sets: Vec<Choice> = Vec::new();
    let index = chosen
        .iter()
        .map(|c| {
            match sets
                .iter()
                .position(|s| s.params == c.params && s.ret == c.ret)
            {
                Some(i) => i,
                None => {
                    sets.push(*c);
                    sets.len() - 1
                }
            }
        })
        .collect();
    Some((sets, index))
}

/// The sets reordered: those on the circuit big key first (set 0 defines it), each kind by
/// bootstraps per inference, most first (set 0 is what one-set summaries such as the
/// sweep's parameter columns show), and the groups' indices with them.
fn busiest_first(
    sets: Vec<Choice>,
    index: Vec<usize>,
    groups: &[(Group, Need)],
) -> (Vec<Choice>, Vec<usize>) {
    let mut count = vec![0u64; sets.len()];
    for ((_, need), &i) in groups.iter().zip(&index) {
        count[i] += need.count;
    }
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|&i| (sets[i].ret.is_some(), std::cmp::Reverse(count[i])));
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
        if let Some(found) = per_class(program, target, threads, options.own_keys)? {
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
    own_keys: bool,
) -> Result<Option<(ParamSets, Prediction, Program)>, OptimizerError> {
    let classes = lookup_classes(program)?;
    let pbs_count: u64 = classes
        .iter()
        .map(|c| c.elements * c.kind.pbs_per_element())
        .sum();
    let per_pbs = target.per_pbs(pbs_count);
    let groups: Vec<(Group, Need)> = needs(&classes).into_iter().collect();
    let linear = linear_ops(program);
    let Some((sets, index)) = best_sets(&groups, per_pbs, linear, own_keys) else {
        return Ok(None);
    };
    let (sets, index) = busiest_first(sets, index, &groups);
    let params = ParamSets::with_own_keys(
        sets.iter().map(|c| c.params).collect(),
        sets.iter().map(|c| c.ret).collect(),
    )?;
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
