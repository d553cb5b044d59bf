//! Which data a run's evaluation reads: the pre-training data's own splits, or the separate
//! labelled dataset of `eval.data` (pre-train on unlabelled data, probe on a labelled set);
//! then the label sets the probes can use.

use crate::config::ExperimentConfig;
use crate::data::{DataError, Datasets, apply_eval_split, usable_label_sets};
use crate::modality::Modality;
use std::path::Path;

/// Prepares the evaluation of a run on `datasets` (the pre-training data, as loaded). With
/// `eval.data` empty, `eval.split` is applied to `datasets` (a validation part leaves the
/// pre-training split) and `None` is returned: evaluation reads `datasets`. Otherwise the
/// folder `eval.data` is read with the run's `[data]` section and `eval.split` applied to it,
/// the modality's data-derived state staying that of the pre-training data, and that dataset
/// is returned. Either way the label sets the probes cannot use are dropped; the notes say
/// which and why (see [`usable_label_sets`]).
///
/// # Errors
/// [`DataError`] from reading `eval.data` (naming the folder), or from restoring the state.
pub fn prepare_eval_data<M: Modality>(
    modality: &M,
    cfg: &ExperimentConfig<M>,
    datasets: &mut Datasets<M::Item>,
) -> Result<(Option<Datasets<M::Item>>, Vec<String>), DataError> {
    if cfg.eval.data.is_empty() {
        apply_eval_split(datasets, &cfg.eval, cfg.seed);
        let notes = usable_label_sets(
            datasets,
            "to probe, give --eval-data DIR (a labelled dataset; eval.data in a config)",
        );
        return Ok((None, notes));
    }
    let mut eval = load_keeping_state(modality, cfg, Path::new(&cfg.eval.data))?;
    apply_eval_split(&mut eval, &cfg.eval, cfg.seed);
    let notes = usable_label_sets(
        &mut eval,
        &format!(
            "eval.data {} needs labels (class folders, or the modality's label columns or file names)",
            cfg.eval.data
        ),
    );
    Ok((Some(eval), notes))
}

/// Reads `root` with the run's `[data]` section (or the one
/// [`Modality::eval_data_config`] gives), then puts back the modality's state (which
/// [`Modality::load`] derives from the data it reads).
fn load_keeping_state<M: Modality>(
    modality: &M,
    cfg: &ExperimentConfig<M>,
    root: &Path,
) -> Result<Datasets<M::Item>, DataError> {
    let state = modality.state();
    let eval_cfg = modality.eval_data_config(&cfg.data);
    let loaded = modality.load(eval_cfg.as_ref().unwrap_or(&cfg.data), root);
    modality.restore_state(&state)?;
    loaded.map_err(|e| DataError::Unusable(format!("eval.data: {e}")))
}
