"""CUDA paths: the same numbers as on the CPU where they must match, training and sampling on a
GPU. Run with `pytest -m gpu` on a machine with a CUDA device (skipped elsewhere)."""

import numpy as np
import pytest
import torch

from fineimagen.config import load_preset
from fineimagen.diffusion.denoiser import Denoiser, TextCondition
from fineimagen.models.unet import EfficientUNet
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.train.trainer import TrainConfig, train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def exact_fp32():
    """No TF32 in these comparisons: fp32 on the GPU must match fp32 on the CPU."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def shipped_base_unet():
    torch.manual_seed(0)
    unet = EfficientUNet(load_preset("shapes-32-128").stages[0].unet)
    for p in unet.parameters():  # away from the zero-init, so the output is not trivially 0
        p.data += 0.02 * torch.randn_like(p)
    return unet.eval()


def test_unet_forward_matches_the_cpu_in_fp32_and_bf16():
    unet = shipped_base_unet()
    torch.manual_seed(1)
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([1.0, 250.0, 500.0, 999.0])
    text = torch.randn(4, 12, unet.cfg.text_dim)
    mask = torch.arange(12)[None] < torch.tensor([12, 9, 5, 1])[:, None]
    with torch.no_grad():
        cpu = unet(x, t, text, mask)
        gpu = unet.cuda()(x.cuda(), t.cuda(), text.cuda(), mask.cuda()).cpu()
        with torch.autocast("cuda", torch.bfloat16):
            half = unet(x.cuda(), t.cuda(), text.cuda(), mask.cuda()).float().cpu()
    scale = cpu.abs().mean()
    assert scale > 0.05
    assert (gpu - cpu).abs().max() < 1e-3 * max(1.0, cpu.abs().max().item())
    assert (half - cpu).abs().mean() < 0.03 * scale  # bf16 keeps ~3 significant digits


def test_training_loss_uses_the_cpu_generator_on_cuda():
    """A CPU generator drives the noise of CUDA training: same loss as on the CPU."""
    unet = shipped_base_unet()
    denoiser = Denoiser(unet, load_preset("shapes-32-128").stages[0].diffusion)
    torch.manual_seed(2)
    x0 = torch.rand(8, 3, 32, 32) * 2 - 1
    cond = TextCondition(torch.randn(8, 10, unet.cfg.text_dim), torch.ones(8, 10, dtype=bool))
    cpu = denoiser.loss(x0, cond, torch.Generator().manual_seed(3))
    denoiser.cuda()
    gpu_cond = TextCondition(cond.embeds.cuda(), cond.mask.cuda())
    gpu = denoiser.loss(x0.cuda(), gpu_cond, torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda"
    assert abs(gpu.item() - cpu.item()) < 1e-4 * max(1.0, cpu.item())


def test_training_on_cuda_learns_and_exports_a_cpu_loadable_model(tmp_path):
    result = train(TrainConfig(preset="tiny", out=str(tmp_path / "run"), steps=120, batch_size=32,
                               warmup=5, lr=2e-3, log_every=1, checkpoint_every=60,
                               mixed_precision="bf16"), progress=False)
    assert next(result.module.parameters()).device.type == "cuda"
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[1]) for r in rows]
    assert len(losses) == 120 and np.mean(losses[-20:]) < 0.9 * np.mean(losses[:20])
    pipe = TextToImagePipeline.from_pretrained(result.folder)  # on the CPU
    assert pipe("a red circle", n=1, seed=0, progress=False)[0].size == (16, 16)


def test_sampling_on_cuda_is_seeded_per_image_and_close_to_the_cpu(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    on_cpu = pipe("two blue squares", n=2, seed=7, progress=False)
    pipe.to("cuda")
    both = pipe("two blue squares", n=2, seed=7, progress=False)
    second = pipe("two blue squares", n=1, seed=8, progress=False)
    alone = np.abs(np.asarray(both[1], dtype=float) - np.asarray(second[0], dtype=float))
    assert alone.mean() < 0.5 and alone.max() <= 8  # GPU kernels may differ with batch size
    assert not np.array_equal(np.asarray(both[0]), np.asarray(both[1]))
    for a, b in zip(on_cpu, both, strict=True):  # CPU runs in bf16, the GPU in fp32
        diff = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
        assert diff.mean() < 8, diff.mean()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_weights_on_the_gpu_draw_the_fp32_images_closely(tiny_model, dtype):
    """`to("cuda", dtype)` keeps the networks' weights in half precision (the schedule and
    the aligner in fp32) and samples under autocast; images stay near the fp32 ones."""
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    full = TextToImagePipeline.from_pretrained(tiny_model).to("cuda")
    half = TextToImagePipeline.from_pretrained(tiny_model).to("cuda", dtype)
    unet = half.stages[0].model.unet
    assert next(unet.parameters()).dtype == dtype
    assert half.stages[0].model.abar.dtype != dtype  # the schedule stays precise
    a = full("a red circle", n=4, seed=3, progress=False)
    b = half("a red circle", n=4, seed=3, progress=False)
    diff = np.abs(np.stack([np.asarray(x, np.float32) for x in a])
                  - np.stack([np.asarray(x, np.float32) for x in b]))
    assert diff.mean() < 4.0 and diff.max() < 64, (diff.mean(), diff.max())
