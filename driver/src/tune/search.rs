//! The search for the fastest configuration at a target accuracy, independent of how a
//! candidate is measured (an [`Evaluator`]): the CLI's evaluator quantises, compiles and
//! simulates; the unit tests use a table.
//!
//! Strategy, in two phases inside one time budget:
//! 1. **Price** every candidate of the grid: compile it and read its predicted latency (no
//!    data needed beyond calibration). Candidates that do not compile are recorded with why.
//! 2. **Evaluate** in order of predicted latency, cheapest first, in three stages that each
//!    can reject (successive halving on the validation slice):
//!    clear accuracy on the whole slice (rejected when it is more than two binomial standard
//!    errors below the target: the bootstrap noise of simulation rarely adds accuracy), then
//!    simulated accuracy on the first half (same rule), then on the whole slice (must reach
//!    the target). The first candidate that reaches it is the winner: nothing cheaper on the
//!    grid does, so within the budget the winner is the grid's optimum. The search then goes
//!    on through the dearer candidates while budget remains (unless told to stop), so the
//!    Pareto front shows what more latency buys.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One point of the grid.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Candidate {
    pub bits: u32,
    /// Accumulator bits kept before each lookup; `None` = no rounding.
    pub rounding_bits: Option<u32>,
    pub prune_rate: f32,
    /// Failure probability per bootstrap.
    pub p_error: f64,
}

impl Candidate {
    /// `bits=6 rounding=5 p_error=0.01 prune_rate=0.5`.
    pub fn label(&self) -> String {
        format!(
            "bits={} rounding={} p_error={} prune_rate={}",
            self.bits,
            self.rounding_bits
                .map_or("none".to_string(), |r| r.to_string()),
            self.p_error,
            self.prune_rate
        )
    }
}

/// The cost side of a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub predicted_latency_s: f64,
    pub pbs_count: u64,
}

/// Measures candidates; errors are one-line reasons (the candidate is then out).
pub trait Evaluator {
    /// Samples in the validation slice.
    fn validation_len(&self) -> usize;
    fn price(&mut self, c: &Candidate) -> Result<Price, String>;
    /// Correct clear (quantised) predictions on the whole slice.
    fn clear_correct(&mut self, c: &Candidate) -> Result<usize, String>;
    /// Correct simulated predictions on the first `n` samples of the slice.
    fn simulated_correct(&mut self, c: &Candidate, n: usize) -> Result<usize, String>;
}

/// Where a candidate's evaluation ended.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Did not compile or failed to run (see `error`).
    Error,
    /// Priced; the budget ran out before its evaluation.
    NotEvaluated,
    /// The budget ran out before it was priced.
    NotPriced,
    /// Rejected on its clear accuracy.
    ClearBelowTarget,
    /// Rejected on its simulated accuracy over the first half of the slice.
    HalfBelowTarget,
    /// Simulated on the whole slice, below the target.
    BelowTarget,
    /// Simulated on the whole slice, at or above the target.
    MeetsTarget,
}

/// A candidate and what the search learnt about it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    pub candidate: Candidate,
    pub status: Status,
    pub predicted_latency_s: Option<f64>,
    pub pbs_count: Option<u64>,
    pub val_clear_accuracy: Option<f64>,
    pub val_simulate_accuracy: Option<f64>,
    /// Samples the simulated accuracy is over (half or all of the slice).
    pub val_simulated_samples: usize,
    pub error: String,
}

impl Record {
    fn new(candidate: Candidate) -> Self {
        Record {
            candidate,
            status: Status::NotPriced,
            predicted_latency_s: None,
            pbs_count: None,
            val_clear_accuracy: None,
            val_simulate_accuracy: None,
            val_simulated_samples: 0,
            error: String::new(),
        }
    }

    /// Whether a previous run finished with this record (it is then not measured again).
    fn settled(&self) -> bool {
        !matches!(self.status, Status::NotPriced | Status::NotEvaluated)
    }
}

