//! Reading a sweep results CSV by column name into the rows the plots draw.

use std::path::Path;

use super::PlotError;

// ---------------------------------------------------------------------------------------
// Reading the CSV

/// One configuration of the sweep, as far as the plots need it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) dataset: String,
    pub(super) model: String,
    pub(super) bits: u32,
    pub(super) rounding: Rounding,
    pub(super) p_error: f64,
    pub(super) p_error_kind: String,
    pub(super) prune: String,
    pub(super) ok: bool,
    pub(super) error: String,
    pub(super) float_acc: Option<f64>,
    pub(super) clear_acc: Option<f64>,
    pub(super) sim_acc: Option<f64>,
    pub(super) fhe_acc: Option<f64>,
    pub(super) fhe_samples: Option<u64>,
    pub(super) predicted_latency: Option<f64>,
    pub(super) measured_latency: Option<f64>,
}

/// A rounding setting: one line in each panel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rounding {
    /// `None` for no rounding (sorts first).
    pub(super) bits: Option<u32>,
    pub(super) mode: String,
}

impl Rounding {
    pub(super) fn label(&self) -> String {
        match self.bits {
            None => "no rounding".into(),
            Some(b) if self.mode.is_empty() || self.mode == "none" => format!("rounding {b}"),
            Some(b) => format!("rounding {b} ({})", self.mode),
        }
    }
}

/// Columns the plots cannot do without.
pub(super) const REQUIRED: [&str; 12] = [
    "dataset",
    "bits",
    "rounding_bits",
    "rounding_mode",
    "p_error",
    "status",
    "float_accuracy",
    "clear_accuracy",
    "simulate_accuracy",
    "fhe_accuracy",
    "predicted_latency_s",
    "measured_latency_s",
];

/// The pruning of a row as one label: `none`, `0.01`, `rate 0.5 (refit)` or
/// `0.01, rate 0.5 (refit)` (`prune_rate` and `prune_method` are absent from files written
/// before they existed).
pub(super) fn prune_setting(threshold: &str, rate: &str, method: &str) -> String {
    let threshold = (!matches!(threshold, "" | "none")).then_some(threshold.to_string());
    let rate = (!matches!(rate, "" | "0")).then(|| match method {
        "" | "none" => format!("rate {rate}"),
        m => format!("rate {rate} ({m})"),
    });
    let parts: Vec<String> = threshold.into_iter().chain(rate).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

pub(super) fn read_rows(path: &Path) -> Result<Vec<Row>, PlotError> {
    let file = path.display().to_string();
    let read_err = |source| PlotError::Read {
        file: file.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(read_err)?;
    let header = reader.headers().map_err(read_err)?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(PlotError::Empty { file });
    }
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    for name in REQUIRED {
        if col(name).is_none() {
            let found: Vec<&str> = header.iter().take(6).collect();
            return Err(PlotError::MissingColumn {
                file,
                column: name,
                found: found.join(","),
            });
        }
    }
    let idx = |name: &str| col(name).expect("checked above");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(read_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let text = |name: &str| -> String {
            col(name)
                .and_then(|i| record.get(i))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let bad = |column: &'static str, expected: &'static str| PlotError::BadValue {
            file: file.clone(),
            line,
            column,
            value: record.get(idx(column)).unwrap_or("").to_string(),
            expected,
        };
        // Empty cell = not measured; a non-finite value is treated the same way.
        let opt_f64 = |column: &'static str| -> Result<Option<f64>, PlotError> {
            let t = text(column);
            if t.is_empty() {
                return Ok(None);
            }
            let v: f64 = t.parse().map_err(|_| bad(column, "a number"))?;
            Ok(v.is_finite().then_some(v))
        };
        let bits: u32 = text("bits")
            .parse()
            .map_err(|_| bad("bits", "a bit width"))?;
        let rb = text("rounding_bits");
        let rounding = Rounding {
            bits: match rb.as_str() {
                "" | "none" => None,
                t => Some(
                    t.parse()
                        .map_err(|_| bad("rounding_bits", "'none' or a bit width"))?,
                ),
            },
            mode: text("rounding_mode"),
        };
        let p_error = opt_f64("p_error")?.ok_or_else(|| bad("p_error", "a probability"))?;
        let status = text("status");
        let ok = match status.as_str() {
            "ok" => true,
            "error" => false,
            _ => return Err(bad("status", "'ok' or 'error'")),
        };
        let fhe_samples = match text("fhe_samples") {
            t if t.is_empty() => None,
            t => Some(t.parse().map_err(|_| PlotError::BadValue {
                file: file.clone(),
                line,
                column: "fhe_samples",
                value: t.clone(),
                expected: "a sample count",
            })?),
        };
        rows.push(Row {
            dataset: text("dataset"),
            model: text("model"),
            bits,
            rounding,
            p_error,
            p_error_kind: text("p_error_kind"),
            prune: prune_setting(
                &text("prune_threshold"),
                &text("prune_rate"),
                &text("prune_method"),
            ),
            ok,
            error: text("error"),
            float_acc: opt_f64("float_accuracy")?,
            clear_acc: opt_f64("clear_accuracy")?,
            sim_acc: opt_f64("simulate_accuracy")?,
            fhe_acc: opt_f64("fhe_accuracy")?,
            fhe_samples,
            predicted_latency: opt_f64("predicted_latency_s")?,
            measured_latency: opt_f64("measured_latency_s")?,
        });
    }
    if rows.is_empty() {
        return Err(PlotError::NoRows { file });
    }
    if !rows.iter().any(|r| r.ok) {
        let first = rows
            .iter()
            .map(|r| r.error.as_str())
            .find(|e| !e.is_empty())
            .unwrap_or("(no message)")
            .to_string();
        return Err(PlotError::NoOkRows {
            file,
            rows: rows.len(),
            first,
        });
    }
    Ok(rows)
}
