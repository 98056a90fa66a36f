"""Training and sampling throughput of our Efficient U-Net against diffusers'
UNet2DConditionModel and imagen-pytorch's Unet.

Usage: python bench/unet_throughput.py [--sizes 32,64] [--batch 32]
           [--peers before,diffusers,imagen] [--precisions fp32,bf16] [--device cpu|cuda]
           [--out bench/results]
(needs `pip install -e '.[bench]'`; imagen-pytorch imports torchvision, so it lives in its own
environment: `pip install -e '.[bench,peers]'` in a fresh venv, which pins torch 2.14.1 and
torchvision 0.29.1; a peer that does not import is skipped with a note).
Run it on a quiet machine: nothing else may run.

All models are built at a matched parameter count (within 10%) with per-token
cross-attention to 384-d text tokens, and each runs at its best of four settings: fp32 or
bf16 autocast, channels_last on or off. imagen-pytorch reads google/t5-v1_1-base's config
from the hub at import: the bench gives it an offline HF_HOME holding that config.
Training = forward + backward + AdamW step on a v-prediction loss; sampling = one
classifier-free-guidance call (batch 2B) per step, reported as images per second of a 20-step
sampler. Achieved GFLOP/s (FlopCounterMode) is printed next to the machine's bf16 3x3-conv
rate measured in the same run. Writes unet_throughput.json and unet_throughput.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from fineimagen.config import load_preset
from fineimagen.models.unet import EfficientUNet
from machine import describe  # bench/ is on sys.path when a bench script runs

TEXT_LEN, TEXT_DIM, SAMPLER_STEPS = 24, 384, 20


def ours():
    """The redesigned base U-Net (light resampling, 32 channels at full resolution)."""
    cfg = load_preset("shapes-32-128-light").stages[0].unet
    return EfficientUNet(cfg), "fineimagen EfficientUNet"


def ours_before(target: int):
    """The shipped base's design (3x3 resampling convs, 48 channels at full resolution)."""
    cfg = load_preset("shapes-32-128").stages[0].unet
    return EfficientUNet(cfg), "fineimagen EfficientUNet (v9 design)"


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


# google/t5-v1_1-base's published config, all imagen-pytorch reads of it at import (d_model)
T5_BASE_CONFIG = {"architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64,
                  "d_model": 768, "decoder_start_token_id": 0, "dropout_rate": 0.1,
                  "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
                  "initializer_factor": 1.0, "is_encoder_decoder": True,
                  "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 12,
                  "num_heads": 12, "num_layers": 12, "output_past": True,
                  "pad_token_id": 0, "relative_attention_num_buckets": 32,
                  "tie_word_embeddings": False, "vocab_size": 32128}


def offline_t5_config() -> None:
    """An HF_HOME whose hub cache holds t5-v1_1-base's config, and the hub switched off."""
    home = Path(tempfile.mkdtemp(prefix="hf-home-"))
    repo = home / "hub" / "models--google--t5-v1_1-base"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(T5_BASE_CONFIG))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    os.environ.update(HF_HOME=str(home), HF_HUB_OFFLINE="1")


def imagen_peer(target: int):
    from imagen_pytorch import Unet  # needs offline_t5_config() before any hub import

    def build(width):
        return Unet(dim=width, dim_mults=(1, 2, 4), num_resnet_blocks=(1, 1, 2),
                    text_embed_dim=TEXT_DIM, layer_attns=(False, False, True),
                    layer_cross_attns=(False, True, True), attn_heads=4, attn_dim_head=32,
                    max_text_len=TEXT_LEN, memory_efficient=True)

    width = min(range(16, 129, 8), key=lambda w: abs(count(build(w)) - target))
    return build(width), f"imagen-pytorch Unet (width {width}, memory_efficient)"


