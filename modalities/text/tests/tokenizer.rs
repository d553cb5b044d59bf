//! The byte-level BPE vocabulary: training, special ids, round trip of text through ids, and
//! persistence through the JSON kept in checkpoints (also through the modality's state).

use ssl_framework::modality::Modality;
use ssl_text::tokenizer::{MASK_ID, PAD_ID, UNK_ID, Vocabulary};
use ssl_text::{TextDataConfig, TextModality};

fn corpus() -> Vec<String> {
    let base = [
        "the movie was wonderful and the acting was great",
        "the plot was boring and the ending was terrible",
        "a wonderful, moving film with great music",
        "terrible service; the product broke after one day",
        "great product, works as described",
        "the editorial argues that the city should act now",
    ];
    (0..30)
        .flat_map(|_| base.iter().map(|s| s.to_string()))
        .collect()
}

#[test]
fn trained_vocabulary_has_fixed_special_ids_and_round_trips_text() {
    let v = Vocabulary::train(&corpus(), 400, 2, true).unwrap();
    assert!(v.len() <= 400 && v.len() > 259, "{}", v.len());
    let json = v.to_json();
    assert!(json.contains("[PAD]") && json.contains("[MASK]"));
    let ids = v.encode("The movie was GREAT", 64);
    assert!(
        ids.iter()
            .all(|&i| i != PAD_ID && i != MASK_ID && i != UNK_ID)
    );
    assert!(ids.len() <= 5, "frequent words are single tokens: {ids:?}");
    assert_eq!(
        v.decode(&ids),
        "the movie was great",
        "lowercased round trip"
    );
    // Every text round-trips, unseen characters included (bytes are the base alphabet).
    for text in ["naïve café ☃ — 42%", "tabs\tand  double  spaces", "x"] {
        assert_eq!(v.decode(&v.encode(text, 256)), text.to_lowercase());
    }
    // An empty text is [UNK], never an empty sequence.
    assert_eq!(v.encode("", 64), vec![UNK_ID]);
    // Truncation.
    let long = "great ".repeat(100);
    assert_eq!(v.encode(&long, 16).len(), 16);
}

#[test]
fn vocabulary_persists_through_json_and_training_is_deterministic() {
    let v = Vocabulary::train(&corpus(), 400, 2, true).unwrap();
    let back = Vocabulary::from_json(&v.to_json()).unwrap();
    let text = "the acting was wonderful, the plot terrible";
    assert_eq!(v.encode(text, 64), back.encode(text, 64));
    assert_eq!(back.to_json(), v.to_json());
    let again = Vocabulary::train(&corpus(), 400, 2, true).unwrap();
    assert_eq!(again.to_json(), v.to_json(), "same texts, same vocabulary");
    assert!(Vocabulary::from_json("{not json").is_err());
}

#[test]
fn modality_state_restores_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = corpus()
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{t}\t{}\n", i % 2))
        .collect();
    std::fs::write(
        dir.path().join("corpus.tsv"),
        format!("text\tlabel\n{lines}"),
    )
    .unwrap();
    let cfg = TextDataConfig {
        label_columns: vec!["label".into()],
        vocab_size: 300,
        ..Default::default()
    };
    let m = TextModality::default();
    m.load(&cfg, dir.path()).unwrap();
    let state = m.state();
    let fresh = TextModality::default();
    fresh.restore_state(&state).unwrap();
    assert_eq!(
        fresh.vocabulary().unwrap().to_json(),
        m.vocabulary().unwrap().to_json()
    );
    assert!(
        fresh
            .restore_state(&serde_json::json!({"tokenizer": "[]"}))
            .is_err()
    );
}

#[test]
fn a_saved_vocabulary_is_loaded_instead_of_trained() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = corpus().iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(dir.path().join("corpus.txt"), &lines).unwrap();
    let saved = Vocabulary::train(&corpus(), 300, 2, true).unwrap();
    let file = dir.path().join("tokenizer.json");
    std::fs::write(&file, saved.to_json()).unwrap();
    let cfg = TextDataConfig {
        tokenizer: file.display().to_string(),
        vocab_size: 300,
        ..Default::default()
    };
    let m = TextModality::default();
    m.load(&cfg, &dir.path().join("corpus.txt")).unwrap();
    assert_eq!(m.vocabulary().unwrap().to_json(), saved.to_json());
    // Too large for the embedding table, or not a tokenizer: errors naming the file.
    let small = TextDataConfig {
        vocab_size: 100,
        ..cfg.clone()
    };
    let e = m
        .load(&small, &dir.path().join("corpus.txt"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("data.vocab_size"),
        "{e}"
    );
    std::fs::write(&file, "{}").unwrap();
    let e = m
        .load(&cfg, &dir.path().join("corpus.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}
