//! Text renderings shared by several commands' reports: the circuit summary, the table
//! domains, op histograms and the per-layer accumulator table.

use std::collections::BTreeMap;

use fhec_driver::report::{CircuitReport, LayerJson, TableRangesJson};

/// The circuit's cost, parameters and promises, one aligned line each (one line per
/// parameter set).
pub fn circuit_text(r: &CircuitReport) -> String {
    let precisions: Vec<String> = r
        .pbs_by_precision
        .iter()
        .map(|(b, n)| format!("{n}x{b}-bit"))
        .collect();
    let sets: Vec<String> = r
        .param_sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let p = &set.params;
            format!(
                "{}n={} k={} N={} pbs 2^{}x{} ks 2^{}x{} (sigma 2^{:.1} / 2^{:.1}){}: {} \
                 bootstraps at {:.2} ms ({})",
                if r.param_sets.len() > 1 {
                    format!("set {i}: ")
                } else {
                    String::new()
                },
                p.lwe_dimension,
                p.glwe_dimension,
                p.polynomial_size,
                p.pbs_base_log,
                p.pbs_level,
                p.ks_base_log,
                p.ks_level,
                p.lwe_noise_std_log2,
                p.glwe_noise_std_log2,
                set.return_keyswitch
                    .map_or(String::new(), |r| format!(", {r}")),
                set.pbs_count,
                set.predicted_pbs_ms,
                set.serves.join(", "),
            )
        })
        .collect();
    format!(
        "bootstraps:      {} per inference ({})\n\
         accumulators:    up to {} bits; tables read up to {} bits\n\
         parameters:      {}\n\
         server key:      {:.1} MiB expanded, fingerprint {}\n\
         failure:         {:.3e} per bootstrap, {:.3e} per inference\n\
         predicted:       {:.2} ms per bootstrap, {:.3} s per inference on {} thread(s)\n",
        r.pbs_count,
        precisions.join(", "),
        r.max_accumulator_bits,
        r.tlu_precision_bits,
        sets.join("\n                 "),
        r.server_key_mib,
        r.fingerprint,
        r.p_error_per_pbs,
        r.global_p_error,
        r.predicted_pbs_ms,
        r.predicted_latency_s,
        r.threads,
    )
}

/// One line on the table domains.
pub fn ranges_text(r: &TableRangesJson) -> String {
    if r.narrowed.is_empty() {
        return format!(
            "{}: every table covers its worst-case input range",
            r.ranges
        );
    }
    let bits: Vec<String> = r
        .narrowed
        .iter()
        .map(|t| format!("{}->{}", t.bits_before, t.bits_after))
        .collect();
    format!(
        "{}: {} of {} tables narrowed to the calibration range plus margin (input bits {}); \
         an input outside reads a wrong (wrapped) entry",
        r.ranges,
        r.narrowed.len(),
        r.tables,
        bits.join(", ")
    )
}

/// `Gemm×3, Relu×2`.
pub fn histogram_text(h: &BTreeMap<String, usize>) -> String {
    let v: Vec<String> = h
        .iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.clone()
            } else {
                format!("{k}\u{d7}{n}")
            }
        })
        .collect();
    v.join(", ")
}

/// The per-layer accumulator table.
pub fn layers_table(layers: &[LayerJson]) -> String {
    let range = |[a, b]: [i64; 2]| format!("[{a}, {b}]");
    let mut rows: Vec<[String; 7]> = vec![[
        "layer".into(),
        "op".into(),
        "worst".into(),
        "worst range".into(),
        "observed".into(),
        "observed range".into(),
        "table input".into(),
    ]];
    for l in layers {
        rows.push([
            l.layer.clone(),
            l.op.to_string(),
            format!("{} bits", l.worst_bits),
            range(l.worst_range),
            l.observed_bits.map_or("-".into(), |b| format!("{b} bits")),
            l.observed_range.map_or("-".into(), range),
            l.tlu_input_bits.map_or("-".into(), |b| format!("{b} bits")),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                // Names and ops left-aligned, numbers right-aligned.
                if i < 2 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
