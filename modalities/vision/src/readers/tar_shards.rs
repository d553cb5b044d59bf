//! WebDataset-style tar shards: `--data 'shards/train-{0000..0127}.tar'`. A sample is the
//! members that share a key (the member's path up to the first `.` of its file name): an image
//! (`.jpg`, `.png`, ... any of [`EXTENSIONS`]) and, optionally, its class (`.cls`: the class
//! index as text). `classes.txt` beside the shards (one name per line) names the classes;
//! without it they are named by their index.
//!
//! Reading indexes the shards (member headers only: offsets and sizes; `.cls` members are
//! read, they are a few bytes) and then streams: each image is read with one positioned read
//! and decoded when its batch is prepared. The epoch's order reads the shards sequentially
//! ([`shard_order`]): a seeded order of the shards, their samples in stored order, through a
//! seeded shuffle buffer of [`SHUFFLE_BUFFER`] samples. It is a pure function of the seed and
//! the epoch, so a resumed run reads what an uninterrupted one did.
//!
//! The held-out split: the shards named as the training pattern with `train` replaced by
//! `test` (else `val`), any number of them (`test-0000.tar`, `test-0001.tar`, ...). [`write_shards`] (`ssl shard`) writes shards from an
//! image folder, shuffled so that every shard mixes the classes.

use super::image_folder::EXTENSIONS;
use crate::image::{EncodedImage, ImageRecord, ImageSource};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use ssl_framework::data::loader::mix64;
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The number of samples the epoch's shuffle buffer holds (WebDataset's `shuffle(n)`).
pub const SHUFFLE_BUFFER: usize = 4096;

/// Whether `data` names tar shards: a file name ending in `.tar` (one shard, or a pattern with
/// a `{first..last}` range).
pub fn is_shard_spec(data: &Path) -> bool {
    data.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".tar"))
}

/// Expands one `{first..last}` range of a shard pattern (zero-padded to the width of `first`):
/// `train-{00..02}.tar` gives `train-00.tar`, `train-01.tar`, `train-02.tar`. A name without a
/// range is one shard.
///
/// # Errors
/// [`DataError::Unusable`] naming the pattern when its range is malformed.
pub fn expand(pattern: &Path) -> Result<Vec<PathBuf>, DataError> {
    let text = pattern.to_string_lossy();
    let bad = |why: &str| DataError::Unusable(format!("--data {text}: {why}"));
    let Some(open) = text.find('{') else {
        return Ok(vec![pattern.to_path_buf()]);
    };
    let close = text[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| bad("a '{' without '}'"))?;
    let (first, last) = text[open + 1..close]
        .split_once("..")
        .ok_or_else(|| bad("expected a range like {0000..0127}"))?;
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| bad("the range's ends must be whole numbers"))
    };
    let (a, b) = (parse(first)?, parse(last)?);
    if b < a {
        return Err(bad("the range ends before it starts"));
    }
    if b - a >= 1_000_000 {
        return Err(bad("more than a million shards"));
    }
    let width = first.len();
    Ok((a..=b)
        .map(|i| {
            PathBuf::from(format!(
                "{}{i:0width$}{}",
                &text[..open],
                &text[close + 1..]
            ))
        })
        .collect())
}

/// A sample's key and member kind: `dir/000123.jpg` gives (`dir/000123`, `jpg`).
fn key_and_kind(name: &str) -> Option<(&str, &str)> {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[file_start..].find('.')? + file_start;
    Some((&name[..dot], &name[dot + 1..]))
}

/// A sample of a shard: its image and its class index (from its `.cls` member).
type ShardSample = (ImageRecord, Option<usize>);

