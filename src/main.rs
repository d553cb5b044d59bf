//! `ssl`: BYOL self-supervised pre-training for any modality.

mod bench;
mod cli;
mod plot;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {}", cli::one_line(&e));
        std::process::exit(1);
    }
}
