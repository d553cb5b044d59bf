#!/usr/bin/env python3
"""PyTorch twin of `ssl bench --workloads step-text,step-audio`: one BYOL training step of the
text config (configs/text/vader.toml) or the audio config (configs/audio/fsdd.toml), the same
architecture, batch, input shapes, optimizer and heads as ours (src/bench.rs, `step_workload`).

usage: python3 scripts/bench_step_torch.py {text|audio} [batch] [steps] [threads]
Prints one line: RESULT ... samples_per_s=... (at the median step, after 2 warm-up steps).

text:  token ids [batch, 48] from a vocabulary of 2,000, 24 to 48 real tokens per sentence (the
       rest padding, masked out of attention and of the mean pool), embedding dropout 0.1 (the
       config's EncoderDropout); learned position embeddings, 2 pre-norm Transformer layers (d 128,
       4 heads, feed-forward 256 with GELU, dropout 0.1), a final LayerNorm, the mean over real
       tokens; projector and predictor 128 -> 512 -> 128; AdamW lr 2e-3, weight decay 1e-4 on
       weights only.
audio: log-mel segments [batch, 1, 64, 96]; 3 blocks of conv 3x3 (16 channels) + BatchNorm + ReLU +
       max-pool 2x2, then per time step Linear 128 -> 512, ReLU, dropout 0.3, Linear 512 -> 512,
       ReLU, and max + mean over time (BYOL-A's encoder, narrow); heads 512 -> 1024 -> 128; AdamW
       lr 1e-3, weight decay 1e-6 on weights only.
Both: the symmetric BYOL loss, the target network updated by EMA with tau 0.99 (buffers copied),
the same two random views every step.
"""
import copy
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class TextEncoder(nn.Module):
    def __init__(self, vocab=2000, max_len=48, d=128, heads=4, layers=2, d_ff=256, dropout=0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dim = d

    def forward(self, batch):
        ids, padding, rate = batch
        x = self.tokens(ids)
        keep = (torch.rand_like(x) >= rate).float()
        x = x * keep / (1 - rate)
        x = x + self.positions(torch.arange(ids.shape[1]))[None]
        h = self.norm(self.layers(x, src_key_padding_mask=padding))
        valid = (~padding).float()[:, :, None]
        return (h * valid).sum(1) / valid.sum(1).clamp_min(1.0)


class AudioEncoder(nn.Module):
    def __init__(self, n_mels=64, blocks=3, channels=16, dim=512, dropout=0.3):
        super().__init__()
        layers, cin = [], 1
        for _ in range(blocks):
            layers += [nn.Conv2d(cin, channels, 3, 1, 1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2, 2)]
            cin = channels
        self.blocks = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * (n_mels >> blocks), dim)
        self.fc2 = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def forward(self, batch):
        x, valid = batch
        x = self.blocks(x)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 2, 1).reshape(b, t, f * c)
        x = F.relu(self.fc2(self.dropout(F.relu(self.fc1(x)))))
        x = x * valid[:, :, None]
        return x.max(1).values + x.sum(1) / valid.sum(1, keepdim=True).clamp_min(1.0)


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


def sentences(batch, length=48, vocab=2000):
    own = torch.randint(length // 2, length + 1, (batch,))
    padding = torch.arange(length)[None, :] >= own[:, None]
    ids = torch.randint(3, vocab, (batch, length)).masked_fill(padding, 0)
    return ids, padding, 0.1


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "text"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    if len(sys.argv) > 4:
        torch.set_num_threads(int(sys.argv[4]))
    torch.manual_seed(0)
    if kind == "text":
        encoder, (hidden, out), lr, wd = TextEncoder(), (512, 128), 2e-3, 1e-4
        views = sentences(batch), sentences(batch)
    elif kind == "audio":
        encoder, (hidden, out), lr, wd = AudioEncoder(), (1024, 128), 1e-3, 1e-6
        views = tuple((torch.randn(batch, 1, 64, 96), torch.ones(batch, 96 >> 3)) for _ in range(2))
    else:
        sys.exit(f"unknown workload {kind!r}: text or audio")
    online = nn.ModuleDict({"encoder": encoder, "projector": mlp(encoder.dim, hidden, out)})
    predictor = mlp(out, hidden, out)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    params = list(online.parameters()) + list(predictor.parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
         {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
        lr=lr,
    )
    project = lambda net, x: net["projector"](net["encoder"](x))
    loss_fn = lambda p, z: (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(1)).mean()
    times = []
    for step in range(steps + 2):
        t0 = time.perf_counter()
        p1, p2 = predictor(project(online, views[0])), predictor(project(online, views[1]))
        with torch.no_grad():
            z1, z2 = project(target, views[0]), project(target, views[1])
        loss = loss_fn(p1, z2) + loss_fn(p2, z1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, po in zip(target.parameters(), online.parameters()):
                pt.lerp_(po, 0.01)
            for bt, bo in zip(target.buffers(), online.buffers()):
                bt.copy_(bo)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(f"RESULT torch={torch.__version__} workload=step-{kind} threads={torch.get_num_threads()} batch={batch} "
          f"median_step_s={median:.4f} samples_per_s={batch / median:.1f} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
