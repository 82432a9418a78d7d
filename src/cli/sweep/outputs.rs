//! What a sweep (or a merge of shards) writes once its rows are final: the `--top K` ranking,
//! the `--xlsx` workbook and the plots. Everything is derived from the results rows, so a
//! merge writes exactly what one run over all configurations would have written.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rust_xlsxwriter::{Format, Workbook, Worksheet};

use super::table::{columns, write_atomic, BaselineRow, Row, BASELINE_COLUMNS};

/// One dataset's results file and all its rows.
pub struct DatasetRows {
    pub name: String,
    pub csv: PathBuf,
    pub rows: Vec<Row>,
}

/// Which derived files to write.
pub struct Derived {
    /// `--top K`.
    pub top: Option<usize>,
    /// `--xlsx`.
    pub xlsx: bool,
    pub plots: bool,
}

impl Derived {
    /// What `--top`, `--xlsx` and `--no-plots` ask for.
    pub fn of(args: &super::SweepArgs) -> Self {
        Derived {
            top: args.top.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            xlsx: args.xlsx,
            plots: !args.no_plots,
        }
    }
}

/// The files written, and plots that could not be drawn (with why).
#[derive(Default)]
pub struct Written {
    pub top: Option<PathBuf>,
    pub xlsx: Option<PathBuf>,
    pub plots: Vec<PathBuf>,
    pub plot_warnings: Vec<String>,
}

/// Writes the derived files of the sweep `name` into `dir`.
pub fn write_derived(
    dir: &Path,
    name: &str,
    datasets: &[DatasetRows],
    baseline: &[BaselineRow],
    what: &Derived,
) -> Result<Written> {
    let mut written = Written::default();
    let top = what.top.map(|k| (k, ranked(datasets, k)));
    if let Some((k, ranked)) = &top {
        let path = dir.join(format!("top_{k}.csv"));
        write_atomic(&path, &top_csv(ranked)?)?;
        written.top = Some(path);
    }
    if what.xlsx {
        let path = dir.join(format!("results_{name}.xlsx"));
        let book = workbook(
            datasets,
            baseline,
            top.as_ref().map(|(k, r)| (*k, r.as_slice())),
        )
        .map_err(|e| anyhow!("cannot build the workbook '{}': {e}", path.display()))?;
        write_atomic(&path, &book)?;
        written.xlsx = Some(path);
    }
    if what.plots {
        for d in datasets {
            match crate::plot::write_plots(&d.csv) {
                Ok(paths) => written.plots.extend(paths),
                Err(e) => written.plot_warnings.push(format!(
                    "no plots for '{}': {}",
                    d.csv.display(),
                    super::one_line(&e)
                )),
            }
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// --top K

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

/// `top_<K>.csv`: `rank`, `ranked_by`, then the results columns.
fn top_csv(ranked: &[Ranked]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let header: Vec<&str> = ["rank", "ranked_by"]
        .into_iter()
        .chain(columns().iter().copied())
        .collect();
    w.write_record(&header)?;
    for r in ranked {
        let mut record = vec![r.rank.to_string(), r.by.to_string()];
        record.extend(row_fields(r.row)?);
        w.write_record(&record)?;
    }
    w.into_inner()
        .map_err(|e| anyhow!("cannot write the top-K table: {e}"))
}

/// The CSV cells of one row, as the results file writes them.
fn row_fields(r: &Row) -> Result<Vec<String>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.serialize(r)?;
    let bytes = w.into_inner().map_err(|e| anyhow!("{e}"))?;
    let record = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice())
        .records()
        .next()
        .context("a serialised row is one record")??;
    Ok(record.iter().map(str::to_string).collect())
}

// ---------------------------------------------------------------------------------------------
// --xlsx

/// The workbook: one sheet per dataset (every results row), the float baseline, and the
/// top-K ranking when asked. Numbers are numbers, unmeasured cells are empty.
fn workbook(
    datasets: &[DatasetRows],
    baseline: &[BaselineRow],
    top: Option<(usize, &[Ranked])>,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let mut names: Vec<String> = Vec::new();
    for d in datasets {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(&d.name, &mut names))?;
        write_header(sheet, &bold, 0, columns())?;
        for (i, r) in d.rows.iter().enumerate() {
            write_record(sheet, row_index(i + 1), 0, r, columns())?;
        }
    }
    let sheet = book.add_worksheet();
    sheet.set_name(sheet_name("float baseline", &mut names))?;
    write_header(sheet, &bold, 0, &BASELINE_COLUMNS)?;
    for (i, b) in baseline.iter().enumerate() {
        write_record(sheet, row_index(i + 1), 0, b, &BASELINE_COLUMNS)?;
    }
    if let Some((k, ranked)) = top {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(&format!("top {k}"), &mut names))?;
        write_header(sheet, &bold, 0, &["rank", "ranked_by"])?;
        write_header(sheet, &bold, 2, columns())?;
        for (i, r) in ranked.iter().enumerate() {
            let y = row_index(i + 1);
            sheet.write_number(y, 0, r.rank as f64)?;
            sheet.write_string(y, 1, r.by)?;
            write_record(sheet, y, 2, r.row, columns())?;
        }
    }
    book.save_to_buffer()
}

fn row_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

pub(crate) fn write_header(
    sheet: &mut Worksheet,
    bold: &Format,
    first_col: u16,
    names: &[&str],
) -> Result<(), rust_xlsxwriter::XlsxError> {
    for (j, name) in names.iter().enumerate() {
        sheet.write_string_with_format(0, first_col + j as u16, *name, bold)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

/// One record's cells, by column name, from its JSON form (numbers stay numbers).
pub(crate) fn write_record<T: serde::Serialize>(
    sheet: &mut Worksheet,
    y: u32,
    first_col: u16,
    record: &T,
    names: &[&str],
) -> Result<(), rust_xlsxwriter::XlsxError> {
    let value = serde_json::to_value(record).unwrap_or_default();
    for (j, name) in names.iter().enumerate() {
        let x = first_col + j as u16;
        match value.get(*name) {
            Some(serde_json::Value::Number(n)) => {
                sheet.write_number(y, x, n.as_f64().unwrap_or(f64::NAN))?;
            }
            Some(serde_json::Value::String(s)) => {
                sheet.write_string(y, x, s)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A sheet name Excel accepts (at most 31 characters, none of `[]:*?/\`), unique in `taken`.
pub(crate) fn sheet_name(wanted: &str, taken: &mut Vec<String>) -> String {
    let clean: String = wanted
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .collect();
    let clean = clean.trim_matches('\'');
    let base: String = if clean.is_empty() { "sheet" } else { clean }
        .chars()
        .take(31)
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        let suffix = format!(" ({n})");
        name = base.chars().take(31 - suffix.len()).collect::<String>() + &suffix;
        n += 1;
    }
    taken.push(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sheet_names_are_legal_and_unique() {
        let mut taken = vec![];
        assert_eq!(sheet_name("a/b:c", &mut taken), "a_b_c");
        let long = "x".repeat(40);
        let first = sheet_name(&long, &mut taken);
        let second = sheet_name(&long, &mut taken);
        assert_eq!(first.chars().count(), 31);
        assert_eq!(second.chars().count(), 31);
        assert!(second.ends_with(" (2)"));
        assert_eq!(sheet_name("A_B_C", &mut taken), "A_B_C (2)");
    }
}
