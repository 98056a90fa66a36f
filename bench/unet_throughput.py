"""Training and sampling throughput of our Efficient U-Net against diffusers' UNet2DConditionModel.

Usage: python bench/unet_throughput.py [--sizes 32,64] [--batch 32] [--out bench/results]
(needs `pip install -e '.[bench]'`). Run it on a quiet machine: nothing else may run.

Both models are built at a matched parameter count (within 10%) with per-token
cross-attention to 384-d text tokens, and each runs at its best of four settings: fp32 or
bf16 autocast, channels_last on or off. Training = forward + backward + AdamW step on a
v-prediction loss; sampling = one classifier-free-guidance call (batch 2B) per step, reported
as images per second of a 20-step sampler. Achieved GFLOP/s (FlopCounterMode) is printed next
to the machine's bf16 3x3-conv rate measured in the same run. Writes unet_throughput.json
and unet_throughput.png. imagen-pytorch is not measured here: it needs torchvision and a
different torch in its own environment (see README).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from fineimagen.config import load_preset
from fineimagen.models.unet import EfficientUNet

TEXT_LEN, TEXT_DIM, SAMPLER_STEPS = 24, 384, 20


def ours():
    cfg = load_preset("shapes-32-128").stages[0].unet
    return EfficientUNet(cfg), "fineimagen EfficientUNet"


def diffusers_peer(target: int):
    from diffusers import UNet2DConditionModel

    def build(width):
        return UNet2DConditionModel(
            sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
            block_out_channels=(width, 2 * width, 4 * width),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=8)

    width = min(range(16, 129, 8), key=lambda w: abs(count(build(w)) - target))
    return build(width), f"diffusers UNet2DConditionModel (width {width})"


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def call(model, x, t, text, mask):
    if isinstance(model, EfficientUNet):
        return model(x, t, text, mask)
    return model(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample


def timed(fn, warmup=2, repeats=5) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(model, size, batch, bf16, channels_last):
    model = model.to(memory_format=torch.channels_last if channels_last else
                     torch.contiguous_format).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,)).float()
    text = torch.randn(batch, TEXT_LEN, TEXT_DIM)
    mask = torch.ones(batch, TEXT_LEN, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def train_step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = (call(model, x, t, text, mask).float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    x2, t2, text2, mask2 = (torch.cat([a, a]) for a in (x, t, text, mask))

    @torch.no_grad()
    def sample_step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            call(model, x2, t2, text2, mask2)

    train_s = timed(train_step)
    model.eval()
    sample_s = timed(sample_step)
    with FlopCounterMode(display=False) as counter:
        train_step()
    return {"train_img_s": batch / train_s, "sample_img_s": batch / (sample_s * SAMPLER_STEPS),
            "train_gflop_s": counter.get_total_flops() / train_s / 1e9}


def conv_peak() -> float:
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(64, 128, 32, 32).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def run():
        with torch.autocast("cpu", torch.bfloat16):
            conv(x)

    flops = 2 * 64 * 128 * 128 * 9 * 32 * 32
    return flops / timed(run, 3, 10) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    torch.manual_seed(0)
    peak = conv_peak()
    print(f"bf16 3x3 conv peak: {peak:.0f} GFLOP/s")
    mine, my_name = ours()
    peer, peer_name = diffusers_peer(count(mine))
    print(f"{my_name}: {count(mine) / 1e6:.2f} M params; {peer_name}: {count(peer) / 1e6:.2f} M")
    results = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
                        "threads": torch.get_num_threads(), "batch": args.batch,
                        "conv_peak_gflop_s": peak},
               "models": {my_name: count(mine), peer_name: count(peer)}, "rows": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        for name, model in ((my_name, mine), (peer_name, peer)):
            settings = {}
            for bf16, cl in itertools.product((False, True), (False, True)):
                key = f"{'bf16' if bf16 else 'fp32'}{' channels_last' if cl else ''}"
                settings[key] = measure(model, size, args.batch, bf16, cl)
            best = max(settings, key=lambda k: settings[k]["train_img_s"])
            results["rows"][f"{size}/{name}"] = {"size": size, "model": name, "best": best,
                                                 **settings[best], "settings": settings}
            row = settings[best]
            print(f"{size:3d} px {name:<48} train {row['train_img_s']:7.1f} img/s "
                  f"({row['train_gflop_s']:.0f} GFLOP/s = {row['train_gflop_s'] / peak:.0%} of "
                  f"peak), sample {row['sample_img_s']:6.1f} img/s  [{best}]")
        ratio = (results["rows"][f"{size}/{my_name}"]["train_img_s"]
                 / results["rows"][f"{size}/{peer_name}"]["train_img_s"])
        results["rows"][f"{size}/ratio"] = ratio
        print(f"{size:3d} px training speed-up over the peer: {ratio:.2f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unet_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "unet_throughput.png")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"].values() if isinstance(r, dict)]
    sizes = sorted({r["size"] for r in rows})
    names = list(results["models"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, title in ((axes[0], "train_img_s", "training"),
                           (axes[1], "sample_img_s", "sampling (20 steps, CFG)")):
        for j, name in enumerate(names):
            values = [next(r[key] for r in rows if r["size"] == s and r["model"] == name)
                      for s in sizes]
            ax.bar([i + 0.4 * j for i in range(len(sizes))], values, width=0.4,
                   label=name.split(" (")[0])
        ax.set_xticks([i + 0.2 for i in range(len(sizes))], [f"{s} px" for s in sizes])
        ax.set_ylabel("images / s (2 CPU cores)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
