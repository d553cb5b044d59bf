//! Text datasets: the VADER sentence corpora, or any folder (or single file) of TSV, CSV, JSON
//! Lines or plain-text files with a text column and optional label columns.
//!
//! Splits: `train.*` and `test.*` files when the folder has them, otherwise a fixed, seeded
//! split of all records (`test_fraction`, `split_seed`: the same on every run, whatever the
//! experiment's seed).

use crate::reader::{Columns, FileFormat, Record, Skips, parse_records};
use serde::{Deserialize, Serialize};
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How a folder of text files is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `vader` when the VADER `*_GroundTruth.txt` files are there, else `files`.
    #[default]
    Auto,
    /// The VADER corpora (Hutto & Gilbert 2014): `{source}_GroundTruth.txt`, TSV
    /// `id<TAB>mean rating (-4..4)<TAB>text`; label sets `sentiment` (sign of the rating; a
    /// rating of 0 is left out of that probe) and `source` (which corpus).
    Vader,
    /// Files of [`TextDataConfig`](crate::TextDataConfig)'s format and columns.
    Files,
}

/// The file format of a `files` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// From each file's extension (`.tsv`, `.csv`, `.jsonl`, `.txt`).
    #[default]
    Auto,
    /// Tab-separated.
    Tsv,
    /// Comma-separated, quoted.
    Csv,
    /// JSON Lines.
    Jsonl,
    /// One text per line.
    Lines,
}

/// A text record as the dataset keeps it: tokenized later, with the run's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct TextItem {
    /// The raw text.
    pub text: String,
}

/// What to read and how to split it (a part of [`TextDataConfig`](crate::TextDataConfig)).
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// Layout.
    pub layout: Layout,
    /// Format of `files` layouts.
    pub format: DataFormat,
    /// Columns of `files` layouts.
    pub columns: &'a Columns,
    /// Fraction of the records in the test split when the files do not split them.
    pub test_fraction: f64,
    /// Seed of that split.
    pub split_seed: u64,
}

const VADER_SUFFIX: &str = "_GroundTruth.txt";

fn vader_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(VADER_SUFFIX))
        })
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the dataset at `root` (a folder, or one file for the `files` layout).
///
/// # Errors
/// [`DataError::NoData`] naming `root` when it holds no usable file or record;
/// [`DataError::Io`]/[`DataError::Corrupt`] naming a file that cannot be read or lacks a column.
pub fn load(root: &Path, src: &Source) -> Result<Datasets<TextItem>, DataError> {
    if !root.exists() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "no such file or folder".into(),
        });
    }
    let layout = match src.layout {
        Layout::Auto if root.is_dir() && !vader_files(root).is_empty() => Layout::Vader,
        Layout::Auto => Layout::Files,
        l => l,
    };
    let mut skips = Skips::default();
    let mut d = match layout {
        Layout::Vader => load_vader(root, src, &mut skips)?,
        _ => load_files(root, src, &mut skips)?,
    };
    d.skipped = skips.count;
    if d.train.is_empty() || d.test.is_empty() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: format!(
                "{} training and {} test texts: both splits need some",
                d.train.len(),
                d.test.len()
            ),
        });
    }
    Ok(d)
}

fn load_vader(
    root: &Path,
    src: &Source,
    skips: &mut Skips,
) -> Result<Datasets<TextItem>, DataError> {
    let files = vader_files(root);
    if files.is_empty() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: format!(
                "no VADER *{VADER_SUFFIX} files (data.layout = \"files\" reads TSV, CSV, JSONL or text files)"
            ),
        });
    }
    let columns = Columns {
        text: "2".into(),
        labels: vec!["1".into()],
        header: false,
    };
    let sources: Vec<String> = files
        .iter()
        .map(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.trim_end_matches(VADER_SUFFIX).to_string()
        })
        .collect();
    let mut items = Vec::new();
    let (mut sentiment, mut source) = (Vec::new(), Vec::new());
    for (k, file) in files.iter().enumerate() {
        for r in parse_records(file, &read(file)?, FileFormat::Tsv, &columns, skips)? {
            let Ok(rating) = r.labels[0].parse::<f64>() else {
                skips.skip(
                    file,
                    r.line,
                    &format!("rating `{}` is not a number", r.labels[0]),
                );
                continue;
            };
            if !rating.is_finite() {
                skips.skip(file, r.line, "rating is not finite");
                continue;
            }
            items.push(TextItem { text: r.text });
            sentiment.push(if rating > 0.0 {
                1
            } else if rating < 0.0 {
                0
            } else {
                LabelSet::UNLABELED
            });
            source.push(k);
        }
    }
    let all = Split {
        items,
        label_sets: vec![
            LabelSet {
                name: "sentiment".into(),
                classes: vec!["negative".into(), "positive".into()],
                labels: sentiment,
            },
            LabelSet {
                name: "source".into(),
                classes: sources,
                labels: source,
            },
        ],
    };
    let (train, test) = all.hold_out(src.test_fraction, src.split_seed);
    Ok(Datasets {
        name: "vader".into(),
        train,
        test,
        skipped: 0,
    })
}

