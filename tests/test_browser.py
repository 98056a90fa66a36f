"""The web UI in a real browser: headless Chromium (Debian's) driven by Playwright. Types a
prompt, drags a box on the region canvas, names its object, generates with the shipped
model, and reads the image with the strict evaluator: the right size, and the region's
object inside the box. fp32 and a fixed seed, so every CPU kind gives the same scene."""

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser
pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

from fineimagen.domains.shapes.parser import parse_image  # noqa: E402
from fineimagen.pipeline import TextToImagePipeline  # noqa: E402
from fineimagen.serve.app import ServeConfig, create_app  # noqa: E402

BOX = (0.68, 0.02, 0.98, 0.32)  # the top right cell, as the mouse drags it
ARTEFACTS = Path(os.environ.get("FINEIMAGEN_TEST_ARTEFACTS", "test-artefacts"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    pipe = TextToImagePipeline.from_pretrained()
    files = tmp_path_factory.mktemp("files")
    app = create_app(pipe, ServeConfig(files=str(files), ui=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(server):
    """The UI's page in headless Chromium; it must load nothing from outside the server."""
    outside = []

    def local_only(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.route("**/*", local_only)
        page.goto(f"{server}/ui/", wait_until="load")
        yield page
        browser.close()
    assert outside == []


def test_draw_a_box_name_it_and_generate(page):
    canvas = page.locator("#region-canvas canvas")
    canvas.wait_for(timeout=60_000)
    page.locator("#prompt textarea").fill("a white background")
    page.locator("#region-prompt textarea").fill("a red star")
    page.locator("#seed input").fill("0")
    drag(page, canvas, BOX)
    drawn = page.locator("#regions-json textarea").input_value()
    assert '"prompt":"a red star"' in drawn and '"box":[0.68' in drawn, drawn
    image = generate(page)
    page.locator("#overlay img").wait_for(timeout=30_000)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "ui.png"), full_page=True)
    assert image.size == (128, 128)  # the shipped model's last stage
    scene = parse_image(np.asarray(image))
    stars = [o for o in scene.objects if (o.shape, o.color) == ("star", "red")]
    assert len(stars) == 1, scene.objects
    x0, y0, x1, y1 = BOX
    assert x0 <= stars[0].x <= x1 and y0 <= stars[0].y <= y1, stars[0]


def test_edit_a_generated_image_and_score_it(page, tmp_path):
    page.locator("#prompt textarea").fill("a large red circle")
    generate(page)
    page.get_by_role("tab", name="Edit").click()
    page.locator("#target textarea").fill("a large blue circle")
    page.locator("#edit").click()
    pair = page.locator("#pair img")
    pair.nth(1).wait_for(timeout=180_000)
    images = [fetch(page, pair.nth(k)) for k in range(2)]
    colours = [[o.color for o in parse_image(np.asarray(im)).objects] for im in images]
    assert colours == [["red"], ["blue"]]  # the prompt-to-prompt edit beside the original
    images[0].save(tmp_path / "red.png")
    page.get_by_role("tab", name="Score").click()
    page.locator("#score-image input[type=file]").set_input_files(str(tmp_path / "red.png"))
    page.locator("#score-prompts textarea").fill("a large red circle\na large blue circle")
    page.locator("#score").click()
    cell = lambda r, c: page.locator(f"#scores [data-testid=cell-{r}-{c}]").first  # noqa: E731
    cell(1, 1).wait_for(timeout=60_000)
    scores = {cell(r, 0).inner_text().strip(): float(cell(r, 1).inner_text())
              for r in range(2)}
    assert scores["a large red circle"] > scores["a large blue circle"], scores


def test_inpaint_a_box_drawn_over_an_object(page):
    """Nothing painted on the editor: the box dragged on the canvas is the mask. The red
    circle inside it is repainted as a square; outside it the image stays."""
    page.locator("#prompt textarea").fill("a large red circle")
    first = generate(page)
    (circle,) = parse_image(np.asarray(first)).objects
    half = circle.extent / 2 + 0.08
    box = (max(circle.x - half, 0.01), max(circle.y - half, 0.01),
           min(circle.x + half, 0.99), min(circle.y + half, 0.99))
    drag(page, page.locator("#region-canvas canvas"), box)
    page.get_by_role("tab", name="Edit").click()
    page.get_by_role("button", name="Use the first generated image").click()
    page.locator("#paint-prompt textarea").fill("a large blue square")
    page.locator("#inpaint").click()
    out = page.locator("#inpainted img")
    out.wait_for(timeout=180_000)
    painted = fetch(page, out)
    shapes = [(o.shape, o.color) for o in parse_image(np.asarray(painted)).objects]
    assert len(shapes) == 1 and shapes[0][0] == "square" and shapes[0][1] != "red", shapes
    side = painted.width
    inside = np.zeros((side, side), bool)
    inside[int(box[1] * side):int(box[3] * side), int(box[0] * side):int(box[2] * side)] = True
    change = np.abs(np.asarray(painted, np.int16) - np.asarray(first, np.int16)).max(-1)
    assert change[inside].mean() > 20 and change[~inside].mean() < 2, \
        (change[inside].mean(), change[~inside].mean())


def generate(page) -> Image.Image:
    """Press Generate; the first image shown."""
    page.locator("#generate").click()
    shown = page.locator("#images img").first
    shown.wait_for(timeout=180_000)
    return fetch(page, shown)


def fetch(page, image) -> Image.Image:
    return Image.open(io.BytesIO(page.request.get(image.get_attribute("src")).body())) \
        .convert("RGB")


def drag(page, canvas, box) -> None:
    """Drag the mouse over `canvas` from the box's top left corner to its bottom right."""
    area = canvas.bounding_box()
    x0, y0, x1, y1 = box
    page.mouse.move(area["x"] + x0 * area["width"], area["y"] + y0 * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + x1 * area["width"], area["y"] + y1 * area["height"], steps=8)
    page.mouse.up()
