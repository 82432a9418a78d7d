//! Removes neurons that zero weights make useless, between two linear layers.
//!
//! A layer L1 (`Gemm`, or `Conv` with `group = 1`) feeds exactly one next layer L2 (`Gemm` or
//! `Conv` with `group = 1`) through per-channel ops only: univariate activations, pooling,
//! and for `Conv -> Gemm` one flattening `Reshape`. A weight `w` counts as zero when
//! `|w| <= T` ([`PassOptions::prune_threshold`](crate::PassOptions), default 0). A neuron `j` of
//! L1 (Gemm output column, Conv output channel) is removed from both layers when
//!
//! * its incoming weights are all zero: it outputs the constant `act(b_j)`, whose
//!   contribution `act(b_j) * W2[:, j]` moves into L2's bias (when the constant is not 0 this
//!   needs L2 to see it at every position: no padding in a Conv L2, no average pooling that
//!   counts padding in between; otherwise the neuron stays), or
//! * its outgoing weights (L2's inputs fed by it) are all zero: it is dead.
//!
//! Removing neurons can zero more rows or columns, so the pass repeats until nothing changes.
//! The removed neurons per layer go to [`PipelineReport::pruned`](crate::PipelineReport).
//!
//! With [`PassOptions::prune_rates`](crate::PassOptions) it then removes a share of the
//! neurons of every such layer by rate (lossy, see `prune_by_rate` and
//! [`PruneMethod`](crate::PruneMethod)).
//!
//! [`zero_weight_stats`] reports, for the same layers, how close each neuron is to that
//! (the fraction of its incoming and outgoing weights that are zero): `fhec inspect
//! --prune-stats`.

use std::ops::Range;

use fhec_ir::interp::eval_op;
use fhec_ir::{Graph, IrError, NodeId, Op, Tensor, TensorFact};
use ndarray::{Array1, Axis, IxDyn};

use crate::util::{sole_consumer, Linear, LinearKind};
use crate::{Pass, PassContext, PruneMethod, PrunedLayer};

pub const PASS: Pass = Pass {
    name: "prune",
    summary: "remove constant and dead neurons between two linear layers",
    run,
};

/// L1, the per-channel ops after it, and L2.
struct Pair {
    l1: Linear,
    chain: Vec<NodeId>,
    /// The flattening `Reshape` in `chain` (Conv -> Gemm), with the elements per channel.
    flatten: Option<(NodeId, usize)>,
    l2: Linear,
    /// L2 is a Conv with padding: it sees a constant channel as that constant only inside.
    l2_padded: bool,
}

fn run(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    prune_exactly(g, ctx)?;
    if !ctx.options.prune_rates.is_empty() {
        prune_by_rate(g, ctx)?;
    }
    Ok(())
}

