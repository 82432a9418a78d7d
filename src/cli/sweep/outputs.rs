//! What a sweep (or a merge of shards) writes once its rows are final: the `--top K` ranking,
//! the `--xlsx` workbook and the plots. Everything is derived from the results rows, so a
//! merge writes exactly what one run over all configurations would have written.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rust_xlsxwriter::{Format, Workbook, Worksheet};

use fhec_driver::sweep::rank::{ranked, Ranked};
use fhec_driver::sweep::table::{columns, write_atomic, BaselineRow, Row, BASELINE_COLUMNS};
pub use fhec_driver::sweep::DatasetRows;

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
        write_atomic(&path, &top_csv(ranked)?).map_err(anyhow::Error::new)?;
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
        write_atomic(&path, &book).map_err(anyhow::Error::new)?;
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
