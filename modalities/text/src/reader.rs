//! Reading text records from TSV, CSV (the `csv` crate), JSON Lines and plain-text files: one
//! text column and optional label columns per record.
//!
//! A line that cannot be used (invalid UTF-8, too few fields, malformed JSON, a missing key, an
//! empty text) is skipped and counted; a warning names the file and line of the first ten. A
//! file that cannot be read, or whose header lacks a named column, is an error naming it.

use serde::{Deserialize, Serialize};
use ssl_framework::data::DataError;
use std::path::Path;

/// The format of a text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Tab-separated fields, no quoting.
    Tsv,
    /// Comma-separated fields with `"` quoting (RFC 4180).
    Csv,
    /// One JSON object per line; columns are keys.
    Jsonl,
    /// One text per line, no labels.
    Lines,
}

impl FileFormat {
    /// The format implied by a file extension (`tsv`/`tab`, `csv`, `jsonl`/`ndjson`, `txt`).
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "tsv" | "tab" => Some(Self::Tsv),
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "txt" => Some(Self::Lines),
            _ => None,
        }
    }
}

/// Which columns a file's records are read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// The text column: a header name or key, or a 0-based index (TSV/CSV).
    pub text: String,
    /// Label columns, the same way.
    pub labels: Vec<String>,
    /// Whether the first TSV/CSV line names the columns.
    pub header: bool,
}

/// One record: its text, its label values (as written), and its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The text.
    pub text: String,
    /// One value per label column, in the order of [`Columns::labels`].
    pub labels: Vec<String>,
    /// Line number in its file (1-based).
    pub line: usize,
}

/// Counts and reports skipped lines (a warning for each of the first ten).
#[derive(Debug, Default)]
pub struct Skips {
    /// Lines skipped so far.
    pub count: usize,
}

impl Skips {
    /// Records a skipped line of `path`.
    pub fn skip(&mut self, path: &Path, line: usize, why: &str) {
        if self.count < 10 {
            eprintln!("warning: skipping line {line} of {}: {why}", path.display());
        }
        self.count += 1;
    }
}

fn column_index(spec: &str, header: Option<&[String]>, path: &Path) -> Result<usize, DataError> {
    if let Some(names) = header
        && let Some(i) = names.iter().position(|n| n == spec)
    {
        return Ok(i);
    }
    spec.parse::<usize>().map_err(|_| DataError::Corrupt {
        path: path.to_path_buf(),
        reason: match header {
            Some(names) => format!(
                "no column `{spec}` in the header (columns: {})",
                names.join(", ")
            ),
            None => format!("column `{spec}` must be a 0-based index (the file has no header)"),
        },
    })
}

/// Reads the records of `bytes` (the content of `path`, which names it in messages).
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` when a named column is not in the header, or when a
/// plain-text file is asked for label columns.
pub fn parse_records(
    path: &Path,
    bytes: &[u8],
    format: FileFormat,
    columns: &Columns,
    skips: &mut Skips,
) -> Result<Vec<Record>, DataError> {
    match format {
        FileFormat::Tsv | FileFormat::Csv => parse_delimited(path, bytes, format, columns, skips),
        FileFormat::Jsonl => Ok(parse_jsonl(path, bytes, columns, skips)),
        FileFormat::Lines => {
            if !columns.labels.is_empty() {
                return Err(DataError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "a plain-text file has no label columns".into(),
                });
            }
            Ok(lines(bytes)
                .filter_map(|(line, raw)| match std::str::from_utf8(raw) {
                    Ok(t) if t.trim().is_empty() => None,
                    Ok(t) => Some(Record {
                        text: t.trim().to_string(),
                        labels: Vec::new(),
                        line,
                    }),
                    Err(e) => {
                        skips.skip(path, line, &format!("invalid UTF-8 ({e})"));
                        None
                    }
                })
                .collect())
        }
    }
}

/// `(1-based line number, line without its `\n` or `\r\n`)`.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !bytes.is_empty())
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// Line numbers of byte offsets, counted here (the csv crate's count is off by one after a
/// `\r\n` line end). Offsets must not decrease between calls.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of the first byte at or after `offset` that is not a line end (where
    /// a record read from `offset` starts).
    fn line_of(&mut self, offset: usize) -> usize {
        let mut at = offset.min(self.bytes.len());
        while at < self.bytes.len() && matches!(self.bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        if at > self.offset {
            self.line += self.bytes[self.offset..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = at;
        }
        self.line
    }
}

fn parse_delimited(
    path: &Path,
    bytes: &[u8],
    format: FileFormat,
    columns: &Columns,
    skips: &mut Skips,
) -> Result<Vec<Record>, DataError> {
    // The header is read as the first record (the csv crate's own header handling would shift
    // the line numbers it reports).
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(if format == FileFormat::Tsv {
            b'\t'
        } else {
            b','
        })
        .quoting(format == FileFormat::Csv)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let header: Option<Vec<String>> = if columns.header {
        match reader.read_byte_record(&mut record) {
            Ok(true) => Some(
                record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).trim().to_string())
                    .collect(),
            ),
            Ok(false) => Some(Vec::new()),
            Err(e) => {
                return Err(DataError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("unreadable header: {e}"),
                });
            }
        }
    } else {
        None
    };
    let text_col = column_index(&columns.text, header.as_deref(), path)?;
    let label_cols: Vec<usize> = columns
        .labels
        .iter()
        .map(|c| column_index(c, header.as_deref(), path))
        .collect::<Result<_, _>>()?;
    let needed = label_cols
        .iter()
        .copied()
        .chain([text_col])
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = Vec::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let line = lines.line_of(reader.position().byte() as usize);
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                skips.skip(path, line, &format!("malformed record ({e})"));
                continue;
            }
        }
        let line = record
            .position()
            .map(|p| lines.line_of(p.byte() as usize))
            .unwrap_or(line);
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() < needed {
            skips.skip(
                path,
                line,
                &format!("{} fields, column {} needed", record.len(), needed - 1),
            );
            continue;
        }
        let field = |i: usize| std::str::from_utf8(&record[i]).map(|s| s.trim().to_string());
        let text = match field(text_col) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                skips.skip(path, line, "empty text");
                continue;
            }
            Err(e) => {
                skips.skip(path, line, &format!("invalid UTF-8 ({e})"));
                continue;
            }
        };
        match label_cols
            .iter()
            .map(|&c| field(c))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(labels) => out.push(Record { text, labels, line }),
            Err(e) => skips.skip(path, line, &format!("invalid UTF-8 ({e})")),
        }
    }
    Ok(out)
}

fn parse_jsonl(path: &Path, bytes: &[u8], columns: &Columns, skips: &mut Skips) -> Vec<Record> {
    let mut out = Vec::new();
    for (line, raw) in lines(bytes) {
        let Ok(text) = std::str::from_utf8(raw) else {
            skips.skip(path, line, "invalid UTF-8");
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                skips.skip(path, line, &format!("malformed JSON ({e})"));
                continue;
            }
        };
        let get = |key: &str| -> Option<String> {
            match value.get(key)? {
                serde_json::Value::String(s) => Some(s.trim().to_string()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let Some(text) = get(&columns.text).filter(|t| !t.is_empty()) else {
            skips.skip(path, line, &format!("no text in key `{}`", columns.text));
            continue;
        };
        match columns
            .labels
            .iter()
            .map(|k| get(k))
            .collect::<Option<Vec<_>>>()
        {
            Some(labels) => out.push(Record { text, labels, line }),
            None => skips.skip(path, line, "a label key is missing"),
        }
    }
    out
}
