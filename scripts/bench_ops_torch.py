#!/usr/bin/env python3
"""PyTorch twin of `ssl bench --workloads ops-smallcnn`: the same ops at the same shapes.

Times a 1024^3 matmul, then for each convolution of the small CNN (batch 128 by default):
conv forward, conv forward + backward (input and weight gradients), BatchNorm (training mode)
forward + backward on the conv's output shape; then ResNet-18's stride-1 body convolutions
forward + backward at half the batch. Every forward + backward is `sum()` then
`backward()`, exactly as the Rust side. Median of N runs after 2 warm-up runs, milliseconds.

    python3 scripts/bench_ops_torch.py [--batch 128] [--reps 10] [--threads 2] [--json out.json]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

CONVS = [(3, 32, 32, 1), (32, 64, 32, 2), (64, 128, 16, 2), (128, 256, 8, 2)]
# ResNet-18's stride-1 body convolutions (channels, input side), at half the batch (64 by default).
RESNET_BODY_CONVS = [(64, 32), (128, 16), (256, 8), (512, 4)]


def median_ms(reps, f):
    for _ in range(2):
        f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    n = 1024
    x, y = torch.randn(n, n), torch.randn(n, n)
    rows.append((f"matmul {n}x{n}x{n}", median_ms(a.reps, lambda: (x @ y).sum().item())))
    for cin, cout, side, stride in CONVS:
        label = f"{cin}->{cout} {side}px s{stride}"
        xin = torch.randn(a.batch, cin, side, side, requires_grad=True)
        w = (torch.randn(cout, cin, 3, 3) * 0.1).requires_grad_()

        def fwd():
            with torch.no_grad():
                F.conv2d(xin, w, None, stride, 1).sum().item()

        def fwd_bwd():
            xin.grad = None
            w.grad = None
            F.conv2d(xin, w, None, stride, 1).sum().backward()

        rows.append((f"conv fwd {label}", median_ms(a.reps, fwd)))
        rows.append((f"conv fwd+bwd {label}", median_ms(a.reps, fwd_bwd)))
        out = (side + stride - 1) // stride
        z = torch.randn(a.batch, cout, out, out, requires_grad=True)
        gamma = torch.ones(cout, requires_grad=True)
        beta = torch.zeros(cout, requires_grad=True)

        def bn():
            for t in (z, gamma, beta):
                t.grad = None
            F.batch_norm(z, None, None, gamma, beta, training=True, eps=1e-5).sum().backward()

        rows.append((f"bn fwd+bwd c{cout} {out}px", median_ms(a.reps, bn)))
    rb = max(a.batch // 2, 1)
    for c, side in RESNET_BODY_CONVS:
        xr = torch.randn(rb, c, side, side, requires_grad=True)
        wr = (torch.randn(c, c, 3, 3) * 0.05).requires_grad_()

        def resnet_fwd_bwd():
            xr.grad = None
            wr.grad = None
            F.conv2d(xr, wr, None, 1, 1).sum().backward()

        rows.append((f"conv fwd+bwd {c}->{c} {side}px s1 b{rb}", median_ms(a.reps, resnet_fwd_bwd)))
    print(f"torch {torch.__version__} ops-smallcnn (batch {a.batch}; {a.threads} threads; median ms per op)")
    for op, ms in rows:
        print(f"{op:<34} {ms:>9.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"batch": a.batch, "threads": a.threads, "ops": [{"op": o, "median_ms": m} for o, m in rows]}, f, indent=1)


if __name__ == "__main__":
    main()
