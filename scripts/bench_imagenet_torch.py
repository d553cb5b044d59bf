#!/usr/bin/env python3
"""PyTorch twin of `ssl bench --workloads augment-imagenet`: per image, read the JPEG file, decode
it with PIL (as torchvision's ImageFolder does), then view 1 of configs/vision/imagenet.toml with
torchvision.transforms.v2: RandomResizedCrop 224 (scale 0.08-1, ratio 3/4-4/3, bicubic,
antialiased), horizontal flip p=0.5, colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2,
Gaussian blur 23x23 sigma 0.1-2 p=1.0, to float, normalize. One thread (torch.set_num_threads(1)),
as the per-core figure of a DataLoader worker.

usage: python3 scripts/bench_imagenet_torch.py DIR [IMAGES]
prints: RESULT images_per_s=<float> images=<n> threads=1
DIR: a folder of JPEGs at any depth (e.g. made by scripts/make_imagenet_like.py).
"""
import os
import sys
import time

import torch
from PIL import Image
from torchvision.transforms import v2


def files(root, limit):
    out = []
    for d, _, names in sorted(os.walk(root)):
        for n in sorted(names):
            if n.lower().endswith((".jpg", ".jpeg")):
                out.append(os.path.join(d, n))
    out.sort()
    return out[:limit]


def main():
    root = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    torch.set_num_threads(1)
    torch.manual_seed(0)
    view = v2.Compose([
        v2.PILToTensor(),
        v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=1.0),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    paths = files(root, limit)
    if not paths:
        sys.exit(f"{root}: no JPEG files")
    # Warm-up (first calls allocate), not timed.
    for p in paths[:10]:
        with open(p, "rb") as f:
            view(Image.open(f).convert("RGB"))
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            out = view(Image.open(f).convert("RGB"))
        assert out.shape == (3, 224, 224)
    seconds = time.perf_counter() - start
    print(f"RESULT images_per_s={len(paths) / seconds:.2f} images={len(paths)} threads=1")


if __name__ == "__main__":
    main()