fn prune_exactly(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let t = ctx.options.prune_threshold;
    loop {
        let mut changed = false;
        for id in g.topo_order() {
            let Some(pair) = find_pair(g, id) else {
                continue;
            };
            if let Some(rec) = prune_pair(g, pair, t)? {
                ctx.note(format!(
                    "'{}': {} -> {} neurons ({} constant, {} dead)",
                    rec.layer, rec.before, rec.after, rec.constant, rec.dead
                ));
                merge_record(&mut ctx.report.pruned, rec);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

/// Adds `rec` (one pruning step, `removed` numbered as the layer was before it) to the
/// layer's record, whose `removed` stays in the original numbering. A record continues the
/// one of the same name whose width it starts from; two layers sharing a name (names need not
/// be unique) keep separate records.
fn merge_record(records: &mut Vec<PrunedLayer>, rec: PrunedLayer) {
    match records
        .iter_mut()
        .find(|r| r.layer == rec.layer && r.after == rec.before)
    {
        Some(r) => {
            let alive: Vec<usize> = (0..r.before).filter(|i| !r.removed.contains(i)).collect();
            r.removed.extend(rec.removed.iter().map(|&j| alive[j]));
            r.removed.sort_unstable();
            r.after = rec.after;
            r.constant += rec.constant;
            r.dead += rec.dead;
            r.by_rate += rec.by_rate;
        }
        None => records.push(rec),
    }
}

fn prunable(lin: &Linear) -> bool {
    matches!(
        lin.kind,
        LinearKind::Gemm { .. } | LinearKind::Conv { group: 1 }
    )
}

/// The L1 -> L2 pair starting at `id`, if `id` is a prunable layer followed by one.
fn find_pair(g: &Graph, id: NodeId) -> Option<Pair> {
    let l1 = Linear::read(g, id).filter(prunable)?;
    let is_conv = matches!(l1.kind, LinearKind::Conv { .. });
    let (mut chain, mut flatten, mut l2_padded) = (vec![], None, false);
    let mut cur = id;
    let l2 = loop {
        let next = sole_consumer(g, cur)?;
        let node = g.node(next);
        match &node.op {
            Op::Unary(_)
            | Op::Identity
            | Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool => {}
            Op::Reshape { shape } if is_conv && flatten.is_none() => {
                let x = &g.node(cur).fact.shape;
                let per_channel: usize = x[2..].iter().product();
                if x[0] != 1 || shape.len() != 2 || shape[0] != 1 {
                    return None;
                }
                flatten = Some((next, per_channel));
            }
            Op::Gemm(a) if !a.trans_a && (!is_conv || flatten.is_some()) => {
                break Linear::read(g, next)?;
            }
            Op::Conv(c) if is_conv && flatten.is_none() => {
                l2_padded = c.pads.iter().any(|&(a, b)| a != 0 || b != 0);
                break Linear::read(g, next)?;
            }
            _ => return None,
        }
        chain.push(next);
        cur = next;
    };
    if !prunable(&l2) || g.node_inputs(l2.id)[0] != cur {
        return None;
    }
    let per = flatten.map_or(1, |f| f.1);
    (l2.w.shape()[l2.in_axis()] == l1.outputs() * per).then_some(Pair {
        l1,
        chain,
        flatten,
        l2,
        l2_padded,
    })
}

/// Prunes one pair; the record of what was removed, or `None` if nothing was.
fn prune_pair(g: &mut Graph, pair: Pair, t: f32) -> Result<Option<PrunedLayer>, IrError> {
    let Pair {
        l1,
        chain,
        flatten,
        l2,
        l2_padded,
    } = pair;
    let per = flatten.map_or(1, |f| f.1);
    let lanes = |j: usize| j * per..(j + 1) * per;
    let zero = |v: &f32| v.abs() <= t;
    let n = l1.outputs();
    let (mut keep, mut constant, mut dead) = (vec![], 0, 0);
    let mut shift = Array1::<f32>::zeros(l2.outputs());
    for j in 0..n {
        let incoming_zero = l1.w.index_axis(Axis(l1.out_axis()), j).iter().all(zero);
        let outgoing_zero =
            lanes(j).all(|l| l2.w.index_axis(Axis(l2.in_axis()), l).iter().all(zero));
        // Keep at least one neuron so no tensor becomes empty.
        let last_chance = keep.is_empty() && j + 1 == n;
        if outgoing_zero && !last_chance {
            dead += 1;
            continue;
        }
        if incoming_zero && !last_chance {
            match constant_output(g, &chain, l1.bias[j])? {
                Some(0.0) => {}
                Some(v) if !l2_padded && v.is_finite() => {
                    shift += &(contribution(&l2, lanes(j)) * v);
                }
                _ => {
                    keep.push(j);
                    continue;
                }
            }
            constant += 1;
            continue;
        }
        keep.push(j);
    }
    if keep.len() == n {
        return Ok(None);
    }
    let layer = g.node(l1.id).name.clone();
    let pair = Pair {
        l1,
        chain,
        flatten,
        l2,
        l2_padded,
    };
    keep_units(g, pair, &keep, &shift)?;
    Ok(Some(PrunedLayer {
        layer,
        before: n,
        after: keep.len(),
        constant,
        dead,
        by_rate: 0,
        removed: (0..n).filter(|j| !keep.contains(j)).collect(),
    }))
}

/// Rewrites a pair with only the units `keep` of L1 (and the inputs of L2 they feed), L2's
/// outputs shifted by `shift` (what the removed units contributed).
fn keep_units(
    g: &mut Graph,
    pair: Pair,
    keep: &[usize],
    shift: &Array1<f32>,
) -> Result<(), IrError> {
    let Pair {
        mut l1,
        chain,
        flatten,
        mut l2,
        ..
    } = pair;
    let per = flatten.map_or(1, |f| f.1);
    let l2_keep: Vec<usize> = keep.iter().flat_map(|&j| j * per..(j + 1) * per).collect();
    l1.w = l1.w.select(Axis(l1.out_axis()), keep);
    l1.bias = l1.bias.select(Axis(0), keep);
    l2.w = l2.w.select(Axis(l2.in_axis()), &l2_keep);
    if shift.iter().any(|&v| v != 0.0) {
        l2.shift_outputs(shift.as_slice().expect("1-D"));
    }
    l1.write(g)?;
    for &c in &chain {
        if let Some((r, per)) = flatten.filter(|f| f.0 == c) {
            g.node_mut(r).op = Op::Reshape {
                shape: vec![1, keep.len() * per],
            };
        }
        g.reinfer(c)?;
    }
    l2.write(g)
}

/// `--prune-rate`: in every prunable layer, removes the fraction `rate` of the units, chosen
/// and replaced as [`PruneMethod`] says (`mean_order`: ranked by zero weights or by impact,
/// replaced by their calibration means; `refit_order`: one at a time, the next layer refitted
/// on the rest). Layers are pruned in topological order, each measured on the graph pruned so
/// far.
fn prune_by_rate(g: &mut Graph, ctx: &mut PassContext) -> Result<(), IrError> {
    let rates = ctx.options.prune_rates.clone();
    let t = ctx.options.prune_threshold;
    let layers: Vec<NodeId> = g
        .topo_order()
        .into_iter()
        .filter(|&id| find_pair(g, id).is_some())
        .collect();
    if rates.len() > 1 && rates.len() != layers.len() {
        let names: Vec<&str> = layers.iter().map(|&id| g.node(id).name.as_str()).collect();
        return Err(IrError::Invalid(format!(
            "{} pruning rates for {} prunable layers ({}): give one rate, or one per layer",
            rates.len(),
            layers.len(),
            names.join(", ")
        )));
    }
    for (k, &id) in layers.iter().enumerate() {
        let rate = rates[if rates.len() == 1 { 0 } else { k }];
        let Some(mut pair) = find_pair(g, id) else {
            continue;
        };
        let n = pair.l1.outputs();
        let remove = ((rate as f64 * n as f64).floor() as usize).min(n - 1);
        if remove == 0 {
            continue;
        }
        let name = g.node(id).name.clone();
        if pair.l2_padded {
            return Err(IrError::Invalid(format!(
                "'{name}': its channels feed the padded Conv '{}', whose borders would not see \
                 a removed channel's mean: give this layer rate 0 (one rate per layer)",
                g.node(pair.l2.id).name
            )));
        }
        if ctx.calibration_inputs.is_empty() {
            return Err(IrError::Invalid(format!(
                "'{name}': pruning by rate replaces removed neurons by their mean on the \
                 calibration data, and there is none"
            )));
        }
        let (removed, shift, how) = match ctx.options.prune_method {
            PruneMethod::Refit => {
                let (removed, shift) = refit_order(g, &mut pair, remove, &ctx.calibration_inputs)?;
                (removed, shift, "the next layer refitted on the rest")
            }
            method => {
                let (removed, shift) =
                    mean_order(g, &pair, remove, method, t, &ctx.calibration_inputs)?;
                (removed, shift, "replaced by their calibration means")
            }
        };
        let keep: Vec<usize> = (0..n).filter(|j| !removed.contains(j)).collect();
        keep_units(g, pair, &keep, &shift)?;
        ctx.note(format!(
            "'{name}': {n} -> {} neurons by rate {rate} ({how})",
            keep.len()
        ));
        merge_record(
            &mut ctx.report.pruned,
            PrunedLayer {
                layer: name,
                before: n,
                after: keep.len(),
                constant: 0,
                dead: 0,
                by_rate: remove,
                removed,
            },
        );
    }
    Ok(())
}

/// `PruneMethod::ZeroWeights` and `Impact`: the `remove` neurons of L1 ranked first, each
/// replaced by its mean (as L2 reads it), which returns as L2's bias shift.
fn mean_order(
    g: &Graph,
    pair: &Pair,
    remove: usize,
    method: PruneMethod,
    t: f32,
    calibration: &[Vec<Tensor>],
) -> Result<(Vec<usize>, Array1<f32>), IrError> {
    let n = pair.l1.outputs();
    let (means, variances) = lane_stats(g, pair, calibration)?;
    let per = pair.flatten.map_or(1, |f| f.1);
    let outgoing = |j: usize| -> Vec<f32> {
        (j * per..(j + 1) * per)
            .flat_map(|l| pair.l2.w.index_axis(Axis(pair.l2.in_axis()), l).to_owned())
            .collect()
    };
    // (key, tie-break, index), the first `remove` in ascending order go.
    let mut order: Vec<(f64, f64, usize)> = (0..n)
        .map(|j| {
            let incoming = pair.l1.w.index_axis(Axis(pair.l1.out_axis()), j);
            match method {
                PruneMethod::ZeroWeights => {
                    let zeros = zero_fraction(incoming.iter().chain(&outgoing(j)), t);
                    let l1_norm: f32 = incoming.iter().map(|v| v.abs()).sum();
                    (-zeros, f64::from(l1_norm), j)
                }
                // Refit ranks its own way (`refit_order`); here it ranks as Impact.
                PruneMethod::Impact | PruneMethod::Refit => {
                    let damage: f64 = (j * per..(j + 1) * per)
                        .map(|l| {
                            let w = pair.l2.w.index_axis(Axis(pair.l2.in_axis()), l);
                            let norm: f64 = w.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                            variances[l] * norm
                        })
                        .sum();
                    (damage, 0.0, j)
                }
            }
        })
        .collect();
    order.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let mut removed: Vec<usize> = order[..remove].iter().map(|o| o.2).collect();
    removed.sort_unstable();
    let mut shift = Array1::<f32>::zeros(pair.l2.outputs());
    for &j in &removed {
        for (l, &mean) in means.iter().enumerate().skip(j * per).take(per) {
            shift += &(contribution(&pair.l2, l..l + 1) * mean);
        }
    }
    Ok((removed, shift))
}

/// `PruneMethod::Refit`: removes `remove` neurons of L1 one at a time, each time the one the
/// others predict best — the smallest `|W2_j|^2 / [C^-1]_jj` with `C` the covariance of the
/// remaining neurons on the calibration data, which is the squared error its removal adds
/// to L2 once the rest compensate (the optimal-brain-surgeon saliency of a whole neuron) —
/// and folds its least-squares prediction from the remaining neurons into L2's weights and
/// bias. Returns the removed neurons (sorted) and L2's bias shift; `pair.l2.w` is updated.
fn refit_order(
    g: &Graph,
    pair: &mut Pair,
    remove: usize,
    calibration: &[Vec<Tensor>],
) -> Result<(Vec<usize>, Array1<f32>), IrError> {
    let n = pair.l1.outputs();
    let per = pair.flatten.map_or(1, |f| f.1);
    let (mu, cov) = unit_moments(g, pair, calibration)?;
    let in_axis = pair.l2.in_axis();
    let norm2 = |w: &Tensor, j: usize| -> f64 {
        (j * per..(j + 1) * per)
            .flat_map(|l| w.index_axis(Axis(in_axis), l).to_owned())
            .map(|v| f64::from(v) * f64::from(v))
            .sum()
    };
    let mut alive: Vec<usize> = (0..n).collect();
    let mut shift = Array1::<f32>::zeros(pair.l2.outputs());
    for _ in 0..remove {
        let sub: Vec<Vec<f64>> = alive
            .iter()
            .map(|&a| alive.iter().map(|&b| cov[a][b]).collect())
            .collect();
        let inv = ridge_inverse(&sub);
        let (pos, _) = alive
            .iter()
            .enumerate()
            .map(|(i, &j)| (i, norm2(&pair.l2.w, j) / inv[i][i]))
            .fold(
                (0, f64::INFINITY),
                |best, x| if x.1 < best.1 { x } else { best },
            );
        let j = alive[pos];
        // a_j ~ mu_j + sum_k beta_k (a_k - mu_k) over the other alive neurons.
        let mut constant = mu[j];
        for (i, &k) in alive.iter().enumerate() {
            if k == j {
                continue;
            }
            let beta = -inv[pos][i] / inv[pos][pos];
            constant -= beta * mu[k];
            for p in 0..per {
                let from = pair.l2.w.index_axis(Axis(in_axis), j * per + p).to_owned();
                let mut to = pair.l2.w.index_axis_mut(Axis(in_axis), k * per + p);
                to.scaled_add(beta as f32, &from);
            }
        }
        shift += &(contribution(&pair.l2, j * per..(j + 1) * per) * constant as f32);
        alive.remove(pos);
    }
    let removed = (0..n).filter(|j| !alive.contains(j)).collect();
    Ok((removed, shift))
}

/// The mean of each L1 neuron as L2 reads it and their covariance, over the calibration
/// data and (for channels) over positions.
fn unit_moments(
    g: &Graph,
    pair: &Pair,
    calibration: &[Vec<Tensor>],
) -> Result<(Vec<f64>, Vec<Vec<f64>>), IrError> {
    let input = g.node_inputs(pair.l2.id)[0];
    let n = pair.l1.outputs();
    let mut sum = vec![0f64; n];
    let mut products = vec![vec![0f64; n]; n];
    let mut rows = 0usize;
    let mut row = vec![0f64; n];
    for x in calibration {
        let trace = fhec_ir::interp::run_trace(g, x)
            .map_err(|e| IrError::Invalid(format!("running the calibration data: {e}")))?;
        let v = trace[&input].as_slice_memory_order().map_or_else(
            || trace[&input].iter().copied().collect::<Vec<f32>>(),
            <[f32]>::to_vec,
        );
        // Unit j at position p is element j * positions + p (a flattened [1, n * per] Gemm
        // input or a [1, n, spatial...] Conv input alike).
        let positions = v.len() / n;
        for p in 0..positions {
            for (j, r) in row.iter_mut().enumerate() {
                *r = f64::from(v[j * positions + p]);
            }
            for a in 0..n {
                sum[a] += row[a];
                for b in a..n {
                    products[a][b] += row[a] * row[b];
                }
            }
            rows += 1;
        }
    }
    let k = rows.max(1) as f64;
    let mu: Vec<f64> = sum.iter().map(|s| s / k).collect();
    let mut cov = vec![vec![0f64; n]; n];
    for a in 0..n {
        for b in a..n {
            let c = products[a][b] / k - mu[a] * mu[b];
            cov[a][b] = c;
            cov[b][a] = c;
        }
    }
    Ok((mu, cov))
}

/// `(m + lambda I)^-1` by Gauss-Jordan elimination with partial pivoting, `lambda` a
/// millionth of the mean diagonal (and never 0): constant neurons make `m` singular.
fn ridge_inverse(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = m.len();
    let trace: f64 = (0..n).map(|i| m[i][i].max(0.0)).sum();
    let lambda = (trace / n.max(1) as f64) * 1e-6 + 1e-12;
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = r.clone();
            row[i] += lambda;
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for c in 0..n {
        let pivot = (c..n)
            .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
            .unwrap_or(c);
        a.swap(c, pivot);
        let d = a[c][c];
        for v in a[c].iter_mut() {
            *v /= d;
        }
        for r in 0..n {
            if r != c {
                let f = a[r][c];
                if f != 0.0 {
                    let (src, dst) = if r < c {
                        let (lo, hi) = a.split_at_mut(c);
                        (&hi[0], &mut lo[r])
                    } else {
                        let (lo, hi) = a.split_at_mut(r);
                        (&lo[c], &mut hi[0])
                    };
                    for (x, y) in dst.iter_mut().zip(src) {
                        *x -= f * y;
                    }
                }
            }
        }
    }
    a.into_iter().map(|r| r[n..].to_vec()).collect()
}

/// The mean and the variance over the calibration data of each input lane of L2 (an element
/// of a Gemm's input; a whole channel, over its positions, of a Conv's).
fn lane_stats(
    g: &Graph,
    pair: &Pair,
    calibration: &[Vec<Tensor>],
) -> Result<(Vec<f32>, Vec<f64>), IrError> {
    let input = g.node_inputs(pair.l2.id)[0];
    let lanes = pair.l2.w.shape()[pair.l2.in_axis()];
    let (mut sums, mut squares) = (vec![0f64; lanes], vec![0f64; lanes]);
    let mut count = 0usize;
    for x in calibration {
        let trace = fhec_ir::interp::run_trace(g, x)
            .map_err(|e| IrError::Invalid(format!("running the calibration data: {e}")))?;
        let v = &trace[&input];
        // [1, lanes] for a Gemm; [1, lanes, spatial...] for a Conv.
        let per_lane = v.len() / lanes;
        for (i, &e) in v.iter().enumerate() {
            let e = f64::from(e);
            sums[i / per_lane] += e / per_lane as f64;
            squares[i / per_lane] += e * e / per_lane as f64;
        }
        count += 1;
    }
    let k = count as f64;
    let means: Vec<f64> = sums.iter().map(|s| s / k).collect();
    let variances = squares
        .iter()
        .zip(&means)
        .map(|(q, m)| (q / k - m * m).max(0.0))
        .collect();
    Ok((means.iter().map(|&m| m as f32).collect(), variances))
}

/// The value a neuron with zero incoming weights and bias `b` has at every position when it
/// reaches L2, or `None` if it is not the same everywhere (average pooling that counts
/// padding turns a non-zero constant into smaller values at the borders).
fn constant_output(g: &Graph, chain: &[NodeId], b: f32) -> Result<Option<f32>, IrError> {
    let mut v = Tensor::from_elem(IxDyn(&[1]), b);
    for &c in chain {
        match &g.node(c).op {
            op @ Op::Unary(_) => {
                v = eval_op(op, &[&v], &TensorFact::f32([1])).map_err(|e| {
                    IrError::Invalid(format!("evaluating '{}': {e}", g.node(c).name))
                })?;
            }
            Op::AveragePool(p)
                if p.count_include_pad
                    && (p.ceil_mode || p.pads.iter().any(|&(a, b)| a != 0 || b != 0))
                    && v[0] != 0.0 =>
            {
                return Ok(None);
            }
            _ => {}
        }
    }
    Ok(Some(v[0]))
}

/// Per output of L2, the sum of its weights on the inputs `lanes` (over all kernel
/// positions for a Conv): what a constant 1 on those inputs adds to it.
fn contribution(l2: &Linear, lanes: Range<usize>) -> Array1<f32> {
    let mut out = Array1::<f32>::zeros(l2.outputs());
    let out_axis = l2.out_axis();
    for l in lanes {
        let sub = l2.w.index_axis(Axis(l2.in_axis()), l);
        // Removing the in axis shifts the out axis down when it came after it.
        let axis = if out_axis > l2.in_axis() {
            out_axis - 1
        } else {
            out_axis
        };
        for (o, lane) in out.iter_mut().zip(sub.axis_iter(Axis(axis))) {
            *o += lane.sum();
        }
    }
    out
}

/// Zero-weight statistics of one prunable layer (an L1 of an L1 -> L2 pair, see the module
/// doc): what neuron pruning by rate would work from.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerZeroStats {
    pub layer: String,
    /// `Gemm` or `Conv`.
    pub kind: &'static str,
    /// Neurons (Gemm output columns, Conv output channels).
    pub units: usize,
    /// Per unit, the fraction of its incoming weights that count as zero (`|w| <= T`).
    pub zero_incoming: Vec<f64>,
    /// Per unit, the fraction of the next layer's weights reading it that count as zero.
    pub zero_outgoing: Vec<f64>,
    /// Units the `prune` pass removes without changing the outputs (constant or dead).
    pub removable_exactly: usize,
    /// Table lookups one unit costs after quantisation: one per element of its output
    /// (1 for a Gemm neuron, the spatial size for a Conv channel).
    pub lookups_per_unit: usize,
}

impl LayerZeroStats {
    /// Units and bootstraps per inference that removing the fraction `rate` of the units
    /// saves (`floor(rate * units)`, at least one unit always stays).
    pub fn saved_at_rate(&self, rate: f64) -> (usize, usize) {
        let units = ((rate * self.units as f64).floor() as usize).min(self.units.saturating_sub(1));
        (units, units * self.lookups_per_unit)
    }
}

/// The zero-weight statistics of every prunable layer of the float graph `g` (after the
/// canonicalising passes, so that BatchNorm and MatMul+Add are folded into the layers), with
/// zero meaning `|w| <= threshold`. Layers appear in topological order.
pub fn zero_weight_stats(g: &Graph, threshold: f32) -> Result<Vec<LayerZeroStats>, IrError> {
    // What the pass removes exactly, per layer.
    let mut pruned = g.clone();
    let mut ctx = PassContext::new(crate::PassOptions {
        prune_threshold: threshold,
        ..Default::default()
    });
    run(&mut pruned, &mut ctx)?;
    let mut out = vec![];
    for id in g.topo_order() {
        let Some(pair) = find_pair(g, id) else {
            continue;
        };
        let per = pair.flatten.map_or(1, |f| f.1);
        let (l1, l2) = (&pair.l1, &pair.l2);
        let units = l1.outputs();
        let zero_incoming = (0..units)
            .map(|j| zero_fraction(l1.w.index_axis(Axis(l1.out_axis()), j).iter(), threshold))
            .collect();
        let zero_outgoing = (0..units)
            .map(|j| {
                let reading: Vec<Tensor> = (j * per..(j + 1) * per)
                    .map(|l| l2.w.index_axis(Axis(l2.in_axis()), l).to_owned())
                    .collect();
                zero_fraction(reading.iter().flatten(), threshold)
            })
            .collect();
        let name = g.node(id).name.clone();
        let removable_exactly = ctx
            .report
            .pruned
            .iter()
            .find(|r| r.layer == name)
            .map_or(0, |r| r.before - r.after);
        out.push(LayerZeroStats {
            layer: name,
            kind: match l1.kind {
                LinearKind::Gemm { .. } => "Gemm",
                LinearKind::Conv { .. } => "Conv",
            },
            units,
            zero_incoming,
            zero_outgoing,
            removable_exactly,
            lookups_per_unit: g.node(id).fact.shape[2..].iter().product(),
        });
    }
    Ok(out)
}

/// The fraction of `values` with `|v| <= threshold` (0 for none).
fn zero_fraction<'a>(values: impl Iterator<Item = &'a f32>, threshold: f32) -> f64 {
    let (mut n, mut zero) = (0usize, 0usize);
    for v in values {
        n += 1;
        zero += usize::from(v.abs() <= threshold);
    }
    if n == 0 {
        0.0
    } else {
        zero as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(before: usize, after: usize, removed: Vec<usize>) -> PrunedLayer {
        PrunedLayer {
            layer: "fc".into(),
            before,
            after,
            constant: 0,
            dead: 0,
            by_rate: removed.len(),
            removed,
        }
    }

    #[test]
    fn later_steps_report_neurons_in_the_original_numbering() {
        let mut records = vec![];
        merge_record(&mut records, step(6, 4, vec![1, 3]));
        // Now units 0, 2, 4, 5 are numbered 0..4; removing 0 and 2 removes 0 and 4.
        merge_record(&mut records, step(4, 2, vec![0, 2]));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].removed, [0, 1, 3, 4]);
        assert_eq!((records[0].before, records[0].after), (6, 2));
        assert_eq!(records[0].by_rate, 4);
    }

    #[test]
    fn two_layers_with_one_name_keep_their_own_records() {
        let mut records = vec![];
        merge_record(&mut records, step(6, 4, vec![1, 3]));
        // Another layer named "fc", 3 wide: not a continuation of the first.
        merge_record(&mut records, step(3, 1, vec![0, 2]));
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].removed, [0, 2]);
    }
}
