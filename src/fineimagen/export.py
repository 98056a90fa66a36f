"""Export a pipeline's networks to ONNX or OpenVINO IR, and sample from the exported graphs.

`export_pipeline(pipe, out, "onnx" | "openvino")` writes one graph per network: the text
encoder's (a frozen encoder's hidden states, or a trainable one's states from token ids) and
each stage's (a diffusion stage's U-Net, a regression SR stage's network), beside their
configs. `TextToImagePipeline.from_exported(folder)` samples with networks that run in
onnxruntime or OpenVINO; tokenizing, the samplers, classifier-free guidance, thresholding and
the composition of predictions stay in Python, so plain and negative prompts, word weights,
AND / NOT, regions and scene specs work as they do in PyTorch. What reads or changes the
U-Net's attention (prompt-to-prompt, attend-and-excite, layout guidance) needs PyTorch and is
refused; there is no aligner (rerank, score).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from .config import StageConfig, TextEncoderConfig
from .errors import InputError
from .files import atomic_folder, atomic_write_text, check_inside, check_links, read_json

FORMAT = "fineimagen-export"
FORMAT_VERSION = 1
FORMATS = {"onnx": "model.onnx", "openvino": "model.xml"}
RUNTIMES = ("onnxruntime", "openvino")
OPSET = 17


# ----------------------------------------------------------------------------- export
class _HiddenStates(nn.Module):
    """A transformers encoder as a graph: (input_ids, attention_mask) -> every hidden state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         output_hidden_states=True)
        return tuple(out.hidden_states)


class _TrainableStates(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, ids, mask):
        return self.encoder.states(ids, mask)


class _GuidedUNet(nn.Module):
    """A guidance-input U-Net with w as its last positional input (for tracing)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, text, text_mask, *rest):
        *low, guidance = rest
        lowres, aug_level = low if low else (None, None)
        return self.unet(x, t, text, text_mask, lowres, aug_level, guidance=guidance)


class _RegressionGraph(nn.Module):
    """A regression SR stage at its output size; region prompts as (masks, embeds)."""

    def __init__(self, model, size: int, reads_regions: bool):
        super().__init__()
        self.model, self.size, self.reads_regions = model, size, reads_regions

    def forward(self, lowres, masks=None, embeds=None):
        from .models.sr import RegionText

        regions = RegionText(masks, embeds) if self.reads_regions else None
        return self.model(lowres, (self.size, self.size), regions)


def export_pipeline(pipe, out: str | Path, fmt: str = "onnx") -> Path:
    """Write `pipe`'s networks as `fmt` graphs (with their configs) to the new folder `out`."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "openvino":
        _require("openvino", "openvino")
    _require("onnx", "onnx")
    pipe.to("cpu")
    with atomic_folder(out) as tmp:
        text_cfg = pipe.text_config
        (tmp / "text_encoder").mkdir()
        atomic_write_text(tmp / "text_encoder" / "config.json",
                          json.dumps(text_cfg.to_dict(), indent=2))
        _export_text(pipe.text_encoder, text_cfg, tmp / "text_encoder", fmt)
        for stage in pipe.stages:
            folder = tmp / stage.name
            folder.mkdir()
            atomic_write_text(folder / "config.json", json.dumps(stage.cfg.to_dict(), indent=2))
            _export_stage(stage, pipe.text_encoder.dim, folder, fmt)
        index = {"format": FORMAT, "format_version": FORMAT_VERSION, "graphs": fmt,
                 "text_encoder": "text_encoder", "stages": [s.name for s in pipe.stages],
                 "domain": pipe.domain}
        atomic_write_text(tmp / "model_index.json", json.dumps(index, indent=2))
    return Path(out)


def _export_text(encoder, cfg: TextEncoderConfig, folder: Path, fmt: str) -> None:
    ids = torch.ones(2, 5, dtype=torch.long)
    mask = torch.ones(2, 5, dtype=torch.bool)
    if cfg.kind == "trainable":
        module, args, names = _TrainableStates(encoder), (ids, mask), ["ids", "mask"]
        outputs = ["states"]
    else:
        depth = len(encoder.model(input_ids=ids, attention_mask=mask.long(),
                                  output_hidden_states=True).hidden_states)
        module, args = _HiddenStates(encoder.model), (ids, mask.long())
        names, outputs = ["input_ids", "attention_mask"], [f"hidden_{i}" for i in range(depth)]
    axes = {name: {0: "batch", 1: "tokens"} for name in names + outputs}
    _write_graph(module, args, names, outputs, axes, folder, fmt,
                 dynamo=cfg.kind == "trainable")


