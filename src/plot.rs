//! Plots of `fhec sweep` results: accuracy vs bits and predicted latency vs bits, each as a
//! PNG and an SVG written beside the results CSV.
//!
//! The CSV is read by column name (the contract in the sweep's header), so plots can be
//! redrawn from any results file with `fhec plot`. One line per rounding setting; a panel per
//! (dataset, model, p_error, prune threshold) when the file holds several, sharing axes so the
//! panels compare at a glance; failed configurations (`status=error`) are drawn as crosses
//! along the bottom edge so a gap in a line is never silent.
//!
//! Text is rendered with DejaVu Sans embedded in the binary (plotters' `ab_glyph` backend):
//! plotters' default font support links fontconfig/freetype, which a clean machine may lack.
//! Every image is drawn to a temporary file in the CSV's directory and renamed into place
//! only once all four are complete, so an interrupted run never leaves a partial image.

use std::cmp::Ordering;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fhec_runtime::atomic::{Access, PendingFile};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

/// Why a results CSV could not be plotted.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read sweep results '{file}': {source}")]
    Read {
        file: String,
        #[source]
        source: csv::Error,
    },
    #[error("'{file}' is empty: expected a fhec sweep results CSV (header line, then one row per configuration)")]
    Empty { file: String },
    #[error(
        "'{file}' is not a fhec sweep results CSV: it has no column '{column}' \
         (its header starts with {found:?}; write the file with `fhec sweep`)"
    )]
    MissingColumn {
        file: String,
        column: &'static str,
        found: String,
    },
    #[error("'{file}' line {line}, column '{column}': cannot read {value:?} as {expected}")]
    BadValue {
        file: String,
        line: u64,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("'{file}' holds a header but no result rows: nothing to plot")]
    NoRows { file: String },
    #[error(
        "'{file}': no configuration succeeded ({rows} row(s), all status=error; first error: {first}): \
         nothing to plot"
    )]
    NoOkRows {
        file: String,
        rows: usize,
        first: String,
    },
    #[error("cannot load the embedded plot font")]
    Font,
    #[error("cannot draw '{file}': {message}")]
    Draw { file: String, message: String },
    #[error("cannot write '{file}': {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a sweep results CSV and writes `<stem>_accuracy.{png,svg}` and
