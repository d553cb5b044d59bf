//! SIGINT and SIGTERM (Ctrl-C; a cluster's pre-emption): while training, the first asks the
//! run to stop after the optimizer step under way, which writes a checkpoint and ends with
//! `TrainError::Interrupted`; a second signal, or any signal during the evaluation after
//! training (whose final checkpoint is written), ends the process at once (exit 128 + signal).
//! SIGPIPE ends it quietly, as any Unix tool whose reader went away.

use ssl_framework::train::StopRequest;
use std::path::Path;
use std::sync::OnceLock;

static STOP: OnceLock<StopRequest> = OnceLock::new();

/// The process's stop request, set by SIGINT or SIGTERM once [`install`] ran.
pub fn stop_request() -> StopRequest {
    STOP.get_or_init(StopRequest::new).clone()
}

/// Restores SIGPIPE's default action (the Rust runtime ignores it, so that printing to a closed
/// pipe, as in `ssl train ... | head`, would panic instead of ending the process quietly).
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler code, at start-up before any thread
    // exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Installs the handlers (once per process; later calls do nothing).
///
/// # Errors
/// The operating system's refusal to install a handler.
pub fn install() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        static INSTALLED: OnceLock<()> = OnceLock::new();
        if INSTALLED.get().is_some() {
            return Ok(());
        }
        let stop = stop_request();
        // Set by the first signal, and by the run once evaluation starts (nothing to lose).
        let immediate = stop.immediate_cell();
        for signal in [SIGINT, SIGTERM] {
            // In this order: a signal that finds `immediate` set exits; otherwise it only sets
            // it and records which signal asked.
            flag::register_conditional_shutdown(signal, 128 + signal, immediate.clone())?;
            flag::register(signal, immediate.clone())?;
            flag::register_usize(signal, stop.cell(), signal as usize)?;
        }
        stop.mark_handled();
        let _ = INSTALLED.set(());
    }
    Ok(())
}

/// The command that resumes this process's run, from any folder: `cd` to this process's
/// working folder, then its own arguments without `--resume`, with `--out OUT` when they had
/// none, then `--resume`; each word quoted for a POSIX shell when it needs it.
pub fn resume_command_here(args: &[String], out: Option<&Path>) -> String {
    match std::env::current_dir() {
        Ok(dir) => format!(
            "cd {} && {}",
            shell_quote(&dir.display().to_string()),
            resume_command(args, out)
        ),
        Err(_) => resume_command(args, out),
    }
}

/// [`resume_command_here`] without the `cd`.
pub fn resume_command(args: &[String], out: Option<&Path>) -> String {
    let mut words: Vec<String> = args.iter().filter(|a| *a != "--resume").cloned().collect();
    let has_out = words
        .iter()
        .any(|a| a == "--out" || a.starts_with("--out="));
    if !has_out && let Some(out) = out {
        words.push("--out".into());
        words.push(out.display().to_string());
    }
    words.push("--resume".into());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as a POSIX shell reads it back: unchanged when it has only safe characters, else in
/// single quotes.
fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_command_keeps_the_arguments_and_adds_out_and_resume() {
        let args: Vec<String> = [
            "ssl",
            "train",
            "--modality",
            "vision",
            "--set",
            "optim.optimizer=\"sgd\"",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            resume_command(&args, Some(Path::new("runs/a b"))),
            "ssl train --modality vision --set 'optim.optimizer=\"sgd\"' --out 'runs/a b' --resume"
        );
        let args: Vec<String> = ["ssl", "train", "--out", "r", "--resume"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            resume_command(&args, Some(Path::new("x"))),
            "ssl train --out r --resume"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