def _export_stage(stage, text_dim: int, folder: Path, fmt: str) -> None:
    cfg: StageConfig = stage.cfg
    side, b = cfg.resolution, 2
    if cfg.kind == "regression":
        low = cfg.input_resolution
        names, args = ["lowres"], [torch.zeros(b, 3, low, low)]
        if cfg.reads_regions:
            names += ["masks", "embeds"]
            args += [torch.zeros(b, 2, low, low), torch.zeros(b, 2, cfg.regression.region_dim)]
        module = _RegressionGraph(stage.model, side, cfg.reads_regions)
        axes = {"lowres": {0: "batch"}, "masks": {0: "batch", 1: "regions"},
                "embeds": {0: "batch", 1: "regions"}, "out": {0: "batch"}}
    else:
        module = stage.model.unet
        names = ["x", "t", "text", "text_mask"]
        args = [torch.zeros(b, 3, side, side), torch.tensor([1.0, 500.0]),
                torch.zeros(b, 5, text_dim), torch.ones(b, 5, dtype=torch.bool)]
        if cfg.unet.lowres_cond:
            names += ["lowres", "aug_level"]
            args += [torch.zeros(b, 3, side, side), torch.zeros(b)]
        if cfg.unet.guidance_input:
            module = _GuidedUNet(module)
            names.append("guidance")
            args.append(torch.ones(b))
        axes = {"x": {0: "batch"}, "t": {0: "batch"}, "text": {0: "batch", 1: "tokens"},
                "text_mask": {0: "batch", 1: "tokens"}, "lowres": {0: "batch"},
                "aug_level": {0: "batch"}, "guidance": {0: "batch"}, "out": {0: "batch"}}
    axes = {k: v for k, v in axes.items() if k in names or k == "out"}
    _write_graph(module, tuple(args), names, ["out"], axes, folder, fmt)


def _write_graph(module, args, names, outputs, axes, folder: Path, fmt: str,
                 dynamo: bool = False) -> None:
    """`dynamo`: torch.export's exporter (the TorchScript one baked nn.MultiheadAttention's
    batch and token counts into reshapes); the other graphs export with TorchScript's."""
    onnx_path = folder / FORMATS["onnx"]
    module = copy.deepcopy(module)  # tracing changed the MiniLM it traced (its text states
    # drifted by up to 2.0 afterwards): the caller's pipeline stays untouched
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused layer op has no ONNX form
    try:
        with torch.no_grad():
            if dynamo:  # every axis named in `axes` dynamic, by the forward's argument names
                shapes = {k: {a: torch.export.Dim.DYNAMIC for a in axes[k]} for k in names}
                torch.onnx.export(module.float().eval(), args, str(onnx_path),
                                  input_names=names, output_names=outputs,
                                  dynamic_shapes=shapes, opset_version=18, dynamo=True)
            else:
                torch.onnx.export(module.float().eval(), args, str(onnx_path),
                                  input_names=names, output_names=outputs, dynamic_axes=axes,
                                  opset_version=OPSET, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    if fmt == "openvino":
        import openvino as ov

        ov.save_model(ov.convert_model(str(onnx_path)), str(folder / FORMATS["openvino"]))
        onnx_path.unlink()


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"this needs {module}: pip install 'fineimagen[{extra}]'") from None


# ----------------------------------------------------------------------------- runtime
class Graph:
    """One exported graph in a runtime: named numpy inputs -> its outputs, in order."""

    def __init__(self, path: Path, runtime: str):
        self.runtime = runtime
        if runtime == "onnxruntime":
            ort = _require("onnxruntime", "onnx")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]
        else:
            ov = _require("openvino", "openvino")
            # f32 as exported: on a CPU with native bf16 (AVX-512 BF16, AMX) OpenVINO would
            # otherwise infer in bf16 and drift 7/255 from PyTorch on a model that follows
            # its prompt (measured on an AVX-512 BF16 AMD EPYC, 2026-12-07)
            self.compiled = ov.Core().compile_model(str(path), "CPU",
                                                    {"INFERENCE_PRECISION_HINT": "f32"})
            self.inputs = [port.get_names() for port in self.compiled.inputs]  # per port

    def __call__(self, **arrays) -> list[np.ndarray]:
        if self.runtime == "onnxruntime":
            return self.session.run(None, {k: np.ascontiguousarray(arrays[k])
                                           for k in self.inputs})
        feed = [np.ascontiguousarray(next(arrays[k] for k in names if k in arrays))
                for names in self.inputs]
        result = self.compiled(feed)
        return [result[k] for k in range(len(self.compiled.outputs))]


