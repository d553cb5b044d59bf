//! Checkpoints: `checkpoints/step-NNNNNNNN/` holding the online and target networks
//! (`online.bpk`, `target.bpk`: parameters and BatchNorm statistics, burn's burnpack format),
//! the optimizer state (`optimizer.bpk`) and `state.json` (step, config). A checkpoint is written
//! into a temporary folder and renamed into place, so a crash never leaves a broken one; the
//! newest `keep` are kept.

pub mod pretrained;

pub use pretrained::{
    Pretrained, checkpoint_config, checkpoint_modality, find_checkpoint, load_encoder,
    load_pretrained, random_init_encoder,
};

pub use crate::error::CheckpointError;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The run's position and identity, stored as `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// The modality's name ([`Modality::name`](crate::Modality::name); empty in checkpoints
    /// written before it was recorded).
    #[serde(default)]
    pub modality: String,
    /// Optimizer steps done.
    pub step: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// Seconds of training before this checkpoint (summed over resumed segments).
    pub train_seconds: f64,
    /// The resolved config (resume requires the same one).
    pub config: serde_json::Value,
    /// The modality's data-derived state ([`Modality::state`](crate::Modality::state)).
    #[serde(default)]
    pub modality_state: serde_json::Value,
    /// Optimizer steps (1-based) whose update was skipped after a non-finite loss or gradient.
    #[serde(default)]
    pub skipped_steps: Vec<usize>,
    /// The data folder the run pre-trained on, as given (absolute when it could be made so):
    /// where `ssl eval` and `ssl embed` read by default. `None` in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_root: Option<PathBuf>,
    /// The number of data-parallel ranks that wrote it (1 in older checkpoints). A resume may
    /// use another number: the global batch stays the config's.
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

fn one_rank() -> usize {
    1
}

/// The folder of the checkpoint at `step`.
pub fn checkpoint_dir(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

/// Steps of the complete checkpoints under `root`, ascending.
pub fn list_checkpoints(root: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path().join("state.json").is_file().then_some(step)
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Writes a checkpoint atomically: `write_files` fills a temporary folder, which is then
/// renamed to `step-NNNNNNNN`; older checkpoints beyond the newest `keep` are removed.
///
/// # Errors
/// [`CheckpointError`] naming the folder when a write or the rename fails; earlier checkpoints
/// are untouched then.
pub fn save_checkpoint(
    root: &Path,
    state: &CheckpointState,
    keep: usize,
    write_files: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(root).map_err(|e| CheckpointError::new(root, e))?;
    let final_dir = checkpoint_dir(root, state.step);
    let tmp = root.join(format!(
        ".tmp-step-{:08}-{}",
        state.step,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| CheckpointError::new(&tmp, e))?;
    let result = (|| {
        write_files(&tmp).map_err(|e| CheckpointError::new(&tmp, e))?;
        // The files reach the disk before the rename makes the folder a checkpoint.
        for entry in fs::read_dir(&tmp).map_err(|e| CheckpointError::new(&tmp, e))? {
            let path = entry.map_err(|e| CheckpointError::new(&tmp, e))?.path();
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| CheckpointError::new(&path, e))?;
        }
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        crate::fsutil::write_atomic(&tmp.join("state.json"), &json)
            .map_err(|e| CheckpointError::new(&tmp, e))?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(|e| CheckpointError::new(&final_dir, e))?;
        }
        fs::rename(&tmp, &final_dir).map_err(|e| CheckpointError::new(&final_dir, e))
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let steps = list_checkpoints(root);
    if steps.len() > keep {
        for old in &steps[..steps.len() - keep] {
            let _ = fs::remove_dir_all(checkpoint_dir(root, *old));
        }
    }
    Ok(final_dir)
}

/// Reads `state.json` of a checkpoint folder.
///
/// # Errors
/// [`CheckpointError`] naming the file when it is missing or malformed.
pub fn read_state(dir: &Path) -> Result<CheckpointState, CheckpointError> {
    let path = dir.join("state.json");
    let bytes = fs::read(&path).map_err(|e| CheckpointError::new(&path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::new(&path, format!("malformed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> CheckpointState {
        CheckpointState {
            ranks: 1,
            modality: "test".into(),
            step,
            total_steps: 100,
            train_seconds: 1.0,
            config: serde_json::json!({"a": 1}),
            modality_state: serde_json::Value::Null,
            skipped_steps: Vec::new(),
            data_root: None,
        }
    }

    #[test]
    fn rotation_keeps_newest_and_failed_write_leaves_previous() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        for s in [10, 20, 30, 40] {
            save_checkpoint(&root, &state(s), 2, |d| {
                fs::write(d.join("online.bpk"), b"x").map_err(|e| e.to_string())
            })
            .unwrap();
        }
        assert_eq!(list_checkpoints(&root), vec![30, 40]);
        let err = save_checkpoint(&root, &state(50), 2, |_| Err("disk full".into())).unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(list_checkpoints(&root), vec![30, 40]);
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            2,
            "no temporary folder left"
        );
        assert_eq!(read_state(&checkpoint_dir(&root, 40)).unwrap(), state(40));
        fs::write(checkpoint_dir(&root, 40).join("state.json"), b"{garbage").unwrap();
        assert!(
            read_state(&checkpoint_dir(&root, 40))
                .unwrap_err()
                .to_string()
                .contains("state.json")
        );
    }
}
