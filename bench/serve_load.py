"""Load on the HTTP API: concurrent clients against a live server on loopback, with request
batching on and off, in one run.

Usage: python bench/serve_load.py [--model DIR] [--clients 50] [--requests 200]
                                  [--max-batch 8] [--max-queue 64] [--out bench/results/serve_load]
Each round starts `fineimagen serve` in a subprocess (its RSS is measured, peak over the
round), then CLIENTS concurrent clients send REQUESTS plain requests in all (n=1, a seed
each, a few prompts). Every request must be answered 200 or refused 429 (retried after its
Retry-After); lost or errored requests are counted. Reports p50/p95 latency of answered
requests, images/s over the round, and peak RSS. Writes serve_load.json and serve_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import describe  # bench/ is on sys.path when a bench script runs

PROMPTS = ("a red circle", "two blue squares at the top left", "a large green star",
           "three small yellow hearts", "a purple triangle in the center")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def round_trip(base: str, clients: int, total: int, pid: int) -> dict:
    import httpx2 as httpx

    latencies, codes, refused, peak = [], [], 0, 0.0
    queue: asyncio.Queue = asyncio.Queue()
    for k in range(total):
        queue.put_nowait(k)

    async def client(c):
        nonlocal refused
        while not queue.empty():
            k = await queue.get()
            body = {"prompt": PROMPTS[k % len(PROMPTS)], "seed": k, "n": 1}
            while True:
                start = time.perf_counter()
                try:
                    r = await c.post(f"{base}/v1/images/generations", json=body, timeout=600)
                except httpx.HTTPError:
                    codes.append("error")
                    break
                if r.status_code == 429:
                    refused += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                codes.append(r.status_code)
                latencies.append(time.perf_counter() - start)
                break

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    start = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*[client(c) for _ in range(clients)])
    wall = time.perf_counter() - start
    watcher.cancel()
    ok = sum(1 for code in codes if code == 200)
    return {"answered": ok, "errors": len(codes) - ok, "lost": total - len(codes),
            "refused_then_retried": refused, "p50_s": float(np.percentile(latencies, 50)),
            "p95_s": float(np.percentile(latencies, 95)), "images_per_s": ok / wall,
            "wall_s": wall, "peak_rss_mb": peak}


def serve(model: str | None, port: int, max_batch: int, max_queue: int):
    command = [sys.executable, "-m", "fineimagen.cli", "serve", "--port", str(port),
               "--max-batch", str(max_batch), "--max-queue", str(max_queue)]
    if model:
        command += ["--model", model]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--out", default="bench/results/serve_load")
    args = parser.parse_args()
    rows = {}
    for name, batch in (("batching off", 1), ("batching on", args.max_batch)):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        process = serve(args.model, port, batch, args.max_queue)
        try:
            rows[name] = asyncio.run(round_trip(f"http://127.0.0.1:{port}", args.clients,
                                                args.requests, process.pid))
        finally:
            process.terminate()
            process.wait(30)
        row = rows[name]
        print(f"{name:13s} answered {row['answered']}/{args.requests} (errors {row['errors']}, "
              f"lost {row['lost']}, 429s retried {row['refused_then_retried']}), p50 "
              f"{row['p50_s']:.2f} s, p95 {row['p95_s']:.2f} s, {row['images_per_s']:.2f} img/s, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB")
    speedup = rows["batching on"]["images_per_s"] / rows["batching off"]["images_per_s"]
    print(f"batching raises throughput {speedup:.2f}x")
    result = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": describe(),
                       "model": args.model or "shapes (shipped)", "clients": args.clients,
                       "requests": args.requests, "max_batch": args.max_batch,
                       "max_queue": args.max_queue},
              "rows": rows, "batching_speedup": speedup}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3))
    axes[0].bar(list(rows), [r["images_per_s"] for r in rows.values()])
    axes[0].set_ylabel("images / s")
    axes[1].bar(list(rows), [r["p95_s"] for r in rows.values()])
    axes[1].set_ylabel("p95 latency (s)")
    fig.tight_layout()
    fig.savefig(out / "serve_load.png", dpi=100)


if __name__ == "__main__":
    main()
