//! Readers on good and broken lines of every format, the `files` layout's splits and label
//! sets, and the VADER corpora (real files, when the shared data is there).

use ssl_framework::data::LabelSet;
use ssl_text::dataset::{self, DataFormat, Layout, Source};
use ssl_text::reader::{Columns, FileFormat, Skips, parse_records};
use std::path::Path;

fn cols(text: &str, labels: &[&str], header: bool) -> Columns {
    Columns {
        text: text.into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        header,
    }
}

#[test]
fn tsv_skips_ragged_and_non_utf8_lines_with_their_numbers() {
    let p = Path::new("corpus.tsv");
    let mut bytes = b"id\tlabel\ttext\r\n1\tpos\tgood film\r\n2\tneg\r\n".to_vec();
    bytes
        .extend(b"3\tneg\tbad \xff\xfe film\n4\tpos\t\"quoted\" text, kept as is\n\n5\tneg\t   \n");
    let mut skips = Skips::default();
    let r = parse_records(
        p,
        &bytes,
        FileFormat::Tsv,
        &cols("text", &["label"], true),
        &mut skips,
    )
    .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].text.as_str(), r[0].labels[0].as_str(), r[0].line),
        ("good film", "pos", 2)
    );
    assert_eq!(r[1].text, "\"quoted\" text, kept as is");
    assert_eq!(r[1].line, 5);
    assert_eq!(
        skips.count, 3,
        "ragged line 3, invalid UTF-8 on line 4, empty text"
    );
    // A missing named column is an error naming the file and the columns there are.
    let e = parse_records(
        p,
        &bytes,
        FileFormat::Tsv,
        &cols("body", &[], true),
        &mut skips,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("corpus.tsv") && e.contains("body") && e.contains("label"),
        "{e}"
    );
    // Without a header, columns are indices.
    let r = parse_records(
        p,
        b"a\tx\nb\ty\n",
        FileFormat::Tsv,
        &cols("1", &["0"], false),
        &mut Skips::default(),
    )
    .unwrap();
    assert_eq!((r[1].text.as_str(), r[1].labels[0].as_str()), ("y", "b"));
}

#[test]
fn csv_handles_quotes_and_skips_malformed_records() {
    let p = Path::new("c.csv");
    let bytes = b"text,label\n\"hello, world\",a\n\"multi\nline\",b\nonly-one-field\n";
    let mut skips = Skips::default();
    let r = parse_records(
        p,
        bytes,
        FileFormat::Csv,
        &cols("text", &["label"], true),
        &mut skips,
    )
    .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].text, "hello, world");
    assert_eq!(r[1].text, "multi\nline");
    assert_eq!(skips.count, 1);
}

#[test]
fn jsonl_and_lines() {
    let p = Path::new("d.jsonl");
    let bytes = b"{\"text\": \"one\", \"y\": 1}\n{broken\n{\"text\": \"two\"}\n{\"text\": \"three\", \"y\": \"b\"}\n\xff\n";
    let mut skips = Skips::default();
    let r = parse_records(
        p,
        bytes,
        FileFormat::Jsonl,
        &cols("text", &["y"], true),
        &mut skips,
    )
    .unwrap();
    assert_eq!(
        r.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["one", "three"]
    );
    assert_eq!(r[0].labels[0], "1");
    assert_eq!(
        skips.count, 3,
        "malformed JSON, missing label key, invalid UTF-8"
    );
    let mut skips = Skips::default();
    let r = parse_records(
        Path::new("l.txt"),
        b"first\r\n\nsecond\n\xc3\n",
        FileFormat::Lines,
        &cols("text", &[], true),
        &mut skips,
    )
    .unwrap();
    assert_eq!(
        r.iter()
            .map(|r| (r.text.as_str(), r.line))
            .collect::<Vec<_>>(),
        [("first", 1), ("second", 3)]
    );
    assert_eq!(skips.count, 1);
    assert!(
        parse_records(
            Path::new("l.txt"),
            b"x\n",
            FileFormat::Lines,
            &cols("text", &["y"], true),
            &mut Skips::default()
        )
        .is_err()
    );
}

#[test]
fn files_layout_splits_with_a_fixed_seed_and_makes_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (0..100)
        .map(|i| format!("text number {i}\t{}\n", ["x", "y", "z"][i % 3]))
        .collect();
    std::fs::write(dir.path().join("all.tsv"), format!("text\tkind\n{body}")).unwrap();
    let columns = cols("text", &["kind"], true);
    let src = Source {
        layout: Layout::Files,
        format: DataFormat::Auto,
        columns: &columns,
        test_fraction: 0.2,
        split_seed: 0,
    };
    let a = dataset::load(dir.path(), &src).unwrap();
    let b = dataset::load(dir.path(), &src).unwrap();
    assert_eq!((a.train.len(), a.test.len()), (80, 20));
    assert_eq!(a.test.items, b.test.items, "the same split on every run");
    assert_eq!(a.train.label_sets[0].classes, ["x", "y", "z"]);
    assert_eq!(a.train.label_sets[0].name, "kind");
    // train.* and test.* files are used as they are.
    std::fs::write(dir.path().join("train.tsv"), "text\tkind\na b\tx\nc d\ty\n").unwrap();
    std::fs::write(dir.path().join("test.tsv"), "text\tkind\ne f\tx\n").unwrap();
    let d = dataset::load(dir.path(), &src).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (2, 1));
    // A folder without text files names itself.
    let empty = tempfile::tempdir().unwrap();
    let e = dataset::load(empty.path(), &src).unwrap_err().to_string();
    assert!(e.contains(&empty.path().display().to_string()), "{e}");
}

#[test]
fn vader_corpora_split_eighty_twenty_with_sentiment_and_source() {
    let Some(data) = ssl_test_support::shared_data("vader_corpora_split") else {
        return;
    };
    let columns = cols("text", &[], true);
    let src = Source {
        layout: Layout::Auto,
        format: DataFormat::Auto,
        columns: &columns,
        test_fraction: 0.2,
        split_seed: 0,
    };
    let d = dataset::load(&data.join("vader"), &src).unwrap();
    let total = d.train.len() + d.test.len();
    assert_eq!(total, 23_703, "every line of the four files");
    assert_eq!(d.skipped, 0);
    assert_eq!(d.test.len(), (total as f64 * 0.2).round() as usize);
    let names: Vec<&str> = d.train.label_sets.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["sentiment", "source"]);
    assert_eq!(
        d.train.label_sets[1].classes,
        [
            "amazonReviewSnippets",
            "movieReviewSnippets",
            "nytEditorialSnippets",
            "tweets"
        ]
    );
    let neutral = d.train.label_sets[0]
        .labels
        .iter()
        .chain(&d.test.label_sets[0].labels)
        .filter(|&&l| l == LabelSet::UNLABELED)
        .count();
    assert_eq!(neutral, 383, "ratings of exactly 0 have no sentiment sign");
}
