//! `ssl`: BYOL self-supervised pre-training for any modality.

mod allocator;
mod bench;
mod checkpoint_cmds;
mod cli;
mod common;
mod devices;
mod grid;
mod modalities;
mod ranks;
mod search_cmd;
mod signals;

use ssl_framework::train::TrainError;

fn main() {
    allocator::keep_freed_buffers();
    signals::default_sigpipe();
    // Under an MPI launcher, this rank's share of the machine's cores.
    ranks::share_cores();
    #[cfg(feature = "flex")]
    if let Err(e) = ssl_kernels::conv2d::conv_choice_from_env() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if let Err(e) = cli::run() {
        // Under MPI every rank meets a bad config or a stop signal alike: rank 0 alone reports
        // it.
        let ranks = ranks::launched_ranks().unwrap_or(1);
        let rank = ranks::world_rank();
        let same_everywhere = e.chain().any(|c| {
            c.downcast_ref::<ssl_framework::config::ConfigError>()
                .is_some()
                || c.downcast_ref::<ranks::BuiltWithoutMpi>().is_some()
                || matches!(
                    c.downcast_ref::<TrainError>(),
                    Some(TrainError::Config(_) | TrainError::Interrupted { .. })
                )
        });
        if ranks > 1 && rank > 0 && same_everywhere {
            // Rank 0 says it: wait for it to, as mpirun ends the job at the first rank's exit.
            std::thread::sleep(std::time::Duration::from_secs(3));
            std::process::exit(1);
        }
        common::say_line(&format!("error: {}", common::one_line(&e)));
        // A run stopped by SIGINT/SIGTERM says how to go on, and exits as the signal would.
        let interrupted = e
            .chain()
            .find_map(|c| match c.downcast_ref::<TrainError>() {
                Some(TrainError::Interrupted {
                    signal, checkpoint, ..
                }) => Some((*signal, checkpoint.clone())),
                _ => None,
            });
        if let Some((signal, checkpoint)) = interrupted {
            let args: Vec<String> = std::env::args().collect();
            // `<out>/checkpoints/step-N` of `ssl train`; a search resumes from its own folder.
            let out = (args.get(1).map(String::as_str) == Some("train"))
                .then(|| checkpoint.parent().and_then(std::path::Path::parent))
                .flatten();
            let mut command = signals::resume_command_here(&args, out);
            if ranks > 1 {
                // Under the same launcher (`cd DIR && ssl ...` becomes `cd DIR && mpirun -np N ssl ...`).
                let launch = format!("mpirun -np {ranks} ");
                command = match command.find(" && ") {
                    Some(i) => format!("{}{launch}{}", &command[..i + 4], &command[i + 4..]),
                    None => format!("{launch}{command}"),
                };
            }
            common::say_line(&format!("resume with: {command}"));
            std::process::exit(128 + signal as i32);
        }
        std::process::exit(1);
    }
}
