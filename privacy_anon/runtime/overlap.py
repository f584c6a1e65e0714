"""Decode, anonymize and encode at the same time: two helper threads and bounded queues.

Video decoding and encoding (FFmpeg, via PyAV) and the interpreters (LiteRT) release the
GIL, so a reader thread decoding the next frames and a writer thread encoding the last ones
overlap with the detect + modify work of the current frame. `map_ahead` also spreads
per-frame work (face detection) over several threads, each with its own interpreter,
frames ahead of the one being modified. The queues are bounded, so memory stays flat however
long the video is. Frames keep their order (one reader, one writer, results taken in
submission order); an exception in either thread is raised again in the caller. No
TensorFlow here.

Example:
    >>> with BackgroundWriter(lambda item: out.mux(stream.encode(item))) as writer:
    ...     for frame in prefetch(decode_frames(), depth=4):
    ...         writer.put(process(frame))
"""

from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

DEFAULT_DEPTH = 4  # frames in flight per queue: enough to hide a slow frame, little memory

_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable, depth: int = DEFAULT_DEPTH) -> Iterator:
    """Yields `items` in order while a background thread produces the next `depth` ones.

    An exception raised while producing is raised here, at the item where it happened.
    Stopping early (break, an exception in the consumer) stops the thread after at most
    one more item.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if not _put(buffer, item, stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            _put(buffer, _Failed(exc), stop)
            return
        _put(buffer, _END, stop)

    thread = threading.Thread(target=produce, name="privacy-anon-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def map_ahead(items: Iterable, workers: Sequence[Callable], key: Callable = lambda item: item,
              depth: int = DEFAULT_DEPTH) -> Iterator[tuple]:
    """Yields `(item, result)` in the order of `items`, where `result = worker(key(item))`
    ran on a pool of `len(workers)` threads, up to `depth` items ahead of the one yielded.

    Each worker is used by one thread at a time (an interpreter is not thread-safe), so pass
    one worker per thread wanted. An exception the worker raises is yielded as the result
    (the caller decides: the pipeline masks that frame); items whose `key` is None are
    passed through with result None. An exception raised by `items` itself is raised here
    after the items before it are yielded. With no workers, results are None (the caller
    does the work itself).
    """
    if not workers:
        for item in items:
            yield item, None
        return
    free: queue.Queue = queue.Queue()
    for worker in workers:
        free.put(worker)

    def run(value):
        worker = free.get()
        try:
            return worker(value)
        except Exception as exc:  # noqa: BLE001 - handed to the caller with its item
            return exc
        finally:
            free.put(worker)

    pending: collections.deque = collections.deque()
    depth = max(int(depth), len(workers))
    failure = None
    with ThreadPoolExecutor(len(workers), thread_name_prefix="privacy-anon-detect") as pool:
        try:
            try:
                for item in items:
                    value = key(item)
                    pending.append((item, None if value is None else pool.submit(run, value)))
                    while len(pending) > depth:
                        yield _done(pending.popleft())
            except Exception as exc:  # noqa: BLE001 - `items` failed: first yield what it gave
                failure = exc
            while pending:
                yield _done(pending.popleft())
        finally:  # the consumer stopped early: do not run the rest
            for _, future in pending:
                if future is not None:
                    future.cancel()
            if hasattr(items, "close"):
                items.close()
    if failure is not None:
        raise failure


def _done(entry):
    item, future = entry
    return item, (None if future is None else future.result())


def _put(buffer: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set (the consumer went away)."""
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class BackgroundWriter:
    """Calls `consume(item)` for every `put(item)`, in order, on its own thread.

    `put` blocks while `depth` items wait. Leaving the `with` block waits for the queue to
    drain and raises the first exception `consume` raised (also raised by the next `put`).
    With `depth=0` everything runs in the caller's thread (the sequential reference).
    """

    def __init__(self, consume: Callable, depth: int = DEFAULT_DEPTH):
        self.consume = consume
        self.depth = int(depth)
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BackgroundWriter":
        if self.depth > 0:
            self._queue = queue.Queue(maxsize=self.depth)
            self._thread = threading.Thread(target=self._run, name="privacy-anon-writer", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None:  # after a failure, drain without consuming
                try:
                    self.consume(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller
                    self._error = exc

    def put(self, item) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self.consume(item)
        else:
            self._queue.put(item)

    def close(self) -> None:
        """Waits until every item is consumed; raises the first error."""
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller failed: stop the thread, keep the caller's exception
            try:
                self.close()
            except BaseException:  # noqa: BLE001
                pass
