"""TextToImagePipeline: the object the CLI, the UI and Python users call. It loads and saves
its folder through model_folder.py and runs the cascade (cascade.py) under the controls
that stage_controls.py builds. Each task (generate, edit, edit_prompt, upscale, score) is
one public method, which is why the module is long."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cascade import Stage, run_stages
from .config import CascadeConfig, SamplerConfig, TextEncoderConfig
from .control.attention_guidance import COUNT_LAYOUT_STEP
from .diffusion.denoiser import Denoiser, TextCondition
from .domains import DEFAULT_DOMAIN, get_domain
from .errors import InputError
from .images import from_pil, to_pil
from .model_folder import (
    index_domain,
    is_exported,
    model_path,
    read_folder,
    write_folder,
)
from .models.alignment import Aligner
from .models.sr import RegressionSR
from .models.text_encoders import TextEncoder, build_text_encoder
from .models.unet import EfficientUNet

RERANK_SEED_STRIDE = 1_000_003  # seed offset between rerank candidates of one image


class TextToImagePipeline:
    """Text in, images out: encode the prompt once, run the cascade's stages.

    Load with `from_pretrained(path)` (no path: the built-in `shapes` model) or join folders
    trained apart with `assemble`; save with `save_pretrained` (safetensors and JSON).
    Generate with `pipe(prompt, n=4, seed=0)`, which returns PIL images; every stage,
    sampler and control option is a keyword of `__call__`. Edit with `edit_prompt`
    (prompt-to-prompt or planned edits) and `edit` (img2img, inpainting); enlarge given
    images with `upscale`; judge image-text fit with `score` (the aligner). `to("cuda")`
    moves it to a GPU.

    Example:
        >>> pipe = TextToImagePipeline.from_pretrained()
        >>> images = pipe("two red circles to the left of a blue star", n=2, seed=1)
    """

    def __init__(self, text_encoder: TextEncoder, text_config: TextEncoderConfig,
                 stages: list[Stage], aligner: Aligner | None = None,
                 domain: str = DEFAULT_DOMAIN):
        CascadeConfig(text_config, [s.cfg for s in stages])  # validates the stage chain
        self.domain = get_domain(domain).name  # what its scene specs are (domains/)
        for s in stages:
            if s.cfg.reads_regions and s.cfg.regression.region_dim != text_encoder.dim:
                raise InputError(f"stage {s.name!r} reads region prompts of width "
                                 f"{s.cfg.regression.region_dim}, but the text encoder's is "
                                 f"{text_encoder.dim}")
        self.text_encoder, self.text_config = text_encoder, text_config
        self.stages = stages
        self.aligner = aligner  # scores image-text fit; None when the folder has none
        self.device = torch.device("cpu")
        self.offload = False  # set by `to("cuda")`: one stage on the GPU at a time
        self.scene_sketch_strength = 0.3  # scene control starts from its layout sketch (SDEdit)
        # the same for a scene with a group of several objects: later in the schedule, as
        # the model left one object of such a group out of its box from 0.3 (README)
        self.scene_count_sketch_strength = 0.2
        # layout guidance a scene with a group of several objects gets when none is asked
        # (objects of a count went missing without it); 0 turns it off
        self.scene_count_layout = COUNT_LAYOUT_STEP
        self.scene_isolation = True  # a scene region's prompt sees the background, not the others
        self.exported: str | None = None  # the runtime of an exported pipeline (export.py)

    # ------------------------------------------------------------------ folders
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None,
                        dtype: torch.dtype | None = None) -> TextToImagePipeline:
        """Load a pipeline folder, or a built-in model by name (`shapes`, the default with no
        path; a folder of that name wins). `dtype`: a frozen text encoder's weights are read
        straight into it, for `to("cuda", dtype)` (a T5-XXL then needs half the host memory
        to load); the other weights load in float32 and `to` casts them."""
        root = model_path(path)
        if is_exported(root):  # graphs for onnxruntime or OpenVINO
            return cls.from_exported(root)
        parts = read_folder(root, dtype)
        return cls(parts.text_encoder, parts.text_config, parts.stages, parts.aligner,
                   parts.domain)

    @classmethod
    def from_exported(cls, path: str | Path, runtime: str | None = None
                      ) -> TextToImagePipeline:
        """A pipeline over an exported folder's graphs (`export.py`; `from_pretrained` reads
        one too). `runtime`: onnxruntime or openvino; default: the graphs' own."""
        from .export import load_exported

        parts = load_exported(path, runtime)
        pipe = cls(parts.text_encoder, parts.text_config, parts.stages,
                   domain=index_domain({"domain": parts.domain}, Path(path)))
        pipe.scene_count_layout = 0.0  # layout guidance takes gradients through the U-Net
        pipe.exported = parts.runtime  # what reads or steers attention refuses
        return pipe

    @classmethod
    def from_preset(cls, preset: str | CascadeConfig, text_encoder: str | Path | None = None,
                    seed: int = 0, dtype: torch.dtype | None = None) -> TextToImagePipeline:
        """An untrained cascade of a preset (random weights drawn from `seed`): to train from
        scratch, or to time a layout on new hardware. `text_encoder`: a local folder for the
        preset's frozen encoder (e.g. a small T5 in place of T5-XXL); `dtype` as for
        `from_pretrained`."""
        from dataclasses import replace

        from .config import load_preset

        cascade = load_preset(preset) if isinstance(preset, str) else preset
        text_cfg = cascade.text_encoder
        if text_encoder is not None:
            text_cfg = replace(text_cfg, path=str(text_encoder))
        encoder = build_text_encoder(text_cfg, dtype or torch.float32)
        torch.manual_seed(seed)
        stages = []
        for cfg in cascade.stages:
            if cfg.kind == "regression":
                model = RegressionSR(cfg.regression)
            else:
                cfg = replace(cfg, unet=replace(cfg.unet, text_dim=encoder.dim))
                model = Denoiser(EfficientUNet(cfg.unet), cfg.diffusion)
            stages.append(Stage(cfg, model.eval()))
        return cls(encoder.eval(), text_cfg, stages, domain=cascade.domain)

    @classmethod
    def assemble(cls, paths: list[str | Path]) -> TextToImagePipeline:
        """One pipeline from folders trained apart (e.g. a base run's model, an SR run's
        model, an aligner run's aligner/ folder): their stages in the given order, the first
        aligner found. Stages that read text must share the first folder's text encoder (a
        regression SR stage reads none unless it reads region prompts)."""
        aligners = [(i, Aligner.from_folder(p)) for i, p in enumerate(paths)
                    if not (Path(p) / "model_index.json").is_file()
                    and (Path(p) / "config.json").is_file()]
        alone = {i for i, _ in aligners}
        paths = [p for i, p in enumerate(paths) if i not in alone]
        if not paths:
            raise InputError("assemble: no pipeline folder among the paths (only aligners)")
        parts = [cls.from_pretrained(p) for p in paths]
        for part, path in zip(parts[1:], paths[1:], strict=True):
            reads_text = any(s.cfg.kind == "diffusion" or s.cfg.reads_regions
                             for s in part.stages)
            if reads_text and part.text_config != parts[0].text_config:
                raise InputError(f"{path}: its text encoder differs from the first folder's")
        stages = [s for part in parts for s in part.stages]
        aligner = next((a for _, a in aligners), None) or \
            next((p.aligner for p in parts if p.aligner is not None), None)
        return cls(parts[0].text_encoder, parts[0].text_config, stages, aligner, parts[0].domain)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the pipeline as a folder (`model_index.json`, a sub-folder per component
        with `config.json` and `model.safetensors`), whole or not at all; returns it."""
        text_weights = None if self.text_encoder.frozen else self.text_encoder.state_dict()
        return write_folder(Path(path), self.text_config, text_weights,
                             [(s.cfg, s.weights()) for s in self.stages], self.aligner,
                             self.domain)

    def to(self, device: str | torch.device,
           dtype: torch.dtype | None = None) -> TextToImagePipeline:
        """Move to `device`; on a GPU, stages wait on the CPU until they run (offload).
        `dtype` (a GPU only): keep every weight in float16 or bfloat16 there, and run each
        stage and the text encoder in that precision (autocast); the CPU keeps fp32 weights
        (its bf16 is autocast, `bf16=` of each call). The aligner stays float32."""
        device = torch.device(device)
        if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise InputError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        if device.type != "cuda" and dtype not in (None, torch.float32):
            raise InputError(f"{dtype} weights are for a CUDA device; on the CPU weights stay "
                             "float32 (bf16 runs as autocast: --precision bf16)")
        self.device = device
        self.offload = self.device.type == "cuda"
        if dtype is not None:  # the networks; a denoiser's schedule and the aligner stay fp32
            for module in [self.text_encoder, *(s.model if s.cfg.kind == "regression"
                                                else s.model.unet for s in self.stages)]:
                module.to(dtype=dtype)
        self.text_encoder.to(self.device)
        if self.aligner is not None:
            self.aligner.to(self.device)
        for stage in self.stages:
            stage.model.to("cpu" if self.offload else self.device)
        return self

    # ------------------------------------------------------------------ generation
    def encode(self, prompts: list[str]) -> TextCondition:
        """The prompts' per-token text states and mask, on the pipeline's device."""
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise InputError("prompt is empty")
        with torch.no_grad():
            embeds, mask = self.text_encoder.encode(prompts)
        return TextCondition(embeds.float().to(self.device), mask.to(self.device))

    def stage_index(self, stage: int | str) -> int:
        """A stage by position or name."""
        names = [s.name for s in self.stages]
        if isinstance(stage, str):
            if stage not in names:
                raise InputError(f"no stage {stage!r} (stages: {', '.join(names)})")
            return names.index(stage)
        if not isinstance(stage, int) or not -len(names) <= stage < len(names):
            raise InputError(f"stage index {stage} out of range (the pipeline has "
                             f"{len(names)} stages: {', '.join(names)})")
        return stage % len(names)

    def check_options(self, sampler=None, steps=None, guidance=None, threshold=None,
                      stage_options: dict | None = None) -> list[SamplerConfig]:
        """Every stage's sampling settings, validated: the named arguments apply to the base
        stage, `stage_options` ({stage name or index: {option: value}}) to any stage."""
        per_stage = [{} for _ in self.stages]
        per_stage[0] = dict(sampler=sampler, steps=steps, guidance=guidance, threshold=threshold)
        for key, options in (stage_options or {}).items():
            if not isinstance(options, dict):
                raise InputError(f"options of stage {key!r} must be a dict")
            per_stage[self.stage_index(key)].update(options)
        return [stage.settings(**o) for stage, o in zip(self.stages, per_stage, strict=True)]

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], n: int = 1, seed: int = 0,
                 sampler: str | None = None, steps: int | None = None,
                 guidance: float | None = None, threshold: float | None = None,
                 progress: bool = True, bf16: bool | None = None, rerank: int = 1,
                 stages: int | str | None = None, stage_options: dict | None = None,
                 return_stages: bool = False, negative_prompt: str | None = None,
                 regions: list | None = None, scene: dict | str | None = None,
                 excite: bool | list[str] = False, layout_guidance: float = 0.0,
                 plan_layout: bool = False, revise_prompt: bool = False,
                 seeds: list[int] | None = None, callback=None):
        """`n` images per prompt; image j of the flattened list uses seed `seed + j` alone
        (`seeds`: each image's own seed instead, plain prompts only; what a server batching
        several requests into one call uses). `callback(stage, step, steps, x)` is called
        after every denoising step of every stage (x: the batch's current sample), and once
        after a stage without a loop (regression SR; step 0 of 1).

        Unset sampling options take each stage's defaults (its config's `sampling`); the
        named ones set the base stage, `stage_options` any stage. `stages` is the last stage
        to run (name or index; default: all). With `rerank` N > 1, the base image j is the
        best by `score` of N candidates drawn with seeds `seed + j + k * RERANK_SEED_STRIDE`,
        k < N (k = 0 is the image drawn without rerank). With `return_stages`, returns
        (images, {stage name: images}). `bf16`: autocast on the CPU; None (default) uses it
        only where the CPU computes bf16 natively (precision.py), as every method here does.

        Control (`control/`): a prompt may carry word weights and AND / NOT clauses;
        `negative_prompt` replaces the unconditional branch; `regions` (control.regions.Region)
        guide their masks with their own prompts; `scene` (a scene spec) compiles to one region
        per object on a known background. `excite` (True, or the words) runs attend-and-excite
        on the prompt's subjects; `layout_guidance` > 0 pulls each region's subject into its
        region by a gradient step of that size (control.attention_guidance). `plan_layout`
        reads each prompt's scene off its words (domains.shapes.plan: the shapes grammar, else
        ordinary language through domains.shapes.reading) and draws it with scene control, the
        prompt as the global prompt. `revise_prompt` draws each prompt as the planner read
        it, in the training grammar's words (`domains.shapes.plan.revised_prompt`); a prompt it
        cannot read raises PlanError.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if revise_prompt:
            from .domains.shapes.plan import plan_with_report, revised_prompt

            prompts = [revised_prompt(plan_with_report(p)[0]) for p in prompts]
        if n <= 0:
            raise InputError(f"n must be positive, got {n}")
        if not isinstance(rerank, int) or rerank < 1:
            raise InputError(f"rerank must be a positive integer, got {rerank}")
        if rerank > 1 and self.aligner is None:
            raise InputError("rerank needs a model with an aligner (none in this folder)")
        if self.exported and (excite or layout_guidance):
            raise InputError("attend-and-excite and layout guidance steer the U-Net's attention: "
                             f"they need the PyTorch pipeline, not its {self.exported} export")
        if self.stages[0].is_sr:
            raise InputError("this pipeline starts with a super-resolution stage: use upscale")
        stop = len(self.stages) if stages is None else self.stage_index(stages) + 1
        settings = self.check_options(sampler, steps, guidance, threshold, stage_options)
        from .stage_controls import is_plain

        if plan_layout and scene is not None:
            raise InputError("plan_layout plans the scene from the prompt: give no scene too")
        scenes = [get_domain(self.domain).read(p) for p in prompts] if plan_layout else \
            [scene] * len(prompts)
        if seeds is not None and len(seeds) != len(prompts) * n:
            raise InputError(f"seeds: expected {len(prompts) * n}, got {len(seeds)}")
        if negative_prompt is not None or regions or scene is not None or excite or \
                layout_guidance or plan_layout or not all(is_plain(p) for p in prompts):
            if seeds is not None:
                raise InputError("seeds (one per image) apply to plain prompts only")
            if rerank > 1:
                raise InputError("rerank does not combine with control options")
            parts = [self._controlled(p, n, seed + i * n, settings, stop, negative_prompt,
                                      regions or [], scenes[i], progress, bf16, excite,
                                      layout_guidance, on_step=callback)
                     for i, p in enumerate(prompts)]
            outputs = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
            return self._finish(outputs, stop, return_stages)
        wanted = [p for p in prompts for _ in range(n)]
        repeated = wanted * rerank  # candidate k of image j sits at k * len(wanted) + j
        own = seeds if seeds is not None else [seed + j for j in range(len(wanted))]
        seeds = [own[j] + k * RERANK_SEED_STRIDE for k in range(rerank)
                 for j in range(len(wanted))]
        cond = self.encode(repeated)
        x = self._run(cond, seeds, settings, None, 0, 1, progress, bf16,
                      on_step=callback)[self.stages[0].name]
        outputs = {self.stages[0].name: x}
        if rerank > 1:
            scores = self._score_tensor(x, repeated).view(rerank, len(wanted))
            best = scores.argmax(0)  # [len(wanted)]
            x = x.view(rerank, len(wanted), *x.shape[1:])[best, torch.arange(len(wanted))]
            seeds = [seeds[int(k) * len(wanted) + j] for j, k in enumerate(best)]
            cond = TextCondition(cond.embeds[: len(wanted)], cond.mask[: len(wanted)])
            outputs[self.stages[0].name] = x
        outputs.update(self._run(cond, seeds, settings, x, 1, stop, progress, bf16,
                                 on_step=callback))
        return self._finish(outputs, stop, return_stages)

    def _finish(self, outputs: dict, stop: int, return_stages: bool):
        images = to_pil(outputs[self.stages[stop - 1].name])
        if return_stages:
            return images, {name: to_pil(v) for name, v in outputs.items()}
        return images

    def _controlled(self, prompt, n, seed, settings, stop, negative, regions, scene, progress,
                    bf16, excite=False, layout=0.0, kept=None, on_step=None) -> dict:
        """Every stage's output under control; `scene` is a spec or a CompiledScene; `kept`
        (x0 [n, 3, R, R], keep [1, 1, R, R]) replaces what the base stage keeps known (by
        default a scene's background outside its regions)."""
        from .control.regions import CompiledScene, background_image
        from .domains import compile_scene
        from .stage_controls import (
            attention_guidance,
            composition,
            img2img_start,
            keep_known,
            region_prompts_into_sr,
            stage_controls,
        )

        base = self.stages[0].cfg
        regions, known, compiled = list(regions), None, None
        if scene is not None:
            compiled = scene if isinstance(scene, CompiledScene) else \
                compile_scene(scene, base.resolution, seed, prompt or None, domain=self.domain)
            if not layout and compiled.counted:
                layout = self.scene_count_layout
            regions += compiled.regions
            prompt = compiled.prompt
            known = background_image(compiled.background_rgb, base.resolution)
        comp = composition(self, prompt, regions, negative, settings[0].guidance,
                           settings[0].threshold, known if self.scene_isolation else None)
        controls = stage_controls(self, comp, settings, stop)
        region_prompts_into_sr(self, controls, regions, n, stop)
        controls[0].update = attention_guidance(self, prompt, regions, excite, layout,
                                                settings[0].steps)
        seeds = [seed + k for k in range(n)]
        if kept is not None:
            keep_known(self, controls, 0, *kept, seeds)
        elif known is not None:
            inside = torch.stack([r.mask for r in regions]).sum(0).clamp(max=1)
            keep_known(self, controls, 0, known, 1 - inside, seeds)
        if compiled is not None and compiled.sketch is not None:
            strength = self.scene_count_sketch_strength if compiled.counted \
                else self.scene_sketch_strength
            if strength < 1:
                img2img_start(self, controls[0], compiled.sketch.to(self.device), strength,
                              settings[0], seeds)
        return self._run(comp.terms[0].cond.repeat(n), seeds, settings, None, 0, stop,
                         progress, bf16, controls, on_step)

    @torch.no_grad()
    def edit(self, image: Image.Image, prompt: str, mask: Image.Image | None = None,
             strength: float | None = None, n: int = 1, seed: int = 0,
             negative_prompt: str | None = None, stage_options: dict | None = None,
             progress: bool = True, bf16: bool | None = None,
             **base_options) -> list[Image.Image]:
        """Image-guided generation through the cascade: img2img (SDEdit) with `strength`
        (default 0.6), or inpainting with `mask` (white: repaint; the rest is kept at every
        stage; default strength 1)."""
        from .stage_controls import composition, img2img_start, keep_known, stage_controls

        if n <= 0:
            raise InputError(f"n must be positive, got {n}")
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            raise InputError("the image must be an RGB image")
        if image.width != image.height:
            raise InputError(f"the image is not square ({image.width}x{image.height})")
        if mask is not None and (not isinstance(mask, Image.Image) or mask.size != image.size):
            got = f"{mask.width}x{mask.height}" if isinstance(mask, Image.Image) else "no image"
            raise InputError(f"the mask must be an image of the image's size "
                             f"({image.width}x{image.height}), got {got}")
        strength = strength if strength is not None else (1.0 if mask is not None else 0.6)
        settings = self.check_options(stage_options=stage_options, **base_options)
        stop = len(self.stages)
        comp = composition(self, prompt, [], negative_prompt, settings[0].guidance,
                           settings[0].threshold)
        controls = stage_controls(self, comp, settings, stop)
        seeds = [seed + k for k in range(n)]
        base = self.stages[0].cfg.resolution
        img2img_start(self, controls[0], from_pil([image], base, Image.BICUBIC).to(self.device),
                      strength, settings[0], seeds)
        if mask is not None:
            for i, stage in enumerate(self.stages):
                if stage.cfg.kind != "diffusion":
                    continue
                side = stage.cfg.resolution
                known = from_pil([image], side, Image.BICUBIC)
                repaint = torch.from_numpy(np.asarray(mask.convert("L").resize(
                    (side, side), Image.BILINEAR), np.float32) / 255)[None, None]
                keep_known(self, controls, i, known, 1 - repaint, seeds)
        outputs = self._run(comp.terms[0].cond.repeat(n), seeds, settings, None, 0, stop,
                            progress, bf16, controls)
        return to_pil(outputs[self.stages[-1].name])

    @torch.no_grad()
    def edit_prompt(self, source: str, target: str, n: int = 1, seed: int = 0,
                    cross_replace: float = 0.8, self_replace: float = 0.4,
                    local_blend: bool = True, blend_threshold: float = 0.6,
                    reweight: dict[str, float] | None = None, inject: bool | None = None,
                    stage_options: dict | None = None, progress: bool = True,
                    bf16: bool | None = None, plan_layout: bool = False,
                    **base_options) -> tuple[list, list]:
        """Prompt-to-prompt editing (control/attention.py): `n` pairs (source image, edited
        image), pair k drawn from seed `seed + k`. The target's attention maps are the
        source's for the first `cross_replace` (cross) and `self_replace` (self) share of the
        base stage's steps; `reweight` scales words' attention ({"red": 2.0}); the local
        blend keeps pixels away from the edit identical at every stage. `inject` False draws
        the target free from the same noise and blends where the two predictions differ, so
        an object can also move, grow or multiply; the default injects only for a re-weighting
        of the same prompt (the bench in README compares both). `plan_layout` reads both
        prompts as scenes and redraws only the objects that changed (planned_edit)."""
        from .cascade import StageControl
        from .control.attention import (
            EditState,
            PromptToPrompt,
            SRBlend,
            check_edit,
            map_tokens,
            reweight_positions,
        )
        from .stage_controls import is_plain

        if n <= 0:
            raise InputError(f"n must be positive, got {n}")
        if self.exported:
            raise InputError("prompt-to-prompt injects the U-Net's attention: it needs the "
                             f"PyTorch pipeline, not its {self.exported} export")
        for p in (source, target):
            if not isinstance(p, str) or not p.strip():
                raise InputError("prompt is empty")
            if not is_plain(p):
                raise InputError(f"prompt-to-prompt maps plain prompts; {p!r} has AND / NOT "
                                 "or word weights")
        if plan_layout:
            if reweight or inject:
                raise InputError("a planned edit redraws changed objects: no reweight or inject")
            from .planned_edit import planned_edit

            settings = self.check_options(stage_options=stage_options, **base_options)
            drawn, edited = planned_edit(self, source, target, n, seed, settings, progress, bf16)
            last = self.stages[-1].name
            return to_pil(drawn[last]), to_pil(edited[last])
        if not reweight or source.split() != target.split():
            check_edit(source.split(), target.split())
        for name, value in (("cross_replace", cross_replace), ("self_replace", self_replace),
                            ("blend_threshold", blend_threshold)):
            if not 0 <= value <= 1:
                raise InputError(f"{name} must be in [0, 1], got {value}")
        if inject not in (None, True, False):
            raise InputError(f"inject must be True, False or None, got {inject!r}")
        if inject is None:
            inject = source.split() == target.split()
        settings = self.check_options(stage_options=stage_options, **base_options)
        steps = settings[0].steps
        if not inject:
            cross_replace = self_replace = 0.0
        tokens = map_tokens(self.text_encoder.token_ids(source),
                            self.text_encoder.token_ids(target),
                            reweight_positions(self.text_encoder, target, reweight or {}))
        state = EditState(tokens, n, round(cross_replace * steps), round(self_replace * steps),
                          blend_threshold, "attention" if inject else "prediction")
        cond = self.encode([source, target]).repeat(n)
        guide = PromptToPrompt(state, cond, settings[0].guidance, settings[0].threshold,
                               self.stages[0].cfg.resolution, local_blend)
        controls = {0: StageControl(guide=guide, callback=guide.callback)}
        if local_blend:
            controls.update({i: StageControl(callback=SRBlend(state))
                             for i in range(1, len(self.stages))})
        seeds = [seed + k for k in range(n)] * 2  # a pair shares its noise at every stage
        out = self._run(cond, seeds, settings, None, 0, len(self.stages), progress, bf16,
                        controls)
        images = to_pil(out[self.stages[-1].name])
        return images[:n], images[n:]

    @torch.no_grad()
    def upscale(self, images: list[Image.Image], prompt: str | list[str] | None = None,
                seed: int = 0, stage: int | str = 1, stages: int | str | None = None,
                stage_options: dict | None = None, progress: bool = True,
                bf16: bool | None = None, regions: list | None = None) -> list[Image.Image]:
        """Run the SR stages from `stage` (through `stages`, default the last) on given
        images: square RGB, at most the stage's output side, resized to its input side.
        `regions` (control.regions.Region, masks at any side) reach the stages that read
        region prompts, the same for every image; without them a stage that `reads_prompt`
        reads `prompt` over the whole image. `prompt` None: no text (only where every stage
        run is a regression stage)."""
        start = self.stage_index(stage)
        first = self.stages[start]
        if not first.is_sr:
            raise InputError(f"stage {first.name!r} is not a super-resolution stage")
        stop = len(self.stages) if stages is None else self.stage_index(stages) + 1
        if stop <= start:
            raise InputError("the last stage to run comes before the first")
        prompts = None
        if prompt is None:
            for s in self.stages[start:stop]:
                if s.cfg.kind == "diffusion":
                    raise InputError(f"stage {s.name!r} reads text: give a prompt")
        else:
            prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
            if len(prompts) != len(images):
                raise InputError(f"{len(images)} images but {len(prompts)} prompts")
        for i, image in enumerate(images):
            if isinstance(image, Image.Image) and image.width != image.height:
                raise InputError(f"image {i} is not square ({image.width}x{image.height})")
            if isinstance(image, Image.Image) and image.width > first.cfg.resolution:
                raise InputError(f"image {i} is too large ({image.width} px; stage "
                                 f"{first.name!r} enlarges to {first.cfg.resolution} px)")
        settings = self.check_options(stage_options=stage_options)
        x = from_pil(images, first.cfg.input_resolution, Image.BICUBIC).to(self.device)
        seeds = [seed + j for j in range(len(images))]
        controls = {}
        if regions:
            from .control.regions import check_regions
            from .stage_controls import region_prompts_into_sr

            check_regions(regions)
            if not any(s.cfg.reads_regions for s in self.stages[start:stop]):
                raise InputError("no stage run here reads region prompts (a regression SR "
                                 "stage with region_dim does)")
            region_prompts_into_sr(self, controls, regions, len(images), stop)
        cond = None if prompts is None else self.encode(prompts)
        out = self._run(cond, seeds, settings, x, start, stop, progress, bf16, controls)
        return to_pil(out[self.stages[stop - 1].name])

    def _run(self, cond, seeds, settings, x, start, stop, progress, bf16, controls=None,
             on_step=None):
        return run_stages(self.stages, cond, seeds, settings, x, start, stop, self.device,
                          progress, bf16, self.offload, controls, on_step)

    # ------------------------------------------------------------------ scoring
    def score(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        """CLIP-score: the aligner's cosine similarity of each (image, prompt) pair."""
        if self.aligner is None:
            raise InputError("this model has no aligner (train one: fineimagen train --stage "
                             "align)")
        if len(images) != len(prompts):
            raise InputError(f"{len(images)} images but {len(prompts)} prompts")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise InputError("prompt is empty")
        batch = from_pil(images, self.aligner.cfg.vit.image_size).to(self.device)
        return self._score_tensor(batch, prompts).tolist()

    @torch.no_grad()
    def _score_tensor(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return torch.cat([self.aligner.score(x[i:i + 256], prompts[i:i + 256])
                          for i in range(0, len(prompts), 256)]).cpu()



