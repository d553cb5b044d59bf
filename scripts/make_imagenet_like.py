#!/usr/bin/env python3
"""Writes ImageNet-sized test data for the streaming benchmarks (issue #23): CIFAR-10 images
upscaled to 500x375 (ImageNet's typical size) with seeded noise, saved as JPEG quality 90 in an
ImageFolder `OUT/train/<class>/NNNNNN.jpg` (about 50 KB each; 536 KiB each decoded).

usage: python3 scripts/make_imagenet_like.py CIFAR_JPEG_DIR OUT [COUNT]
CIFAR_JPEG_DIR: an unpacked cifar10-jpeg.tar.gz (its train/<class>/*.jpg are the sources).
COUNT: images to write (default 20000: 1 GB of JPEGs, 10.5 GiB if decoded into memory).
Needs Pillow and numpy.
"""
import glob
import os
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src_root, out = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    sources = sorted(glob.glob(os.path.join(src_root, "**", "train", "*", "*.jpg"), recursive=True))
    if not sources:
        sys.exit(f"{src_root}: no train/<class>/*.jpg files")
    # Interleave the classes so that any prefix of the output has all of them.
    by_class = {}
    for s in sources:
        by_class.setdefault(s.split(os.sep)[-2], []).append(s)
    classes = sorted(by_class)
    rng = np.random.default_rng(0)
    for i in range(count):
        cls = classes[i % len(classes)]
        src = by_class[cls][(i // len(classes)) % len(by_class[cls])]
        img = Image.open(src).convert("RGB").resize((500, 375), Image.BICUBIC)
        pixels = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (375, 500, 3))
        d = os.path.join(out, "train", cls)
        os.makedirs(d, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(os.path.join(d, f"{i:06d}.jpg"), quality=90)
    print(f"wrote {count} images to {out}/train")


if __name__ == "__main__":
    main()
