//! What a compile produced, as data a report prints or serialises: the circuit's cost and
//! parameters ([`CircuitReport`]), the table domains ([`TableRangesJson`]) and the pipeline's
//! effect per pass and layer ([`PipelineSummary`]).

use std::collections::BTreeMap;

use fhec_ir::Graph;
use fhec_passes::bitwidth::LayerBits;
use fhec_passes::PipelineReport;
use fhec_runtime::circuit::Instruction;
use fhec_runtime::{Circuit, CryptoParams};
use serde::Serialize;

use crate::config::ranges_text;

/// What a compiled circuit costs and promises (`compile --json`, and part of eval/predict
/// reports).
#[derive(Serialize, Debug, Clone)]
pub struct CircuitReport {
    pub pbs_count: u64,
    /// Table lookups (elements), without the extra bootstraps of exact rounding.
    pub tlu_count: u64,
    pub max_accumulator_bits: u32,
    /// Largest table precision (bits read by a bootstrap).
    pub tlu_precision_bits: u32,
    /// Bootstraps per table precision.
    pub pbs_by_precision: std::collections::BTreeMap<u32, u64>,
    /// The parameter set with the most bootstraps (set 0).
    pub params: ParamsJson,
    /// Every parameter set, with what runs on it.
    pub param_sets: Vec<ParamSetJson>,
    /// Size of the expanded server key (all sets), MiB.
    pub server_key_mib: f64,
    pub p_error_per_pbs: f64,
    pub global_p_error: f64,
    pub predicted_pbs_ms: f64,
    pub predicted_latency_s: f64,
    pub threads: usize,
    pub fingerprint: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct ParamsJson {
    pub lwe_dimension: usize,
    pub glwe_dimension: usize,
    pub polynomial_size: usize,
    pub lwe_noise_std_log2: f64,
    pub glwe_noise_std_log2: f64,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
}

impl From<&CryptoParams> for ParamsJson {
    fn from(p: &CryptoParams) -> Self {
        let r = |x: f64| (x.log2() * 100.0).round() / 100.0;
        ParamsJson {
            lwe_dimension: p.lwe_dimension,
            glwe_dimension: p.glwe_dimension,
            polynomial_size: p.polynomial_size,
            lwe_noise_std_log2: r(p.lwe_noise_std),
            glwe_noise_std_log2: r(p.glwe_noise_std),
            pbs_base_log: p.pbs_base_log,
            pbs_level: p.pbs_level,
            ks_base_log: p.ks_base_log,
            ks_level: p.ks_level,
        }
    }
}

/// One parameter set of a circuit and the lookups it serves.
#[derive(Serialize, Debug, Clone)]
pub struct ParamSetJson {
    #[serde(flatten)]
    pub params: ParamsJson,
    /// Bootstraps per inference on this set.
    pub pbs_count: u64,
    pub predicted_pbs_ms: f64,
    /// What runs on it: `table 6-bit`, `max-pool 7-bit`, `bit extraction`.
    pub serves: Vec<String>,
    /// For a set with a big key of its own: the keyswitch that brings its outputs back to
    /// the circuit big key (`null` for sets on the circuit big key).
    pub return_keyswitch: Option<fhec_runtime::ReturnKeyswitch>,
}

/// What each parameter set of `circuit` serves, by set index.
fn set_roles(circuit: &Circuit) -> Vec<Vec<String>> {
    let mut roles: Vec<Vec<String>> = vec![Vec::new(); circuit.params.len()];
    let mut add = |set: usize, what: String| {
        if let Some(r) = roles.get_mut(set) {
            if !r.contains(&what) {
                r.push(what);
            }
        }
    };
    for ins in &circuit.program.instructions {
        let (lut, role) = match ins {
            Instruction::Tlu { lut, .. } => (lut, "table"),
            Instruction::MaxPool { relu, .. } => (relu, "max-pool"),
            _ => continue,
        };
        add(lut.sets.table, format!("{role} {}-bit", lut.precision));
        if lut.rounds_exactly() {
            add(lut.sets.bits, "bit extraction".into());
        }
    }
    roles
}

impl CircuitReport {
    pub fn new(circuit: &Circuit) -> Self {
        let program = &circuit.program;
        // Bootstraps per precision, from the same lookup classes the optimizer sizes
        // (tables, max-pool comparisons, and the 1-bit extractions of exact rounding).
        let mut pbs_by_precision = std::collections::BTreeMap::new();
        for class in fhec_runtime::noise::lookup_classes(program).unwrap_or_default() {
            *pbs_by_precision.entry(class.kind.precision).or_default() += class.elements;
            if class.kind.exact && class.kind.shift > 0 {
                *pbs_by_precision.entry(1).or_default() += class.elements * class.kind.shift as u64;
            }
        }
        let mut tlu_count = 0u64;
        let mut max_acc = 0u32;
        for (i, ins) in program.instructions.iter().enumerate() {
            let accumulator = match ins {
                Instruction::Tlu { input, .. } => {
                    tlu_count += program.values[i].len() as u64;
                    &program.values[*input]
                }
                Instruction::Dense { .. } | Instruction::Conv { .. } => &program.values[i],
                _ => continue,
            };
            max_acc = max_acc.max(fhec_ir::quant::int_bits(accumulator.min, accumulator.max));
        }
        let pred = &circuit.prediction;
        CircuitReport {
            pbs_count: pred.pbs_count,
            tlu_count,
            max_accumulator_bits: max_acc,
            tlu_precision_bits: pbs_by_precision.keys().copied().max().unwrap_or(0),
            pbs_by_precision,
            params: circuit.params.primary().into(),
            param_sets: circuit
                .params
                .sets()
                .iter()
                .zip(set_roles(circuit))
                .enumerate()
                .map(|(i, (p, serves))| ParamSetJson {
                    params: p.into(),
                    pbs_count: pred.pbs_per_set.get(i).copied().unwrap_or(0),
                    predicted_pbs_ms: pred.pbs_latency_per_set_s.get(i).copied().unwrap_or(0.0)
                        * 1e3,
                    serves,
                    return_keyswitch: circuit.params.return_keyswitch(i),
                })
                .collect(),
            server_key_mib: pred.server_key_bytes as f64 / 1048576.0,
            p_error_per_pbs: pred.p_error_per_pbs,
            global_p_error: pred.global_p_error,
            predicted_pbs_ms: pred.pbs_latency_s * 1e3,
            predicted_latency_s: pred.latency_s,
            threads: pred.threads,
            fingerprint: circuit.params.fingerprint_hex(),
        }
    }
}

/// How the tables' input domains were chosen, and what narrowing did.
#[derive(Serialize, Debug, Clone)]
pub struct TableRangesJson {
    /// `worst-case` or `observed:MARGIN`.
    pub ranges: String,
    /// Table-lookup nodes of the integer graph.
    pub tables: usize,
    /// Tables narrowed to their observed range (plus margin).
    pub narrowed: Vec<NarrowedJson>,
}

#[derive(Serialize, Debug, Clone)]
pub struct NarrowedJson {
    pub node: String,
    pub worst_case_domain: [i64; 2],
    pub domain: [i64; 2],
    pub observed: [i64; 2],
    /// Entries added on each side of the observed range.
    pub margin_entries: i64,
    pub bits_before: u32,
    pub bits_after: u32,
}

impl TableRangesJson {
    /// The table domains of an integer `graph` compiled with `ranges`.
    pub fn new(ranges: fhec_passes::TableRanges, graph: &Graph, report: &PipelineReport) -> Self {
        let tables = graph
            .node_ids()
            .filter(|&n| matches!(graph.node(n).op, fhec_ir::Op::Tlu(_)))
            .count();
        TableRangesJson {
            ranges: ranges_text(ranges),
            tables,
            narrowed: report
                .narrowed_tables
                .iter()
                .map(|t| NarrowedJson {
                    node: t.node.clone(),
                    worst_case_domain: [t.before.0, t.before.1],
                    domain: [t.after.0, t.after.1],
                    observed: [t.observed.0, t.observed.1],
                    margin_entries: t.margin,
                    bits_before: t.bits_before,
                    bits_after: t.bits_after,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct PassJson {
    pub pass: &'static str,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub changes: Vec<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct LayerJson {
    pub layer: String,
    pub op: &'static str,
    pub worst_bits: u32,
    pub worst_range: [i64; 2],
    pub observed_bits: Option<u32>,
    pub observed_range: Option<[i64; 2]>,
    pub tlu_input_bits: Option<u32>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PrunedJson {
    pub layer: String,
    pub before: usize,
    pub after: usize,
    pub constant: usize,
    pub dead: usize,
    /// Removed by `--prune-rate` (lossy).
    pub by_rate: usize,
    /// The neurons removed, numbered as in the imported model's layer.
    pub removed: Vec<usize>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PostJson {
    pub output: usize,
    pub node: String,
    pub op: &'static str,
    /// The op's attributes as the IR printer writes them (e.g. `(axis=1)`).
    pub attrs: String,
}

/// What the pipeline did (`inspect --json`'s `pipeline`).
#[derive(Serialize, Debug, Clone)]
pub struct PipelineSummary {
    pub passes: Vec<PassJson>,
    pub tlu_count: Option<usize>,
    pub max_accumulator_bits: Option<u32>,
    pub layers: Vec<LayerJson>,
    pub pruned: Vec<PrunedJson>,
    pub postprocessing: Vec<PostJson>,
    pub ops_after: BTreeMap<String, usize>,
    pub nodes_after: usize,
}

pub fn layers_json(layers: &[LayerBits]) -> Vec<LayerJson> {
    layers
        .iter()
        .map(|l| LayerJson {
            layer: l.layer.clone(),
            op: l.op,
            worst_bits: l.worst_bits,
            worst_range: [l.worst.0, l.worst.1],
            observed_bits: l.observed_bits,
            observed_range: l.observed.map(|(a, b)| [a, b]),
            tlu_input_bits: l.tlu_input_bits,
        })
        .collect()
}

pub fn pruned_json(report: &PipelineReport) -> Vec<PrunedJson> {
    report
        .pruned
        .iter()
        .map(|p| PrunedJson {
            layer: p.layer.clone(),
            before: p.before,
            after: p.after,
            constant: p.constant,
            dead: p.dead,
            by_rate: p.by_rate,
            removed: p.removed.clone(),
        })
        .collect()
}

pub fn postprocessing_json(report: &PipelineReport) -> Vec<PostJson> {
    report
        .postprocessing
        .iter()
        .map(|p| PostJson {
            output: p.output,
            node: p.node.clone(),
            op: p.op.name(),
            attrs: fhec_ir::print::attrs(&p.op),
        })
        .collect()
}

/// IR op histogram of a graph.
pub fn op_histogram(g: &Graph) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for id in g.node_ids() {
        *h.entry(g.node(id).op.name().to_string()).or_default() += 1;
    }
    h
}

/// Pretty JSON (two-space indentation, fields in declaration order), except that arrays
/// holding only numbers, booleans and nulls stay on one line (per-sample predictions,
/// ranges).
pub fn json_text<T: Serialize>(value: &T) -> String {
    let pretty = serde_json::to_string_pretty(value).expect("report types serialise to JSON");
    let chars: Vec<char> = pretty.chars().collect();
    // End of the array opening at `start` when it holds no array, object or string.
    let scalar_array_end = |start: usize| -> Option<usize> {
        for (j, &c) in chars.iter().enumerate().skip(start + 1) {
            match c {
                '"' | '[' | '{' => return None,
                ']' => return Some(j),
                _ => {}
            }
        }
        None
    };
    let mut out = String::with_capacity(pretty.len());
    let mut in_str = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                }
                i += 1;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if let Some(end) = (c == '[').then(|| scalar_array_end(i)).flatten() {
            let inner: String = chars[i + 1..end].iter().collect();
            let items: Vec<&str> = inner
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            out.push('[');
            out.push_str(&items.join(" "));
            out.push(']');
            i = end;
        } else {
            out.push(c);
        }
        i += 1;
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_text_keeps_scalar_arrays_on_one_line() {
        let v = serde_json::json!({
            "b": [1, 2, 3],
            "a": [{"x": ["p]", "q\\\"["]}, [1]],
            "s": "[not, an array]",
            "e": [],
            "c": [true, null, -1.5],
        });
        let text = super::json_text(&v);
        assert!(text.contains("\"b\": [1, 2, 3]"), "{text}");
        assert!(text.contains("\"c\": [true, null, -1.5]"), "{text}");
        assert!(!text.contains(r#""x": ["p]""#), "{text}");
        assert!(text.contains("\"e\": []"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
