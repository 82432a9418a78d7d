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
//!
//! Modules: [`read`] (the CSV, by column name), [`layout`] (figures and axes), [`draw`]
//! (drawing on a backend), [`glyph`] (the embedded-font text backend).

use std::path::{Path, PathBuf};

mod draw;
mod glyph;
mod layout;
mod read;

use draw::render;
use layout::{accuracy_figure, latency_figure};
use read::read_rows;

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

#[cfg(test)]
mod tests {
    use super::layout::*;
    use super::read::*;
    use super::*;

    /// The columns the plots read are columns of the sweep's schema (one definition:
    /// `fhec_driver::sweep::table::COLUMNS`).
    #[test]
    fn required_columns_are_sweep_columns() {
        for c in REQUIRED {
            assert!(fhec_driver::sweep::table::COLUMNS.contains(&c), "{c}");
        }
    }

    /// Every column of the sweep schema before `prune_rate`/`prune_method`, in order.
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
