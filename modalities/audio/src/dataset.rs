//! Audio datasets: a folder of WAV files, labelled by class folders
//! (`root/{train,test}/<class>/*.wav`) or unlabelled (WAVs at any depth; see
//! [`ssl_framework::data::folder`]), or labelled from the Free Spoken Digit Dataset's file names
//! (`{digit}_{speaker}_{index}.wav`; the official split puts index 0-4 in the test set; two
//! label sets, digit and speaker). Files are decoded, resampled and turned into log-mel
//! spectrograms on all cores; unreadable files are skipped and counted.

use crate::melspec::{LogMel, Spectrogram};
use crate::resample::resample;
use crate::wav::parse_wav;
use serde::{Deserialize, Serialize};
use ssl_framework::data::folder::{self, FolderLabels, SplitFiles};
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How labels and splits are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `fsdd` when FSDD file names are found, else `folders`.
    #[default]
    Auto,
    /// `{digit}_{speaker}_{index}.wav` in the root or `root/recordings/`.
    Fsdd,
    /// `root/{train,test}/<class>/*.wav`, or unlabelled WAVs at any depth.
    Folders,
}

/// The log-mel spectrogram of one WAV file's bytes: decoded, mixed to mono, resampled to the
/// front end's rate (`path` only names the file in errors).
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` when the bytes are not a usable WAV file (see
/// [`parse_wav`]) or cannot be resampled.
pub fn clip_spectrogram(
    path: &Path,
    bytes: &[u8],
    front: &LogMel,
) -> Result<Spectrogram, DataError> {
    let w = parse_wav(path, bytes)?;
    let x = resample(&w.samples, w.sample_rate, front.config().sample_rate).map_err(|reason| {
        DataError::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    Ok(front.compute(&x))
}

/// Decodes, resamples and transforms `files` in parallel; returns per file its spectrogram or
/// the error.
pub fn load_spectrograms(files: &[PathBuf], front: &LogMel) -> Vec<Result<Spectrogram, DataError>> {
    ssl_framework::data::parallel_map(files, |p| {
        let bytes = std::fs::read(p).map_err(|source| DataError::Io {
            path: p.clone(),
            source,
        })?;
        clip_spectrogram(p, &bytes, front)
    })
}

fn wav_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses `{digit}_{speaker}_{index}` from an FSDD file name.
pub fn parse_fsdd_name(path: &Path) -> Option<(usize, String, usize)> {
    let stem = path.file_stem()?.to_str()?;
    let mut parts = stem.split('_');
    let digit: usize = parts.next()?.parse().ok().filter(|d| *d < 10)?;
    let speaker = parts.next()?.to_string();
    let index: usize = parts.next()?.parse().ok()?;
    (parts.next().is_none() && !speaker.is_empty()).then_some((digit, speaker, index))
}

fn fsdd_dir(root: &Path) -> Option<PathBuf> {
    [root.join("recordings"), root.to_path_buf()]
        .into_iter()
        .find(|d| {
            wav_files(d)
                .map(|f| f.iter().any(|p| parse_fsdd_name(p).is_some()))
                .unwrap_or(false)
        })
}

fn collect(
    results: Vec<Result<Spectrogram, DataError>>,
    labels: Vec<Vec<usize>>,
    skipped: &mut usize,
) -> (Vec<Spectrogram>, Vec<Vec<usize>>) {
    let mut items = Vec::new();
    let mut kept: Vec<Vec<usize>> = vec![Vec::new(); labels.first().map(|l| l.len()).unwrap_or(0)];
    for (r, ls) in results.into_iter().zip(labels) {
        match r {
            Ok(s) => {
                items.push(s);
                for (k, l) in ls.into_iter().enumerate() {
                    kept[k].push(l);
                }
            }
            Err(e) => {
                if *skipped < 10 {
                    eprintln!("warning: skipping unreadable audio file: {e}");
                }
                *skipped += 1;
            }
        }
    }
    (items, kept)
}

fn load_fsdd(dir: &Path, front: &LogMel) -> Result<Datasets<Spectrogram>, DataError> {
    let files: Vec<(PathBuf, (usize, String, usize))> = wav_files(dir)?
        .into_iter()
        .filter_map(|p| parse_fsdd_name(&p).map(|n| (p, n)))
        .collect();
    let speakers: Vec<String> = files
        .iter()
        .map(|(_, n)| n.1.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let mut skipped = 0;
    let mut split = |test: bool| {
        let part: Vec<&(PathBuf, (usize, String, usize))> =
            files.iter().filter(|(_, n)| (n.2 < 5) == test).collect();
        let paths: Vec<PathBuf> = part.iter().map(|(p, _)| p.clone()).collect();
        let labels: Vec<Vec<usize>> = part
            .iter()
            .map(|(_, n)| {
                vec![
                    n.0,
                    speakers
                        .iter()
                        .position(|s| *s == n.1)
                        .expect("speaker listed"),
                ]
            })
            .collect();
        let (items, kept) = collect(load_spectrograms(&paths, front), labels, &mut skipped);
        let label_sets = vec![
            LabelSet {
                name: "digit".into(),
                classes: digits.clone(),
                labels: kept[0].clone(),
            },
            LabelSet {
                name: "speaker".into(),
                classes: speakers.clone(),
                labels: kept[1].clone(),
            },
        ];
        Split { items, label_sets }
    };
    let train = split(false);
    let test = split(true);
    Ok(Datasets {
        name: "fsdd".into(),
        train,
        test,
        skipped,
    })
}

fn load_folders(
    root: &Path,
    labels: FolderLabels,
    front: &LogMel,
) -> Result<Datasets<Spectrogram>, DataError> {
    let scan = folder::scan(root, &["wav"], labels)?;
    if !scan.ignored.is_empty() {
        eprintln!(
            "warning: skipping {} in {}",
            folder::ignored_summary(&scan.ignored),
            root.display()
        );
    }
    let mut skipped = scan.ignored.len();
    let mut split = |files: &SplitFiles| -> Split<Spectrogram> {
        let labels: Vec<Vec<usize>> = match &files.labels {
            Some((_, l)) => l.iter().map(|&c| vec![c]).collect(),
            None => vec![Vec::new(); files.files.len()],
        };
        let (items, kept) = collect(load_spectrograms(&files.files, front), labels, &mut skipped);
        let label_sets = match &files.labels {
            Some((classes, _)) => vec![LabelSet {
                name: "class".into(),
                classes: classes.clone(),
                labels: kept.into_iter().next().unwrap_or_default(),
            }],
            None => Vec::new(),
        };
        Split { items, label_sets }
    };
    let train = split(&scan.train);
    let test = match &scan.test {
        Some(files) => split(files),
        None => Split::empty_like(&train),
    };
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "audio".into());
    Ok(Datasets {
        name,
        train,
        test,
        skipped,
    })
}

/// Reads an audio dataset, class folders labelling a split whose entries are only folders.
///
/// # Errors
/// [`DataError`] naming the folder when no layout matches or the training split has no
/// readable file.
pub fn load(
    root: &Path,
    layout: Layout,
    front: &LogMel,
) -> Result<Datasets<Spectrogram>, DataError> {
    load_with_labels(root, layout, FolderLabels::Folders, front)
}

/// As [`load`], with `labels` saying whether class folders label their files
/// ([`FolderLabels::None`]: every WAV unlabelled; FSDD file names still label FSDD files).
///
/// # Errors
/// As [`load`].
pub fn load_with_labels(
    root: &Path,
    layout: Layout,
    labels: FolderLabels,
    front: &LogMel,
) -> Result<Datasets<Spectrogram>, DataError> {
    if !root.is_dir() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "folder does not exist or cannot be read".into(),
        });
    }
    let d = match layout {
        Layout::Fsdd => load_fsdd(
            &fsdd_dir(root).ok_or_else(|| DataError::NoData {
                path: root.to_path_buf(),
                reason: "no FSDD files ({digit}_{speaker}_{index}.wav)".into(),
            })?,
            front,
        )?,
        Layout::Folders => load_folders(root, labels, front)?,
        Layout::Auto => match fsdd_dir(root) {
            Some(dir) => load_fsdd(&dir, front)?,
            None => load_folders(root, labels, front)?,
        },
    };
    if d.train.is_empty() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "the training split has no readable audio file".into(),
        });
    }
    Ok(d)
}
