//! What to draw, independent of the backend: panels, series and legends per figure, and the
//! axes (nice linear ticks, log decades for wide latency ranges).

use std::cmp::Ordering;

use plotters::prelude::*;

use super::read::{Rounding, Row};

/// Marker shapes: circles on lines, triangles for FHE measurements, crosses for failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Shape {
    Circle,
    Triangle,
    Cross,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stroke {
    None,
    Solid,
    Dashed,
}

#[derive(Debug, Clone)]
pub(super) struct LegendEntry {
    pub(super) color: RGBColor,
    pub(super) stroke: Stroke,
    pub(super) shape: Option<Shape>,
    pub(super) text: String,
}

#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) color: RGBColor,
    /// (bits, y) joined by a line with a circle at each point.
    pub(super) line: Vec<(f64, f64)>,
    /// FHE measurements (triangles).
    pub(super) fhe: Vec<(f64, f64)>,
    /// Bit widths whose configuration failed (crosses along the bottom edge).
    pub(super) failed: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Panel {
    pub(super) caption: Option<String>,
    pub(super) series: Vec<Series>,
    /// Horizontal dashed reference line (float accuracy).
    pub(super) reference: Option<f64>,
    /// Shown in the middle of an otherwise empty panel.
    pub(super) note: Option<String>,
}

/// One image: panels sharing axes, and one legend to the right of them.
#[derive(Debug, Clone)]
pub(super) struct Figure {
    pub(super) title: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) x_range: (f64, f64),
    pub(super) x_ticks: Vec<f64>,
    pub(super) y_axis: YAxis,
    pub(super) panels: Vec<Panel>,
    pub(super) legend: Vec<LegendEntry>,
}

/// The y axis; on a log axis the figure's y values are log10 of the data.
#[derive(Debug, Clone)]
pub(super) struct YAxis {
    pub(super) range: (f64, f64),
    pub(super) ticks: Vec<f64>,
    pub(super) log: bool,
    /// Decimals of the tick labels (linear axis).
    pub(super) decimals: usize,
    /// Where failure crosses sit (below the data when there are failures).
    pub(super) fail_y: f64,
}

impl YAxis {
    pub(super) fn label(&self, v: f64) -> String {
        if self.log {
            human_number(10f64.powf(v))
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// Colours for rounding settings (matplotlib's tab10, minus grey, which the float line uses).
pub(super) const PALETTE: [RGBColor; 9] = [
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
pub(super) const REFERENCE: RGBColor = RGBColor(90, 90, 90);
pub(super) const NEUTRAL: RGBColor = RGBColor(110, 110, 110);

/// What separates panels: everything but bits and rounding.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PanelKey {
    pub(super) dataset: String,
    pub(super) model: String,
    pub(super) prune: String,
    pub(super) p_error_kind: String,
    pub(super) p_error: f64,
}

impl PanelKey {
    pub(super) fn of(r: &Row) -> Self {
        PanelKey {
            dataset: r.dataset.clone(),
            model: r.model.clone(),
            prune: r.prune.clone(),
            p_error_kind: r.p_error_kind.clone(),
            p_error: r.p_error,
        }
    }
    pub(super) fn cmp(&self, o: &Self) -> Ordering {
        (&self.dataset, &self.model, &self.prune, &self.p_error_kind)
            .cmp(&(&o.dataset, &o.model, &o.prune, &o.p_error_kind))
            .then(self.p_error.total_cmp(&o.p_error))
    }
}

/// The rows grouped for drawing: panel keys, rounding settings (with colours), and which
/// parts of the panel key vary (those go in panel captions, the rest in the title).
pub(super) struct Layout {
    pub(super) panels: Vec<PanelKey>,
    pub(super) roundings: Vec<Rounding>,
    pub(super) vary_dataset: bool,
    pub(super) vary_p_error: bool,
    pub(super) vary_prune: bool,
    pub(super) x_range: (f64, f64),
    pub(super) x_ticks: Vec<f64>,
}

impl Layout {
    pub(super) fn of(rows: &[Row]) -> Self {
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

    pub(super) fn color(&self, r: &Rounding) -> RGBColor {
        let i = self.roundings.iter().position(|x| x == r).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    pub(super) fn dataset_text(k: &PanelKey) -> String {
        if k.model.is_empty() {
            k.dataset.clone()
        } else {
            format!("{} ({})", k.dataset, k.model)
        }
    }

    pub(super) fn p_error_text(k: &PanelKey) -> String {
        match k.p_error_kind.as_str() {
            "global" => format!("global p_error {}", human_number(k.p_error)),
            _ => format!("p_error {} per PBS", human_number(k.p_error)),
        }
    }

    pub(super) fn prune_text(k: &PanelKey) -> Option<String> {
        match k.prune.as_str() {
            "" | "none" => None,
            t => Some(format!("prune {t}")),
        }
    }

    /// Title: "<what>: <constant parts>".
    pub(super) fn title(&self, what: &str) -> String {
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
    pub(super) fn caption(&self, k: &PanelKey) -> Option<String> {
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
pub(super) fn build_panels(
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
pub(super) fn rounding_legend(layout: &Layout, rows: &[Row]) -> Vec<LegendEntry> {
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

pub(super) fn failed_legend(rows: &[Row]) -> Option<LegendEntry> {
    let n = rows.iter().filter(|r| !r.ok).count();
    (n > 0).then(|| LegendEntry {
        color: NEUTRAL,
        stroke: Stroke::None,
        shape: Some(Shape::Cross),
        text: format!("failed ({n} config{})", if n == 1 { "" } else { "s" }),
    })
}

pub(super) fn accuracy_figure(rows: &[Row]) -> Figure {
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

pub(super) fn latency_figure(rows: &[Row]) -> Figure {
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
pub(super) fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * mag)
}

pub(super) fn decimals_of(step: f64) -> usize {
    let mut d = 0;
    while d < 8
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-9
    {
        d += 1;
    }
    d
}

/// Ticks from `lo` to `hi` (inclusive, snapped to the step) and a band below for failures.
pub(super) fn linear_axis(lo: f64, hi: f64, failures: bool) -> YAxis {
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
pub(super) fn accuracy_axis(values: &[f64], failures: bool) -> YAxis {
    if values.is_empty() {
        return linear_axis(0.0, 1.0, failures);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = (0.1 * (hi - lo)).max(0.02);
    linear_axis((lo - pad).max(0.0), (hi + pad).min(1.0), failures)
}

/// Log axis over [lo, hi] (data units, both > 0): decades, plus 2 and 5 when few decades.
pub(super) fn log_axis(lo: f64, hi: f64, failures: bool) -> YAxis {
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
pub(super) fn human_number(v: f64) -> String {
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
