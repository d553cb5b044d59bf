#!/usr/bin/env python3
"""Side-by-side throughput: `ssl bench` (release build) against its PyTorch twins in
../shared/bench (torch_step.py, torch_augment.py) and scripts/bench_step_torch.py (step-text,
step-audio), alternating A B A B so that both see the same
machine load; prints each round's figures and the ratio ours / PyTorch, and the median ratio,
the figure that counts (issue #7). Writes the table as JSON with --json.

usage: python3 scripts/bench_vs_pytorch.py --cifar DIR [--rounds 2] [--steps 10]
       [--workloads step-smallcnn,step-resnet18-cifar,augment-cifar] [--json FILE]
       python3 scripts/bench_vs_pytorch.py --workloads step-text,step-audio [--rounds 3]
       python3 scripts/bench_vs_pytorch.py --imagenet DIR --workloads augment-imagenet
       [--images 500] [--rounds 3]
       python3 scripts/bench_vs_pytorch.py --ops [--rounds 2]

--ops: the small CNN's step op by op instead (`ssl bench --workloads ops-smallcnn` against
scripts/bench_ops_torch.py, A B A B): per op, median milliseconds of both and PyTorch / ours
(above 1: ours is faster). Burn's own ops and our kernels (`ssl im2col`, `ssl winograd`, `ssl fused`) are both
listed, so the table is also a minimal benchmark of burn-flex's slow ops against PyTorch.

Needs: `cargo build --release` (the script runs target/release/ssl, or $SSL_BIN), and torch
and torchvision in the Python that runs it (not a dependency of ssl; see ../shared/bench/README.md).
DIR: an unpacked CIFAR-10 JPEG ImageFolder (both sides read the same images); for
augment-imagenet, a folder of ImageNet-sized JPEGs (scripts/make_imagenet_like.py; at most 1000
of them are read, the twin's first ones by path and ours a seeded subset).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWINS = os.environ.get("SSL_BENCH_TWINS", os.path.join(ROOT, "..", "shared", "bench"))
# workload -> (twin command tail, batch, the twin's RESULT field)
WORKLOADS = {
    "step-smallcnn": (["torch_step.py", "smallcnn", "128"], 128, "images_per_s"),
    "step-resnet18-cifar": (["torch_step.py", "resnet18", "64"], 64, "images_per_s"),
    "augment-cifar": (["torch_augment.py"], 1, "pairs_per_s"),
    # The text and audio configs' steps; twin in scripts/ (sentences/s, segments/s).
    "step-text": (["bench_step_torch.py", "text", "64"], 64, "samples_per_s"),
    "step-audio": (["bench_step_torch.py", "audio", "64"], 64, "samples_per_s"),
    # Ours: read + decode + view 1 of configs/vision/imagenet.toml, one thread; twin in scripts/.
    "augment-imagenet": (["bench_imagenet_torch.py"], 1, "images_per_s"),
}
# Workloads on --imagenet DIR (ImageNet-sized JPEGs, scripts/make_imagenet_like.py) instead of --cifar.
IMAGENET = {"augment-imagenet"}
# Workloads on random inputs (no data), whose twins are in scripts/ too.
NO_DATA = {"step-text", "step-audio"}


def ours(binary, workload, steps, data, images):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [binary, "bench", "--workloads", workload, "--steps", str(steps), "--json", f.name]
        if workload.startswith("augment-"):
            cmd += ["--data", data, "--images", str(images)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = json.load(open(f.name))["rows"]
    if workload == "augment-imagenet":
        # One decode and one view per image, as the twin.
        rows = [r for r in rows if r["workload"] == "augment-imagenet (view)"]
    # augment-*: the one-thread row is the one PyTorch's twin measures.
    return min(rows, key=lambda r: r["threads"])["figure"], rows


def twin(workload, steps, data, images):
    tail, _, field = WORKLOADS[workload]
    folder = os.path.join(ROOT, "scripts") if workload in IMAGENET | NO_DATA else TWINS
    cmd = [sys.executable, os.path.join(folder, tail[0])] + tail[1:]
    if workload.startswith("augment-"):
        cmd += [data, str(images)]
    else:
        cmd += [str(steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(field + r"=([0-9.]+)", out)
    if not m:
        sys.exit(f"{' '.join(cmd)}: no {field}= in its output:\n{out}")
    return float(m.group(1)), out.strip().splitlines()[-1]


def ops_rounds(binary, rounds, reps):
    ours_ms, torch_ms = {}, {}
    for r in range(rounds):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [binary, "bench", "--workloads", "ops-smallcnn", "--steps", str(reps), "--json", f.name]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for o in json.load(open(f.name))["ops"]:
                ours_ms.setdefault(o["op"], []).append(o["median_ms"])
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench_ops_torch.py"), "--reps", str(reps), "--json", f.name]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            for o in json.load(open(f.name))["ops"]:
                torch_ms.setdefault(o["op"], []).append(o["median_ms"])
        print(f"ops round {r + 1} done", flush=True)
    print(f"{'op':<50} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>10}   (median over {rounds} A/B rounds)")
    table = []
    for op, values in ours_ms.items():
        base = op.replace(" (ssl im2col)", "").replace(" (ssl fused)", "").replace(" (ssl winograd)", "")
        mine = statistics.median(values)
        theirs = statistics.median(torch_ms[base]) if base in torch_ms else None
        ratio = theirs / mine if theirs else None
        print(f"{op:<50} {mine:9.2f} {theirs if theirs else float('nan'):9.2f} {ratio if ratio else float('nan'):10.2f}")
        table.append({"op": op, "ours_ms": mine, "pytorch_ms": theirs, "pytorch_over_ours": ratio})
    return table


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar", help="unpacked CIFAR-10 JPEG folder (the workloads)")
    p.add_argument("--imagenet", help="folder of ImageNet-sized JPEGs (augment-imagenet; scripts/make_imagenet_like.py)")
    p.add_argument("--ops", action="store_true", help="compare the small CNN's ops instead")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--workloads", default="step-smallcnn,step-resnet18-cifar,augment-cifar")
    p.add_argument("--json")
    a = p.parse_args()
    binary = os.environ.get("SSL_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ssl"))
    if not os.path.isfile(binary):
        sys.exit(f"{binary}: not found; run `cargo build --release` first (or set SSL_BIN)")
    import torch  # noqa: F401  (fail early and clearly when the twin cannot run)

    if a.ops:
        table = ops_rounds(binary, a.rounds, max(a.steps, 3))
        if a.json:
            json.dump({"torch": torch.__version__, "ops": table}, open(a.json, "w"), indent=2)
        return
    workloads = a.workloads.split(",")
    if not a.cifar and any(w not in IMAGENET | NO_DATA for w in workloads):
        sys.exit("--cifar DIR is required for the workloads (or use --ops)")
    if a.imagenet is None and any(w in IMAGENET for w in workloads):
        sys.exit("--imagenet DIR is required for augment-imagenet")

    table = []
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}: expected one of {', '.join(WORKLOADS)}")
        rounds = []
        for r in range(a.rounds):
            data = a.imagenet if w in IMAGENET else a.cifar
            images = min(a.images, 1000) if w in IMAGENET else a.images
            mine, _ = ours(binary, w, a.steps, data, images)
            theirs, line = twin(w, a.steps, data, images)
            rounds.append({"ours": mine, "pytorch": theirs, "ratio": mine / theirs})
            print(f"{w:<22} round {r + 1}: ours {mine:9.1f}  pytorch {theirs:9.1f}  ratio {mine / theirs:5.2f}", flush=True)
        ratio = statistics.median(x["ratio"] for x in rounds)
        table.append({"workload": w, "batch": WORKLOADS[w][1], "rounds": rounds, "median_ratio": ratio})
    print()
    print(f"{'workload':<22} {'batch':>5} {'ours':>9} {'pytorch':>9} {'ratio':>6}   (median of {a.rounds} A/B rounds; unit images/s, image pairs/s per thread, sentences/s or segments/s)")
    for t in table:
        o = statistics.median(x["ours"] for x in t["rounds"])
        q = statistics.median(x["pytorch"] for x in t["rounds"])
        print(f"{t['workload']:<22} {t['batch']:>5} {o:9.1f} {q:9.1f} {t['median_ratio']:6.2f}")
    if a.json:
        json.dump({"torch": __import__("torch").__version__, "threads": os.cpu_count(), "table": table}, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
