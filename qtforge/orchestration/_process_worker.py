"""The worker process of `ProcessExecutor`: read envelopes, run them, send outcomes.

The engine starts it as ``python -u -c BOOT <main script> <sys.path...>`` (see
``_executor_process.py``), so that the worker imports what the engine can import,
without qtforge having to be importable from the worker's own default path. Messages
both ways are frames: an 8-byte big-endian length, then that many bytes. The engine
sends the `pack`-ed envelopes of ``_shipping.py``; the worker answers each with
`run_shipped`'s outcome. Its first frame, once started, says whether it is ready.

The frames travel on a copy of the worker's original stdout; file descriptor 1 itself
then points at stderr, so that whatever the plugin prints (from Python or from C) goes
to the engine's stderr instead of corrupting the frames.
"""

from __future__ import annotations

import os
import pickle
import runpy
import signal
import struct
import sys
import types
from typing import BinaryIO

__all__ = ["BOOT", "serve"]

BOOT = (
    "import sys; main, *path = sys.argv[1:]; sys.path[:] = path; "
    "from qtforge.orchestration._process_worker import serve; serve(main)"
)
"""The worker's ``-c`` program; its arguments are the engine's main script and sys.path."""

_HEADER = struct.Struct("!Q")


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's bytes, or ``None`` at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _load_main(path: str) -> None:
    """Run the engine's main script as ``__mp_main__`` (as `multiprocessing` does), so
    that plugins defined in it unpickle here; its ``__main__`` block does not run."""
    if not path or not os.path.isfile(path):
        return
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(runpy.run_path(path, run_name="__mp_main__"))
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def serve(main: str) -> None:
    """Serve envelopes on stdin until it closes.

    Ctrl-C reaches the whole process group; the worker ignores it and leaves its fate
    to the engine, which kills it when it cancels its call or closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    with os.fdopen(os.dup(1), "wb") as replies, open(os.devnull) as nothing:
        os.dup2(2, 1)  # prints go to stderr, never into the frames
        sys.stdout, sys.stdin = sys.stderr, nothing
        try:
            _load_main(main)
        except BaseException as exc:  # a broken script: tell the engine, then stop
            replies.write(frame(pickle.dumps(f"{type(exc).__name__}: {exc}")))
            return
        from ._shipping import run_shipped  # imports what the envelopes need

        replies.write(frame(pickle.dumps(None)))
        replies.flush()
        while (payload := read_frame(requests)) is not None:
            replies.write(frame(run_shipped(payload)))
            replies.flush()
