//! The `top K` ranking of a sweep's rows: per dataset, the best successful configurations by
//! accuracy, then predicted latency, then bootstraps.

use super::table::Row;
use super::DatasetRows;

/// A row's place in the ranking and the accuracy column it was ranked by.
pub struct Ranked<'a> {
    pub rank: usize,
    pub by: &'static str,
    pub row: &'a Row,
}

/// The accuracy a row is ranked by: simulated when measured (the circuit with its bootstrap
/// noise, whole test set), else clear. FHE accuracy is on a few samples only, too coarse to
/// rank by.
fn ranking_accuracy(r: &Row) -> Option<(f64, &'static str)> {
    r.simulate_accuracy
        .map(|a| (a, "simulate_accuracy"))
        .or(r.clear_accuracy.map(|a| (a, "clear_accuracy")))
}

/// The K best successful rows of each dataset: higher ranking accuracy first, then lower
/// predicted latency (unmeasured last), then fewer bootstraps, then configuration order.
pub fn ranked(datasets: &[DatasetRows], k: usize) -> Vec<Ranked<'_>> {
    let mut out = Vec::new();
    for d in datasets {
        let mut candidates: Vec<(&Row, f64, &'static str)> = d
            .rows
            .iter()
            .filter(|r| r.status == "ok")
            .filter_map(|r| ranking_accuracy(r).map(|(a, by)| (r, a, by)))
            .collect();
        // A stable sort: equal rows keep the configuration order.
        candidates.sort_by(|(a, acc_a, _), (b, acc_b, _)| {
            acc_b
                .total_cmp(acc_a)
                .then_with(|| {
                    let lat = |r: &Row| r.predicted_latency_s.unwrap_or(f64::INFINITY);
                    lat(a).total_cmp(&lat(b))
                })
                .then_with(|| {
                    let pbs = |r: &Row| r.pbs_count.unwrap_or(u64::MAX);
                    pbs(a).cmp(&pbs(b))
                })
        });
        out.extend(
            candidates
                .into_iter()
                .take(k)
                .enumerate()
                .map(|(i, (row, _, by))| Ranked {
                    rank: i + 1,
                    by,
                    row,
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn row(bits: u32, sim: Option<f64>, clear: f64, latency: Option<f64>, ok: bool) -> Row {
        Row {
            dataset: "d".into(),
            bits,
            status: if ok { "ok" } else { "error" }.into(),
            clear_accuracy: Some(clear),
            simulate_accuracy: sim,
            predicted_latency_s: latency,
            ..Default::default()
        }
    }

    #[test]
    fn ranking_prefers_accuracy_then_latency_and_skips_failures() {
        let d = DatasetRows {
            name: "d".into(),
            csv: PathBuf::new(),
            rows: vec![
                row(2, Some(0.80), 0.99, Some(0.1), true),
                row(3, Some(0.90), 0.90, Some(0.5), true),
                row(4, Some(0.90), 0.90, Some(0.3), true),
                row(5, None, 0.95, None, true),
                row(6, Some(0.99), 0.99, Some(0.1), false),
            ],
        };
        let r = ranked(std::slice::from_ref(&d), 3);
        let bits: Vec<u32> = r.iter().map(|x| x.row.bits).collect();
        // 5 ranks by its clear accuracy (no simulation); 4 beats 3 on latency; 6 failed.
        assert_eq!(bits, [5, 4, 3]);
        assert_eq!(r[0].by, "clear_accuracy");
        assert_eq!(r[1].by, "simulate_accuracy");
        assert_eq!(r.iter().map(|x| x.rank).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
