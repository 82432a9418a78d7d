//! [`Hooks`]: how a long operation (an evaluation, a sweep, a search) reports progress, is
//! cancelled, and how many threads it uses. The CLI turns the [`Event`]s into progress bars;
//! a Python caller forwards them to its own callback and sets the cancel flag from a signal.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{DriverError, Result};

/// What a long operation reports, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// A line of information: a note about the data, a phase's result, a warning.
    Note(&'a str),
    /// A task starts: `total` steps (a bar), or `None` for a task of unknown length (a
    /// spinner). Tasks nest; each ends with [`Event::End`].
    Begin { task: &'a str, total: Option<u64> },
    /// A short phase starts (e.g. quantising one configuration of a sweep): worth showing
    /// while it runs, too frequent to log. Ends with [`Event::End`].
    Phase(&'a str),
    /// One step of the innermost counted task, with an optional line describing it.
    Step { line: Option<&'a str> },
    /// The innermost task's current item changed (e.g. the configuration being measured).
    Message(&'a str),
    /// The innermost task ended.
    End,
}

/// Progress callback, cancellation flag and thread count of a long operation.
#[derive(Clone, Copy, Default)]
pub struct Hooks<'a> {
    /// Receives every [`Event`]; `None`: nothing is reported.
    pub on_event: Option<&'a (dyn Fn(Event) + Sync)>,
    /// Checked between samples and configurations: once set, the operation stops with
    /// [`DriverError::Cancelled`] (files already written stay complete).
    pub cancel: Option<&'a AtomicBool>,
    /// Threads for the per-sample work (default: rayon's global pool, one per core).
    pub threads: Option<usize>,
}

impl<'a> Hooks<'a> {
    /// No reporting, no cancellation, every core.
    pub fn silent() -> Self {
        Hooks::default()
    }

    pub fn emit(&self, event: Event) {
        if let Some(f) = self.on_event {
            f(event);
        }
    }

    pub fn note(&self, line: &str) {
        self.emit(Event::Note(line));
    }

    /// Starts a task that ends when the returned guard is dropped.
    pub fn task(&self, task: &str, total: Option<u64>) -> Task<'a> {
        self.emit(Event::Begin { task, total });
        Task { hooks: *self }
    }

    /// Starts a short phase that ends when the returned guard is dropped.
    pub fn phase(&self, what: &str) -> Task<'a> {
        self.emit(Event::Phase(what));
        Task { hooks: *self }
    }

    /// `Err(Cancelled)` once the cancel flag is set.
    pub fn check(&self) -> Result<()> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(DriverError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Runs `f` on a pool of [`Hooks::threads`] threads (the global pool without a count).
    pub fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        match self.threads {
            None => Ok(f()),
            Some(n) => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| DriverError::Invalid(format!("cannot start {n} threads: {e}")))?;
                Ok(pool.install(f))
            }
        }
    }
}

/// A task in progress; ends (with [`Event::End`]) when dropped.
pub struct Task<'a> {
    hooks: Hooks<'a>,
}

impl Task<'_> {
    pub fn step(&self, line: Option<&str>) {
        self.hooks.emit(Event::Step { line });
    }

    pub fn message(&self, text: &str) {
        self.hooks.emit(Event::Message(text));
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.hooks.emit(Event::End);
    }
}