fn format_of(path: &Path, format: DataFormat) -> Option<FileFormat> {
    match format {
        DataFormat::Auto => FileFormat::from_extension(path),
        DataFormat::Tsv => Some(FileFormat::Tsv),
        DataFormat::Csv => Some(FileFormat::Csv),
        DataFormat::Jsonl => Some(FileFormat::Jsonl),
        DataFormat::Lines => Some(FileFormat::Lines),
    }
}

fn read_records(
    files: &[PathBuf],
    src: &Source,
    skips: &mut Skips,
) -> Result<Vec<Record>, DataError> {
    let mut out = Vec::new();
    for f in files {
        let format = format_of(f, src.format).ok_or_else(|| DataError::Corrupt {
            path: f.clone(),
            reason: "unknown text format: use .tsv, .csv, .jsonl or .txt, or set data.format"
                .into(),
        })?;
        out.extend(parse_records(f, &read(f)?, format, src.columns, skips)?);
    }
    Ok(out)
}

fn load_files(
    root: &Path,
    src: &Source,
    skips: &mut Skips,
) -> Result<Datasets<TextItem>, DataError> {
    let files: Vec<PathBuf> = if root.is_file() {
        vec![root.to_path_buf()]
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|source| DataError::Io {
                path: root.to_path_buf(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && format_of(p, src.format).is_some())
            .collect();
        f.sort();
        f
    };
    if files.is_empty() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "no .tsv, .csv, .jsonl or .txt files".into(),
        });
    }
    let stem = |p: &PathBuf| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let train_files: Vec<PathBuf> = files
        .iter()
        .filter(|p| stem(p) == "train")
        .cloned()
        .collect();
    let test_files: Vec<PathBuf> = files
        .iter()
        .filter(|p| stem(p) == "test")
        .cloned()
        .collect();
    let (train, test) = if !train_files.is_empty() && !test_files.is_empty() {
        (
            read_records(&train_files, src, skips)?,
            read_records(&test_files, src, skips)?,
        )
    } else {
        let all = read_records(&files, src, skips)?;
        let n = all.len();
        let whole = Split {
            items: all,
            label_sets: Vec::new(),
        };
        if n < 2 {
            return Err(DataError::NoData {
                path: root.to_path_buf(),
                reason: format!("{n} usable texts: a split needs at least 2"),
            });
        }
        let (tr, te) = whole.hold_out(src.test_fraction, src.split_seed);
        (tr.items, te.items)
    };
    // Classes of each label column: the sorted values seen in either split.
    let label_sets = |records: &[Record]| -> Vec<LabelSet> {
        src.columns
            .labels
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let classes: Vec<String> = train
                    .iter()
                    .chain(test.iter())
                    .map(|r| r.labels[k].clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                LabelSet {
                    name: name.clone(),
                    labels: records
                        .iter()
                        .map(|r| {
                            classes
                                .binary_search(&r.labels[k])
                                .unwrap_or(LabelSet::UNLABELED)
                        })
                        .collect(),
                    classes,
                }
            })
            .collect()
    };
    let split = |records: &[Record]| Split {
        items: records
            .iter()
            .map(|r| TextItem {
                text: r.text.clone(),
            })
            .collect(),
        label_sets: label_sets(records),
    };
    let name = root
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("text")
        .to_string();
    Ok(Datasets {
        name,
        train: split(&train),
        test: split(&test),
        skipped: 0,
    })
}
