//! The log-mel front end against librosa's reference values (fixture made by
//! `scripts/make_logmel_fixture.py`: two FSDD clips and a chirp, 0.3 s at 16 kHz).

use ssl_audio::melspec::{LogMel, LogMelConfig};

#[test]
fn logmel_matches_librosa_reference() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/logmel_reference.json"
    ))
    .unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let front = LogMel::new(LogMelConfig::default());
    let clips = fixture["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 3);
    for clip in clips {
        let name = clip["name"].as_str().unwrap();
        let signal: Vec<f32> = clip["signal"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let reference: Vec<Vec<f64>> = clip["logmel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let ours = front.compute(&signal);
        assert_eq!(ours.n_mels, reference.len(), "{name}: bands");
        assert_eq!(ours.frames, reference[0].len(), "{name}: frames");
        let (mut max_err, mut sum_err, mut n) = (0f64, 0f64, 0usize);
        for (m, row) in reference.iter().enumerate() {
            for (t, r) in row.iter().enumerate() {
                // Bins near the log floor (power < 1e-6) amplify float32 rounding: compare the rest.
                if *r < -13.8 {
                    continue;
                }
                let e = (ours.at(m, t) as f64 - r).abs();
                max_err = max_err.max(e);
                sum_err += e;
                n += 1;
            }
        }
        assert!(n > 500, "{name}: only {n} bins compared");
        let mean_err = sum_err / n as f64;
        eprintln!("{name}: {n} bins, max abs diff {max_err:.2e}, mean {mean_err:.2e}");
        // Stated tolerance: at most 0.01 (1%) anywhere, 0.001 on average, in natural-log units.
        assert!(
            max_err < 1e-2 && mean_err < 1e-3,
            "{name}: max |diff| {max_err}, mean {mean_err}"
        );
    }
}
