//! Drawing a figure on a backend (PNG through the glyph backend, SVG directly) into a pending
//! atomic write.

use std::io::Write as _;
use std::path::Path;

use fhec_runtime::atomic::{Access, PendingFile};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::glyph::{register_font, GlyphText, FONT};
use super::layout::*;
use super::PlotError;

pub(super) const TITLE_PX: f64 = 26.0;
pub(super) const CAPTION_PX: f64 = 19.0;
pub(super) const DESC_PX: f64 = 18.0;
pub(super) const LABEL_PX: f64 = 15.0;
pub(super) const LEGEND_PX: f64 = 16.0;
pub(super) const LEGEND_W: u32 = 290;

/// Panel grid (rows, columns) and the image size in pixels.
pub(super) fn geometry(panels: usize) -> ((usize, usize), (u32, u32)) {
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
pub(super) fn render(fig: &Figure, path: &Path, ext: &str) -> Result<PendingFile, PlotError> {
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
pub(super) fn encode_png(
    out: &std::fs::File,
    (w, h): (u32, u32),
    rgb: &[u8],
) -> std::io::Result<()> {
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
pub(super) struct TickedAxis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
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

pub(super) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

pub(super) fn draw_figure<DB: DrawingBackend>(
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

pub(super) fn draw_panel<DB: DrawingBackend>(
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

pub(super) fn draw_legend<DB: DrawingBackend>(
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
