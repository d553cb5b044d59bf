//! The study store: an append-only JSONL journal (`journal.jsonl`), one event per line.
//!
//! Crash safety: every event is one `write` of a complete line followed by `fsync`, so a kill
//! at any moment leaves at most one partial line, the last. Reading drops a last line that is
//! not valid JSON (and warns); [`Journal::open`] truncates it away before appending, so the
//! file stays valid JSONL. A trial's result is written only after its run folder holds the
//! finished checkpoint, and the study replays the journal on `--resume`: finished work is read
//! back, work that was started and not finished is resumed from its checkpoint.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A journal failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line other than the last is not a valid event.
    #[error(
        "{path}:{line}: not a journal event ({reason}); the journal is damaged: restore that line, or delete it and every line after it to resume from the events before it"
    )]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        reason: String,
    },
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line: what the study is (a resume checks it matches).
    Study {
        /// The modality searched.
        modality: String,
        /// The study's settings (the search file after command-line overrides), as JSON.
        settings: serde_json::Value,
        /// The base experiment config after the study's overrides, as JSON.
        #[serde(default)]
        base: serde_json::Value,
    },
    /// A trial was created: its policy (and the sampler's parameters for searched ones).
    Trial {
        /// Trial number (0-based, in creation order).
        trial: usize,
        /// Display name (`t007`, `default`, `crop-only`, `random`).
        name: String,
        /// `"search"` or `"baseline"`.
        kind: String,
        /// The sampler's parameters (`null` for baselines).
        params: Option<serde_json::Value>,
        /// The policy: `{ "view1": [ops], "view2": [ops] }` in config form.
        policy: serde_json::Value,
        /// The policy in one line (ops with probability and magnitude).
        #[serde(default)]
        description: String,
    },
    /// Training of `trial` towards rung `rung` began (or resumed).
    Start {
        /// Trial number.
        trial: usize,
        /// Rung index.
        rung: usize,
        /// The rung's budget in optimizer steps.
        steps: usize,
        /// Seconds since the study began (summed over resumed sessions).
        at_seconds: f64,
        /// A top-k trial trained on to the full budget before the final comparison (not a
        /// successive-halving promotion).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        top_k: bool,
    },
    /// `trial` finished rung `rung`.
    Result {
        /// Trial number.
        trial: usize,
        /// Rung index.
        rung: usize,
        /// Optimizer steps trained.
        steps: usize,
        /// The objective (validation accuracy in [0, 1]); `None` when the run failed.
        score: Option<f64>,
        /// Every probe's result (JSON), or the error for a failure.
        detail: serde_json::Value,
        /// Seed of the run.
        seed: u64,
        /// Wall seconds of this job.
        wall_seconds: f64,
        /// Seconds since the study began when it finished.
        at_seconds: f64,
        /// `"completed"` (top rung), `"paused"` (a lower rung; may be promoted) or `"failed"`.
        state: String,
    },
    /// A final re-training of a policy with one seed finished (or failed).
    Final {
        /// The policy's name (`best`, a searched trial's name for the other top-k policies,
        /// `default`, `crop-only`, `random`).
        policy: String,
        /// The trial whose policy it is (its validation score is in its `result` events);
        /// empty in journals written before it was recorded.
        #[serde(default)]
        trial: String,
        /// Seed.
        seed: u64,
        /// The objective on the test split; `None` when the run failed (the error is in
        /// `probes.error`).
        score: Option<f64>,
        /// Every probe's result (JSON).
        probes: serde_json::Value,
        /// Wall seconds of the run.
        wall_seconds: f64,
    },
}

/// The journal file, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// Reads every event of the journal at `path` (none when it does not exist). A last line that
/// does not parse (a write cut short by a kill) is dropped with a warning on stderr.
///
/// # Errors
/// [`JournalError::Io`] when the file cannot be read, [`JournalError::Corrupt`] when a line
/// before the last does not parse.
pub fn read_events(path: &Path) -> Result<(Vec<Event>, u64), JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut events = Vec::new();
    let mut valid_len = 0u64;
    let mut offset = 0usize;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        offset += line.len();
        let last = i + 1 == lines.len();
        let complete = line.ends_with(b"\n");
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            if complete {
                valid_len = offset as u64;
            }
            continue;
        }
        if last && !complete {
            // A line without its newline is a write cut short, even when it parses.
            eprintln!(
                "warning: {}: the last line is incomplete (a write cut short); it is dropped",
                path.display()
            );
            break;
        }
        match serde_json::from_str::<Event>(text.trim()) {
            Ok(e) => {
                events.push(e);
                valid_len = offset as u64;
            }
            Err(e) if last => eprintln!(
                "warning: {}: the last line is not a valid event ({e}); it is dropped",
                path.display()
            ),
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    // serde's position is within the line; the line number says where.
                    reason: e
                        .to_string()
                        .split(" at line ")
                        .next()
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
    }
    Ok((events, valid_len))
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending, after cutting off an incomplete
    /// last line; returns the events already in it.
    ///
    /// # Errors
    /// As [`read_events`], and [`JournalError::Io`] when the file cannot be opened or cut.
    pub fn open(path: &Path) -> Result<(Self, Vec<Event>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (events, valid_len) = read_events(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if file.metadata().map_err(io)?.len() != valid_len {
            file.set_len(valid_len).map_err(io)?;
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            events,
        ))
    }

    /// Appends one event as a line, durably (`fsync`) before returning.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the write or the sync fails.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(event).expect("events serialize");
        line.push('\n');
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(trial: usize) -> Event {
        Event::Start {
            trial,
            rung: 0,
            steps: 10,
            at_seconds: 1.5,
            top_k: false,
        }
    }

    #[test]
    fn events_round_trip_and_append_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        {
            let (mut j, events) = Journal::open(&path).unwrap();
            assert!(events.is_empty());
            j.append(&start(0)).unwrap();
            j.append(&start(1)).unwrap();
        }
        let (mut j, events) = Journal::open(&path).unwrap();
        assert_eq!(events, vec![start(0), start(1)]);
        j.append(&start(2)).unwrap();
        assert_eq!(read_events(&path).unwrap().0.len(), 3);
    }

    #[test]
    fn a_truncated_last_line_is_dropped_and_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        {
            let (mut j, _) = Journal::open(&path).unwrap();
            j.append(&start(0)).unwrap();
            j.append(&start(1)).unwrap();
        }
        // Cut the file in the middle of the second line, as a kill during a write would.
        let bytes = std::fs::read(&path).unwrap();
        let first_len = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        std::fs::write(&path, &bytes[..first_len + 12]).unwrap();
        let (events, _) = read_events(&path).unwrap();
        assert_eq!(events, vec![start(0)]);
        let (mut j, events) = Journal::open(&path).unwrap();
        assert_eq!(events, vec![start(0)]);
        j.append(&start(5)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(read_events(&path).unwrap().0, vec![start(0), start(5)]);
        // A last line without its newline counts as cut short, even when it parses.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_events(&path).unwrap().0.len(), 1);
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let good = serde_json::to_string(&start(0)).unwrap();
        std::fs::write(&path, format!("{good}\n{{garbage\n{good}\n")).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains("journal.jsonl:2"), "{err}");
    }
}
