//! Progress reporting for long work (compiling, key generation, encrypted samples).
//!
//! On a terminal, [`Progress`] draws indicatif bars and spinners on stderr; anywhere else
//! (a pipe, a log file, CI) it prints plain lines instead, so logs stay readable and nothing
//! depends on cursor movement. Plain lines also go out while bars are drawn (above them).
//! [`Progress::sink`] draws the driver's progress [`Event`]s.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use fhec_driver::Event;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes: bars on a terminal, plain stderr lines otherwise.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal (and `TERM` is not `dumb`), plain lines otherwise.
    pub fn stderr() -> Self {
        let tty =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        if tty {
            Progress {
                multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            }
        } else {
            Progress::plain()
        }
    }

    /// Plain lines only.
    pub fn plain() -> Self {
        Progress { multi: None }
    }

    /// Prints one line on stderr (above the bars when they are drawn).
    pub fn line(&self, text: &str) {
        match &self.multi {
            Some(m) if m.println(text).is_ok() => {}
            _ => eprintln!("{text}"),
        }
    }

    /// Draws the driver's events: notes as lines, tasks as bars and spinners (nested; steps
    /// and messages go to the innermost).
    pub fn sink(&self) -> impl Fn(Event) + Sync + '_ {
        let stack: Mutex<Vec<Task>> = Mutex::new(Vec::new());
        move |event| {
            let mut stack = stack.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Event::Note(line) => self.line(line),
                Event::Begin {
                    task,
                    total: Some(n),
                } => stack.push(self.bar(n, task)),
                Event::Begin { task, total: None } => stack.push(self.spinner(task)),
                Event::Phase(what) => stack.push(self.status(what)),
                Event::Step { line } => {
                    if let Some(t) = stack.last() {
                        t.step(line);
                    }
                }
                Event::Message(text) => {
                    if let Some(t) = stack.last() {
                        t.message(text);
                    }
                }
                Event::End => {
                    stack.pop();
                }
            }
        }
    }

    /// A counted task of `len` steps (`what` prefixes it: `configs`, `FHE samples`). In plain
    /// mode, [`Task::step`] prints its line when given one.
    pub fn bar(&self, len: u64, what: &str) -> Task {
        let pb = self.multi.as_ref().map(|m| {
            let style = ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta}) {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let pb = m.add(ProgressBar::new(len).with_style(style));
            pb.set_prefix(what.to_string());
            pb.enable_steady_tick(Duration::from_millis(250));
            pb
        });
        Task {
            pb,
            multi: self.multi.clone(),
        }
    }

    /// An uncounted task (key generation): a spinner on a terminal, one line `what...`
    /// otherwise.
    pub fn spinner(&self, what: &str) -> Task {
        self.spinner_with(what, true)
    }

    /// A spinner on a terminal, nothing otherwise: for steps too short or too frequent to
    /// deserve a plain line of their own (each sweep configuration's compile).
    pub fn status(&self, what: &str) -> Task {
        self.spinner_with(what, false)
    }

    fn spinner_with(&self, what: &str, plain_line: bool) -> Task {
        let pb = match &self.multi {
            Some(m) => {
                let style = ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let pb = m.add(ProgressBar::new_spinner().with_style(style));
                pb.set_message(what.to_string());
                pb.enable_steady_tick(Duration::from_millis(120));
                Some(pb)
            }
            None => {
                if plain_line {
                    eprintln!("{what}...");
                }
                None
            }
        };
        Task {
            pb,
            multi: self.multi.clone(),
        }
    }
}

/// One bar or spinner; removed from the screen when dropped.
pub struct Task {
    pb: Option<ProgressBar>,
    multi: Option<MultiProgress>,
}

impl Task {
    /// One step done. On a terminal the bar advances and shows `line` as its message; in
    /// plain mode `line` (if any) is printed.
    pub fn step(&self, line: Option<&str>) {
        match &self.pb {
            Some(pb) => {
                pb.inc(1);
                if let Some(l) = line {
                    pb.set_message(l.to_string());
                }
            }
            None => {
                if let Some(l) = line {
                    eprintln!("{l}");
                }
            }
        }
    }

    /// Changes the message shown next to the bar (terminal only).
    pub fn message(&self, text: &str) {
        if let Some(pb) = &self.pb {
            pb.set_message(text.to_string());
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&pb);
            }
        }
    }
}