PEERS = {"diffusers": diffusers_peer, "imagen": imagen_peer, "before": ours_before}


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def call(model, x, t, text, mask):
    if isinstance(model, EfficientUNet):
        return model(x, t, text, mask)
    if type(model).__module__.startswith("imagen_pytorch"):  # continuous time in [0, 1]
        return model(x, t / 1000, text_embeds=text, text_mask=mask)
    return model(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample


def timed(fn, warmup=2, repeats=5) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - start) / repeats


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(model, size, batch, bf16, channels_last, device="cpu"):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,), device=device).float()
    text = torch.randn(batch, TEXT_LEN, TEXT_DIM, device=device)
    mask = torch.ones(batch, TEXT_LEN, dtype=torch.bool, device=device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    kind = torch.device(device).type

    def train_step():
        with torch.autocast(kind, torch.bfloat16, enabled=bf16):
            loss = (call(model, x, t, text, mask).float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    x2, t2, text2, mask2 = (torch.cat([a, a]) for a in (x, t, text, mask))

    @torch.no_grad()
    def sample_step():
        with torch.autocast(kind, torch.bfloat16, enabled=bf16):
            call(model, x2, t2, text2, mask2)

    train_s = timed(train_step)
    model.eval()
    sample_s = timed(sample_step)
    with FlopCounterMode(display=False) as counter:
        train_step()
    return {"train_img_s": batch / train_s, "sample_img_s": batch / (sample_s * SAMPLER_STEPS),
            "train_gflop_s": counter.get_total_flops() / train_s / 1e9}


def conv_peak(device="cpu", bf16=True) -> float:
    """The bf16 (or fp32) rate of a 3x3 conv of 128 channels at 32 px (on a GPU: 512
    channels, 256 images, to fill it)."""
    channels, batch = (512, 256) if torch.device(device).type == "cuda" else (128, 64)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(
        device, memory_format=torch.channels_last)
    x = torch.randn(batch, channels, 32, 32, device=device).contiguous(
        memory_format=torch.channels_last)

    @torch.no_grad()
    def run():
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            conv(x)

    flops = 2 * batch * channels * channels * 9 * 32 * 32
    return flops / timed(run, 3, 10) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--peers", default="before,diffusers,imagen",
                        help="of: before (our v9 design), diffusers, imagen")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="settings to try (bf16 only pays where the CPU has it natively)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; each figure is its best round")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if "imagen" in args.peers.split(","):
        offline_t5_config()  # before diffusers imports huggingface_hub, which reads the env once
    torch.manual_seed(0)
    peaks = {p: conv_peak(args.device, p == "bf16") for p in args.precisions.split(",")}
    print("3x3 conv peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()))
    mine, my_name = ours()
    models = {my_name: mine}
    skipped = {}
    for key in args.peers.split(","):
        try:
            peer, peer_name = PEERS[key](count(mine))
        except ImportError as err:
            skipped[key] = f"not importable here: {err}"
            print(f"peer {key} skipped ({skipped[key]})")
            continue
        models[peer_name] = peer
    print("; ".join(f"{name}: {count(m) / 1e6:.2f} M params" for name, m in models.items()))
    results = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": describe(),
                        "threads": torch.get_num_threads(), "batch": args.batch,
                        "device": (torch.cuda.get_device_name() if args.device == "cuda"
                                   else platform.processor() or "cpu"),
                        "torch": torch.__version__, "conv_peak_gflop_s": peaks,
                        "skipped_peers": skipped},
               "models": {name: count(m) for name, m in models.items()}, "rows": {}}
    tried = [p == "bf16" for p in args.precisions.split(",")]
    for size in (int(s) for s in args.sizes.split(",")):
        # every model and setting once per round, rounds interleaved, the best round kept:
        # a shared machine's noise (2x between runs here) then hits every model alike
        measured: dict[str, dict[str, dict]] = {name: {} for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                for bf16, cl in itertools.product(tried, (False, True)):
                    key = f"{'bf16' if bf16 else 'fp32'}{' channels_last' if cl else ''}"
                    row = measure(model, size, args.batch, bf16, cl, args.device)
                    old = measured[name].get(key)
                    measured[name][key] = {k: max(v, old[k]) if old else v
                                           for k, v in row.items()}
        for name in models:
            settings = measured[name]
            best = max(settings, key=lambda k: settings[k]["train_img_s"])
            results["rows"][f"{size}/{name}"] = {"size": size, "model": name, "best": best,
                                                 **settings[best], "settings": settings}
            row = settings[best]
            share = row["train_gflop_s"] / peaks[best.split()[0]]
            results["rows"][f"{size}/{name}"]["share_of_conv_peak"] = share
            print(f"{size:3d} px {name:<52} train {row['train_img_s']:7.1f} img/s "
                  f"({row['train_gflop_s']:.0f} GFLOP/s = {share:.0%} of the {best.split()[0]} "
                  f"conv rate), sample {row['sample_img_s']:6.1f} img/s  [{best}]")
        peers = [results["rows"][f"{size}/{name}"] for name in models
                 if not name.startswith("fineimagen")]
        if peers:
            ours_row = results["rows"][f"{size}/{my_name}"]
            fastest = max(peers, key=lambda r: r["train_img_s"])
            ratio = ours_row["train_img_s"] / fastest["train_img_s"]
            results["rows"][f"{size}/ratio"] = ratio
            results["rows"][f"{size}/sample_ratio"] = (
                ours_row["sample_img_s"] / max(r["sample_img_s"] for r in peers))
            print(f"{size:3d} px training speed-up over the faster peer "
                  f"({fastest['model']}): {ratio:.2f}x")
        before = results["rows"].get(f"{size}/fineimagen EfficientUNet (v9 design)")
        if before:
            ours_row = results["rows"][f"{size}/{my_name}"]
            for key in ("train", "sample"):
                results["rows"][f"{size}/{key}_ratio_vs_v9_design"] = (
                    ours_row[f"{key}_img_s"] / before[f"{key}_img_s"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unet_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "unet_throughput.png", args.device)


def plot(results, path, device="cpu"):
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
            width = 0.8 / len(names)
            ax.bar([i + width * j for i in range(len(sizes))], values, width=width,
                   label=name.split(" (")[0])
        ax.set_xticks([i + 0.4 - 0.4 / len(names) for i in range(len(sizes))],
                      [f"{s} px" for s in sizes])
        ax.set_ylabel("images / s" + (" (2 CPU cores)" if device == "cpu" else f" ({device})"))
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
