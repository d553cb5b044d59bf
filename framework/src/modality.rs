//! The `Modality` plugin trait: everything that depends on the kind of data.

use crate::augmentation::Augmentation;
use crate::config::{ConfigError, ConfigSection};
use crate::data::{DataError, Datasets};
use crate::encoder::Encoder;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Ties together a kind of data: its records, datasets, augmentation ops, collation into
/// tensors and default encoder. `vision`, `audio` and `text` implement it; a user's own modality
/// is written against this trait alone (see `examples/`).
///
/// The data path of one training step (DESIGN.md): dataset [`Item`](Modality::Item) ->
/// [`to_sample`](Modality::to_sample) -> view-1 and view-2 pipelines of
/// [`Op`](Modality::Op)s (worker threads, seeded) -> [`collate`](Modality::collate) (worker
/// threads) -> [`to_input`](Modality::to_input) (trainer thread) -> the encoder.
pub trait Modality: Send + Sync + Sized + 'static {
    /// A record as a dataset keeps it in memory (e.g. a decoded 8-bit image).
    type Item: Send + Sync + 'static;
    /// The working representation augmentations transform (e.g. a float image).
    type Sample: Send + 'static;
    /// The modality's serializable augmentation op: a `Box<dyn Trait>` of a typetag trait with
    /// [`Augmentation<Self::Sample>`] as a supertrait.
    type Op: Augmentation<Self::Sample> + Serialize + DeserializeOwned + 'static;
    /// The `[data]` section of a config: where and what to read.
    type DataConfig: ConfigSection + Default;
    /// The `[encoder]` section of a config: which network f.
    type EncoderConfig: ConfigSection + Default;
    /// The encoder network f.
    type Encoder: Encoder;
    /// A batch collated on the host by a worker thread.
    type Batch: Send + 'static;

    /// The modality's name as given to `--modality`.
    fn name(&self) -> &'static str;

    /// Reads the train and test splits.
    ///
    /// # Errors
    /// [`DataError`] when the folder has no usable data (naming it), when a file that must be
    /// read fails (naming the file), or when the splits are unusable.
    fn load(&self, cfg: &Self::DataConfig, root: &Path) -> Result<Datasets<Self::Item>, DataError>;

    /// Converts a stored record into the working representation, before augmentation.
    fn to_sample(&self, item: &Self::Item) -> Self::Sample;

    /// Collates augmented samples into one host-side batch (runs on worker threads).
    fn collate(&self, samples: Vec<Self::Sample>) -> Self::Batch;

    /// Moves a collated batch onto `device` as the encoder's input.
    fn to_input(&self, batch: Self::Batch, device: &Device) -> <Self::Encoder as Encoder>::Input;

    /// State the modality derived from the training data in [`load`](Modality::load) (e.g.
    /// normalization statistics), stored in checkpoints and `results.json`. Default: none.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores [`state`](Modality::state) from a checkpoint, after `load`.
    ///
    /// # Errors
    /// [`DataError::Unusable`] when the stored state is malformed.
    fn restore_state(&self, state: &serde_json::Value) -> Result<(), DataError> {
        let _ = state;
        Ok(())
    }

    /// Builds a freshly initialized encoder (weights drawn from the device's seeded RNG).
    ///
    /// # Errors
    /// [`ConfigError`] when the encoder config does not fit the data config.
    fn init_encoder(
        &self,
        cfg: &Self::EncoderConfig,
        data: &Self::DataConfig,
        device: &Device,
    ) -> Result<Self::Encoder, ConfigError>;
}
