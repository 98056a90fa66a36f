import pytest
import torch

from fineimagen.config import DiffusionConfig, UNetConfig, load_preset
from fineimagen.diffusion.denoiser import Denoiser, TextCondition, threshold_x0
from fineimagen.diffusion.sampling import denoise, initial_noise
from fineimagen.errors import InputError
from fineimagen.models.layers import Attention
from fineimagen.models.unet import EfficientUNet

TINY = UNetConfig(channels=16, channel_mults=(1, 2), blocks_per_level=(1, 2),
                  cross_attention_levels=(1,), self_attention_levels=(1,), heads=2, head_dim=8,
                  text_dim=12, groups=4)


def cond(b, length=5, dim=12):
    torch.manual_seed(0)
    return TextCondition(torch.randn(b, length, dim), torch.ones(b, length, dtype=torch.bool))


def tiny_denoiser(prediction="v", seed=0):
    torch.manual_seed(seed)
    unet = EfficientUNet(TINY)
    for p in unet.parameters():  # leave the zero-init so outputs are not trivially zero
        p.data += 0.02 * torch.randn_like(p)
    return Denoiser(unet, DiffusionConfig(prediction=prediction)).eval()


def test_unet_shapes_and_sr_conditioning():
    unet = EfficientUNet(TINY)
    x = torch.randn(2, 3, 16, 16)
    c = cond(2)
    assert unet(x, torch.tensor([1.0, 500.0]), c.embeds, c.mask).shape == (2, 3, 16, 16)
    sr = EfficientUNet(UNetConfig(**{**TINY.__dict__, "lowres_cond": True}))
    out = sr(x, torch.tensor([3.0, 4.0]), c.embeds, c.mask, lowres=torch.randn(2, 3, 8, 8),
             aug_level=torch.tensor([0.0, 100.0]))
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="lowres"):
        sr(x, torch.tensor([3.0, 4.0]), c.embeds, c.mask)


def test_every_attention_has_a_processor_and_a_name():
    unet = EfficientUNet(TINY)
    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    cross = [m for m in layers if m.is_cross]
    assert len(cross) >= 3 and len(layers) > len(cross)
    assert all(m.name and callable(m.processor) for m in layers)

    seen = []

    class Recorder:
        def __call__(self, attn, q, k, v, mask):
            scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
            probs = scores.masked_fill(~mask, float("-inf")).softmax(-1) if mask is not None \
                else scores.softmax(-1)
            seen.append((attn.name, probs.shape))
            return probs @ v

    x, c = torch.randn(1, 3, 16, 16), cond(1)
    reference = unet(x, torch.tensor([10.0]), c.embeds, c.mask)
    for m in cross:
        m.processor = Recorder()
    recorded = unet(x, torch.tensor([10.0]), c.embeds, c.mask)
    assert torch.allclose(reference, recorded, atol=1e-5)
    assert len(seen) == len(cross) and seen[0][1][-1] == 6  # 5 tokens + the null token


def test_fully_masked_text_is_finite():
    unet = EfficientUNet(TINY)
    c = cond(2).null()
    assert torch.isfinite(unet(torch.randn(2, 3, 16, 16), torch.tensor([5.0, 9.0]),
                               c.embeds, c.mask)).all()


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_prediction_conversions_round_trip(prediction):
    d = tiny_denoiser(prediction)
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([10, 500, 990])
    alpha, sigma = d.coefficients(t)
    x_t = alpha * x0 + sigma * eps
    out = eps if prediction == "eps" else alpha * eps - sigma * x0
    assert torch.allclose(d.to_x0(out, x_t, t), x0, atol=1e-3)
    assert torch.allclose(d.from_x0(x0, x_t, t), out, atol=1e-3)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(alpha))


def test_thresholding_bounds():
    x0 = torch.randn(4, 3, 8, 8) * 3
    assert threshold_x0(x0, 0.0).abs().max() <= 1
    dyn = threshold_x0(x0, 0.9)
    assert dyn.abs().max() <= 1 + 1e-6
    small = torch.rand(2, 3, 8, 8) * 0.5  # inside [-1, 1]: s = 1, nothing changes
    assert torch.equal(threshold_x0(small, 0.99), small)


