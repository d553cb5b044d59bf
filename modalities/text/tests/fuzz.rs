//! Mutation fuzzing of the text readers (TSV, CSV, JSON Lines, plain lines), of the tokenizer on
//! arbitrary bytes, and of the text config: no input makes them panic, and every error is one
//! line naming the file.

use ssl_test_support::fuzz::{fuzz, iterations};
use ssl_text::reader::{Columns, FileFormat, Skips, parse_records};
use ssl_text::tokenizer::Vocabulary;
use std::path::Path;

fn columns(labels: &[&str]) -> Columns {
    Columns {
        text: "text".into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        header: true,
    }
}

#[test]
fn fuzz_text_readers() {
    let tsv = b"id\ttext\tlabel\r\n1\tgood film\tpos\r\n2\tbad, \"very\" bad\tneg\r\n".to_vec();
    let csv = b"text,label\n\"hello, world\",a\n\"multi\nline\",b\nplain,c\n".to_vec();
    let jsonl =
        b"{\"text\": \"one\", \"label\": 1}\n{\"text\": \"two \\u00e9\", \"label\": \"x\"}\n"
            .to_vec();
    let lines = "first line\nsecond line, caf\u{e9}\n".as_bytes().to_vec();
    for (name, format, seed, labels) in [
        ("fuzz.tsv", FileFormat::Tsv, tsv, vec!["label"]),
        ("fuzz.csv", FileFormat::Csv, csv, vec!["label"]),
        ("fuzz.jsonl", FileFormat::Jsonl, jsonl, vec!["label"]),
        ("fuzz.txt", FileFormat::Lines, lines, vec![]),
    ] {
        let cols = columns(&labels);
        fuzz(name, name, &[seed], iterations(3000), |b| {
            let mut skips = Skips { count: 10 }; // no warnings printed
            parse_records(Path::new(name), b, format, &cols, &mut skips)
        });
    }
}

#[test]
fn fuzz_tokenizer_on_arbitrary_text() {
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "sentence {i} with some words, punctuation! and numbers {}",
                i * 7
            )
        })
        .collect();
    let v = Vocabulary::train(&texts, 400, 2, true).unwrap();
    let seed = "A naïve café — 42% of 🤗 tokens".as_bytes().to_vec();
    fuzz("tokenizer", "", &[seed], iterations(3000), |b| {
        let text = String::from_utf8_lossy(b);
        let ids = v.encode(&text, 64);
        if ids.is_empty() || ids.len() > 64 {
            return Err(format!("{} ids", ids.len()));
        }
        Ok(v.decode(&ids))
    });
}

#[test]
fn fuzz_text_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/text");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    fuzz("text-config", "", &seeds, iterations(3000), |b| {
        let text = std::str::from_utf8(b).map_err(|e| format!("fuzz.toml: not UTF-8: {e}"))?;
        ssl_framework::config::load_config::<ssl_text::TextModality>(text, "fuzz.toml", &[])
            .map_err(|e| e.to_string())
    });
}