/// What to look for.
pub struct Goal {
    /// Simulated validation accuracy to reach.
    pub target: f64,
    pub budget: Duration,
    /// Stop at the winner instead of going on for the Pareto front.
    pub stop_at_winner: bool,
}

/// The outcome: every record (grid order) and the winner's index.
pub struct Outcome {
    pub records: Vec<Record>,
    pub winner: Option<usize>,
    /// The budget ran out before every candidate was evaluated.
    pub out_of_budget: bool,
}

/// Runs the search over `grid`, reusing `previous` records of the same candidates (a resumed
/// search); `save` is called after every candidate so an interrupted search loses nothing.
pub fn search(
    ev: &mut dyn Evaluator,
    grid: Vec<Candidate>,
    previous: &[Record],
    goal: &Goal,
    save: &mut dyn FnMut(&[Record]),
) -> Outcome {
    let start = Instant::now();
    let within_budget = || start.elapsed() < goal.budget;
    let mut records: Vec<Record> = grid
        .into_iter()
        .map(|c| {
            previous
                .iter()
                .find(|r| r.candidate == c && r.settled())
                .cloned()
                .unwrap_or_else(|| Record::new(c))
        })
        .collect();
    let mut out_of_budget = false;
    // Phase 1: price.
    for i in 0..records.len() {
        if records[i].settled() || records[i].predicted_latency_s.is_some() {
            continue;
        }
        if !within_budget() {
            out_of_budget = true;
            break;
        }
        let r = &mut records[i];
        match ev.price(&r.candidate) {
            Ok(p) => {
                r.predicted_latency_s = Some(p.predicted_latency_s);
                r.pbs_count = Some(p.pbs_count);
                r.status = Status::NotEvaluated;
            }
            Err(e) => {
                r.status = Status::Error;
                r.error = e;
            }
        }
        save(&records);
    }
    // Phase 2: evaluate, cheapest first.
    let order = latency_order(&records);
    let mut winner = winner_of(&records, &order, goal.target);
    for &i in &order {
        if records[i].settled() {
            continue;
        }
        if winner.is_some() && goal.stop_at_winner {
            break;
        }
        if !within_budget() {
            out_of_budget = true;
            break;
        }
        evaluate(ev, &mut records[i], goal.target);
        save(&records);
        if winner.is_none() && records[i].status == Status::MeetsTarget {
            winner = Some(i);
        }
    }
    Outcome {
        records,
        winner,
        out_of_budget,
    }
}

/// Priced records by predicted latency, then bootstraps, then grid order.
fn latency_order(records: &[Record]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].predicted_latency_s.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&records[a], &records[b]);
        ra.predicted_latency_s
            .unwrap_or(f64::INFINITY)
            .total_cmp(&rb.predicted_latency_s.unwrap_or(f64::INFINITY))
            .then(ra.pbs_count.cmp(&rb.pbs_count))
            .then(a.cmp(&b))
    });
    order
}

/// The cheapest record that meets `target` (records of a resumed search included).
fn winner_of(records: &[Record], order: &[usize], target: f64) -> Option<usize> {
    order.iter().copied().find(|&i| {
        records[i].status == Status::MeetsTarget
            && records[i]
                .val_simulate_accuracy
                .is_some_and(|a| a >= target)
    })
}

/// Accuracy more than two binomial standard errors below `target` on `n` samples.
fn clearly_below(accuracy: f64, target: f64, n: usize) -> bool {
    let t = target.clamp(0.0, 1.0);
    let se = (t * (1.0 - t) / n.max(1) as f64).sqrt();
    accuracy < target - 2.0 * se
}

