//! `ssl`: BYOL self-supervised pre-training for any modality.

mod bench;
mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {}", cli::one_line(&e));
        std::process::exit(1);
    }
}
