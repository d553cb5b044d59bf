//! The one table of built-in modalities. Each entry names a modality type and says what the
//! commands need of it: its name, its default config and search file (compiled in, so the
//! binary works from any folder), and where its data is. Commands are generic over the
//! modality type: they implement [`Visitor`] and [`BuiltIn::visit`] runs them with the type
//! of the entry. Adding a built-in modality is adding one entry (and its crate).

use ssl_audio::AudioModality;
use ssl_framework::Modality;
use ssl_framework::config::ExperimentConfig;
use ssl_framework::data::locate::{LocateError, resolve_local};
use ssl_text::TextModality;
use ssl_vision::VisionModality;
use std::path::PathBuf;

/// A built-in modality: what the commands need to know of it besides its type.
pub struct BuiltIn {
    /// The name `--modality` takes, benchmark and search files use, and checkpoints record.
    pub name: &'static str,
    /// The default config `(path, text)`: what `ssl train` reads without `--config`.
    pub default_config: (&'static str, &'static str),
    /// The built-in search file `(path, text)` of `ssl search-augment`.
    pub search_file: (&'static str, &'static str),
    /// Finds the data: `--data` if given, else the dataset of this name (see
    /// [`ssl_framework::data::locate`]).
    pub locate_data: fn(Option<PathBuf>, &str) -> Result<PathBuf, LocateError>,
}

/// A command generic over the modality type, run by [`BuiltIn::visit`].
pub trait Visitor {
    /// What the command returns.
    type Out;
    /// Runs the command with modality type `M`, the type of `entry`; `new` makes its value.
    fn visit<M: Modality>(self, entry: &'static BuiltIn, new: fn() -> M) -> Self::Out;
}

/// Builds [`BUILT_IN`] and [`BuiltIn::visit`] from one list of entries.
macro_rules! built_in_modalities {
    ($($name:literal => $modality:ty = $new:expr,
        config $config:literal, search $search:literal, data $data:expr;)*) => {
        /// Every built-in modality, in the order help and error texts list them.
        pub const BUILT_IN: &[BuiltIn] = &[$(BuiltIn {
            name: $name,
            default_config: ($config, include_str!(concat!("../", $config))),
            search_file: ($search, include_str!(concat!("../", $search))),
            locate_data: $data,
        }),*];

        impl BuiltIn {
            /// Runs `v` with this entry's modality type.
            pub fn visit<V: Visitor>(&'static self, v: V) -> V::Out {
                $(if self.name == $name {
                    return v.visit::<$modality>(self, || $new);
                })*
                unreachable!("{} is an entry of BUILT_IN", self.name)
            }
        }
    };
}

built_in_modalities! {
    "vision" => VisionModality = VisionModality,
        config "configs/vision/cifar10-quick.toml", search "configs/search/vision.toml",
        data ssl_vision::locate::locate_data;
    "audio" => AudioModality = AudioModality::default(),
        config "configs/audio/fsdd.toml", search "configs/search/audio.toml",
        data |d, dataset| resolve_local(d, dataset, false);
    // A text corpus may be one file.
    "text" => TextModality = TextModality::default(),
        config "configs/text/vader.toml", search "configs/search/text.toml",
        data |d, dataset| resolve_local(d, dataset, true);
}

/// The built-in modality named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static BuiltIn> {
    BUILT_IN.iter().find(|b| b.name == name)
}

/// The default config `(path, text)` of the built-in modality `name`.
///
/// # Panics
/// When `name` is not in the table (a bug of the caller).
pub fn default_config(name: &str) -> (&'static str, &'static str) {
    find(name)
        .unwrap_or_else(|| panic!("{name} is not a built-in modality"))
        .default_config
}

/// The names of the built-in modalities joined by `sep`, e.g. `vision|audio|text`.
pub fn names(sep: &str) -> String {
    BUILT_IN
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(sep)
}

/// The names as a sentence says them: `vision, audio or text`.
pub fn names_or() -> String {
    match BUILT_IN.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!(
            "{} or {}",
            rest.iter().map(|b| b.name).collect::<Vec<_>>().join(", "),
            last.name
        ),
        _ => names(""),
    }
}

/// The `--modality` argument: one of the table's names, parsed into its entry.
pub fn parser() -> impl clap::builder::TypedValueParser<Value = &'static BuiltIn> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(BUILT_IN.iter().map(|b| b.name))
        .map(|name| find(&name).expect("a possible value names an entry"))
}

/// The `[data] dataset` of a config (empty when its data section has none).
pub fn dataset<M: Modality>(cfg: &ExperimentConfig<M>) -> String {
    serde_json::to_value(&cfg.data)
        .ok()
        .and_then(|v| v["dataset"].as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The visitor of the test: the modality's own name and its config's dataset.
    struct Names;
    impl Visitor for Names {
        type Out = (String, String);
        fn visit<M: Modality>(self, entry: &'static BuiltIn, new: fn() -> M) -> Self::Out {
            let cfg = crate::common::read_config::<M>(None, entry.default_config, &[]).unwrap();
            (new().name().to_string(), dataset(&cfg))
        }
    }

    #[test]
    fn every_entry_visits_its_own_type_and_reads_its_files() {
        for entry in BUILT_IN {
            let (name, dataset) = entry.visit(Names);
            assert_eq!(name, entry.name);
            assert!(!dataset.is_empty(), "{}", entry.name);
            let s = ssl_search::settings::SearchSettings::parse(
                entry.search_file.1,
                entry.search_file.0,
            )
            .unwrap();
            assert_eq!(s.modality, entry.name);
        }
        assert_eq!(names_or(), "vision, audio or text");
        assert_eq!(names("|"), "vision|audio|text");
        assert!(find("smell").is_none());
    }
}