class _Runtime(nn.Module):
    """Base of the graph-backed stand-ins: no weights, a device anchor for `.device`."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def run(self, **tensors) -> list[torch.Tensor]:
        arrays = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
        return [torch.from_numpy(np.asarray(a)) for a in self.graph(**arrays)]


class RuntimeUNet(_Runtime):
    def __init__(self, graph: Graph, cfg):
        super().__init__(graph)
        self.cfg = cfg  # the U-Net's config (the denoiser reads guidance_input)

    def forward(self, x, t, text, text_mask, lowres=None, aug_level=None, pooled=None,
                guidance=None):
        if pooled is not None:
            raise InputError("prompt-to-prompt needs the PyTorch pipeline (not an export)")
        extra = {} if lowres is None else {"lowres": lowres.float(),
                                           "aug_level": aug_level.float()}
        if self.cfg.guidance_input:
            extra["guidance"] = (torch.ones(x.shape[0]) if guidance is None
                                 else guidance.float())
        t = t.float().expand(x.shape[0]) if t.dim() == 0 else t.float()
        return self.run(x=x.float(), t=t, text=text.float(), text_mask=text_mask.bool(),
                        **extra)[0].to(x.dtype)


class RuntimeRegression(_Runtime):
    def __init__(self, graph: Graph, region_dim: int | None):
        super().__init__(graph)
        self.region_dim = region_dim

    def forward(self, lowres, size, regions=None):
        if not self.region_dim:
            return self.run(lowres=lowres.float())[0]
        if regions is None:  # all-zero: no region
            b, _, h, w = lowres.shape
            masks, embeds = torch.zeros(b, 1, h, w), torch.zeros(b, 1, self.region_dim)
        else:
            masks, embeds = regions.masks, regions.embeds
        return self.run(lowres=lowres.float(), masks=masks.float(), embeds=embeds.float())[0]


class RuntimeHiddenStates(_Runtime):
    """Stands in for a transformers encoder inside HFEncoder."""

    def forward(self, input_ids, attention_mask, output_hidden_states=True):
        return SimpleNamespace(hidden_states=self.run(input_ids=input_ids.long(),
                                                      attention_mask=attention_mask.long()))


@dataclass
class ExportedModel:
    """An exported folder's components, its networks run by `runtime`."""

    text_encoder: nn.Module
    text_config: TextEncoderConfig
    stages: list
    domain: str
    runtime: str


def load_exported(folder: str | Path, runtime: str | None = None) -> ExportedModel:
    """The components over an exported folder's graphs (`TextToImagePipeline.from_pretrained`
    and `from_exported` build the pipeline). `runtime`: onnxruntime or openvino (OpenVINO
    also reads ONNX graphs); default: the one of the graphs' format."""
    from .cascade import Stage
    from .diffusion.denoiser import Denoiser
    from .models.text_encoders import build_text_encoder

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"exported model folder not found: {root}")
    check_links(root)
    index = read_json(root / "model_index.json", "model_index.json")
    if index.get("format") != FORMAT or index.get("graphs") not in FORMATS:
        raise InputError(f"{root}: not a fineimagen export (see `fineimagen export`)")
    if index.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{root}: export format {index['format_version']} is newer than "
                         f"this fineimagen reads ({FORMAT_VERSION}); upgrade fineimagen")
    runtime = runtime or ("openvino" if index["graphs"] == "openvino" else "onnxruntime")
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    graph_file = FORMATS[index["graphs"]]

    def graph(name: str) -> Graph:
        path = check_inside(root, root / name / graph_file, "model_index.json")
        if not path.is_file():
            raise InputError(f"{root}: {name}/{graph_file} is missing")
        return Graph(path, runtime)

    text_cfg = TextEncoderConfig.from_dict(
        read_json(root / "text_encoder" / "config.json", "text_encoder/config.json"),
        "text_encoder")
    encoder = build_text_encoder(text_cfg)
    text_graph = graph("text_encoder")
    if text_cfg.kind == "trainable":
        runtime_states = _Runtime(text_graph)
        encoder.states = lambda ids, mask: runtime_states.run(ids=ids, mask=mask)[0]
    else:
        encoder.model = RuntimeHiddenStates(text_graph)
    stages = []
    for name in index["stages"]:
        cfg = StageConfig.from_dict(read_json(root / name / "config.json",
                                              f"{name}/config.json"), name)
        if cfg.kind == "regression":
            model = RuntimeRegression(graph(name), cfg.regression.region_dim
                                      if cfg.reads_regions else None)
        else:
            model = Denoiser(RuntimeUNet(graph(name), cfg.unet), cfg.diffusion)
        stages.append(Stage(cfg, model.eval()))
    return ExportedModel(encoder.eval(), text_cfg, stages, index.get("domain", "shapes"),
                         runtime)
