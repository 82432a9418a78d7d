//! What passes read (options) and write (the report) besides the graph.

use std::fmt;

use fhec_ir::{Op, RoundingMode, Tensor, TensorFact};

use crate::quantize::{Calibration, QuantOptions};

/// Options of the passes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassOptions {
    /// Pruning treats a weight `w` as zero when `|w| <= prune_threshold`. With the default
    /// 0.0 only exact zeros count and pruning keeps the outputs exact.
    pub prune_threshold: f32,
    /// Lossy pruning by rate (`--prune-rate`): remove this fraction of the neurons of every
    /// prunable layer (one rate for all, or one per layer in topological order; empty: off).
    /// A removed neuron is replaced by its mean output on the calibration data.
    pub prune_rates: Vec<f32>,
    /// Which neurons pruning by rate removes first.
    pub prune_method: PruneMethod,
    /// Quantise to an integer graph; `None` keeps the float graph (the integer passes are
    /// then no-ops).
    pub quantization: Option<QuantOptions>,
    /// Keep only the top bits of accumulators wider than this before each table lookup.
    pub rounding: Option<RoundingOptions>,
    /// What input range each table covers.
    pub table_ranges: TableRanges,
}

/// The order in which pruning by rate removes neurons (`--prune-method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PruneMethod {
    /// Most zero weights (incoming and outgoing together) first; ties: the smallest L1 norm
    /// of the incoming weights. Needs nothing but the weights.
    ZeroWeights,
    /// Smallest estimated damage first: the variance of the neuron's output on the
    /// calibration data times the squared norm of the weights that read it, which is the
    /// mean squared change that replacing it by its mean makes to the next layer (exact for
    /// one neuron; a ranking for several).
    Impact,
    /// One neuron at a time, the one the remaining neurons predict best on the calibration
    /// data; instead of its mean, its least-squares prediction from the remaining neurons is
    /// folded into the next layer's weights and bias. Mean replacement is the special case
    /// of a prediction from nothing. The default: it keeps the most accuracy (README
    /// "Pruning by rate").
    #[default]
    Refit,
}

/// The input domain tables are built for (`--ranges`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum TableRanges {
    /// The guaranteed worst case of the accumulator (interval arithmetic): no input can
    /// leave a table.
    #[default]
    WorstCase,
    /// The range the calibration data reaches, widened by `margin` times its width on each
    /// side (and never beyond the worst case). A value outside reads the negacyclic wrap.
    Observed { margin: f32 },
}

/// `--rounding-bits R --rounding-mode M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundingOptions {
    pub bits: u32,
    pub mode: RoundingMode,
}

/// Options and data in, report out; one per pipeline run.
#[derive(Clone, Debug, Default)]
pub struct PassContext {
    pub options: PassOptions,
    /// Calibration samples (one `Vec` of graph inputs each) for PTQ ranges and observed
    /// accumulator widths.
    pub calibration_inputs: Vec<Vec<Tensor>>,
    /// What calibration measured on the float graph (valid until quantisation replaces it).
    pub calibration: Option<Calibration>,
    pub report: PipelineReport,
}

impl PassContext {
    pub fn new(options: PassOptions) -> Self {
        PassContext {
            options,
            ..Default::default()
        }
    }

    /// Records one change made by the running pass.
    pub fn note(&mut self, change: impl Into<String>) {
        if self.report.passes.is_empty() {
            self.report.passes.push(PassReport {
                pass: "(direct call)",
                nodes_before: 0,
                nodes_after: 0,
                changes: vec![],
                elapsed: Default::default(),
            });
        }
        let last = self.report.passes.last_mut().expect("pushed above");
        last.changes.push(change.into());
    }
}

/// Everything the pipeline tells the rest of the compiler and the user.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    /// One entry per pass run, in order.
    pub passes: Vec<PassReport>,
    /// Ops removed from the graph outputs that the client applies to the decrypted outputs,
    /// in the order it applies them.
    pub postprocessing: Vec<PostOp>,
    /// Layers whose neuron count pruning reduced, in the order first pruned.
    pub pruned: Vec<PrunedLayer>,
    /// Accumulator widths per layer of the integer graph (worst case and observed).
    pub bit_widths: Vec<LayerBits>,
    /// Tables whose domain `table_ranges` narrowed to the observed range.
    pub narrowed_tables: Vec<NarrowedTable>,
}