fn evaluate(ev: &mut dyn Evaluator, r: &mut Record, target: f64) {
    let n = ev.validation_len();
    let c = r.candidate.clone();
    let fail = |r: &mut Record, e: String| {
        r.status = Status::Error;
        r.error = e;
    };
    let clear = match ev.clear_correct(&c) {
        Ok(k) => k as f64 / n as f64,
        Err(e) => return fail(r, e),
    };
    r.val_clear_accuracy = Some(clear);
    if clearly_below(clear, target, n) {
        r.status = Status::ClearBelowTarget;
        return;
    }
    let half = n.div_ceil(2);
    if half < n {
        let acc = match ev.simulated_correct(&c, half) {
            Ok(k) => k as f64 / half as f64,
            Err(e) => return fail(r, e),
        };
        r.val_simulate_accuracy = Some(acc);
        r.val_simulated_samples = half;
        if clearly_below(acc, target, half) {
            r.status = Status::HalfBelowTarget;
            return;
        }
    }
    let acc = match ev.simulated_correct(&c, n) {
        Ok(k) => k as f64 / n as f64,
        Err(e) => return fail(r, e),
    };
    r.val_simulate_accuracy = Some(acc);
    r.val_simulated_samples = n;
    r.status = if acc >= target {
        Status::MeetsTarget
    } else {
        Status::BelowTarget
    };
}

