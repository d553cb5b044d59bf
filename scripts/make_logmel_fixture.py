"""Generate modalities/audio/tests/fixtures/logmel_reference.json: reference log-mel
spectrograms computed with librosa, for the Rust front end's test (tests/frontend.rs).

Settings are BYOL-A's (torchaudio MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=1024,
hop_length=160, n_mels=64, f_min=60, f_max=7800), then log(x + eps)), expressed in librosa:
periodic Hann window, centred frames with reflect padding, power 2, HTK mel scale, no filter
normalization. The input signals (already at 16 kHz) are stored in the fixture too, so the test
compares the front end alone, not the resampler.

Usage: python3 scripts/make_logmel_fixture.py FSDD_RECORDINGS_DIR OUT.json
(with librosa installed, e.g. in a venv: pip install librosa)
"""
import json
import sys

import librosa
import numpy as np

EPS = float(np.finfo(np.float32).eps)
SECONDS = 0.3


def logmel(y):
    s = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=16000, n_fft=1024, hop_length=160, win_length=1024, window="hann",
        center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=60.0, fmax=7800.0, htk=True, norm=None,
    )
    return np.log(s + EPS)


def main(rec_dir, out):
    clips = []
    for name in ["0_jackson_0.wav", "7_theo_12.wav"]:
        y, _ = librosa.load(f"{rec_dir}/{name}", sr=16000, mono=True)
        clips.append((name, y[: int(16000 * SECONDS)].astype(np.float32)))
    t = np.arange(int(16000 * SECONDS)) / 16000.0
    chirp = (0.5 * np.sin(2 * np.pi * (200 * t + 6000 * t * t))).astype(np.float32)
    clips.append(("chirp_200Hz_to_3800Hz", chirp))
    data = {
        "librosa": librosa.__version__,
        "settings": {"sample_rate": 16000, "n_fft": 1024, "hop_length": 160, "n_mels": 64, "f_min": 60, "f_max": 7800},
        "clips": [
            {"name": name, "signal": [float(v) for v in y], "logmel": [[round(float(v), 6) for v in row] for row in logmel(y)]}
            for name, y in clips
        ],
    }
    with open(out, "w") as f:
        json.dump(data, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
