//! `ssl`: BYOL self-supervised pre-training for any modality.

mod allocator;
mod bench;
mod checkpoint_cmds;
mod cli;
mod grid;
mod plot;
mod search_cmd;

fn main() {
    allocator::keep_freed_buffers();
    #[cfg(feature = "flex")]
    if let Err(e) = ssl_kernels::conv2d::conv_choice_from_env() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if let Err(e) = cli::run() {
        eprintln!("error: {}", cli::one_line(&e));
        std::process::exit(1);
    }
}
