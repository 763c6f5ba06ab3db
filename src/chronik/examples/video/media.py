"""Real video work with PyAV (which bundles FFmpeg): transcode to 360p H.264 MP4, grab a PNG thumbnail,
and make synthetic sample videos for the demo and the tests.

Nothing here knows about events: the worker calls `transcode` between two recorded facts
(`VideoProcessingStarted` before, `...Succeeded` or `...Failed` after). Every way a file can be
unreadable (not a media file at all, truncated, no video stream) surfaces as one `MediaError`
carrying a human reason, which the worker records; a bad upload never crashes a worker.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import av

# PyAV is imported inside the functions that use it: importing the example (to register its
# aggregate for `chronik state`, or the CLI) must work without the optional `video` extra.

TARGET_HEIGHT = 360


class MediaError(Exception):
    """A file could not be turned into a rendition; `reason` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Rendition(msgspec.Struct, frozen=True):
    """What a transcode produced."""

    output_path: str
    thumbnail_path: str
    duration_seconds: float
    frames: int
    source_width: int
    source_height: int
    width: int
    height: int
    output_bytes: int
    thumbnail_bytes: int


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


Progress = Callable[[int], None]
"""`progress(frames)`: called after each frame is encoded, with the number of frames so far."""


def transcode(
    source: Path,
    output: Path,
    thumbnail: Path,
    *,
    height: int = TARGET_HEIGHT,
    progress: Progress | None = None,
) -> Rendition:
    """Transcode `source` to an H.264 MP4 `height` pixels high (aspect kept) and a PNG of its first frame.

    Both files are written under temporary names and renamed at the end, so a crash mid-way never
    leaves a half-written file under a final name. `progress` is how the caller stays in touch
    while the frames go by (the video worker renews its lease from it); an exception it raises
    stops the transcode, removes the partial files and reaches the caller unchanged.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    thumbnail.parent.mkdir(parents=True, exist_ok=True)
    partial_output = output.with_name(output.name + ".partial")
    partial_thumbnail = thumbnail.with_name(thumbnail.name + ".partial")
    import av

    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise MediaError("the upload has no video stream")
            video_in = container.streams.video[0]
            rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
            frames = 0
            duration = 0.0
            source_size = (0, 0)
            with av.open(str(partial_output), "w", format="mp4") as out:
                stream = out.add_stream("libx264", rate=rate)
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "veryfast", "crf": "28"}
                width = 0
                for frame in container.decode(video_in):
                    if frames == 0:
                        source_size = (frame.width, frame.height)
                        width = _even(frame.width * height / frame.height)
                        stream.width, stream.height = width, height
                        _write_png(frame, partial_thumbnail)
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    scaled.pts = frames
                    scaled.time_base = Fraction(1, 1) / rate
                    for packet in stream.encode(scaled):
                        out.mux(packet)
                    frames += 1
                    if frame.time is not None:
                        duration = max(duration, float(frame.time))
                    if progress is not None:
                        progress(frames)
                if frames == 0:
                    raise MediaError("the upload has a video stream but no decodable frame")
                for packet in stream.encode():
                    out.mux(packet)
            duration += float(1 / rate)
    except MediaError:
        _remove(partial_output, partial_thumbnail)
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as error:
        _remove(partial_output, partial_thumbnail)
        detail = getattr(error, "strerror", None) or str(error)
        raise MediaError(f"not a readable video: {detail}") from None
    except BaseException:  # the caller's progress callback stopped us (or an interrupt): no leftovers
        _remove(partial_output, partial_thumbnail)
        raise
    os.replace(partial_output, output)
    os.replace(partial_thumbnail, thumbnail)
    return Rendition(
        output_path=str(output),
        thumbnail_path=str(thumbnail),
        duration_seconds=round(duration, 3),
        frames=frames,
        source_width=source_size[0],
        source_height=source_size[1],
        width=width,
        height=height,
        output_bytes=output.stat().st_size,
        thumbnail_bytes=thumbnail.stat().st_size,
    )


def _write_png(frame: av.VideoFrame, path: Path) -> None:
    import av

    rgb = frame.reformat(format="rgb24")
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rgb.width, rgb.height, "rgb24"
    data = b"".join(bytes(packet) for packet in (*encoder.encode(rgb), *encoder.encode(None)))
    path.write_bytes(data)


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def probe(path: Path) -> tuple[str, int, int, float]:
    """(codec, width, height, duration in seconds) of a file's first video stream: for tests and the demo."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return stream.codec_context.name, stream.width, stream.height, duration


def make_sample_video(
    path: Path, *, seconds: float = 1.5, width: int = 320, height: int = 240, fps: int = 10, seed: int = 0
) -> Path:
    """Write a short synthetic MP4: a coloured square crossing a gradient, different for every seed."""
    import av

    rng = random.Random(seed)
    base = [rng.randrange(40, 200) for _ in range(3)]
    square = bytes(rng.randrange(256) for _ in range(3))
    size = max(8, height // 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        count = max(1, round(seconds * fps))
        for index in range(count):
            frame = av.VideoFrame(width, height, "rgb24")
            plane = frame.planes[0]
            pad = plane.line_size - width * 3
            rows = []
            for y in range(height):
                shade = bytes(min(255, c + y // 4) for c in base) * width
                rows.append(bytearray(shade))
            x0 = (index * (width - size)) // max(1, count - 1) if count > 1 else 0
            y0 = (height - size) // 2
            for y in range(y0, y0 + size):
                rows[y][x0 * 3 : (x0 + size) * 3] = square * size
            plane.update(b"".join(bytes(row) + b"\0" * pad for row in rows))
            frame.pts = index
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
