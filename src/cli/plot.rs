//! `fhec plot`: (re)draws the plots of `fhec sweep` result CSVs — accuracy vs bits and
//! predicted latency vs bits, PNG and SVG, beside each CSV (see [`crate::plot`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Sweep result CSV files (written by `fhec sweep`); for each, <stem>_accuracy.png/.svg
    /// and <stem>_latency.png/.svg are written beside it, replacing older plots.
    #[arg(required = true, value_name = "CSV")]
    pub csv: Vec<PathBuf>,
}

/// Writes the plots of every CSV in turn, printing the paths written (one a line); stops at
/// the first CSV that cannot be plotted (plots already written for earlier ones stay).
pub fn run(args: &PlotArgs) -> Result<()> {
    for csv in &args.csv {
        let written = crate::plot::write_plots(csv)?;
        let text: String = written
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        super::print_out(&text)?;
    }
    Ok(())
}