/// `<stem>_latency.{png,svg}` beside it; returns the paths written.
///
/// A file without result rows, or whose every configuration failed, is an error (there is
/// nothing to draw, and an empty chart would hide why); nothing is written then.
pub fn write_plots(csv: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rows = read_rows(csv)?;
    let figures = [
        ("accuracy", accuracy_figure(&rows)),
        ("latency", latency_figure(&rows)),
    ];
    let dir = match csv.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = csv
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    // Draw everything first; rename into place only when every image is complete.
    let mut pending = Vec::new();
    for (what, fig) in &figures {
        for ext in ["png", "svg"] {
            let path = dir.join(format!("{stem}_{what}.{ext}"));
            let tmp = render(fig, &path, ext)?;
            pending.push((tmp, path));
        }
    }
    let mut written = Vec::new();
    for (tmp, path) in pending {
        tmp.commit().map_err(|source| PlotError::Write {
            file: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------
// Reading the CSV

/// One configuration of the sweep, as far as the plots need it.
#[derive(Debug, Clone)]
struct Row {
    dataset: String,
    model: String,
    bits: u32,
    rounding: Rounding,
    p_error: f64,
    p_error_kind: String,
    prune: String,
    ok: bool,
    error: String,
    float_acc: Option<f64>,
    clear_acc: Option<f64>,
    sim_acc: Option<f64>,
    fhe_acc: Option<f64>,
    fhe_samples: Option<u64>,
    predicted_latency: Option<f64>,
    measured_latency: Option<f64>,
}

/// A rounding setting: one line in each panel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rounding {
    /// `None` for no rounding (sorts first).
    bits: Option<u32>,
    mode: String,
}

impl Rounding {
    fn label(&self) -> String {
        match self.bits {
            None => "no rounding".into(),
            Some(b) if self.mode.is_empty() || self.mode == "none" => format!("rounding {b}"),
            Some(b) => format!("rounding {b} ({})", self.mode),
        }
    }
}

/// Columns the plots cannot do without.
const REQUIRED: [&str; 12] = [
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
fn prune_setting(threshold: &str, rate: &str, method: &str) -> String {
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

fn read_rows(path: &Path) -> Result<Vec<Row>, PlotError> {
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

// ---------------------------------------------------------------------------------------
// Figures: what to draw, independent of the backend

/// Marker shapes: circles on lines, triangles for FHE measurements, crosses for failures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Circle,
    Triangle,
    Cross,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stroke {
    None,
    Solid,
    Dashed,
}

#[derive(Debug, Clone)]
struct LegendEntry {
    color: RGBColor,
    stroke: Stroke,
    shape: Option<Shape>,
    text: String,
}

#[derive(Debug, Clone)]
struct Series {
    color: RGBColor,
    /// (bits, y) joined by a line with a circle at each point.
    line: Vec<(f64, f64)>,
    /// FHE measurements (triangles).
    fhe: Vec<(f64, f64)>,
    /// Bit widths whose configuration failed (crosses along the bottom edge).
    failed: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
struct Panel {
    caption: Option<String>,
    series: Vec<Series>,
    /// Horizontal dashed reference line (float accuracy).
    reference: Option<f64>,
    /// Shown in the middle of an otherwise empty panel.
    note: Option<String>,
}

/// One image: panels sharing axes, and one legend to the right of them.
#[derive(Debug, Clone)]
struct Figure {
    title: String,
    x_desc: String,
    y_desc: String,
    x_range: (f64, f64),
    x_ticks: Vec<f64>,
    y_axis: YAxis,
    panels: Vec<Panel>,
    legend: Vec<LegendEntry>,
}

/// The y axis; on a log axis the figure's y values are log10 of the data.
#[derive(Debug, Clone)]
struct YAxis {
    range: (f64, f64),
    ticks: Vec<f64>,
    log: bool,
    /// Decimals of the tick labels (linear axis).
    decimals: usize,
    /// Where failure crosses sit (below the data when there are failures).
    fail_y: f64,
}

impl YAxis {
    fn label(&self, v: f64) -> String {
        if self.log {
            human_number(10f64.powf(v))
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// Colours for rounding settings (matplotlib's tab10, minus grey, which the float line uses).
const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const REFERENCE: RGBColor = RGBColor(90, 90, 90);
const NEUTRAL: RGBColor = RGBColor(110, 110, 110);

/// What separates panels: everything but bits and rounding.
#[derive(Debug, Clone, PartialEq)]
struct PanelKey {
    dataset: String,
    model: String,
    prune: String,
    p_error_kind: String,
    p_error: f64,
}

impl PanelKey {
    fn of(r: &Row) -> Self {
        PanelKey {
            dataset: r.dataset.clone(),
            model: r.model.clone(),
            prune: r.prune.clone(),
            p_error_kind: r.p_error_kind.clone(),
            p_error: r.p_error,
        }
    }
    fn cmp(&self, o: &Self) -> Ordering {
        (&self.dataset, &self.model, &self.prune, &self.p_error_kind)
            .cmp(&(&o.dataset, &o.model, &o.prune, &o.p_error_kind))
            .then(self.p_error.total_cmp(&o.p_error))
    }
}

/// The rows grouped for drawing: panel keys, rounding settings (with colours), and which
/// parts of the panel key vary (those go in panel captions, the rest in the title).
struct Layout {
    panels: Vec<PanelKey>,
    roundings: Vec<Rounding>,
    vary_dataset: bool,
    vary_p_error: bool,
    vary_prune: bool,
    x_range: (f64, f64),
    x_ticks: Vec<f64>,
}

impl Layout {
    fn of(rows: &[Row]) -> Self {
        let mut panels: Vec<PanelKey> = Vec::new();
        let mut roundings: Vec<Rounding> = Vec::new();
        for r in rows {
            let k = PanelKey::of(r);
            if !panels.contains(&k) {
                panels.push(k);
            }
            if !roundings.contains(&r.rounding) {
                roundings.push(r.rounding.clone());
            }
        }
        panels.sort_by(PanelKey::cmp);
        roundings.sort();
        let distinct = |f: &dyn Fn(&PanelKey) -> String| {
            let mut v: Vec<String> = panels.iter().map(f).collect();
            v.sort();
            v.dedup();
            v.len() > 1
        };
        let lo = rows.iter().map(|r| r.bits).min().unwrap_or(0);
        let hi = rows.iter().map(|r| r.bits).max().unwrap_or(0);
        let step = ((hi - lo) / 12 + 1) as usize;
        Layout {
            vary_dataset: distinct(&|k| format!("{}\u{0}{}", k.dataset, k.model)),
            vary_p_error: distinct(&|k| format!("{}\u{0}{}", k.p_error, k.p_error_kind)),
            vary_prune: distinct(&|k| k.prune.clone()),
            panels,
            roundings,
            x_range: (lo as f64 - 0.5, hi as f64 + 0.5),
            x_ticks: (lo..=hi).step_by(step).map(f64::from).collect(),
        }
    }

    fn color(&self, r: &Rounding) -> RGBColor {
        let i = self.roundings.iter().position(|x| x == r).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    fn dataset_text(k: &PanelKey) -> String {
        if k.model.is_empty() {
            k.dataset.clone()
        } else {
            format!("{} ({})", k.dataset, k.model)
        }
    }

    fn p_error_text(k: &PanelKey) -> String {
        match k.p_error_kind.as_str() {
            "global" => format!("global p_error {}", human_number(k.p_error)),
            _ => format!("p_error {} per PBS", human_number(k.p_error)),
        }
    }

    fn prune_text(k: &PanelKey) -> Option<String> {
        match k.prune.as_str() {
            "" | "none" => None,
            t => Some(format!("prune {t}")),
        }
    }

    /// Title: "<what>: <constant parts>".
    fn title(&self, what: &str) -> String {
        let k = &self.panels[0];
        let mut parts = Vec::new();
        if !self.vary_dataset {
            parts.push(Self::dataset_text(k));
        }
        if !self.vary_p_error {
            parts.push(Self::p_error_text(k));
        }
        if !self.vary_prune {
            parts.extend(Self::prune_text(k));
        }
        if parts.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {}", parts.join(", "))
        }
    }

    /// Caption of one panel: the parts that vary between panels.
    fn caption(&self, k: &PanelKey) -> Option<String> {
        let mut parts = Vec::new();
        if self.vary_dataset {
            parts.push(Self::dataset_text(k));
        }
        if self.vary_p_error {
            parts.push(Self::p_error_text(k));
        }
        if self.vary_prune {
            parts.push(Self::prune_text(k).unwrap_or_else(|| "no pruning".into()));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// One line per rounding setting in each panel, from `value` of the successful rows and
/// `measured` as triangles; failed rows as crosses.
fn build_panels(
    rows: &[Row],
    layout: &Layout,
    value: impl Fn(&Row) -> Option<f64>,
    measured: impl Fn(&Row) -> Option<f64>,
) -> Vec<Panel> {
    let mut panels = Vec::new();
    for key in &layout.panels {
        let in_panel: Vec<&Row> = rows.iter().filter(|r| PanelKey::of(r) == *key).collect();
        let mut series = Vec::new();
        for rounding in &layout.roundings {
            let mut of: Vec<&Row> = in_panel
                .iter()
                .copied()
                .filter(|r| r.rounding == *rounding)
                .collect();
            if of.is_empty() {
                continue;
            }
            of.sort_by_key(|r| r.bits);
            let ok = of.iter().filter(|r| r.ok);
            series.push(Series {
                color: layout.color(rounding),
                line: ok
                    .clone()
                    .filter_map(|r| value(r).map(|v| (r.bits as f64, v)))
                    .collect(),
                fhe: ok
                    .filter_map(|r| measured(r).map(|v| (r.bits as f64, v)))
                    .collect(),
                failed: of.iter().filter(|r| !r.ok).map(|r| r.bits as f64).collect(),
            });
        }
        panels.push(Panel {
            caption: layout.caption(key),
            series,
            reference: None,
            note: None,
        });
    }
    panels
}

/// Legend entries for the rounding settings present; a setting whose every configuration
/// failed says so (it has no line, only crosses).
fn rounding_legend(layout: &Layout, rows: &[Row]) -> Vec<LegendEntry> {
    layout
        .roundings
        .iter()
        .map(|r| {
            let all_failed = rows.iter().filter(|x| x.rounding == *r).all(|x| !x.ok);
            LegendEntry {
                color: layout.color(r),
                stroke: if all_failed {
                    Stroke::None
                } else {
                    Stroke::Solid
                },
                shape: Some(if all_failed {
                    Shape::Cross
                } else {
                    Shape::Circle
                }),
                text: if all_failed {
                    format!("{} (all failed)", r.label())
                } else {
                    r.label()
                },
            }
        })
        .collect()
}

fn failed_legend(rows: &[Row]) -> Option<LegendEntry> {
    let n = rows.iter().filter(|r| !r.ok).count();
    (n > 0).then(|| LegendEntry {
        color: NEUTRAL,
        stroke: Stroke::None,
        shape: Some(Shape::Cross),
        text: format!("failed ({n} config{})", if n == 1 { "" } else { "s" }),
    })
}

fn accuracy_figure(rows: &[Row]) -> Figure {
    let layout = Layout::of(rows);
    let ok = || rows.iter().filter(|r| r.ok);
    let any_sim = ok().any(|r| r.sim_acc.is_some());
    let any_clear_only = ok().any(|r| r.sim_acc.is_none() && r.clear_acc.is_some());
    let mut panels = build_panels(rows, &layout, |r| r.sim_acc.or(r.clear_acc), |r| r.fhe_acc);
    for (panel, key) in panels.iter_mut().zip(&layout.panels) {
        panel.reference = rows
            .iter()
            .filter(|r| PanelKey::of(r) == *key)
            .find_map(|r| r.float_acc);
        let empty = panel
            .series
            .iter()
            .all(|s| s.line.is_empty() && s.fhe.is_empty());
        if empty {
            panel.note = Some("no quantised accuracy measured".into());
        }
    }
    let mut values: Vec<f64> = Vec::new();
    for p in &panels {
        values.extend(p.reference);
        for s in &p.series {
            values.extend(s.line.iter().chain(&s.fhe).map(|&(_, y)| y));
        }
    }
    let any_failed = rows.iter().any(|r| !r.ok);
    let y_axis = accuracy_axis(&values, any_failed);

    let mut legend = rounding_legend(&layout, rows);
    let floats: Vec<f64> = panels.iter().filter_map(|p| p.reference).collect();
    if let Some(&f) = floats.first() {
        let text = if floats.iter().all(|&g| g == f) {
            format!("float model ({f:.4})")
        } else {
            "float model".into()
        };
        legend.push(LegendEntry {
            color: REFERENCE,
            stroke: Stroke::Dashed,
            shape: None,
            text,
        });
    }
    if panels
        .iter()
        .any(|p| p.series.iter().any(|s| !s.fhe.is_empty()))
    {
        let ks: Vec<u64> = ok()
            .filter(|r| r.fhe_acc.is_some())
            .filter_map(|r| r.fhe_samples)
            .collect();
        let text = match ks.first() {
            Some(&k) if ks.iter().all(|&j| j == k) => format!("FHE, first {k} samples"),
            _ => "FHE (encrypted samples)".into(),
        };
        legend.push(LegendEntry {
            color: NEUTRAL,
            stroke: Stroke::None,
            shape: Some(Shape::Triangle),
            text,
        });
    }
    legend.extend(failed_legend(rows));

    let source = match (any_sim, any_clear_only) {
        (true, false) => "noise simulation",
        (false, true) => "quantised, clear",
        (true, true) => "simulation, else clear",
        (false, false) => "quantised",
    };
    Figure {
        title: layout.title("Accuracy vs bits"),
        x_desc: "bits (quantisation bit width)".into(),
        y_desc: format!("test accuracy ({source})"),
        x_range: layout.x_range,
        x_ticks: layout.x_ticks.clone(),
        y_axis,
        panels,
        legend,
    }
}

fn latency_figure(rows: &[Row]) -> Figure {
    let layout = Layout::of(rows);
    let mut panels = build_panels(
        rows,
        &layout,
        |r| r.predicted_latency,
        |r| r.measured_latency,
    );
    let mut values: Vec<f64> = Vec::new();
    for p in &panels {
        for s in &p.series {
            values.extend(s.line.iter().chain(&s.fhe).map(|&(_, y)| y));
        }
    }
    let any_failed = rows.iter().any(|r| !r.ok);
    let positive: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = positive.iter().copied().fold(0.0, f64::max);
    // A log axis only when the spread would squash the small values onto the x axis.
    let log = positive.len() == values.len() && !values.is_empty() && hi / lo > 20.0;
    let y_axis = if log {
        for p in &mut panels {
            for s in &mut p.series {
                for pt in s.line.iter_mut().chain(s.fhe.iter_mut()) {
                    pt.1 = pt.1.log10();
                }
            }
        }
        log_axis(lo, hi, any_failed)
    } else {
        linear_axis(0.0, if values.is_empty() { 1.0 } else { hi }, any_failed)
    };
    for p in &mut panels {
        if p.series
            .iter()
            .all(|s| s.line.is_empty() && s.fhe.is_empty())
        {
            p.note = Some("no latency in this CSV".into());
        }
    }
    let mut legend = rounding_legend(&layout, rows);
    if panels
        .iter()
        .any(|p| p.series.iter().any(|s| !s.fhe.is_empty()))
    {
        legend.push(LegendEntry {
            color: NEUTRAL,
            stroke: Stroke::None,
            shape: Some(Shape::Triangle),
            text: "measured FHE run".into(),
        });
    }
    legend.extend(failed_legend(rows));
    Figure {
        title: layout.title("Latency vs bits"),
        x_desc: "bits (quantisation bit width)".into(),
        y_desc: format!(
            "latency per sample (s{}; lines: predicted)",
            if log { ", log scale" } else { "" }
        ),
        x_range: layout.x_range,
        x_ticks: layout.x_ticks,
        y_axis,
        panels,
        legend,
    }
}

// ---------------------------------------------------------------------------------------
// Axes

/// A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) giving about `target` ticks.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * mag)
}

fn decimals_of(step: f64) -> usize {
    let mut d = 0;
    while d < 8
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-9
    {
        d += 1;
    }
    d
}

/// Ticks from `lo` to `hi` (inclusive, snapped to the step) and a band below for failures.
fn linear_axis(lo: f64, hi: f64, failures: bool) -> YAxis {
    let step = nice_step(hi - lo, 7.0);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let n = ((hi - lo) / step).round() as i64;
    let ticks: Vec<f64> = (0..=n).map(|i| lo + i as f64 * step).collect();
    let span = hi - lo;
    let bottom = if failures { lo - 0.08 * span } else { lo };
    YAxis {
        range: (bottom, hi + 0.04 * span),
        ticks,
        log: false,
        decimals: decimals_of(step),
        fail_y: lo - 0.045 * span,
    }
}

/// Accuracy: zoomed to the data (never below 0 or above 1), float line included.
fn accuracy_axis(values: &[f64], failures: bool) -> YAxis {
    if values.is_empty() {
        return linear_axis(0.0, 1.0, failures);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = (0.1 * (hi - lo)).max(0.02);
    linear_axis((lo - pad).max(0.0), (hi + pad).min(1.0), failures)
}

/// Log axis over [lo, hi] (data units, both > 0): decades, plus 2 and 5 when few decades.
fn log_axis(lo: f64, hi: f64, failures: bool) -> YAxis {
    let (tlo, thi) = (lo.log10() - 0.1, hi.log10() + 0.1);
    let mults: &[f64] = if thi - tlo < 3.5 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for d in (tlo.floor() as i32)..=(thi.ceil() as i32) {
        for m in mults {
            let t = (m * 10f64.powi(d)).log10();
            if t >= tlo && t <= thi {
                ticks.push(t);
            }
        }
    }
    let span = thi - tlo;
    let bottom = if failures { tlo - 0.08 * span } else { tlo };
    YAxis {
        range: (bottom, thi + 0.02 * span),
        ticks,
        log: true,
        decimals: 0,
        fail_y: tlo - 0.045 * span,
    }
}

/// Short decimal text of a positive number: 0.008, 1e-5, 0.25, 12, 3.5e3.
fn human_number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-4..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        // 1.00e-5 -> 1e-5, 2.50e-6 -> 2.5e-6
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    // Three significant digits, trailing zeros dropped.
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Drawing

const FONT: &str = "sans-serif";
const TITLE_PX: f64 = 26.0;
const CAPTION_PX: f64 = 19.0;
const DESC_PX: f64 = 18.0;
const LABEL_PX: f64 = 15.0;
const LEGEND_PX: f64 = 16.0;
const LEGEND_W: u32 = 290;

/// DejaVu Sans (assets/fonts/LICENSE-DejaVu.txt).
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' "sans-serif" (once per process).
fn register_font() -> Result<(), PlotError> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Panel grid (rows, columns) and the image size in pixels.
fn geometry(panels: usize) -> ((usize, usize), (u32, u32)) {
    let cols = match panels {
        0 | 1 => 1,
        2 | 4 => 2,
        _ => 3,
    };
    let rows = panels.max(1).div_ceil(cols);
    let (pw, ph) = if panels <= 1 { (860, 560) } else { (600, 430) };
    let title_h = 50;
    (
        (rows, cols),
        (pw * cols as u32 + LEGEND_W, ph * rows as u32 + title_h),
    )
}

/// Draws `fig` into a temporary file beside `path` (same extension); the caller renames it.
fn render(fig: &Figure, path: &Path, ext: &str) -> Result<PendingFile, PlotError> {
    register_font()?;
    let file = path.display().to_string();
    let write_err = |source| PlotError::Write {
        file: file.clone(),
        source,
    };
    let mut pending = PendingFile::create(path, Access::Shared).map_err(write_err)?;
    let (grid, size) = geometry(fig.panels.len());
    let draw_err = |message: String| PlotError::Draw {
        file: file.clone(),
        message,
    };
    if ext == "svg" {
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
            draw_figure(&root, fig, grid).map_err(|e| draw_err(e.to_string()))?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        pending
            .file()
            .write_all(text.as_bytes())
            .map_err(write_err)?;
    } else {
        let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
        {
            let root = GlyphText(BitMapBackend::with_buffer(&mut rgb, size)).into_drawing_area();
            draw_figure(&root, fig, grid).map_err(|e| draw_err(e.to_string()))?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        encode_png(pending.file(), size, &rgb).map_err(write_err)?;
    }
    Ok(pending)
}

/// Writes an 8-bit RGB image as PNG.
fn encode_png(out: &std::fs::File, (w, h): (u32, u32), rgb: &[u8]) -> std::io::Result<()> {
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(out), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Plots are mostly flat colour: the best deflate level halves the file for a few ms.
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(rgb)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}

/// A linear f64 axis with the ticks chosen here: integer bits on x, "nice" or log-decade
/// ticks on y (plotters' own f64 axis picks fractional ticks, and its key-point override
/// loses the default label formatting that `configure_mesh` requires).
struct TickedAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A bitmap backend whose text is laid out and rasterised here with ab_glyph: plotters'
/// own ab_glyph text drops each glyph's left side bearing ("1 0" for "10") and puts the
/// baseline mid-box, so labels look uneven and sit too high.
struct GlyphText<B>(B);

/// The embedded font for bitmap text (parsed once).
fn glyph_font() -> Option<&'static ab_glyph::FontRef<'static>> {
    static FONT: std::sync::OnceLock<Option<ab_glyph::FontRef<'static>>> =
        std::sync::OnceLock::new();
    FONT.get_or_init(|| ab_glyph::FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Glyphs of `text` at `size` px placed on a baseline at the font's ascent, and the
/// text box (advance width, ascent - descent).
fn layout_glyphs(
    font: &ab_glyph::FontRef<'static>,
    size: f64,
    text: &str,
) -> (Vec<ab_glyph::Glyph>, (f32, f32)) {
    use ab_glyph::{Font, ScaleFont};
    let scaled = font.as_scaled(size as f32);
    let mut caret = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        glyphs.push(
            id.with_scale_and_position(scaled.scale(), ab_glyph::point(caret, scaled.ascent())),
        );
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, (caret, scaled.ascent() - scaled.descent()))
}

impl<B: DrawingBackend> DrawingBackend for GlyphText<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
        let Some(font) = glyph_font() else {
            return self.0.estimate_text_size(text, style);
        };
        let (_, (w, h)) = layout_glyphs(font, style.size(), text);
        Ok((w.ceil() as u32, h.ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        use ab_glyph::Font;
        use plotters_backend::text_anchor::{HPos, VPos};
        let Some(font) = glyph_font() else {
            return self.0.draw_text(text, style, pos);
        };
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, (w, h)) = layout_glyphs(font, style.size(), text);
        let (w, h) = (w.round() as i32, h.round() as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let transform = style.transform();
        let mut pixels = Vec::new();
        for g in glyphs {
            if let Some(outline) = font.outline_glyph(g) {
                let b = outline.px_bounds();
                outline.draw(|x, y, coverage| {
                    let (px, py) = (b.min.x as i32 + x as i32, b.min.y as i32 + y as i32);
                    pixels.push((px, py, coverage));
                });
            }
        }
        for (x, y, coverage) in pixels {
            let (x, y) = transform.transform(x + dx, y + dy);
            let c = BackendColor {
                alpha: color.alpha * f64::from(coverage.min(1.0)),
                rgb: color.rgb,
            };
            self.0.draw_pixel((pos.0 + x, pos.1 + y), c)?;
        }
        Ok(())
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    (rows, cols): (usize, usize),
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (_, root) = root.split_vertically(10);
    let body = root.titled(&fig.title, (FONT, TITLE_PX).into_font().color(&BLACK))?;
    let (w, _) = body.dim_in_pixel();
    let (plots, legend) = body.split_horizontally(w - LEGEND_W);
    let cells = plots.split_evenly((rows, cols));
    for (cell, panel) in cells.iter().zip(&fig.panels) {
        draw_panel(cell, fig, panel)?;
    }
    draw_legend(&legend, &fig.legend)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    panel: &Panel,
) -> DrawResult<DB> {
    let y = &fig.y_axis;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(8)
        .margin_right(18)
        .margin_left(6)
        .margin_bottom(6)
        .x_label_area_size(52)
        .y_label_area_size(78);
    if let Some(c) = &panel.caption {
        builder.caption(c, (FONT, CAPTION_PX));
    }
    let mut chart = builder.build_cartesian_2d(
        TickedAxis {
            lo: fig.x_range.0,
            hi: fig.x_range.1,
            ticks: fig.x_ticks.clone(),
        },
        TickedAxis {
            lo: y.range.0,
            hi: y.range.1,
            ticks: y.ticks.clone(),
        },
    )?;
    let x_fmt = |v: &f64| format!("{v:.0}");
    let y_fmt = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(&fig.x_desc)
        .y_desc(&fig.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, DESC_PX))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .draw()?;

    if let Some(f) = panel.reference {
        chart.draw_series(DashedLineSeries::new(
            vec![(fig.x_range.0, f), (fig.x_range.1, f)],
            9,
            6,
            REFERENCE.stroke_width(2),
        ))?;
    }
    for s in &panel.series {
        chart.draw_series(LineSeries::new(
            s.line.iter().copied(),
            s.color.stroke_width(2),
        ))?;
        chart.draw_series(s.line.iter().map(|&p| Circle::new(p, 4, s.color.filled())))?;
        for &p in &s.fhe {
            // Triangles are always filled: a black one under a smaller coloured one.
            chart.draw_series([
                TriangleMarker::new(p, 10, BLACK.filled()),
                TriangleMarker::new(p, 7, s.color.filled()),
            ])?;
        }
    }
    // Failures of several settings at the same bits side by side, not on top of each other.
    for (k, s) in panel.series.iter().enumerate() {
        for &b in &s.failed {
            let at_b: Vec<usize> = (0..panel.series.len())
                .filter(|&j| panel.series[j].failed.contains(&b))
                .collect();
            let i = at_b.iter().position(|&j| j == k).unwrap_or(0) as f64;
            let n = at_b.len() as f64;
            let dx = (i - (n - 1.0) / 2.0) * (0.5 / n).min(0.12);
            chart.draw_series([Cross::new((b + dx, y.fail_y), 5, s.color.stroke_width(2))])?;
        }
    }
    if let Some(note) = &panel.note {
        let ((x0, y0), (x1, y1)) = {
            let r = chart.plotting_area().get_pixel_range();
            ((r.0.start, r.1.start), (r.0.end, r.1.end))
        };
        let style = (FONT, CAPTION_PX)
            .into_font()
            .color(&NEUTRAL)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (ax, ay) = area.get_base_pixel();
        area.draw(&Text::new(
            note.clone(),
            ((x0 + x1) / 2 - ax, (y0 + y1) / 2 - ay),
            style,
        ))?;
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> DrawResult<DB> {
    let row_h = 28;
    let (x0, y0) = (8, 14);
    let height = row_h * entries.len() as i32 + 14;
    area.draw(&Rectangle::new(
        [(x0, y0), (LEGEND_W as i32 - 14, y0 + height)],
        RGBColor(190, 190, 190).stroke_width(1),
    ))?;
    for (i, e) in entries.iter().enumerate() {
        let y = y0 + 21 + row_h * i as i32;
        let (lx0, lx1) = (x0 + 12, x0 + 52);
        let cx = (lx0 + lx1) / 2;
        match e.stroke {
            Stroke::None => {}
            Stroke::Solid => {
                area.draw(&PathElement::new(
                    vec![(lx0, y), (lx1, y)],
                    e.color.stroke_width(2),
                ))?;
            }
            Stroke::Dashed => {
                for (a, b) in [(lx0, lx0 + 10), (lx0 + 15, lx0 + 25), (lx0 + 30, lx1)] {
                    area.draw(&PathElement::new(
                        vec![(a, y), (b, y)],
                        e.color.stroke_width(2),
                    ))?;
                }
            }
        }
        match e.shape {
            None => {}
            Some(Shape::Circle) => area.draw(&Circle::new((cx, y), 4, e.color.filled()))?,
            Some(Shape::Triangle) => {
                area.draw(&TriangleMarker::new((cx, y), 10, BLACK.filled()))?;
                area.draw(&TriangleMarker::new((cx, y), 7, e.color.filled()))?;
            }
            Some(Shape::Cross) => area.draw(&Cross::new((cx, y), 5, e.color.stroke_width(2)))?,
        }
        let style = (FONT, LEGEND_PX)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(e.text.clone(), (lx1 + 10, y), style))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column of the sweep schema, in order.
    const HEADER: &str =
        "dataset,model,format,size,method,bits,rounding_bits,rounding_mode,p_error,\
p_error_kind,prune_threshold,status,error,samples,float_accuracy,clear_accuracy,simulate_accuracy,\
fhe_samples,fhe_accuracy,fhe_clear_agreement,max_accumulator_bits,pbs_count,tlu_precision_bits,\
lwe_dimension,glwe_dimension,polynomial_size,pbs_base_log,pbs_level,ks_base_log,ks_level,\
p_error_per_pbs,global_p_error,predicted_latency_s,measured_latency_s,keygen_s,server_key_bytes,\
compile_s,fingerprint";

    /// One row: (bits, rounding, p_error, status/error, clear, simulate, fhe, latency,
    /// measured latency); the other columns carry plausible constants.
    #[allow(clippy::too_many_arguments)]
    fn row(
        bits: u32,
        rounding: &str,
        p_error: f64,
        error: Option<&str>,
        clear: &str,
        sim: &str,
        fhe: &str,
        latency: &str,
        measured: &str,
    ) -> String {
        let mode = if rounding == "none" {
            "none"
        } else {
            "approximate"
        };
        let (status, err) = match error {
            Some(e) => ("error", format!("\"{e}\"")),
            None => ("ok", String::new()),
        };
        let fhe_samples = if fhe.is_empty() { "0" } else { "10" };
        let params = if error.is_some() {
            ",,,,,,,,,,,,".to_string()
        } else {
            format!(
                "{},98,{},768,1,2048,15,1,3,6,{p_error},0.031,",
                bits + 5,
                bits + 1
            )
        };
        format!(
            "breast_cancer,mlp_torch.onnx,TABULAR,30,PTQ,{bits},{rounding},{mode},{p_error},per_pbs,none,\
{status},{err},114,0.9649,{clear},{sim},{fhe_samples},{fhe},{fhe},{params}{latency},{measured},,,\
0.41,{}",
            if error.is_some() { "" } else { "3f2a9c" }
        )
    }

    /// A clear + simulate sweep over bits 4..8 and three rounding settings, one failure,
    /// FHE measured on two configurations.
    fn sample_csv() -> String {
        let mut lines = vec![HEADER.to_string()];
        let none = [
            (4, "0.8947", "0.8860", "0.41"),
            (5, "0.9386", "0.9298", "0.63"),
            (6, "0.9561", "0.9561", "1.35"),
            (7, "0.9649", "0.9561", "3.9"),
        ];
        for (b, c, s, l) in none {
            let (fhe, m) = if b == 6 { ("0.9", "1.52") } else { ("", "") };
            lines.push(row(b, "none", 0.008, None, c, s, fhe, l, m));
        }
        lines.push(row(
            8,
            "none",
            0.008,
            Some("no crypto parameters for 9-bit lookups at p_error 0.008, try rounding"),
            "",
            "",
            "",
            "",
            "",
        ));
        for (r, from) in [("5", 6), ("6", 7)] {
            for b in from..=8 {
                let acc = format!("{:.4}", 0.93 + 0.004 * (b - from) as f64);
                let lat = format!(
                    "{}",
                    0.6 + 0.05 * (b - from) as f64 + 0.3 * (r == "6") as u8 as f64
                );
                let (fhe, m) = if b == 8 && r == "5" {
                    ("1.0", "0.71")
                } else {
                    ("", "")
                };
                lines.push(row(b, r, 0.008, None, &acc, &acc, fhe, &lat, m));
            }
        }
        lines.join("\n") + "\n"
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_png_and_svg_for_accuracy_and_latency() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(dir.path(), "results.csv", &sample_csv());
        let written = write_plots(&csv).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "results_accuracy.png",
                "results_accuracy.svg",
                "results_latency.png",
                "results_latency.svg"
            ]
        );
        // Nothing else left behind (no temporary files).
        let mut expected = names.clone();
        expected.push("results.csv".into());
        expected.sort();
        assert_eq!(files_in(dir.path()), expected);
        for p in &written {
            let bytes = std::fs::read(p).unwrap();
            if p.extension().unwrap() == "png" {
                assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", p.display());
                assert!(
                    bytes.len() > 10_000,
                    "{} is only {} bytes",
                    p.display(),
                    bytes.len()
                );
            }
        }
        // The title band of the PNG holds text (the embedded font rendered): dark pixels.
        let decoder = png::Decoder::new(std::fs::File::open(&written[0]).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let row = info.width as usize * 3;
        let dark = buf[12 * row..45 * row]
            .chunks(3)
            .filter(|p| p.iter().all(|&c| c < 80))
            .count();
        assert!(dark > 500, "title band has only {dark} dark pixels");
        let acc = std::fs::read_to_string(&written[1]).unwrap();
        for text in [
            "Accuracy vs bits: breast_cancer (mlp_torch.onnx), p_error 0.008 per PBS",
            "no rounding",
            "rounding 5 (approximate)",
            "rounding 6 (approximate)",
            "float model (0.9649)",
            "FHE, first 10 samples",
            "failed (1 config)",
            "test accuracy (noise simulation)",
        ] {
            assert!(acc.contains(text), "accuracy SVG lacks {text:?}");
        }
        let lat = std::fs::read_to_string(&written[3]).unwrap();
        for text in [
            "Latency vs bits",
            "rounding 6 (approximate)",
            "measured FHE run",
            "latency per sample (s; lines: predicted)",
        ] {
            assert!(lat.contains(text), "latency SVG lacks {text:?}");
        }
        assert!(!lat.contains("float model"));
        // Redrawing over existing plots works.
        assert_eq!(write_plots(&csv).unwrap(), written);
    }

    #[test]
    fn several_p_errors_get_one_panel_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = sample_csv();
        for b in 4..=7 {
            text.push_str(&row(b, "none", 1e-4, None, "0.93", "0.93", "", "2.5", ""));
            text.push('\n');
        }
        let csv = write(dir.path(), "two.csv", &text);
        let written = write_plots(&csv).unwrap();
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(svg.contains("p_error 0.008 per PBS"));
        assert!(svg.contains("p_error 0.0001 per PBS"));
        // What varies goes in the panel captions, the rest in the title.
        assert!(
            svg.lines()
                .any(|l| l.trim() == "Accuracy vs bits: breast_cancer (mlp_torch.onnx)"),
            "{svg}"
        );
    }

    #[test]
    fn wide_latency_range_uses_a_log_axis() {
        let dir = tempfile::tempdir().unwrap();
        let rows = read_rows(&write(dir.path(), "r.csv", &sample_csv())).unwrap();
        let fig = latency_figure(&rows);
        assert!(!fig.y_axis.log, "0.41 s .. 3.9 s fits a linear axis");
        let mut wide = rows.clone();
        wide[0].predicted_latency = Some(0.01);
        let fig = latency_figure(&wide);
        assert!(fig.y_axis.log);
        assert!(fig.y_desc.contains("log scale"));
        let labels: Vec<String> = fig
            .y_axis
            .ticks
            .iter()
            .map(|&t| fig.y_axis.label(t))
            .collect();
        assert!(labels.contains(&"0.01".to_string()), "{labels:?}");
        assert!(labels.contains(&"1".to_string()), "{labels:?}");
    }

    #[test]
    fn accuracy_axis_zooms_but_stays_within_0_and_1() {
        let y = accuracy_axis(&[0.8947, 0.9649, 0.93], true);
        assert!(y.range.1 <= 1.0 + 0.05 && y.range.0 >= 0.0 - 0.1, "{y:?}");
        assert!(y.ticks.iter().all(|&t| (0.0..=1.0).contains(&t)), "{y:?}");
        assert!(y.ticks.first().unwrap() <= &0.8947 && y.ticks.last().unwrap() >= &0.9649);
        assert!(y.fail_y < y.ticks[0], "failure crosses below the data");
        assert_eq!(y.label(0.9), "0.90");
        let y = accuracy_axis(&[0.2, 1.0], false);
        assert_eq!(*y.ticks.last().unwrap(), 1.0);
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(human_number(0.008), "0.008");
        assert_eq!(human_number(1e-5), "1e-5");
        assert_eq!(human_number(2.5e-6), "2.5e-6");
        assert_eq!(human_number(0.0001), "0.0001");
        assert_eq!(human_number(12.0), "12");
        assert_eq!(human_number(0.25), "0.25");
        assert_eq!(human_number(1.35), "1.35");
    }

    #[test]
    fn missing_column_names_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let text = sample_csv().replacen("simulate_accuracy", "sim_acc", 1);
        let csv = write(dir.path(), "bad.csv", &text);
        let e = write_plots(&csv).unwrap_err().to_string();
        assert!(
            e.contains("bad.csv") && e.contains("'simulate_accuracy'"),
            "{e}"
        );
        assert_eq!(files_in(dir.path()), ["bad.csv"], "nothing written");
    }

    #[test]
    fn bad_cells_and_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = sample_csv().replacen(",5,none,none,", ",five,none,none,", 1);
        let csv = write(dir.path(), "cells.csv", &text);
        let e = write_plots(&csv).unwrap_err().to_string();
        assert!(
            e.contains("cells.csv' line 3, column 'bits'") && e.contains("\"five\""),
            "{e}"
        );

        let csv = write(dir.path(), "empty.csv", "");
        let e = write_plots(&csv).unwrap_err().to_string();
        assert!(e.contains("empty.csv' is empty"), "{e}");

        let csv = write(dir.path(), "header.csv", &format!("{HEADER}\n"));
        let e = write_plots(&csv).unwrap_err().to_string();
        assert!(e.contains("no result rows"), "{e}");

        let e = write_plots(&dir.path().join("absent.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.csv"), "{e}");
        assert_eq!(
            files_in(dir.path()),
            ["cells.csv", "empty.csv", "header.csv"]
        );
    }

    #[test]
    fn all_failed_is_an_error_quoting_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            row(
                8,
                "none",
                0.008,
                Some("no crypto parameters, try rounding"),
                "",
                "",
                "",
                "",
                ""
            ),
            row(
                9,
                "none",
                0.008,
                Some("no crypto parameters"),
                "",
                "",
                "",
                "",
                ""
            ),
        );
        let csv = write(dir.path(), "failed.csv", &text);
        let e = write_plots(&csv).unwrap_err().to_string();
        assert!(
            e.contains("failed.csv")
                && e.contains("2 row(s), all status=error")
                && e.contains("no crypto parameters, try rounding"),
            "{e}"
        );
        assert_eq!(files_in(dir.path()), ["failed.csv"]);
    }

    #[test]
    fn clear_only_sweep_says_so_on_the_axis() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            row(5, "none", 0.008, None, "0.9386", "", "", "0.6", ""),
            row(6, "none", 0.008, None, "0.9561", "", "", "1.3", ""),
        );
        let rows = read_rows(&write(dir.path(), "c.csv", &text)).unwrap();
        let fig = accuracy_figure(&rows);
        assert_eq!(fig.y_desc, "test accuracy (quantised, clear)");
        assert_eq!(fig.panels[0].series[0].line, [(5.0, 0.9386), (6.0, 0.9561)]);
        assert_eq!(fig.x_ticks, [5.0, 6.0]);
    }
}