/// One table whose input domain was narrowed from the worst case to the calibration range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarrowedTable {
    pub node: String,
    /// Inclusive domains before and after.
    pub before: (i64, i64),
    pub after: (i64, i64),
    /// What the calibration data reached.
    pub observed: (i64, i64),
    /// Entries added on each side of the observed range.
    pub margin: i64,
    pub bits_before: u32,
    pub bits_after: u32,
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub pass: &'static str,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// One line per rewrite.
    pub changes: Vec<String>,
    /// Wall time of the pass, verification included (compile-time profiles; not part of the
    /// report's text, which snapshot tests compare).
    pub elapsed: std::time::Duration,
}

/// One client-side post-processing op of a graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct PostOp {
    /// Index of the graph output it applies to.
    pub output: usize,
    /// Name of the node it came from.
    pub node: String,
    pub op: Op,
}

/// Neuron count of a pruned layer (a `Gemm`'s output columns or a `Conv`'s output channels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunedLayer {
    pub layer: String,
    pub before: usize,
    pub after: usize,
    /// Neurons removed because they output a constant (zero incoming weights).
    pub constant: usize,
    /// Neurons removed because the next layer ignores them (zero outgoing weights).
    pub dead: usize,
    /// Neurons removed by `--prune-rate` (lossy: replaced by their calibration mean).
    pub by_rate: usize,
    /// The neurons removed (all kinds), numbered as in the layer before any pruning: output
    /// columns of a Gemm, output channels of a Conv, of the imported model.
    pub removed: Vec<usize>,
}

impl PipelineReport {
    /// Applies the recorded post-processing to the graph's outputs, giving what the graph
    /// computed before the ops were split off.
    pub fn apply_postprocessing(&self, mut outputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        for p in &self.postprocessing {
            let x = outputs
                .get(p.output)
                .ok_or_else(|| format!("post-processing of missing output {}", p.output))?;
            let fact =
                p.op.infer(&[&TensorFact::f32(x.shape())])
                    .map_err(|e| e.0)?;
            outputs[p.output] = fhec_ir::interp::eval_op(&p.op, &[x], &fact)?;
        }
        Ok(outputs)
    }

    /// The changes of the pass of this name (empty if it did not run).
    pub fn changes(&self, pass: &str) -> Vec<&str> {
        self.passes
            .iter()
            .filter(|p| p.pass == pass)
            .flat_map(|p| p.changes.iter().map(String::as_str))
            .collect()
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.passes {
            writeln!(
                f,
                "{}: {} -> {} nodes, {} change(s)",
                p.pass,
                p.nodes_before,
                p.nodes_after,
                p.changes.len()
            )?;
            for c in &p.changes {
                writeln!(f, "  {c}")?;
            }
        }
        if !self.postprocessing.is_empty() {
            writeln!(f, "client post-processing:")?;
            for p in &self.postprocessing {
                let attrs = fhec_ir::print::attrs(&p.op);
                writeln!(
                    f,
                    "  output {}: {}{}  # {}",
                    p.output,
                    p.op.name(),
                    attrs,
                    p.node
                )?;
            }
        }
        if !self.bit_widths.is_empty() {
            writeln!(
                f,
                "accumulator bits (worst case / observed on calibration):"
            )?;
            for l in &self.bit_widths {
                writeln!(f, "  {l}")?;
            }
        }
        if !self.pruned.is_empty() {
            writeln!(f, "pruned neurons:")?;
            for l in &self.pruned {
                write!(
                    f,
                    "  {}: {} -> {} ({} constant, {} dead",
                    l.layer, l.before, l.after, l.constant, l.dead
                )?;
                if l.by_rate > 0 {
                    write!(f, ", {} by rate", l.by_rate)?;
                }
                writeln!(f, ")")?;
            }
        }
        Ok(())
    }
}

/// Widths of one accumulator (a linear op's output) of the integer graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBits {
    pub layer: String,
    pub op: &'static str,
    pub worst: (i64, i64),
    pub worst_bits: u32,
    pub observed: Option<(i64, i64)>,
    pub observed_bits: Option<u32>,
    /// Input precision of the table lookup this accumulator feeds (after rounding), if any.
    pub tlu_input_bits: Option<u32>,
}

impl fmt::Display for LayerBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} bits [{}, {}]",
            self.layer, self.op, self.worst_bits, self.worst.0, self.worst.1
        )?;
        if let (Some((lo, hi)), Some(b)) = (self.observed, self.observed_bits) {
            write!(f, " / {b} bits [{lo}, {hi}]")?;
        }
        if let Some(t) = self.tlu_input_bits {
            write!(f, ", table input {t} bits")?;
        }
        Ok(())
    }
}
