"""The web UI (Gradio), mounted by the server at /ui: generate with regions drawn by mouse,
edit (prompt-to-prompt and inpainting), and score images against prompts.

Every model call goes through the server's queue (`Batcher`), so the UI and the API share
one model and never compute at once. Regions live as JSON in a text box: the canvas writes
boxes there, a user may edit it, load or save it. Analytics and web fonts are off, so the
page loads nothing from outside the server. One Gradio layout and its handlers: long,
but one screen's code in one place.
"""

from __future__ import annotations

import json
import os
import tempfile

from ..errors import InputError
from .batcher import Batcher, Job

CANVAS = 256  # CSS pixels of the region canvas

SYNTAX = """**Prompt language.** Word weights `(red:1.5)`, `(red)` (x1.1), `[red]` (/1.1); clauses
joined by `AND` (composed) and `NOT` (pushed away), each with an optional weight `:0.8`.
**Regions**: drag boxes on the canvas; each takes the *region prompt* at the time it is
drawn (or edit the JSON: `[{"prompt": "a red star", "box": [x0, y0, x1, y1]}]` in fractions of
the side, or `"cell": "top left"`). A JSON object with `"objects"` is a scene spec."""

# the canvas: drag to draw a box; boxes are written to the regions JSON text box
CANVAS_JS = """
const canvas = element.querySelector('canvas');
const ctx = canvas.getContext('2d');
const S = canvas.width;
const field = () => document.querySelector('#regions-json textarea');
const regionPrompt = () => document.querySelector('#region-prompt textarea');
let start = null, current = null;
function boxes() {
  try { const v = JSON.parse(field().value || '[]'); return Array.isArray(v) ? v : []; }
  catch (e) { return []; }
}
function draw() {
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, S, S);
  ctx.strokeStyle = '#ddd'; ctx.lineWidth = 1;
  for (const k of [1, 2]) {
    ctx.beginPath(); ctx.moveTo(k * S / 3, 0); ctx.lineTo(k * S / 3, S);
    ctx.moveTo(0, k * S / 3); ctx.lineTo(S, k * S / 3); ctx.stroke();
  }
  const all = boxes().filter(r => Array.isArray(r.box));
  if (current) all.push({box: current, prompt: ''});
  ctx.lineWidth = 2; ctx.font = '12px sans-serif';
  for (const r of all) {
    const [x0, y0, x1, y1] = r.box.map(v => v * S);
    ctx.strokeStyle = '#d33'; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.fillStyle = '#d33'; ctx.fillText(r.prompt || '', x0 + 3, y0 + 13);
  }
}
function at(ev) {
  const r = canvas.getBoundingClientRect();
  const f = v => Math.min(1, Math.max(0, v));
  return [f((ev.clientX - r.left) / r.width), f((ev.clientY - r.top) / r.height)];
}
canvas.addEventListener('mousedown', ev => { start = at(ev); current = null; });
canvas.addEventListener('mousemove', ev => {
  if (!start) return;
  const p = at(ev);
  current = [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
             Math.max(start[0], p[0]), Math.max(start[1], p[1])];
  draw();
});
window.addEventListener('mouseup', () => {
  if (!start) return;
  start = null;
  if (current && current[2] - current[0] > 0.02 && current[3] - current[1] > 0.02) {
    const round = v => Math.round(v * 1000) / 1000;
    const all = boxes();
    all.push({prompt: (regionPrompt().value || 'an object').trim(), box: current.map(round)});
    const t = field();
    t.value = JSON.stringify(all);
    t.dispatchEvent(new Event('input', {bubbles: true}));
  }
  current = null; draw();
});
setInterval(() => { if (!start) draw(); }, 300);  // follows edits and loads of the JSON
draw();
"""


