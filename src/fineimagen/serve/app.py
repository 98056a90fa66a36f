"""The HTTP API: OpenAI-style image generation and edits over one TextToImagePipeline.

POST /v1/images/generations, POST /v1/images/edits, GET /v1/models, GET /health,
GET /metrics (Prometheus), GET /v1/files/NAME (images of `response_format: url`). With an
API key every route but /health needs `Authorization: Bearer KEY`. Bad input answers 4xx
with one line of JSON (`{"error": {"message", "type"}}`); a full queue answers 429 with
Retry-After.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import Request  # at module level: FastAPI resolves the handlers' annotations here
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError
from .batcher import Batcher, Job, QueueFull
from .regions import MAX_PROMPT, RegionSpec, regions_of

MAX_UPLOAD = 4 * 1024 * 1024  # bytes per uploaded image
MAX_JSON = 256 * 1024  # bytes of a JSON request body
MAX_BODY = 2 * MAX_UPLOAD + MAX_JSON  # bytes of any request body (an edit: image and mask)
OPENAI_IGNORED = ("model", "user", "quality", "style")


@dataclass
class ServeConfig:
    api_key: str | None = None
    max_queue: int = 64
    max_batch: int = 8
    files: str = "serve-files"  # where `url` images are kept
    url_ttl: float = 3600.0  # seconds an image URL lives
    cors: str | None = None
    model_name: str = "shapes"
    ui: bool = False  # mount the web UI (Gradio) at /ui


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    n: int = Field(1, ge=1, le=8)
    size: str | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT)
    guidance: float | None = Field(None, ge=0, le=50)
    steps: int | None = Field(None, ge=1, le=200)
    sampler: str | None = None
    regions: list[RegionSpec] | None = Field(None, max_length=12)
    scene: dict | None = None
    plan_layout: bool = False
    revise_prompt: bool = False  # draw the prompt as the planner read it, in canonical words
    rerank: int = Field(1, ge=1, le=8)
    # OpenAI's own fields: accepted, ignored
    model: str | None = None
    user: str | None = None
    quality: str | None = None
    style: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def create_app(pipe, cfg: ServeConfig | None = None):
    """The FastAPI app serving `pipe` (a TextToImagePipeline)."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    cfg = cfg or ServeConfig()
    app = FastAPI(title="fineimagen", docs_url=None, redoc_url=None)
    files = Path(cfg.files)
    files.mkdir(parents=True, exist_ok=True)
    sizes = {f"{s.cfg.resolution}x{s.cfg.resolution}": i for i, s in enumerate(pipe.stages)}
    registry = CollectorRegistry()
    requests = Counter("fineimagen_requests", "HTTP requests", ["route", "status"],
                       registry=registry)
    depth = Gauge("fineimagen_queue_depth", "jobs waiting", registry=registry)
    latency = Histogram("fineimagen_request_seconds", "request latency", ["route"],
                        registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
    made = Counter("fineimagen_images", "images generated", registry=registry)
    if cfg.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[cfg.cors], allow_methods=["*"],
                           allow_headers=["*"])

    def merged(jobs: list[Job]) -> list:
        first = jobs[0]
        stage, steps, guidance, sampler, rerank = first.key
        return pipe([p for j in jobs for p in j.prompts], n=1, progress=False,
                    seeds=[s for j in jobs for s in j.seeds], stages=stage, steps=steps,
                    guidance=guidance, sampler=sampler, rerank=rerank)

    batcher = Batcher(merged, cfg.max_queue, cfg.max_batch)
    app.state.batcher = batcher

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        route = request.url.path
        if cfg.api_key and route != "/health" and not _is_ui(route) and not secrets.compare_digest(
                request.headers.get("authorization", ""), f"Bearer {cfg.api_key}"):
            response = _error(ApiError(401, "missing or wrong API key (Authorization: Bearer "
                                            "KEY)", "authentication_error"))
        elif int(request.headers.get("content-length") or 0) > MAX_BODY:
            response = _error(ApiError(413, f"the body may be at most {MAX_BODY // 1024} KB"))
        else:
            try:
                response = await call_next(request)
            except ApiError as err:
                response = _error(err)
        label = route if route in ("/v1/images/generations", "/v1/images/edits",
                                   "/v1/models", "/health", "/metrics") else "other"
        requests.labels(label, str(response.status_code)).inc()
        latency.labels(label).observe(time.perf_counter() - start)
        return response

    def _error(err: ApiError):
        return JSONResponse({"error": {"message": err.message, "type": err.kind}},
                            status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return _error(err)

    async def run_job(job: Job) -> list:
        try:
            depth.set(batcher.depth + 1)
            return await batcher.submit(job)
        except QueueFull:
            raise ApiError(429, f"the queue is full ({cfg.max_queue} jobs); retry later",
                           "rate_limit_error", {"Retry-After": "5"}) from None
        except InputError as err:
            raise ApiError(400, str(err)) from None
        finally:
            depth.set(batcher.depth)

    def encode(images, seeds, fmt, base_url, revised=None) -> dict:
        data = []
        for image, seed in zip(images, seeds, strict=True):
            item: dict = {"seed": seed}
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            if fmt == "b64_json":
                item["b64_json"] = base64.b64encode(buffer.getvalue()).decode()
            else:
                name = f"{uuid.uuid4().hex}.png"
                (files / name).write_bytes(buffer.getvalue())
                item["url"] = f"{base_url}v1/files/{name}"
            if revised:
                item["revised_prompt"] = revised
            data.append(item)
        made.inc(len(images))
        return {"created": int(time.time()), "data": data}

    @app.post("/v1/images/generations")
    async def generations(request: Request):
        raw = bytearray()
        async for chunk in request.stream():  # capped as it arrives (chunked bodies too)
            raw += chunk
            if len(raw) > MAX_JSON:
                raise ApiError(413, f"a JSON body may be at most {MAX_JSON // 1024} KB")
        try:
            body = json.loads(bytes(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            req = GenerationRequest.model_validate(body)
        except ValidationError as err:
            raise ApiError(400, _one_line(err)) from None
        job, revised = _generation_job(pipe, req, sizes)
        images = await run_job(job)
        return encode(images, job.seeds, req.response_format, str(request.base_url), revised)

    @app.post("/v1/images/edits")
    async def edits(request: Request):
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        uploads = {k: v for k, v in form.items() if not isinstance(v, str)}
        job, fmt = await _edit_job(pipe, fields, uploads)
        images = await run_job(job)
        return encode(images, job.seeds, fmt, str(request.base_url))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model",
                                            "owned_by": "fineimagen", "sizes": list(sizes)}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "queue": batcher.depth}

    @app.get("/metrics")
    async def metrics():
        depth.set(batcher.depth)
        return PlainTextResponse(generate_latest(registry).decode(),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/v1/files/{name}")
    async def file(name: str):
        path = files / name
        if not (len(name) == 36 and name.endswith(".png") and path.is_file()):
            raise ApiError(404, "no such image", "not_found_error")
        if time.time() - path.stat().st_mtime > cfg.url_ttl:
            path.unlink(missing_ok=True)
            raise ApiError(404, "this image URL has expired", "not_found_error")
        return FileResponse(path, media_type="image/png")

    if cfg.ui:
        _mount_ui(app, pipe, cfg, batcher)
    return app


def _is_ui(route: str) -> bool:
    """/ui and below: Gradio's own login guards them when a key is set (a browser sends no
    Authorization header)."""
    return route == "/ui" or route.startswith("/ui/")


def _mount_ui(app, pipe, cfg: ServeConfig, batcher: Batcher) -> None:
    try:
        import gradio as gr
    except ImportError:
        raise InputError("the web UI needs the serve extra: pip install 'fineimagen[serve]' "
                         "(or serve with --no-ui)") from None
    from ..model_folder import builtin_names
    from .ui import create_ui

    blocks, theme = create_ui(pipe, cfg.model_name, batcher, builtin_names())
    auth = None
    if cfg.api_key:  # any user name, the API key as the password
        def auth(user: str, password: str) -> bool:
            return secrets.compare_digest(password, cfg.api_key)
    gr.mount_gradio_app(app, blocks, path="/ui", auth=auth, theme=theme, ssr_mode=False,
                        footer_links=[], max_file_size=MAX_UPLOAD)


def _generation_job(pipe, req: GenerationRequest, sizes: dict) -> tuple[Job, str | None]:
    from ..stage_controls import is_plain

    if req.size is not None and req.size not in sizes:
        raise ApiError(400, f"size {req.size!r} is not one of this model's: "
                            f"{', '.join(sizes)}")
    stage = sizes.get(req.size, len(pipe.stages) - 1)
    regions = None
    if req.regions:
        try:
            regions = regions_of(req.regions, pipe.stages[0].cfg.resolution)
        except InputError as err:
            raise ApiError(400, str(err)) from None
    revised = None
    if req.plan_layout or req.revise_prompt:
        from ..domains.shapes.plan import plan_with_report, revised_prompt

        try:
            revised = revised_prompt(plan_with_report(req.prompt)[0])
        except InputError as err:
            raise ApiError(400, str(err)) from None
    prompt = revised if req.revise_prompt else req.prompt
    options = dict(stages=stage, steps=req.steps, guidance=req.guidance, sampler=req.sampler,
                   rerank=req.rerank)
    seeds = [req.seed + k for k in range(req.n)]
    control = (req.negative_prompt is not None or regions or req.scene is not None
               or req.plan_layout or not _plain(is_plain, prompt))

    def run():
        return pipe(prompt, n=req.n, seed=req.seed, progress=False,
                    negative_prompt=req.negative_prompt, regions=regions, scene=req.scene,
                    plan_layout=req.plan_layout, **options)

    key = None if control else (stage, req.steps, req.guidance, req.sampler, req.rerank)
    return Job(run, req.n, key, [prompt] * req.n, seeds), revised


def _plain(is_plain, prompt: str) -> bool:
    try:
        return is_plain(prompt)
    except InputError as err:
        raise ApiError(400, str(err)) from None


async def _edit_job(pipe, fields: dict, uploads: dict) -> tuple[Job, str]:
    """img2img / inpainting (image, optional mask, prompt, strength) or prompt-to-prompt
    (from_prompt, to_prompt)."""
    allowed = {"prompt", "n", "seed", "strength", "response_format", "from_prompt",
               "to_prompt", *OPENAI_IGNORED, "size"}
    unknown = set(fields) - allowed | set(uploads) - {"image", "mask"}
    if unknown:
        raise ApiError(400, f"unknown fields: {', '.join(sorted(unknown))}")
    fmt = fields.get("response_format", "b64_json")
    if fmt not in ("b64_json", "url"):
        raise ApiError(400, "response_format must be b64_json or url")
    n = _int(fields, "n", 1, 1, 8)
    seed = _int(fields, "seed", 0, 0, 2**31 - 1)
    seeds = [seed + k for k in range(n)]
    if "from_prompt" in fields or "to_prompt" in fields:
        source, target = fields.get("from_prompt"), fields.get("to_prompt")
        if not source or not target or max(len(source), len(target)) > MAX_PROMPT:
            raise ApiError(400, f"prompt-to-prompt needs from_prompt and to_prompt (1-"
                                f"{MAX_PROMPT} characters)")

        def run():  # the edited images (the sources are from_prompt's at the same seeds)
            return pipe.edit_prompt(source, target, n=n, seed=seed, progress=False)[1]

        return Job(run, n, seeds=seeds), fmt
    prompt = fields.get("prompt", "")
    if not 1 <= len(prompt) <= MAX_PROMPT:
        raise ApiError(400, f"prompt must be 1-{MAX_PROMPT} characters")
    if "image" not in uploads:
        raise ApiError(400, "an edit needs an image (or from_prompt and to_prompt)")
    image = await _upload(uploads["image"], "RGB")
    mask = None
    if "mask" in uploads:
        rgba = await _upload(uploads["mask"], "RGBA")
        if rgba.size != image.size:
            raise ApiError(400, f"the mask is {rgba.width}x{rgba.height}, the image "
                                f"{image.width}x{image.height}")
        from PIL import Image

        alpha = rgba.getchannel("A")
        mask = alpha.point(lambda a: 255 if a < 128 else 0).convert("L")  # clear: repaint
        mask = Image.merge("RGB", (mask, mask, mask))
    strength = _float(fields, "strength", None, 0.0, 1.0)

    def run():
        return pipe.edit(image, prompt, mask=mask, strength=strength, n=n, seed=seed,
                         progress=False)

    return Job(run, n, seeds=seeds), fmt


async def _upload(upload, mode: str):
    from ..images import open_image

    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise ApiError(413, f"an upload may be at most {MAX_UPLOAD // 1024 // 1024} MB")
    try:
        if mode == "RGBA":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                if "A" not in im.getbands():
                    raise ApiError(400, "the mask needs an alpha channel (transparent pixels "
                                        "are repainted)")
                im.load()
                return im.convert("RGBA")
        return open_image(io.BytesIO(data), mode)
    except InputError as err:
        raise ApiError(400, str(err).replace("<_io.BytesIO object", "upload")) from None
    except OSError:
        raise ApiError(400, "the upload is not an image") from None


def _int(fields, name, default, lo, hi) -> int:
    try:
        value = int(fields.get(name, default))
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be {lo}-{hi}, got {value}")
    return value


def _float(fields, name, default, lo, hi):
    if name not in fields:
        return default
    try:
        value = float(fields[name])
    except ValueError:
        raise ApiError(400, f"{name} must be a number") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be {lo}-{hi}, got {value}")
    return value