def test_loss_is_finite_and_trains():
    d = tiny_denoiser().train()
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    x0, c = torch.rand(4, 3, 16, 16) * 2 - 1, cond(4)
    losses = []
    for _ in range(30):  # the same t and noise every step: the loss on them must fall
        loss = d.loss(x0, c, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++", "unipc"])
def test_each_image_depends_only_on_its_seed(sampler):
    d = tiny_denoiser()
    c4, c2 = cond(4), cond(2)

    def predictor(c):
        return lambda x, t: d.guided(x, t, c, guidance=3.0)

    cfg = DiffusionConfig()
    four = denoise(predictor(c4), cfg, sampler, 5, [1, 2, 3, 4], (3, 16, 16), progress=False)
    two = denoise(predictor(TextCondition(c4.embeds[2:], c4.mask[2:])), cfg, sampler, 5,
                  [3, 4], (3, 16, 16), progress=False)
    assert torch.allclose(four[2:], two, atol=1e-4)
    assert not torch.allclose(four[0], four[1])
    again = denoise(predictor(c2), cfg, sampler, 5, [1, 2], (3, 16, 16), progress=False)
    assert torch.allclose(again, denoise(predictor(c2), cfg, sampler, 5, [1, 2], (3, 16, 16),
                                         progress=False))


def test_guidance_one_is_the_conditional_prediction_and_scale_matters():
    d = tiny_denoiser()
    x, c, t = torch.randn(2, 3, 16, 16), cond(2), torch.tensor(300)
    plain = d.guided(x, t, c, 1.0)
    strong = d.guided(x, t, c, 7.0)
    assert not torch.allclose(plain, strong)
    assert torch.allclose(initial_noise([5], (3, 4, 4)), initial_noise([5], (3, 4, 4)))


def test_bad_diffusion_settings():
    with pytest.raises(InputError, match="unknown sampler"):
        denoise(lambda x, t: x, DiffusionConfig(), "euler-magic", 3, [0], (3, 4, 4))
    with pytest.raises(InputError, match="unknown prediction"):
        Denoiser(EfficientUNet(TINY), DiffusionConfig(prediction="x0"))


def test_presets_load_and_build():
    for name in ("tiny", "shapes-32-128"):
        cascade = load_preset(name)
        stage = cascade.stages[0]
        assert EfficientUNet(stage.unet) is not None
    with pytest.raises(InputError, match="unknown preset"):
        load_preset("huge-9000")


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_min_snr_weight_is_gamma_clipped_x0_weight(prediction):
    d = Denoiser(tiny_denoiser(prediction).unet, DiffusionConfig(prediction=prediction,
                                                                  min_snr_gamma=5.0))
    t = torch.tensor([0, 200, 500, 800, 999])
    abar = d.abar[t]
    snr = abar / (1 - abar)
    x0_weight = snr.clamp(max=5.0)  # Hang et al.: min(SNR, gamma) on the x0 error
    to_x0 = snr + 1 if prediction == "v" else snr  # |pred err|^2 = to_x0 * |x0 err|^2
    assert torch.allclose(d.loss_weight(t) * to_x0, x0_weight, rtol=1e-4)
    assert d.loss_weight(t)[0] < 0.01 and d.loss_weight(t).max() <= 1.0 + 1e-6
    plain = Denoiser(d.unet, DiffusionConfig(prediction=prediction))  # the default: off
    assert torch.equal(plain.loss_weight(t), torch.ones(5))


def test_an_snr_offset_keeps_the_noisiest_steps_weighted():
    unet = tiny_denoiser().unet
    t = torch.tensor([0, 500, 990, 999])
    min_snr = Denoiser(unet, DiffusionConfig(min_snr_gamma=5.0))
    kept = Denoiser(unet, DiffusionConfig(min_snr_gamma=5.0, snr_offset=1.0))
    snr = min_snr.abar[t] / (1 - min_snr.abar[t])
    assert torch.allclose(kept.loss_weight(t), (snr + 1).clamp(max=5.0) / (snr + 1))
    assert min_snr.loss_weight(t)[-1] < 0.01 and kept.loss_weight(t)[-1] > 0.99
    assert torch.allclose(kept.loss_weight(t)[0], min_snr.loss_weight(t)[0], rtol=1e-3)
    with pytest.raises(InputError, match="snr_offset"):
        Denoiser(unet, DiffusionConfig(prediction="eps", min_snr_gamma=5.0, snr_offset=1.0))


def test_input_perturbation_noises_the_input_but_not_the_target():
    """Ning et al. 2023: x_t = alpha x0 + sigma (eps + p xi), the target still eps's."""
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x_t, t, embeds, mask):
            seen.append(x_t)
            return torch.zeros_like(x_t)

    x0, c = torch.zeros(64, 3, 8, 8), cond(64)
    for p in (0.0, 0.5):
        d = Denoiser(Spy(), DiffusionConfig(prediction="eps", input_perturbation=p))
        loss = d.loss(x0, c, torch.Generator().manual_seed(0))
        assert abs(loss.item() - 1.0) < 0.05  # |0 - eps|^2: the target is eps alone
    t = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(0))
    sigma = (1 - d.abar[t]).sqrt().view(-1, 1, 1, 1)
    ratio = ((seen[1] / sigma).std() / (seen[0] / sigma).std()).item()
    assert abs(ratio - (1 + 0.5 ** 2) ** 0.5) < 0.05  # the input's noise grew by sqrt(1+p^2)
    with pytest.raises(InputError, match="input_perturbation"):
        Denoiser(Spy(), DiffusionConfig(input_perturbation=1.5))