/// Records on the Pareto front of (simulated validation accuracy, predicted latency) among
/// those simulated on the whole slice: no other is at least as accurate and as fast, and
/// strictly better in one. Sorted by latency.
pub fn pareto_front(records: &[Record], n: usize) -> Vec<usize> {
    let full: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i].val_simulated_samples == n
                && records[i].val_simulate_accuracy.is_some()
                && records[i].predicted_latency_s.is_some()
        })
        .collect();
    let point = |i: usize| {
        (
            records[i].val_simulate_accuracy.unwrap_or(0.0),
            records[i].predicted_latency_s.unwrap_or(f64::INFINITY),
        )
    };
    let mut front: Vec<usize> = full
        .iter()
        .copied()
        .filter(|&i| {
            let (a, l) = point(i);
            !full.iter().any(|&j| {
                let (b, m) = point(j);
                j != i && b >= a && m <= l && (b > a || m < l)
            })
        })
        .collect();
    front.sort_by(|&a, &b| point(a).1.total_cmp(&point(b).1).then(a.cmp(&b)));
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate's latency (or why it does not compile), clear correct count, and whether
    /// each validation sample is right when simulated.
    type Row = (Candidate, Result<f64, String>, usize, Vec<bool>);

    /// A table-driven evaluator that logs its simulations.
    struct Table {
        n: usize,
        rows: Vec<Row>,
        simulated: Vec<(u32, usize)>,
    }

    impl Table {
        fn row(&self, c: &Candidate) -> &Row {
            self.rows.iter().find(|r| &r.0 == c).unwrap()
        }
    }

    impl Evaluator for Table {
        fn validation_len(&self) -> usize {
            self.n
        }
        fn price(&mut self, c: &Candidate) -> Result<Price, String> {
            self.row(c).1.clone().map(|l| Price {
                predicted_latency_s: l,
                pbs_count: 10,
            })
        }
        fn clear_correct(&mut self, c: &Candidate) -> Result<usize, String> {
            Ok(self.row(c).2)
        }
        fn simulated_correct(&mut self, c: &Candidate, n: usize) -> Result<usize, String> {
            self.simulated.push((c.bits, n));
            Ok(self.row(c).3[..n].iter().filter(|&&x| x).count())
        }
    }

    fn cand(bits: u32) -> Candidate {
        Candidate {
            bits,
            rounding_bits: Some(6),
            prune_rate: 0.0,
            p_error: 0.01,
        }
    }

    /// `k` correct of 100, the correct ones first or last.
    fn sims(k: usize, first: bool) -> Vec<bool> {
        (0..100)
            .map(|i| if first { i < k } else { i >= 100 - k })
            .collect()
    }

    fn table() -> Table {
        Table {
            n: 100,
            rows: vec![
                // Cheapest, clearly inaccurate: rejected on clear accuracy.
                (cand(2), Ok(0.1), 50, sims(50, true)),
                // Good in the clear, but the first half simulated is poor.
                (cand(3), Ok(0.2), 95, sims(60, false)),
                // Half fine, whole slice just below the 0.9 target.
                (cand(4), Ok(0.3), 92, sims(89, true)),
                // The winner.
                (cand(5), Ok(0.4), 95, sims(93, true)),
                // Dearer and more accurate: on the front, not the winner.
                (cand(6), Ok(0.8), 99, sims(98, true)),
                // Does not compile.
                (cand(7), Err("no parameters".into()), 0, vec![]),
                // Dearer and less accurate than 5: dominated.
                (cand(8), Ok(0.9), 95, sims(91, true)),
            ],
            simulated: vec![],
        }
    }

    fn goal(stop: bool) -> Goal {
        Goal {
            target: 0.9,
            budget: Duration::from_secs(60),
            stop_at_winner: stop,
        }
    }

    #[test]
    fn the_winner_is_the_cheapest_candidate_meeting_the_target() {
        let mut t = table();
        let grid: Vec<Candidate> = t.rows.iter().rev().map(|r| r.0.clone()).collect();
        let mut saves = 0;
        let out = search(&mut t, grid, &[], &goal(false), &mut |_| saves += 1);
        let w = &out.records[out.winner.unwrap()];
        assert_eq!(w.candidate.bits, 5);
        let status = |b: u32| {
            out.records
                .iter()
                .find(|r| r.candidate.bits == b)
                .unwrap()
                .status
        };
        assert_eq!(status(2), Status::ClearBelowTarget);
        assert_eq!(status(3), Status::HalfBelowTarget);
        assert_eq!(status(4), Status::BelowTarget);
        assert_eq!(status(5), Status::MeetsTarget);
        assert_eq!(status(6), Status::MeetsTarget);
        assert_eq!(status(7), Status::Error);
        assert!(saves >= 7);
        // 2 was never simulated; 3 only on its first half.
        assert!(!t.simulated.iter().any(|s| s.0 == 2));
        assert_eq!(
            t.simulated.iter().filter(|s| s.0 == 3).collect::<Vec<_>>(),
            [&(3, 50)]
        );
        let front: Vec<u32> = pareto_front(&out.records, 100)
            .iter()
            .map(|&i| out.records[i].candidate.bits)
            .collect();
        assert_eq!(front, [4, 5, 6]);
    }

    #[test]
    fn stopping_at_the_winner_and_resuming_measure_nothing_twice() {
        let mut t = table();
        let grid: Vec<Candidate> = t.rows.iter().map(|r| r.0.clone()).collect();
        let out = search(&mut t, grid.clone(), &[], &goal(true), &mut |_| {});
        let status =
            |r: &[Record], b: u32| r.iter().find(|x| x.candidate.bits == b).unwrap().status;
        assert_eq!(status(&out.records, 6), Status::NotEvaluated);
        // Resume, going on: only 6 and 8 are evaluated now.
        let mut t2 = table();
        let out2 = search(&mut t2, grid, &out.records, &goal(false), &mut |_| {});
        assert_eq!(out2.records[out2.winner.unwrap()].candidate.bits, 5);
        let bits: Vec<u32> = t2.simulated.iter().map(|s| s.0).collect();
        assert!(bits.iter().all(|&b| b == 6 || b == 8), "{bits:?}");
        assert_eq!(status(&out2.records, 8), Status::MeetsTarget);
    }

    #[test]
    fn an_exhausted_budget_leaves_candidates_unmeasured_and_says_so() {
        let mut t = table();
        let grid: Vec<Candidate> = t.rows.iter().map(|r| r.0.clone()).collect();
        let g = Goal {
            budget: Duration::ZERO,
            ..goal(false)
        };
        let out = search(&mut t, grid, &[], &g, &mut |_| {});
        assert!(out.out_of_budget && out.winner.is_none());
        assert!(out.records.iter().all(|r| r.status == Status::NotPriced));
    }
}