def create_ui(pipe, model_name: str, batcher: Batcher, builtins: list[str] | None = None):
    """The gr.Blocks of the UI over `pipe` (served as `model_name`); other built-in models in
    `builtins` are loaded on first use, one at a time besides the served one."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    models = {model_name: pipe}
    progress_bar = gr.Progress()  # gradio hands each call a tracker in its place
    names = [model_name, *[b for b in (builtins or []) if b != model_name]]

    def model(name: str):
        if name not in models:
            from ..pipeline import TextToImagePipeline

            if name not in names:
                raise gr.Error(f"unknown model {name!r}")
            for other in [k for k in models if k != model_name]:
                del models[other]  # at most one model besides the served one
            models[name] = TextToImagePipeline.from_pretrained(name)
        return models[name]

    async def queued(run, images: int) -> list:
        """`run()`'s list through the server's queue (which hands back its first `images`)."""
        try:
            return await batcher.submit(Job(run, images))
        except InputError as err:
            raise gr.Error(str(err)) from None

    def sizes(name: str) -> list[str]:
        return [f"{s.cfg.resolution}x{s.cfg.resolution}" for s in model(name).stages]

    async def generate(name, prompt, negative, regions_text, say_cell, seed, steps, guidance,
                       sampler, n, size, progress=progress_bar):
        chosen = model(name)
        if not prompt.strip():
            raise gr.Error("type a prompt first")
        regions, scene = _regions_or_scene(regions_text, chosen.stages[0].cfg.resolution,
                                           say_cell)
        offered = sizes(name)
        stage = offered.index(size) if size in offered else len(chosen.stages) - 1

        def report(stage_name, step, total, x):
            progress((step + 1) / max(total, 1), desc=f"{stage_name}: step {step + 1}/{total}")

        def run():
            images, by_stage = chosen(
                prompt, n=int(n), seed=int(seed), steps=int(steps) or None,
                guidance=float(guidance), sampler=sampler or None, stages=stage,
                negative_prompt=negative or None, regions=regions, scene=scene,
                return_stages=True, progress=False, bf16=False, callback=report)
            return [(images, by_stage)]

        (images, by_stage), = await queued(run, 1)
        side = max(im.width for im in images)
        stages = [(im.resize((side, side), 0), f"{key} ({im.width} px)")
                  for key, ims in by_stage.items() for im in ims[:1]]
        boxes = json.loads(regions_text or "[]") if regions else []
        overlay = _overlay(images[0], boxes)
        shown = [(im, f"seed {int(seed) + k}") for k, im in enumerate(images)]
        state = {"prompt": prompt, "seeds": [int(seed) + k for k in range(len(images))],
                 "images": images, "model": name}
        return shown, stages, overlay, state, gr.update(
            choices=[f"{k}: seed {s}" for k, s in enumerate(state["seeds"])], value="0: seed "
            f"{int(seed)}"), prompt

    def menus_phrase(count, size, color, texture, shape):
        words = {1: "a", 2: "two", 3: "three", 4: "four"}[int(count)]
        parts = [words, size, color, "" if texture == "solid" else texture,
                 shape + ("s" if int(count) > 1 else "")]
        return " ".join(p for p in parts if p)

    def load_spec(file):
        if file is None:
            return gr.update()
        try:
            with open(file, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise gr.Error(f"not a JSON file: {err}") from None
        if isinstance(data, dict) and "regions" in data:
            data = data["regions"]
        return json.dumps(data)

    def save_spec(regions_text):
        try:
            data = json.loads(regions_text or "[]")
        except json.JSONDecodeError as err:
            raise gr.Error(f"the regions are not valid JSON: {err.msg}") from None
        path = os.path.join(tempfile.mkdtemp(prefix="fineimagen-ui-"), "regions.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        return path

    async def prompt_edit(state, choice, target):
        if not state:
            raise gr.Error("generate an image first")
        if not target.strip():
            raise gr.Error("type the changed prompt")
        k = int(str(choice).split(":")[0]) if choice else 0
        chosen, seed = model(state["model"]), state["seeds"][k]

        def run():
            sources, edits = chosen.edit_prompt(state["prompt"], target, seed=seed,
                                                progress=False, bf16=False)
            return [(sources[0], edits[0])]

        (source, edited), = await queued(run, 1)
        return [(source, f"original: {state['prompt']}"), (edited, f"edited: {target}")]

    async def inpaint(name, editor, prompt, strength, seed, regions_text):
        from PIL import Image

        if not editor or editor.get("background") is None:
            raise gr.Error("upload or choose an image to inpaint")
        if not prompt.strip():
            raise gr.Error("type what to paint")
        image = _as_image(editor["background"]).convert("RGB")
        mask = Image.new("L", image.size, 0)
        for layer in editor.get("layers") or []:
            alpha = _as_image(layer).convert("RGBA").getchannel("A").resize(image.size)
            mask = Image.fromarray(_max(mask, alpha))
        if mask.getbbox() is None:  # nothing painted: the boxes drawn on the canvas
            mask = _box_mask(regions_text, image.size)
        if mask.getbbox() is None:
            raise gr.Error("paint the area to repaint with the brush, or draw boxes on the "
                           "Generate tab's canvas")
        mask = mask.point(lambda a: 255 if a > 0 else 0).convert("RGB")
        chosen = model(name)

        def run():
            return chosen.edit(image, prompt, mask=mask, strength=float(strength),
                               seed=int(seed), progress=False, bf16=False)

        return (await queued(run, 1))[0]

    async def score(name, image, prompts_text):
        chosen = model(name)
        if chosen.aligner is None:
            raise gr.Error(f"model {name} has no aligner to score with")
        prompts = [p.strip() for p in (prompts_text or "").splitlines() if p.strip()]
        if image is None or not prompts:
            raise gr.Error("give an image and at least one prompt")
        image = _as_image(image).convert("RGB")

        def run():
            return [chosen.score([image] * len(prompts), prompts)]

        values, = await queued(run, 1)
        return [[p, round(float(v), 4)] for p, v in zip(prompts, values, strict=True)]

    def use_last(state):
        if not state:
            raise gr.Error("generate an image first")
        return {"background": state["images"][0], "layers": [], "composite": state["images"][0]}

    theme = gr.themes.Default(font=["system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title="fineimagen", analytics_enabled=False) as blocks:
        state = gr.State(None)
        gr.Markdown(f"## fineimagen\n{SYNTAX}")
        with gr.Row():
            name = gr.Dropdown(names, value=model_name, label="model", elem_id="model")
            size = gr.Dropdown(sizes(model_name), value=sizes(model_name)[-1], label="size",
                               elem_id="size")
        name.change(lambda m: gr.update(choices=sizes(m), value=sizes(m)[-1]), name, size)
        with gr.Tab("Generate"), gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="prompt", elem_id="prompt", lines=2)
                negative = gr.Textbox(label="negative prompt", elem_id="negative")
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, minimum=0,
                                     elem_id="seed")
                    steps = gr.Number(0, label="steps (0: the model's)", precision=0,
                                      minimum=0, maximum=200, elem_id="steps")
                    guidance = gr.Slider(0, 15, 3.0, step=0.5, label="guidance",
                                         elem_id="guidance")
                    sampler = gr.Dropdown(["", "ddpm", "ddim", "dpm++", "unipc"], value="",
                                          label="sampler ('' = the model's)")
                    n = gr.Slider(1, 4, 1, step=1, label="n", elem_id="n")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                gallery = gr.Gallery(label="images", elem_id="images", columns=4,
                                     height=280, allow_preview=False, object_fit="contain")
                stages = gr.Gallery(label="each stage (first image)", elem_id="stages",
                                    columns=3, height=280, allow_preview=False,
                                    object_fit="contain")
            with gr.Column(scale=2):
                gr.HTML(f'<canvas width="{CANVAS}" height="{CANVAS}" '
                        f'style="border:1px solid #999;cursor:crosshair;width:{CANVAS}px;'
                        f'height:{CANVAS}px"></canvas>', js_on_load=CANVAS_JS,
                        elem_id="region-canvas")
                region_prompt = gr.Textbox(label="region prompt (for the next box)",
                                           elem_id="region-prompt", interactive=True)
                with gr.Row():
                    count = gr.Dropdown([1, 2, 3, 4], value=1, label="count")
                    size_menu = gr.Dropdown(["small", "medium", "large"], value="medium",
                                            label="size")
                    color = gr.Dropdown(["red", "orange", "yellow", "green", "cyan",
                                         "blue", "purple", "pink"], value="red",
                                        label="colour")
                    texture = gr.Dropdown(["solid", "striped", "dotted", "checkered"],
                                          value="solid", label="texture")
                    shape = gr.Dropdown(["circle", "square", "triangle", "star", "heart"],
                                        value="star", label="shape")
                menus = gr.Button("Region prompt from the menus (shapes model)")
                regions_json = gr.Textbox("[]", label="regions (JSON) or a scene spec",
                                          elem_id="regions-json", lines=3,
                                          interactive=True)
                say_cell = gr.Checkbox(True, label="name each box's grid cell in its "
                                             "prompt (helps the shapes models)")
                with gr.Row():
                    clear = gr.Button("Clear regions")
                    spec_in = gr.File(label="load JSON", file_types=[".json"], height=80)
                    spec_out = gr.DownloadButton("Save JSON")
                overlay = gr.Image(label="regions over the result", elem_id="overlay",
                                   height=280)
        with gr.Tab("Edit"):
            gr.Markdown("Prompt-to-prompt: pick a generated image, change its prompt.")
            with gr.Row():
                pick = gr.Dropdown([], label="generated image", elem_id="pick",
                                   interactive=True)
                target = gr.Textbox(label="changed prompt", elem_id="target", interactive=True)
                edit_button = gr.Button("Edit", elem_id="edit")
            pair = gr.Gallery(label="original and edited", columns=2, elem_id="pair")
            gr.Markdown("Inpainting: paint over what to repaint with the brush, or draw boxes "
                        "on the Generate tab's canvas (with nothing painted, the boxes are the "
                        "mask).")
            with gr.Row():
                editor = gr.ImageEditor(type="pil", label="image and mask", elem_id="editor",
                                        interactive=True)
                painted = gr.Image(label="inpainted", elem_id="inpainted")
            with gr.Row():
                last = gr.Button("Use the first generated image")
                paint_prompt = gr.Textbox(label="what to paint", elem_id="paint-prompt")
                strength = gr.Slider(0.1, 1.0, 1.0, step=0.05, label="strength")
                paint_button = gr.Button("Inpaint", elem_id="inpaint")
        with gr.Tab("Score"):
            with gr.Row():
                scored = gr.Image(type="pil", label="image", elem_id="score-image")
                prompts = gr.Textbox(label="prompts, one a line", lines=4,
                                     elem_id="score-prompts")
            score_button = gr.Button("Score", elem_id="score")
            table = gr.Dataframe(headers=["prompt", "score"], elem_id="scores")
        menus.click(menus_phrase, [count, size_menu, color, texture, shape], region_prompt)
        clear.click(lambda: "[]", None, regions_json)
        spec_in.upload(load_spec, spec_in, regions_json)
        spec_out.click(save_spec, regions_json, spec_out)
        button.click(generate, [name, prompt, negative, regions_json, say_cell, seed, steps,
                                guidance, sampler, n, size],
                     [gallery, stages, overlay, state, pick, target])
        edit_button.click(prompt_edit, [state, pick, target], pair)
        last.click(use_last, state, editor)
        paint_button.click(inpaint, [name, editor, paint_prompt, strength, seed, regions_json],
                           painted)
        score_button.click(score, [name, scored, prompts], table)
    return blocks, theme


def _regions_or_scene(text: str, base: int, say_cell: bool = False):
    """The regions JSON of the UI: a list of {prompt, box | cell}, or a scene spec. With
    `say_cell`, a box's prompt that names no place gets the grid cell of the box's centre
    ("a red star" -> "a red star at the top right"): the shapes models learnt places from
    such words, and follow a box much better with them."""
    import gradio as gr
    from pydantic import ValidationError

    from .regions import RegionSpec, regions_of

    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as err:
        raise gr.Error(f"the regions are not valid JSON: {err.msg} (column {err.colno})") \
            from None
    if isinstance(data, dict):
        return None, data
    if not isinstance(data, list):
        raise gr.Error("the regions JSON must be a list of regions or a scene spec")
    try:
        specs = [RegionSpec.model_validate(r) for r in data]
        if say_cell:
            specs = [_with_cell(r) for r in specs]
        return regions_of(specs, base) or None, None
    except ValidationError as err:
        raise gr.Error(f"a region: {err.errors()[0]['msg']}") from None
    except InputError as err:
        raise gr.Error(str(err)) from None


def _with_cell(region):
    from ..domains.shapes.captions import POSITION_PHRASES
    from ..domains.shapes.vocab import position_at

    if region.box is None or any(p in region.prompt.lower()
                                 for phrases in POSITION_PHRASES.values() for p in phrases):
        return region
    x0, y0, x1, y1 = region.box
    phrase = POSITION_PHRASES[position_at((x0 + x1) / 2, (y0 + y1) / 2)][0]
    return region.model_copy(update={"prompt": f"{region.prompt} {phrase}"})


def _overlay(image, regions: list[dict]):
    """The image at least 256 px a side with each box drawn and labelled."""
    from PIL import ImageDraw

    from ..control.regions import named_box

    side = max(256, image.width)
    shown = image.resize((side, side), 0)
    draw = ImageDraw.Draw(shown)
    for r in regions:
        box = r.get("box") or named_box(r["cell"])
        x0, y0, x1, y1 = (v * side for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(220, 30, 30), width=2)
        draw.text((x0 + 3, y0 + 2), r["prompt"], fill=(220, 30, 30))
    return shown


def _box_mask(regions_text: str, size: tuple[int, int]):
    """An L mask, white inside every box of the regions JSON (others ignored)."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    try:
        regions = json.loads(regions_text or "[]")
    except json.JSONDecodeError:
        return mask
    draw = ImageDraw.Draw(mask)
    for r in regions if isinstance(regions, list) else []:
        box = r.get("box") if isinstance(r, dict) else None
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            continue
        if x1 > x0 and y1 > y0:
            draw.rectangle((x0 * size[0], y0 * size[1], x1 * size[0] - 1, y1 * size[1] - 1),
                           fill=255)
    return mask


def _as_image(value):
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    import numpy as np

    return Image.fromarray(np.asarray(value))


def _max(a, b):
    import numpy as np

    return np.maximum(np.asarray(a), np.asarray(b))