def test_light_resampling_spends_fewer_flops_and_keeps_positions_apart():
    from torch.utils.flop_counter import FlopCounterMode

    def flops(cfg):
        torch.manual_seed(0)
        unet = EfficientUNet(cfg).eval()
        c = cond(1)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = unet(torch.randn(1, 3, 32, 32), torch.tensor([10.0]), c.embeds, c.mask)
        assert out.shape == (1, 3, 32, 32)
        return counter.get_total_flops()

    light = UNetConfig(**{**TINY.__dict__, "channel_mults": (1, 2, 2),
                          "blocks_per_level": (1, 1, 1), "resample": "light"})
    conv = UNetConfig(**{**light.__dict__, "resample": "conv"})
    assert flops(light) < 0.9 * flops(conv)
    # space-to-depth keeps every pixel: a one-pixel change at full resolution reaches the
    # lower level (a stride-2 conv would see it too, but pixel-unshuffle sees all four)
    unet = EfficientUNet(light)
    down = unet.downsamples[1]
    x = torch.zeros(1, light.channels, 8, 8)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        y = x.clone()
        y[0, :, dy, dx] = 1.0
        assert (down(y) - down(x)).abs().sum() > 0
    with pytest.raises(ValueError, match="resample"):
        EfficientUNet(UNetConfig(**{**TINY.__dict__, "resample": "bilinear"}))


def test_coordinate_channels_tell_the_stem_where_each_pixel_is():
    from fineimagen.models.layers import coordinate_grid

    grid = coordinate_grid(4, 8, torch.zeros(1))
    assert grid.shape == (1, 2, 4, 8)
    assert torch.allclose(grid[0, 0, 0], torch.linspace(-7 / 8, 7 / 8, 8))  # x, left to right
    assert torch.allclose(grid[0, 1, :, 0], torch.linspace(-3 / 4, 3 / 4, 4))  # y, top down
    c = cond(2)
    flat = torch.zeros(2, 3, 16, 16)  # one colour everywhere: only position can vary
    outputs = {}
    for coords in ("none", "stem", "levels"):
        torch.manual_seed(0)
        unet = EfficientUNet(UNetConfig(**{**TINY.__dict__, "coords": coords})).eval()
        seen = []
        unet.stem.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        with torch.no_grad():
            outputs[coords] = unet(flat, torch.tensor([10.0, 10.0]), c.embeds, c.mask)
        inner = seen[0][:, :, 1:-1, 1:-1]  # away from the zero padding of the border
        spread = (inner - inner.mean((2, 3), keepdim=True)).abs().max()
        assert (spread > 1e-3) == (coords != "none"), (coords, spread)
        assert unet.stem.in_channels == 3 + 2 * (coords != "none")
    assert (unet.level_coords is not None) and len(unet.level_coords) == 1
    with pytest.raises(ValueError, match="coords"):
        EfficientUNet(UNetConfig(**{**TINY.__dict__, "coords": "polar"}))


def test_attention_position_codes_let_a_flat_map_attend_by_place():
    """Cross-attention of a map with one colour everywhere: without codes every position asks
    the same query and gets the same answer; with them each place attends differently."""
    torch.manual_seed(0)
    text, mask = torch.randn(1, 4, 12), torch.ones(1, 4, dtype=torch.bool)
    flat = torch.ones(1, 16, 8, 8)
    for positions in (False, True):
        torch.manual_seed(1)
        layer = Attention(16, 2, 8, context_dim=12, groups=4, positions=positions).eval()
        torch.nn.init.normal_(layer.to_out.weight, std=0.5)  # zero-initialised otherwise
        with torch.no_grad():
            out = layer(flat, text, mask)
        spread = (out - out.mean((2, 3), keepdim=True)).abs().max()
        assert (spread > 1e-3) == positions, (positions, spread)
    with pytest.raises(InputError, match="divisible by 4"):
        Attention(18, 2, 8, positions=True)
