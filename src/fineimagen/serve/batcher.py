"""A bounded queue in front of one model: jobs run one call at a time off the event loop;
compatible plain jobs (same settings) are merged into one pipeline call of at most
`max_batch` images, each image still drawn from its own seed."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


class QueueFull(Exception):
    """The queue holds `max_queue` jobs: the caller answers 429."""


@dataclass
class Job:
    run: Callable[[], list]  # the job alone: returns its images
    images: int  # how many images it asks for
    key: tuple | None = None  # jobs with one key may be merged (None: never)
    prompts: list[str] = field(default_factory=list)  # per image, for merging
    seeds: list[int] = field(default_factory=list)  # per image, for merging
    future: asyncio.Future | None = None


class Batcher:
    """`submit(job)` waits for the job's images; `merged(jobs)` runs several keyed jobs as
    one call and returns all their images in order."""

    def __init__(self, merged: Callable[[list[Job]], list], max_queue: int, max_batch: int):
        self.merged, self.max_queue, self.max_batch = merged, max_queue, max_batch
        self.pending: deque[Job] = deque()
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # pipeline calls made (for tests and metrics)

    @property
    def depth(self) -> int:
        return len(self.pending)

    async def submit(self, job: Job) -> list:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.wake = asyncio.Event()  # one worker per event loop (tests start several)
            self.task = loop.create_task(self._work())
        if len(self.pending) >= self.max_queue:
            raise QueueFull
        job.future = asyncio.get_running_loop().create_future()
        self.pending.append(job)
        self.wake.set()
        return await job.future  # a disconnected client cancels this: its job is dropped

    def _take(self) -> list[Job]:
        first = self.pending.popleft()
        batch = [first]
        if first.key is None:
            return batch
        count = first.images
        for job in list(self.pending):
            if job.key == first.key and count + job.images <= self.max_batch:
                self.pending.remove(job)
                batch.append(job)
                count += job.images
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch = [j for j in self._take() if not j.future.done()]
                if not batch:
                    continue
                try:
                    if len(batch) == 1:
                        images = await loop.run_in_executor(None, batch[0].run)
                    else:
                        images = await loop.run_in_executor(None, self.merged, batch)
                    self.batches += 1
                except Exception as err:  # noqa: BLE001 - each waiting request gets the error
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                start = 0
                for job in batch:
                    part = images[start: start + job.images]
                    start += job.images
                    if not job.future.done():
                        job.future.set_result(part)
