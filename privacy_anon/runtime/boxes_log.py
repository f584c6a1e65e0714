"""`--boxes-json`: what was anonymized where, streamed to the file as each frame is done.

The file is one JSON document with the schema it had when it was written at the end
(`json.load` and `jq` read it as before), but each frame's record goes to disk, one line
per frame, as soon as the frame is processed, so memory stays flat however long the video:

    {"method": "blur8", "enlarge": 1.6, "inputs": [
    {"input": "a.mp4", "type": "video", "frames": [
    {"frame": 0, "status": "ok", "detections": [[x1, y1, x2, y2, score]], "regions": [[x1, y1, x2, y2]]},
    {"frame": 1, ...}
    ], "output": "out/a.mp4", "frames_in": 2, "faces": 1, ...}
    ]}

An input's totals (`output`, `frames_in`, `faces`, `fps`, ...) follow its `frames` list,
because they are known only at its end; JSON objects are unordered, so readers see the
same keys. One document rather than JSON Lines: the schema users and scripts already read
stays valid (a reader that must not hold it all can stream it, e.g. with `ijson`), and one
record a line keeps it easy to read with line tools (`grep`, `head`).

Written to a temporary file beside the target and renamed when the last input is done
(`io_utils.atomic_path`); on an error the temporary file is removed, so no half file is
ever left under the name the user gave. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import json

from privacy_anon.io_utils import atomic_path


class BoxesLog:
    """Writes the document piece by piece to an open text file (see the module docstring)."""

    def __init__(self, handle, method: str, enlarge: float):
        self._out = handle
        self._inputs = 0
        self._frames = 0
        self._head: dict = {}
        self._out.write(f'{{"method": {json.dumps(method)}, "enlarge": {json.dumps(enlarge)}, "inputs": [\n')

    def begin(self, **head) -> None:
        """Starts an input's entry with what is known before its frames (input, type)."""
        self._head, self._frames = head, 0
        fields = "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in head.items())
        self._out.write(("" if self._inputs == 0 else ",\n") + "{" + fields + '"frames": [\n')

    def frame(self, record: dict) -> None:
        """One frame's record (`FrameResult.to_dict(index)`): written now, not kept."""
        self._out.write(("" if self._frames == 0 else ",\n") + json.dumps(record))
        self._frames += 1

    def end(self, entry: dict) -> None:
        """Closes the input's entry with its totals (keys already in `begin` are skipped)."""
        rest = {k: v for k, v in entry.items() if k not in self._head and k != "frames"}
        fields = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in rest.items())
        self._out.write("\n]" + fields + "}")
        self._inputs += 1

    def close(self) -> None:
        self._out.write(("\n" if self._inputs else "") + "]}\n")


@contextlib.contextmanager
def boxes_log(path, method: str, enlarge: float):
    """Yields a `BoxesLog` writing to a temporary file renamed to `path` on success (None if
    `path` is None); an exception removes the temporary file and propagates."""
    if path is None:
        yield None
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        log = BoxesLog(handle, method, enlarge)
        yield log
        log.close()
