#!/usr/bin/env python3
"""Load a ResNet exported by `ssl export` into torchvision, and embed images with it.

    ssl export --checkpoint runs/my-run --out encoder.safetensors
    python scripts/load_torchvision.py encoder.safetensors [IMAGE ...]

The file holds the encoder f (no classifier) under torchvision's state-dict names
(`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`, ...) in PyTorch's layout, with
the architecture (`resnet18`, `resnet34`, `resnet50`) and the stem (`imagenet`: 7x7/2 conv and
max-pool; `cifar`: 3x3/1 conv, no max-pool) in its metadata. torchvision's ResNet has base width
64: other widths are refused. BatchNorm's `num_batches_tracked` counters are not exported (burn
does not keep them) and torchvision does not need them for evaluation; `fc` is replaced by the
identity, so the model outputs the 512-d (ResNet-18/34) or 2048-d (ResNet-50) representation.

With `--compare EMB.safetensors --folder DIR`, the images of an ImageFolder split
(`DIR/<class>/*`, classes and files in sorted order: the order `ssl embed` reads them in) are
embedded with torchvision and compared with `ssl embed`'s `test_embeddings` (or
`--array NAME`) of the same split; use lossless images (PNG): JPEG decoders differ by a few
levels. It prints the largest absolute and relative differences and fails above `--tolerance`.

Images given on the command line are resized to 32x32 (CIFAR stem) or 256 then center-cropped
to 224 (ImageNet stem), normalized with the CIFAR-10 or ImageNet statistics as in ssl's
configs, and embedded; their feature norms are printed.

Needs: torch, torchvision, safetensors (and pillow for images).
"""

import argparse
import sys

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

CIFAR = ([0.4914, 0.4822, 0.4465], [0.247, 0.2435, 0.2616])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def load(path):
    """The torchvision ResNet of an `ssl export` file, in eval mode, and its metadata."""
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("naming") != "torchvision":
        sys.exit(f"{path}: not a torchvision-named export (naming = {meta.get('naming')!r}); "
                 "only ResNet encoders are exported under torchvision's names")
    arch, stem = meta["architecture"], meta["stem"]
    state = load_file(path)
    width = state["conv1.weight"].shape[0]
    if width != 64:
        sys.exit(f"{path}: base width {width}; torchvision's {arch} has 64")
    model = getattr(torchvision.models, arch)(weights=None)
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
    model.fc = torch.nn.Identity()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        sys.exit(f"{path}: missing {missing}, unexpected {result.unexpected_keys}")
    model.eval()
    return model, meta


def transform(meta):
    import torchvision.transforms.v2 as T

    if meta["stem"] == "cifar":
        return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(*CIFAR)])
    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToImage(),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(*IMAGENET)])


def compare(model, meta, args):
    """Embeds --folder with torchvision and compares with the `ssl embed` file --compare."""
    import os

    from PIL import Image

    if not args.folder:
        sys.exit("--compare needs --folder")
    classes = sorted(d for d in os.listdir(args.folder)
                     if os.path.isdir(os.path.join(args.folder, d)))
    files = [os.path.join(args.folder, c, f) for c in classes
             for f in sorted(os.listdir(os.path.join(args.folder, c)))]
    tf = transform(meta)
    with torch.no_grad():
        ours = torch.cat([model(torch.stack([tf(Image.open(p).convert("RGB"))
                                             for p in files[i:i + 100]]))
                          for i in range(0, len(files), 100)])
    theirs = load_file(args.compare)[args.array]
    if theirs.shape != ours.shape:
        sys.exit(f"shapes differ: ssl {tuple(theirs.shape)}, torchvision {tuple(ours.shape)}")
    diff = (ours - theirs).abs()
    rel = (diff.max(dim=1).values / theirs.norm(dim=1).clamp_min(1e-12)).max().item()
    print(f"{len(files)} images: largest difference {diff.max().item():.3e}, "
          f"mean {diff.mean().item():.3e}, largest relative to the feature norm {rel:.3e}")
    if rel > args.tolerance:
        sys.exit(f"the torchvision features differ from ssl's beyond {args.tolerance}")
    print("torchvision reproduces ssl's features")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("weights", help="an `ssl export` .safetensors file")
    parser.add_argument("images", nargs="*", help="images to embed")
    parser.add_argument("--compare", help="an `ssl embed` .safetensors file of --folder")
    parser.add_argument("--folder", help="an ImageFolder split: DIR/<class>/<image>")
    parser.add_argument("--array", default="test_embeddings", help="the array to compare with")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest relative difference allowed (of the feature norm)")
    args = parser.parse_args()
    model, meta = load(args.weights)
    print(f"loaded {meta['architecture']} ({meta['stem']} stem) from {meta.get('source', '?')}: "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    if args.compare:
        compare(model, meta, args)
    if not args.images:
        return
    from PIL import Image
    import torchvision.transforms.v2 as T

    if meta["stem"] == "cifar":
        tf = T.Compose([T.Resize((32, 32)), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                        T.Normalize(*CIFAR)])
    else:
        tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToImage(),
                        T.ToDtype(torch.float32, scale=True), T.Normalize(*IMAGENET)])
    batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in args.images])
    with torch.no_grad():
        features = model(batch)
    for p, f in zip(args.images, features):
        print(f"{p}: {tuple(f.shape)} features, norm {f.norm():.4f}")


if __name__ == "__main__":
    main()
