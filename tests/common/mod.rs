//! Helpers shared by the end-to-end tests: run the `ssl` binary and read what it printed.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `ssl` binary with `args` (no `SSL_DATA_DIR` from the environment).
pub fn ssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .env_remove("SSL_DATA_DIR")
        .output()
        .expect("run ssl")
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the run failed with exactly one `error:` line, the last one printed, containing
/// every one of `needles`, and without a panic; returns that line.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:"),
        "the error is the last line: {err}"
    );
    for n in needles {
        assert!(last.contains(n), "expected `{n}` in: {last}");
    }
    last.to_string()
}
