"""The HTTP API: generations, edits, auth, bad input, batching, the queue, the openai client."""

import asyncio
import base64
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from fineimagen.pipeline import TextToImagePipeline  # noqa: E402
from fineimagen.serve.app import ServeConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return TextToImagePipeline.from_pretrained(tiny_model)


def client(pipe, tmp_path, **kw):
    return TestClient(create_app(pipe, ServeConfig(files=str(tmp_path / "files"), **kw)))


def decode(item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_generations_match_the_pipeline_seed_for_seed(pipe, tmp_path):
    api = client(pipe, tmp_path)
    r = api.post("/v1/images/generations",
                 json={"prompt": "a red circle", "n": 2, "seed": 7, "size": "16x16",
                       "model": "dall-e-2", "user": "u", "quality": "standard"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"created", "data"} and [d["seed"] for d in body["data"]] == [7, 8]
    direct = pipe("a red circle", n=2, seed=7, progress=False)
    for item, want in zip(body["data"], direct, strict=True):
        assert decode(item).shape == (16, 16, 3)
        assert np.array_equal(decode(item), np.asarray(want))
    models = api.get("/v1/models").json()
    assert models["data"][0]["sizes"] == ["16x16"]  # the tiny model's one stage
    assert api.get("/health").json()["status"] == "ok"


def test_a_revised_prompt_is_drawn_and_returned(pipe, tmp_path):
    api = client(pipe, tmp_path)
    free = "Please draw a couple of scarlet round shapes near the lower left."
    r = api.post("/v1/images/generations", json={"prompt": free, "seed": 3,
                                                 "revise_prompt": True})
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]
    assert item["revised_prompt"] == "a pair of red circles in the lower left corner"
    direct = pipe(item["revised_prompt"], seed=3, progress=False)[0]
    assert np.array_equal(decode(item), np.asarray(direct))
    bad = api.post("/v1/images/generations", json={"prompt": "a velvet teapot",
                                                   "revise_prompt": True})
    assert bad.status_code == 400 and "shape" in bad.json()["error"]["message"]


def test_url_images_are_served_and_expire(pipe, tmp_path):
    api = client(pipe, tmp_path)
    r = api.post("/v1/images/generations", json={"prompt": "a star", "response_format": "url"})
    url = r.json()["data"][0]["url"]
    got = api.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    expired = client(pipe, tmp_path, url_ttl=0.0)
    time.sleep(0.01)
    assert expired.get(url).status_code == 404
    assert api.get("/v1/files/../../etc/passwd").status_code == 404


def test_the_api_key_guards_every_route_but_health(pipe, tmp_path):
    api = client(pipe, tmp_path, api_key="s3cret")
    assert api.post("/v1/images/generations", json={"prompt": "a star"}).status_code == 401
    assert api.get("/metrics").status_code == 401
    assert api.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/health").status_code == 200
    ok = api.post("/v1/images/generations", json={"prompt": "a star"},
                  headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    metrics = api.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    assert "fineimagen_images_total 1.0" in metrics
    assert 'fineimagen_requests_total{route="/v1/images/generations",status="401"} 1.0' in metrics


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"prompt": "a star", "colour": "red"}', "colour"),
    (b'{"prompt": "a star", "n": 9}', "n:"),
    (b'{"prompt": "a star", "n": "two"}', "n:"),
    (b'{"prompt": ""}', "prompt"),
    (b'{"prompt": "a star", "size": "1024x1024"}', "size '1024x1024'"),
    (b'{"prompt": "a star", "regions": [{"prompt": "a star"}]}', "exactly one"),
    (b'{"prompt": "a star", "regions": [{"prompt": "a", "cell": "nowhere"}]}', "unknown region"),
    (b'{"prompt": "a star", "steps": 0}', "steps"),
    (b'{"prompt": "a star", "sampler": "magic"}', "sampler"),
])
def test_bad_input_is_a_one_line_4xx(pipe, tmp_path, body, words):
    r = client(pipe, tmp_path).post("/v1/images/generations", content=body,
                                     headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert words in message and "\n" not in message
    long = client(pipe, tmp_path).post("/v1/images/generations", json={"prompt": "x" * 4001})
    assert long.status_code == 400


def test_compatible_requests_are_batched_and_keep_their_own_seeds(pipe, tmp_path):
    httpx = pytest.importorskip("httpx2")  # what starlette and openai use here

    app = create_app(pipe, ServeConfig(files=str(tmp_path / "f"), max_batch=8))

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*[
                c.post("/v1/images/generations", json={"prompt": p, "seed": s, "n": 2})
                for p, s in (("a star", 1), ("a blue square", 40), ("a star", 9))])

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert app.state.batcher.batches < 3  # merged into fewer pipeline calls
    for r, (p, s) in zip(responses, (("a star", 1), ("a blue square", 40), ("a star", 9)),
                         strict=True):
        direct = pipe(p, n=2, seed=s, progress=False)
        assert all(np.array_equal(decode(d), np.asarray(w))
                   for d, w in zip(r.json()["data"], direct, strict=True))


