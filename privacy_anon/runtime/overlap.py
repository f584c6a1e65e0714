"""Decode, anonymize and encode at the same time: two helper threads and bounded queues.

Video decoding and encoding (FFmpeg, via PyAV) and the interpreters (LiteRT) release the
GIL, so a reader thread decoding the next frames and a writer thread encoding the last ones
overlap with the detect + modify work of the current frame. The queues are bounded, so
memory stays flat however long the video is. Frames keep their order (one reader, one
writer); an exception in either thread is raised again in the caller. No TensorFlow here.

Example:
    >>> with BackgroundWriter(lambda item: out.mux(stream.encode(item))) as writer:
    ...     for frame in prefetch(decode_frames(), depth=4):
    ...         writer.put(process(frame))
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

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
