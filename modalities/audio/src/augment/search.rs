//! The audio augmentation search space of `ssl search-augment`: every op's magnitude mapping.
//!
//! Magnitude `m` in `[0, 1]`; frames are 10 ms at the default 160-sample hop and 16 kHz,
//! values are in normalized log-mel units (standard deviations of the training set).

use super::{
    AudioOp, FreqMask, Gain, GaussianNoise, Mixup, RandomCrop, RandomLinearFader, RandomResizeCrop,
    TimeMask, TimeShift,
};
use crate::AudioDataConfig;
use ssl_framework::search_space::{SearchOp, SearchSpace};

/// The space: every view starts with a `RandomCrop` of `data.min_frames` frames (the training
/// segment) and chooses among BYOL-A's and SpecAugment's ops:
///
/// | op | magnitude `m` sets |
/// |---|---|
/// | `RandomResizeCrop` | `freq_scale = [1 - 0.4 m, 1 + 0.4 m]`, `time_scale = [1 - 0.5 m, 1 + 0.5 m]`, `virtual_crop_scale = [1, 1 + 0.5 m]` (BYOL-A: about `m = 1`) |
/// | `RandomLinearFader` | `gain = 2 m` (log-mel units; BYOL-A: 1.0 at `m = 0.5`) |
/// | `TimeMask` | `max_width = round(32 m)` frames, `count = 1` |
/// | `FreqMask` | `max_width = round(24 m)` mel bands, `count = 1` |
/// | `Gain` | `max_db = 12 m` dB |
/// | `TimeShift` | `max_frames = round(48 m)` frames (circular) |
/// | `GaussianNoise` | `std = 0.5 m` |
/// | `Mixup` | `ratio = 0.5 m` (BYOL-A: 0.4) |
pub fn search_space(data: &AudioDataConfig) -> SearchSpace<AudioOp> {
    fn boxed<T: super::AudioAugmentation + 'static>(op: T) -> AudioOp {
        Box::new(op)
    }
    SearchSpace {
        crop: vec![boxed(RandomCrop {
            frames: data.min_frames,
        })],
        finish: vec![],
        ops: vec![
            SearchOp {
                name: "RandomResizeCrop",
                magnitude: "freq_scale = [1 - 0.4 m, 1 + 0.4 m], time_scale = [1 - 0.5 m, 1 + 0.5 m], virtual_crop_scale = [1, 1 + 0.5 m]",
                build: Box::new(move |m| {
                    boxed(RandomResizeCrop {
                        virtual_crop_scale: [1.0, 1.0 + 0.5 * m],
                        freq_scale: [1.0 - 0.4 * m, 1.0 + 0.4 * m],
                        time_scale: [1.0 - 0.5 * m, 1.0 + 0.5 * m],
                    })
                }),
            },
            SearchOp {
                name: "RandomLinearFader",
                magnitude: "gain = 2 m (log-mel units)",
                build: Box::new(move |m| boxed(RandomLinearFader { gain: 2.0 * m })),
            },
            SearchOp {
                name: "TimeMask",
                magnitude: "max_width = round(32 m) frames, count = 1",
                build: Box::new(move |m| {
                    boxed(TimeMask {
                        max_width: (32.0 * m).round() as usize,
                        count: 1,
                    })
                }),
            },
            SearchOp {
                name: "FreqMask",
                magnitude: "max_width = round(24 m) mel bands, count = 1",
                build: Box::new(move |m| {
                    boxed(FreqMask {
                        max_width: (24.0 * m).round() as usize,
                        count: 1,
                    })
                }),
            },
            SearchOp {
                name: "Gain",
                magnitude: "max_db = 12 m dB",
                build: Box::new(move |m| boxed(Gain { max_db: 12.0 * m })),
            },
            SearchOp {
                name: "TimeShift",
                magnitude: "max_frames = round(48 m) frames",
                build: Box::new(move |m| {
                    boxed(TimeShift {
                        max_frames: (48.0 * m).round() as usize,
                    })
                }),
            },
            SearchOp {
                name: "GaussianNoise",
                magnitude: "std = 0.5 m (normalized log-mel units)",
                build: Box::new(move |m| boxed(GaussianNoise { std: 0.5 * m })),
            },
            SearchOp {
                name: "Mixup",
                magnitude: "ratio = 0.5 m",
                build: Box::new(move |m| boxed(Mixup { ratio: 0.5 * m })),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::melspec::Spectrogram;

    #[test]
    fn every_op_is_valid_at_every_magnitude() {
        let space = search_space(&AudioDataConfig::default());
        ssl_framework::search_space::check_space::<Spectrogram, _>(&space).unwrap();
        assert_eq!(space.ops.len(), 8);
    }

    #[test]
    fn magnitude_zero_is_mild_and_one_is_strong() {
        let space = search_space(&AudioDataConfig::default());
        let json =
            |name: &str, m: f64| serde_json::to_value((space.op(name).unwrap().build)(m)).unwrap();
        assert_eq!(json("TimeMask", 0.0)["max_width"], 0);
        assert_eq!(json("TimeMask", 1.0)["max_width"], 32);
        assert_eq!(json("Gain", 0.5)["max_db"], 6.0);
        assert_eq!(json("RandomResizeCrop", 1.0)["freq_scale"][0], 0.6);
    }
}