/// The samples of one shard, in stored order, and the number of members skipped (neither an
/// image nor a class).
fn index_shard(shard: &Arc<PathBuf>) -> Result<(Vec<ShardSample>, usize), DataError> {
    use std::io::Read;
    let io = |source| DataError::Io {
        path: shard.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| DataError::Corrupt {
        path: shard.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(shard.as_path()).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut archive = tar::Archive::new(file);
    let mut samples: Vec<ShardSample> = Vec::new();
    let mut classes: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut skipped = 0;
    for entry in archive.entries_with_seek().map_err(io)? {
        let mut entry = entry.map_err(|e| corrupt(format!("not a tar file: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .to_string();
        let Some((key, kind)) = key_and_kind(&name) else {
            skipped += 1;
            continue;
        };
        let kind = kind.to_ascii_lowercase();
        if kind == "cls" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
            match text.trim().parse::<usize>() {
                Ok(c) => {
                    classes.insert(key.to_string(), c);
                }
                Err(_) => {
                    eprintln!(
                        "warning: {}:{name}: not a class index ({:?}); the sample is unlabelled",
                        shard.display(),
                        text.trim()
                    );
                }
            }
        } else if EXTENSIONS.contains(&kind.as_str()) {
            let (offset, len) = (entry.raw_file_position(), entry.size());
            if offset.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(corrupt(format!(
                    "{name}: its header says {len} bytes at byte {offset}, past the end of the file ({file_len} bytes)"
                )));
            }
            keys.insert(key.to_string(), samples.len());
            samples.push((
                ImageRecord::Encoded(EncodedImage {
                    source: ImageSource::TarMember {
                        shard: shard.clone(),
                        name: name.clone().into_boxed_str(),
                        offset,
                        len,
                    },
                    width: 0,
                    height: 0,
                    decode_at_crop_scale: true,
                }),
                None,
            ));
        } else {
            skipped += 1;
        }
    }
    for (key, class) in classes {
        if let Some(&i) = keys.get(&key) {
            samples[i].1 = Some(class);
        }
    }
    Ok((samples, skipped))
}

/// Indexes `shards` (in parallel, at most 16 threads) into one split: the records in shard
/// order, and one label set `class` when any sample has a `.cls` member (the others
/// [`LabelSet::UNLABELED`]). `class_names` names the classes; without them, classes are named
/// by index. Returns the split and the members skipped.
///
/// # Errors
/// [`DataError`] naming a shard that cannot be opened or is not a tar file.
pub fn index_split(
    shards: &[PathBuf],
    class_names: Option<&[String]>,
) -> Result<(Split<ImageRecord>, usize), DataError> {
    let results = ssl_framework::data::parallel_map(shards, |p| index_shard(&Arc::new(p.clone())));
    let mut items = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = 0;
    for r in results {
        let (samples, s) = r?;
        skipped += s;
        for (record, class) in samples {
            items.push(record);
            labels.push(class);
        }
    }
    let label_sets = if labels.iter().any(Option::is_some) {
        let max = labels.iter().flatten().max().copied().unwrap_or(0);
        let classes: Vec<String> = match class_names {
            Some(names) if names.len() > max => names.to_vec(),
            _ => (0..=max).map(|c| c.to_string()).collect(),
        };
        vec![LabelSet {
            name: "class".into(),
            classes,
            labels: labels
                .into_iter()
                .map(|l| l.unwrap_or(LabelSet::UNLABELED))
                .collect(),
        }]
    } else {
        Vec::new()
    };
    Ok((Split { items, label_sets }, skipped))
}

/// The shards of the held-out split for a training pattern: `train` replaced by `test`, else
/// `val`, in the file name; a `{first..last}` range then stands for every shard of that name
/// in the folder (`test-0000.tar`, `test-0001.tar`, ...: the held-out split usually has fewer
/// shards), sorted.
fn held_out_shards(pattern: &Path) -> Option<Vec<PathBuf>> {
    let name = pattern.file_name()?.to_str()?;
    if !name.contains("train") {
        return None;
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    ["test", "val"].iter().find_map(|other| {
        let candidate = name.replacen("train", other, 1);
        let shards: Vec<PathBuf> = match (candidate.find('{'), candidate.find('}')) {
            (Some(open), Some(close)) if open < close => {
                let (prefix, suffix) = (&candidate[..open], &candidate[close + 1..]);
                let width = candidate[open + 1..close]
                    .split_once("..")
                    .map_or(0, |(a, _)| a.len());
                let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                    .ok()?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| {
                        n.len() == prefix.len() + width + suffix.len()
                            && n.starts_with(prefix)
                            && n.ends_with(suffix)
                            && n[prefix.len()..n.len() - suffix.len()]
                                .bytes()
                                .all(|b| b.is_ascii_digit())
                    })
                    .map(|n| dir.join(n))
                    .collect();
                found.sort();
                found
            }
            _ => vec![dir.join(&candidate)],
        };
        (!shards.is_empty() && shards.iter().all(|p| p.is_file())).then_some(shards)
    })
}

/// A warning line when the numbered held-out shards skip a number (a shard missing from the
/// set `ssl shard` wrote), `None` when they are consecutive.
fn numbering_gap(shards: &[PathBuf]) -> Option<String> {
    let number = |p: &PathBuf| -> Option<u64> {
        let name = p.file_stem()?.to_str()?;
        let digits: String = name
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.chars().rev().collect::<String>().parse().ok()
    };
    let numbers: Vec<u64> = shards.iter().filter_map(number).collect();
    let gap = numbers.windows(2).find(|w| w[1] != w[0] + 1)?;
    Some(format!(
        "warning: the held-out shards skip from {} to {} in {}: is a shard missing?",
        gap[0],
        gap[1],
        shards[0].parent().unwrap_or(Path::new(".")).display()
    ))
}

/// Reads tar shards (see the module documentation).
///
/// # Errors
/// [`DataError`] naming the pattern when a shard is missing or malformed, or when the shards
/// hold no image.
pub fn load(pattern: &Path) -> Result<Datasets<ImageRecord>, DataError> {
    let shards = expand(pattern)?;
    if let Some(missing) = shards.iter().find(|p| !p.is_file()) {
        return Err(DataError::NoData {
            path: missing.clone(),
            reason: format!(
                "no such shard ({} named by {})",
                shards.len(),
                pattern.display()
            ),
        });
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let class_names: Option<Vec<String>> = std::fs::read_to_string(dir.join("classes.txt"))
        .ok()
        .map(|t| t.lines().map(str::to_string).collect());
    let (train, s1) = index_split(&shards, class_names.as_deref())?;
    if train.is_empty() {
        return Err(DataError::NoData {
            path: pattern.to_path_buf(),
            reason: format!(
                "no image members ({})",
                ssl_framework::data::folder::describe(&EXTENSIONS)
            ),
        });
    }
    let (test, s2) = match held_out_shards(pattern) {
        Some(shards) => {
            if let Some(warning) = numbering_gap(&shards) {
                eprintln!("{warning}");
            }
            index_split(&shards, class_names.as_deref())?
        }
        None => (Split::empty_like(&train), 0),
    };
    if s1 + s2 > 0 {
        eprintln!(
            "warning: skipping {} shard members that are neither images nor .cls",
            s1 + s2
        );
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "shards".into());
    Ok(Datasets {
        name,
        train,
        test,
        skipped: s1 + s2,
    })
}

/// Whether every record is a tar member (the epoch then reads shards sequentially).
pub fn all_tar_members(items: &[ImageRecord]) -> bool {
    !items.is_empty()
        && items.iter().all(|r| {
            matches!(
                r,
                ImageRecord::Encoded(EncodedImage {
                    source: ImageSource::TarMember { .. },
                    ..
                })
            )
        })
}

/// The order of `epoch` over records stored in shards, reading them sequentially: the shards
/// in a seeded order, each shard's samples in stored order, through a seeded shuffle buffer of
/// `buffer` samples (a random one of the buffered samples is emitted as each new one comes
/// in). `shard_of[i]` is record `i`'s shard (records of a shard contiguous). A permutation of
/// `0..shard_of.len()`, the same for the same seed and epoch.
pub fn shard_order(shard_of: &[usize], seed: u64, epoch: usize, buffer: usize) -> Vec<usize> {
    let n = shard_of.len();
    // The records of each shard: contiguous ranges.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        match ranges.last_mut() {
            Some((_, end)) if shard_of[i] == shard_of[i - 1] => *end = i + 1,
            _ => ranges.push((i, i + 1)),
        }
    }
    let mut rng = StdRng::seed_from_u64(mix64(seed ^ 0x5AA2_D0F0_0000) ^ epoch as u64);
    ranges.shuffle(&mut rng);
    let mut pool: Vec<usize> = Vec::with_capacity(buffer.max(1));
    let mut order = Vec::with_capacity(n);
    use rand::RngExt;
    for i in ranges.into_iter().flat_map(|(a, b)| a..b) {
        if pool.len() < buffer.max(1) {
            pool.push(i);
            continue;
        }
        let k = rng.random_range(0..pool.len());
        order.push(std::mem::replace(&mut pool[k], i));
    }
    pool.shuffle(&mut rng);
    order.extend(pool);
    order
}

/// The shard index of each record (records of one shard get one index, in shard order).
pub fn shard_indices(items: &[ImageRecord]) -> Vec<usize> {
    let mut out = Vec::with_capacity(items.len());
    let mut last: Option<&Arc<PathBuf>> = None;
    let mut k = 0usize;
    for r in items {
        if let ImageRecord::Encoded(EncodedImage {
            source: ImageSource::TarMember { shard, .. },
            ..
        }) = r
        {
            if let Some(prev) = last
                && !Arc::ptr_eq(prev, shard)
            {
                k += 1;
            }
            last = Some(shard);
        }
        out.push(k);
    }
    out
}

/// What [`write_shards`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardsWritten {
    /// The training shards' pattern (`out/train-{0000..NNNN}.tar`).
    pub train_pattern: PathBuf,
    /// The training shards and samples.
    pub train: (usize, usize),
    /// The held-out shards and samples (none when the folder has no held-out split).
    pub test: (usize, usize),
}

/// Writes an image folder's splits as tar shards of `per_shard` samples into `out`:
/// `train-0000.tar`, ... and `test-0000.tar`, ... (the held-out split, when there is one), each
/// sample an image member (its file's bytes, unchanged) named `<key>.<ext>` and, when the split
/// is labelled, `<key>.cls`; `classes.txt` names the classes. The samples are shuffled with
/// `seed` first, so every shard mixes the classes (the reader's shuffle buffer is local). Each
/// shard is written to a temporary file and renamed.
///
/// # Errors
/// [`DataError`] naming the folder, an unreadable image file, or the shard being written.
pub fn write_shards(
    folder: &Path,
    labels: ssl_framework::data::folder::FolderLabels,
    out: &Path,
    per_shard: usize,
    seed: u64,
) -> Result<ShardsWritten, DataError> {
    let has_shards = std::fs::read_dir(out).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "tar"))
    });
    if has_shards {
        return Err(DataError::Unusable(format!(
            "--out {}: holds .tar files already (shards of another run would mix with these): choose an empty or new folder",
            out.display()
        )));
    }
    let d = super::image_folder::load(folder, labels)?;
    std::fs::create_dir_all(out).map_err(|source| DataError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let per_shard = per_shard.max(1);
    let write_split =
        |split: &Split<ImageRecord>, prefix: &str| -> Result<(usize, usize), DataError> {
            let mut order: Vec<usize> = (0..split.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            let labels = split.label_sets.first().map(|ls| &ls.labels);
            let shards = order.len().div_ceil(per_shard);
            for (s, chunk) in order.chunks(per_shard).enumerate() {
                let path = out.join(format!("{prefix}-{s:04}.tar"));
                let tmp = out.join(format!(".{prefix}-{s:04}.tar.partial"));
                let io = |source| DataError::Io {
                    path: tmp.clone(),
                    source,
                };
                let mut builder = tar::Builder::new(std::fs::File::create(&tmp).map_err(io)?);
                for &i in chunk {
                    let ImageRecord::Encoded(enc) = &split.items[i] else {
                        continue;
                    };
                    let bytes = enc.source.read()?;
                    let ext = enc
                        .source
                        .path()
                        .extension()
                        .map(|e| e.to_string_lossy().to_ascii_lowercase())
                        .unwrap_or_else(|| "jpg".into());
                    let key = format!("{i:08}");
                    append(&mut builder, &format!("{key}.{ext}"), &bytes).map_err(io)?;
                    if let Some(l) = labels.map(|l| l[i]).filter(|&l| l != LabelSet::UNLABELED) {
                        append(
                            &mut builder,
                            &format!("{key}.cls"),
                            l.to_string().as_bytes(),
                        )
                        .map_err(io)?;
                    }
                }
                builder
                    .into_inner()
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
            }
            Ok((shards, split.len()))
        };
    let train = write_split(&d.train, "train")?;
    let test = if d.test.is_empty() {
        (0, 0)
    } else {
        write_split(&d.test, "test")?
    };
    if let Some(ls) = d.train.label_sets.first() {
        ssl_framework::fsutil::write_atomic(
            &out.join("classes.txt"),
            (ls.classes.join("\n") + "\n").as_bytes(),
        )
        .map_err(|source| DataError::Io {
            path: out.join("classes.txt"),
            source,
        })?;
    }
    let last = train.0.saturating_sub(1);
    Ok(ShardsWritten {
        train_pattern: out.join(format!("train-{{0000..{last:04}}}.tar")),
        train,
        test,
    })
}

fn append(
    builder: &mut tar::Builder<std::fs::File>,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_with_padding_and_reject_malformed_ranges() {
        let v = expand(Path::new("s/train-{0008..0011}.tar")).unwrap();
        assert_eq!(
            v,
            [
                "s/train-0008.tar",
                "s/train-0009.tar",
                "s/train-0010.tar",
                "s/train-0011.tar"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            expand(Path::new("a.tar")).unwrap(),
            vec![PathBuf::from("a.tar")]
        );
        for bad in ["x-{3..1}.tar", "x-{a..b}.tar", "x-{1-2}.tar", "x-{1..2.tar"] {
            assert!(expand(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(is_shard_spec(Path::new("d/train-{0..3}.tar")));
        assert!(!is_shard_spec(Path::new("d/train.tar.gz")));
    }

    #[test]
    fn a_gap_in_the_held_out_shard_numbers_is_named() {
        let p = |n: &[&str]| n.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            numbering_gap(&p(&["s/test-0000.tar", "s/test-0001.tar"])),
            None
        );
        let w = numbering_gap(&p(&[
            "s/test-0000.tar",
            "s/test-0001.tar",
            "s/test-0003.tar",
        ]));
        assert!(w.unwrap().contains("skip from 1 to 3"));
    }

    #[test]
    fn keys_are_the_name_up_to_the_first_dot_of_the_file_name() {
        assert_eq!(key_and_kind("a.b/0001.jpg"), Some(("a.b/0001", "jpg")));
        assert_eq!(key_and_kind("0001.seg.png"), Some(("0001", "seg.png")));
        assert_eq!(key_and_kind("README"), None);
    }

    #[test]
    fn shard_order_is_a_seeded_permutation_that_reads_shards_in_runs() {
        // 6 shards of 100 records.
        let shard_of: Vec<usize> = (0..600).map(|i| i / 100).collect();
        let o = shard_order(&shard_of, 3, 0, 50);
        let mut sorted = o.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..600).collect::<Vec<_>>());
        assert_eq!(o, shard_order(&shard_of, 3, 0, 50));
        assert_ne!(o, shard_order(&shard_of, 3, 1, 50));
        // Shards are read one after another: output k < 50 leaves the buffer when input 50 + k
        // comes in, so the first 50 outputs all come from the first shard read, mixed.
        let first = shard_of[o[0]];
        assert!(o[..50].iter().all(|&i| shard_of[i] == first));
        assert!(
            o[..50].windows(2).any(|w| w[0] > w[1]),
            "the buffer mixes the order"
        );
        // A buffer of one reads the shards' records in stored order.
        let plain = shard_order(&shard_of, 3, 0, 1);
        assert!(
            plain
                .chunks(100)
                .all(|c| c.windows(2).all(|w| w[1] == w[0] + 1))
        );
    }
}