def test_a_full_queue_answers_429_with_retry_after(pipe, tmp_path):
    httpx = pytest.importorskip("httpx2")  # what starlette and openai use here

    app = create_app(pipe, ServeConfig(files=str(tmp_path / "f"), max_queue=1))

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*[
                c.post("/v1/images/generations", json={"prompt": "a star", "seed": k,
                                                       "negative_prompt": "a circle"})
                for k in range(6)])

    codes = [r.status_code for r in asyncio.run(burst())]
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes
    refused = [r for r in asyncio.run(burst()) if r.status_code == 429]
    assert refused and refused[0].headers["retry-after"] == "5"


def test_edits_img2img_inpaint_and_prompt_to_prompt(pipe, tmp_path):
    api = client(pipe, tmp_path)
    source = pipe("a red circle", n=1, seed=3, progress=False)[0]
    r = api.post("/v1/images/edits", files={"image": ("a.png", png(source), "image/png")},
                 data={"prompt": "a blue circle", "strength": "0.5", "n": "2"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2 and decode(r.json()["data"][0]).shape == (16, 16, 3)
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 8, 16))  # the left half transparent: repainted
    r = api.post("/v1/images/edits", files={"image": ("a.png", png(source), "image/png"),
                                            "mask": ("m.png", png(mask), "image/png")},
                 data={"prompt": "a star"})
    assert r.status_code == 200, r.text
    r = api.post("/v1/images/edits", data={"from_prompt": "a red circle",
                                           "to_prompt": "a blue circle", "seed": "2"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1
    bad = api.post("/v1/images/edits", files={"image": ("a.png", b"GIF89a nope", "image/png")},
                   data={"prompt": "a star"})
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]["message"]
    opaque = api.post("/v1/images/edits",
                      files={"image": ("a.png", png(source), "image/png"),
                             "mask": ("m.png", png(source), "image/png")},
                      data={"prompt": "a star"})
    assert opaque.status_code == 400 and "alpha" in opaque.json()["error"]["message"]
    huge = api.post("/v1/images/edits", files={"image": ("a.png", b"0" * (5 << 20), "x")},
                    data={"prompt": "a star"})
    assert huge.status_code == 413


def test_the_official_openai_client_works_against_a_live_server(pipe, tmp_path):
    openai = pytest.importorskip("openai")
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(pipe, ServeConfig(files=str(tmp_path / "f"), api_key="k"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
        result = api.images.generate(prompt="a red circle", n=1, size="16x16",
                                     response_format="b64_json", model="fineimagen")
        image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
        assert image.size == (16, 16)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong") \
                .images.generate(prompt="a star")
    finally:
        server.should_exit = True
        thread.join(10)



def test_a_huge_body_and_slow_clients_leave_the_server_up(pipe, tmp_path):
    """Reliability under load: a 50 MB body is refused (413) before it is read, a chunked
    one as soon as it passes the cap; slowloris-style clients holding half-sent requests do
    not block others, and the process's memory stays bounded."""
    import resource

    import uvicorn

    httpx = pytest.importorskip("httpx2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(pipe, ServeConfig(files=str(tmp_path / "f")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           limit_concurrency=64, timeout_keep_alive=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        def chunks():  # 50 MB, never held whole on either side
            for _ in range(50):
                yield b"x" * (1 << 20)

        for headers in ({"content-length": str(50 << 20)}, {}):  # declared, then chunked
            try:
                refused = httpx.post(f"{base}/v1/images/generations", content=chunks(),
                                     headers={"content-type": "application/json", **headers},
                                     timeout=60).status_code
            except httpx.TransportError:  # the server answered 413 and closed mid-upload
                refused = 413
            assert refused == 413
        slow = []
        for _ in range(20):  # half-sent requests, never finished
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Le")
            slow.append(sock)
        ok = httpx.post(f"{base}/v1/images/generations", json={"prompt": "a star"}, timeout=60)
        assert ok.status_code == 200 and httpx.get(f"{base}/health").status_code == 200
        for sock in slow:
            sock.close()
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 40  # the 50 MB bodies were never held
    finally:
        server.should_exit = True
        thread.join(10)
