"""Media plugins for the parallel example: scan directories, then combine the results.

``process_batch(input_dir, format)`` lists the files of one extension in a directory
and describes each (name, size, SHA-256, plus what the file's header tells about it)::

    image_processor.process_batch  -> images_processed   (JPEG width and height)
    video_processor.process_batch  -> videos_processed   (MP4 container brand)
    audio_processor.process_batch  -> audio_processed    (WAV duration, rate, channels)
    aggregator.combine_results(images_processed, videos_processed, audio_processed)
                                   -> summary, report_path (a JSON report is written)

The image and video processors are plain methods (qtforge runs them in its worker
threads; they report progress and stop between files when the step is cancelled). The
audio processor is ``async def`` and moves its file work to a thread itself with
`anyio.to_thread`, which works under both asyncio and trio.
"""

from __future__ import annotations

import hashlib
import json
import struct
import wave
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from qtforge.orchestration import StepContext

__all__ = [
    "Aggregator",
    "AudioProcessor",
    "ImageProcessor",
    "VideoProcessor",
    "describe_file",
    "scan_directory",
]

FileInfo = dict[str, Any]
Inspector = Callable[[Path, bytes], dict[str, Any]]


def scan_directory(input_dir: str | Path, extension: str) -> list[Path]:
    """The files in `input_dir` (not its subdirectories) whose extension is `extension`
    (with or without the dot, any case), sorted by name.

    Raises:
        NotADirectoryError: `input_dir` is not a directory.
    """
    directory = Path(input_dir)
    if not directory.is_dir():
        raise NotADirectoryError(f"input_dir {str(input_dir)!r} is not a directory")
    suffix = "." + extension.lower().lstrip(".")
    return sorted(
        (path for path in directory.iterdir() if path.is_file() and path.suffix.lower() == suffix),
        key=lambda path: path.name,
    )


def describe_file(path: Path, inspect: Inspector | None = None) -> FileInfo:
    """Name, size and SHA-256 of `path`, plus what `inspect` reads from its content."""
    content = path.read_bytes()
    info: FileInfo = {
        "name": path.name,
        "path": str(path),
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    if inspect is not None:
        info.update(inspect(path, content))
    return info


def _describe_all(
    files: Sequence[Path], inspect: Inspector, context: StepContext | None
) -> list[FileInfo]:
    described = []
    for done, path in enumerate(files):
        if context is not None:
            context.raise_if_cancelled()
            context.report_progress(done / len(files), path.name)
        described.append(describe_file(path, inspect))
    return described


_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def jpeg_dimensions(_path: Path, content: bytes) -> dict[str, Any]:
    """``width`` and ``height`` from a JPEG's frame header (``None`` if not found)."""
    size: dict[str, Any] = {"width": None, "height": None}
    if not content.startswith(b"\xff\xd8"):
        return size
    position = 2
    while position + 4 <= len(content):
        if content[position] != 0xFF:
            break
        marker = content[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", content, position + 2)
        if marker in _JPEG_FRAME_MARKERS and position + 9 <= len(content):
            height, width = struct.unpack_from(">HH", content, position + 5)
            return {"width": width, "height": height}
        position += 2 + length
    return size


def mp4_brand(_path: Path, content: bytes) -> dict[str, Any]:
    """``brand``: the major brand of an MP4 (ISO base media) file's ``ftyp`` box."""
    if len(content) >= 12 and content[4:8] == b"ftyp":
        return {"brand": content[8:12].decode("ascii", "replace").strip()}
    return {"brand": None}


def wav_format(path: Path, _content: bytes) -> dict[str, Any]:
    """``duration_s``, ``sample_rate`` and ``channels`` of a WAV file."""
    with wave.open(str(path), "rb") as audio:
        rate = audio.getframerate()
        return {
            "duration_s": round(audio.getnframes() / rate, 3),
            "sample_rate": rate,
            "channels": audio.getnchannels(),
        }


class ImageProcessor:
    """Describes the images in a directory (a plain method: runs in a worker thread)."""

    def process_batch(
        self, input_dir: str, format: str, context: StepContext | None = None
    ) -> dict[str, Any]:
        """Describe every ``*.<format>`` file in `input_dir`.

        Returns:
            ``images_processed``: name, path, size_bytes, sha256, width, height per file.
        """
        files = scan_directory(input_dir, format)
        return {"images_processed": _describe_all(files, jpeg_dimensions, context)}


class VideoProcessor:
    """Describes the videos in a directory (a plain method: runs in a worker thread)."""

    def process_batch(
        self, input_dir: str, format: str, context: StepContext | None = None
    ) -> dict[str, Any]:
        """Describe every ``*.<format>`` file in `input_dir`.

        Returns:
            ``videos_processed``: name, path, size_bytes, sha256, brand per file.
        """
        files = scan_directory(input_dir, format)
        return {"videos_processed": _describe_all(files, mp4_brand, context)}


class AudioProcessor:
    """Describes the audio files in a directory (async; file work in a thread)."""

    async def process_batch(self, input_dir: str, format: str) -> dict[str, Any]:
        """Describe every ``*.<format>`` file in `input_dir`.

        Checkpoint; the file work runs in one `anyio.to_thread` worker, and cancelling
        the step stops waiting for it.

        Returns:
            ``audio_processed``: name, path, size_bytes, sha256, duration_s,
            sample_rate, channels per file.
        """

        def work() -> list[FileInfo]:
            return _describe_all(scan_directory(input_dir, format), wav_format, None)

        return {"audio_processed": await anyio.to_thread.run_sync(work)}


class Aggregator:
    """Combines the processors' outputs into one summary and a JSON report."""

    def combine_results(
        self,
        images_processed: Sequence[Mapping[str, Any]] = (),
        videos_processed: Sequence[Mapping[str, Any]] = (),
        audio_processed: Sequence[Mapping[str, Any]] = (),
        report_path: str = "media_report.json",
    ) -> dict[str, Any]:
        """Count files and bytes per kind and write them, with every file, to `report_path`.

        Returns:
            ``summary`` (``total_files``, ``total_bytes``, and ``files``/``bytes`` per
            kind) and ``report_path``.
        """
        kinds = {"images": images_processed, "videos": videos_processed, "audio": audio_processed}
        by_kind = {
            kind: {"files": len(files), "bytes": sum(file["size_bytes"] for file in files)}
            for kind, files in kinds.items()
        }
        summary = {
            "total_files": sum(counts["files"] for counts in by_kind.values()),
            "total_bytes": sum(counts["bytes"] for counts in by_kind.values()),
            "by_kind": by_kind,
        }
        report = {"summary": summary, "files": {kind: list(files) for kind, files in kinds.items()}}
        Path(report_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return {"summary": summary, "report_path": report_path}
