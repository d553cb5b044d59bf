//! `ssl`: BYOL self-supervised pre-training for any modality.

mod allocator;
mod bench;
mod checkpoint_cmds;
mod cli;
mod common;
mod grid;
mod modalities;
mod search_cmd;

fn main() {
    allocator::keep_freed_buffers();
    #[cfg(feature = "flex")]
    if let Err(e) = ssl_kernels::conv2d::conv_choice_from_env() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if let Err(e) = cli::run() {
        eprintln!("error: {}", common::one_line(&e));
        std::process::exit(1);
    }
}
