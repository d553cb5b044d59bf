//! What a run shows while it trains: a progress bar on a terminal (else a line per log step on
//! stderr), warnings, the throughput window and the collapse warning; the metrics log is
//! [`super::metrics`].

use super::metrics::MetricsRecord;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// A run's progress display and the throughput window between two log lines.
pub struct Progress {
    bar: ProgressBar,
    total_steps: usize,
    window_start: Instant,
    window_samples: usize,
    window_wait: f64,
    /// Seconds spent waiting for data since training started.
    pub total_wait: f64,
    /// Shows nothing (the ranks of a data-parallel run other than rank 0).
    quiet: bool,
}

impl Progress {
    /// A bar at step `at` of `total_steps` when `enabled` and stderr is a terminal; plain
    /// lines otherwise.
    pub fn new(enabled: bool, total_steps: usize, at: usize) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} steps | {msg} | ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(at as u64);
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            total_steps,
            window_start: Instant::now(),
            window_samples: 0,
            window_wait: 0.0,
            total_wait: 0.0,
            quiet: false,
        }
    }

    /// A progress that counts but shows nothing.
    pub fn quiet(total_steps: usize, at: usize) -> Self {
        Self {
            quiet: true,
            ..Self::new(false, total_steps, at)
        }
    }

    /// Prints a message line without breaking the bar.
    pub fn say(&self, msg: String) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{msg}")
        } else {
            self.bar.println(msg)
        }
    }

    /// Counts one micro-batch of `samples` that the trainer waited `wait` seconds for.
    pub fn add_batch(&mut self, samples: usize, wait: f64) {
        self.window_samples += samples;
        self.window_wait += wait;
        self.total_wait += wait;
    }

    /// Moves the bar to `step`.
    pub fn set_step(&self, step: usize) {
        self.bar.set_position(step as u64);
    }

    /// Samples per second and the fraction of time spent waiting for data since the previous
    /// log line, and starts a new window.
    pub fn take_window(&mut self) -> (f64, f64) {
        let secs = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let figures = (
            self.window_samples as f64 / secs,
            (self.window_wait / secs).min(1.0),
        );
        self.window_start = Instant::now();
        self.window_samples = 0;
        self.window_wait = 0.0;
        figures
    }

    /// Shows a logged step.
    pub fn show(&mut self, record: &MetricsRecord) {
        if self.quiet {
            return;
        }
        let probe = record
            .online_probe_top1
            .map(|a| format!(" | online probe {:.1}%", a * 100.0))
            .unwrap_or_default();
        let line = format!(
            "loss {:.4} | lr {:.4} | tau {:.5} | collapse std {:.4} rank {:.1}{probe} | {:.0} img/s",
            record.loss,
            record.lr,
            record.tau,
            record.collapse_std,
            record.effective_rank,
            record.images_per_sec
        );
        if self.bar.is_hidden() {
            eprintln!(
                "step {}/{} epoch {} | {line}",
                record.step, self.total_steps, record.epoch
            );
        } else {
            self.bar.set_message(line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
