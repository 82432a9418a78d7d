//! Per-sample predictions in the four execution modes — the float model, the quantised model
//! in the clear, the circuit with simulated noise, real encryption — and how to score them.
//! Every mode takes the argmax of the model's first output after the client-side
//! post-processing, so the four modes compare like with like. Samples run in parallel (rayon)
//! except under encryption, where each run uses every thread.

use std::time::Instant;

use fhec_ir::{Graph, Tensor};
use fhec_runtime::Circuit;
use rayon::prelude::*;

use crate::compile::Compiled;
use crate::error::{DriverError, Result};
use crate::hooks::Hooks;
use crate::session::FheSession;

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(t: &Tensor) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in t.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// The argmax of the first output, or an error when there is none.
fn first_argmax(outs: &[Tensor]) -> Result<usize> {
    outs.first().map(argmax).ok_or(DriverError::NoOutput)
}

/// Runs `f` on every sample in parallel; the first failure names its sample.
fn per_sample<T: Send>(
    samples: &[Tensor],
    what: &'static str,
    hooks: &Hooks,
    f: impl Fn(usize, &Tensor) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    samples
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            hooks.check()?;
            f(i, x).map_err(|e| match e {
                DriverError::Cancelled => e,
                e => DriverError::Sample {
                    what,
                    sample: i,
                    source: Box::new(e),
                },
            })
        })
        .collect()
}

/// Argmax of the float model per sample.
pub fn float_predictions(graph: &Graph, samples: &[Tensor], hooks: &Hooks) -> Result<Vec<usize>> {
    per_sample(samples, "float", hooks, |_, x| {
        first_argmax(&fhec_ir::interp::run(graph, std::slice::from_ref(x))?)
    })
}

/// The quantised model's predictions over a test set.
pub struct ClearPredictions {
    /// Argmax per sample.
    pub predictions: Vec<usize>,
    /// Samples with at least one table lookup outside its table's domain (possible with
    /// tables on observed ranges; such a lookup reads the negacyclic wrap, as FHE does).
    pub left_domain: usize,
}

/// Argmax of the quantised model (integer graph + client post-processing) per sample.
pub fn clear_predictions(
    compiled: &Compiled,
    samples: &[Tensor],
    hooks: &Hooks,
) -> Result<ClearPredictions> {
    let runs = per_sample(samples, "quantised (clear)", hooks, |_, x| {
        let (outs, outside) = compiled.run_counting(std::slice::from_ref(x))?;
        Ok((first_argmax(&outs)?, outside > 0))
    })?;
    Ok(ClearPredictions {
        predictions: runs.iter().map(|r| r.0).collect(),
        left_domain: runs.iter().filter(|r| r.1).count(),
    })
}

/// Argmax of the simulated circuit per sample; sample `i` draws its noise from a seed
/// derived from `seed` and `i`, so results do not depend on the thread count.
pub fn simulate_predictions(
    circuit: &Circuit,
    samples: &[Tensor],
    seed: u64,
    hooks: &Hooks,
) -> Result<Vec<usize>> {
    per_sample(samples, "simulated", hooks, |i, x| {
        let seed = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(i as u64);
        let outs = fhec_runtime::simulate::simulate(circuit, std::slice::from_ref(x), seed)?;
        let outs = fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outs)?;
        first_argmax(&outs)
    })
}

/// Encrypts, runs and decrypts every sample in turn (each run uses every thread); one
/// progress step per sample.
pub fn fhe_predictions(
    session: &mut FheSession,
    circuit: &Circuit,
    samples: &[Tensor],
    labels: &[i64],
    hooks: &Hooks,
) -> Result<Vec<usize>> {
    let task = hooks.task("FHE samples", Some(samples.len() as u64));
    let mut preds = Vec::with_capacity(samples.len());
    for (i, x) in samples.iter().enumerate() {
        hooks.check()?;
        let t = Instant::now();
        let p = session
            .infer(circuit, std::slice::from_ref(x))
            .and_then(|outs| {
                let outs =
                    fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outs)?;
                first_argmax(&outs)
            })
            .map_err(|e| DriverError::Sample {
                what: "encrypted",
                sample: i,
                source: Box::new(e),
            })?;
        preds.push(p);
        task.step(Some(&format!(
            "  sample {}/{}: predicted {p}, label {}, {:.3} s",
            i + 1,
            samples.len(),
            labels[i],
            t.elapsed().as_secs_f64()
        )));
    }
    Ok(preds)
}

/// Predictions equal to their label.
pub fn correct(preds: &[usize], labels: &[i64]) -> usize {
    preds
        .iter()
        .zip(labels)
        .filter(|(&p, &l)| p as i64 == l)
        .count()
}

/// Fraction of equal predictions (over the shorter of the two).
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}
