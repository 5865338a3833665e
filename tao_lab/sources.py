"""Live video sources for the online mode: a camera index, an RTSP/HTTP URL or a video file read as a stream,
reopened with backoff when a network stream drops (:class:`ReconnectingSource`)."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterator, Optional, Union

import numpy as np

log = logging.getLogger(__name__)

Source = Union[int, str, os.PathLike]


class SourceError(RuntimeError):
    """The live source cannot be opened or read (the message names it)."""


def parse_source(source: Source) -> Union[int, str]:
    """A camera index (int or digit string) or a path / URL string."""
    if isinstance(source, (int, np.integer)):
        return int(source)
    s = str(source).strip()
    return int(s) if s.isdigit() else s


def open_source(source: Source):
    """``cv2.VideoCapture`` on a camera index, an RTSP/HTTP URL or a video file; SourceError when it won't open."""
    import cv2

    src = parse_source(source)
    if isinstance(src, str) and "://" not in src and not os.path.exists(src):
        raise SourceError(f"online source not found: {src} (give a camera index, an rtsp:// or http:// URL, or a "
                          f"video file)")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise SourceError(f"cannot open online source {src!r} with OpenCV (camera busy or absent, URL unreachable, "
                          f"or unsupported codec)")
    return cap


def read_frames(cap, max_failures: int = 25, live: bool = False) -> Iterator[np.ndarray]:
    """Frames (BGR uint8) until the source ends; a live source may drop up to ``max_failures`` reads in a row."""
    import cv2

    failures = 0
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            failures += 1
            if not live or failures > max_failures:
                return
            time.sleep(0.02)
            continue
        failures = 0
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        yield frame


def is_network(source: Source) -> bool:
    return "://" in str(parse_source(source)) and not isinstance(parse_source(source), int)


class ReconnectingSource:
    """The frames of a source; a network stream (rtsp://, http://, ...) that drops is reopened with backoff.

    A drop is not the end of the stream: after ``max_failures`` failed reads in a row the capture is released and
    reopened up to ``attempts`` times, waiting ``delay_s``, then ``delay_s * backoff``, ... (at most ``max_delay_s``)
    between attempts; the first frame after a successful reopen ends the gap. Each gap is recorded in ``gaps`` as
    ``{"after_frame", "start_s", "length_s", "attempts"}`` (start_s: wall seconds since the source was opened;
    after_frame: 0-based index of the last frame read before the gap). The stream ends when a file ends, or when
    the attempts are spent (``stopped`` says why). Files and cameras are not reopened.
    """

    def __init__(self, source: Source, live: Optional[bool] = None, attempts: int = 10, delay_s: float = 1.0,
                 backoff: float = 2.0, max_delay_s: float = 30.0, max_failures: int = 25):
        self.source = source
        src = parse_source(source)
        self.live = (isinstance(src, int) or "://" in str(src)) if live is None else bool(live)
        self.network = is_network(source)
        self.attempts, self.delay_s = max(0, int(attempts)), max(0.0, float(delay_s))
        self.backoff, self.max_delay_s = max(1.0, float(backoff)), max(0.0, float(max_delay_s))
        self.max_failures = int(max_failures)
        self.gaps: list[dict] = []
        self.stopped = "end of stream"
        self.frames_read = 0
        self.cap = open_source(source)
        self._t0 = time.perf_counter()

    @property
    def fps(self) -> float:
        import cv2

        fps = self.cap.get(cv2.CAP_PROP_FPS) if self.cap is not None else 0.0
        return float(fps) if fps and 0 < fps < 1000 else 0.0

    def _reopen(self) -> Optional[tuple[Any, int]]:
        """(capture, attempts used) of a reopened stream that gave a frame, else None when the attempts are spent."""
        delay = self.delay_s
        for attempt in range(1, self.attempts + 1):
            time.sleep(delay)
            delay = min(delay * self.backoff, self.max_delay_s)
            try:
                cap = open_source(self.source)
            except SourceError as exc:
                log.warning("reconnect attempt %d/%d to %s failed: %s", attempt, self.attempts, self.source, exc)
                continue
            ok, frame = cap.read()
            if ok and frame is not None:
                self._pending = frame
                return cap, attempt
            cap.release()
            log.warning("reconnect attempt %d/%d to %s: opened but no frame", attempt, self.attempts, self.source)
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        self._pending = None
        try:
            while True:
                for frame in read_frames(self.cap, self.max_failures, self.live):
                    self.frames_read += 1
                    yield frame
                if not self.network or self.attempts == 0:
                    return
                start = time.perf_counter()
                log.warning("stream %s dropped after frame %d; reconnecting (up to %d attempts)", self.source,
                            self.frames_read - 1, self.attempts)
                self.cap.release()
                self.cap = None
                got = self._reopen()
                if got is None:
                    self.stopped = f"stream lost: {self.attempts} reconnection attempts failed"
                    self.gaps.append({"after_frame": self.frames_read - 1,
                                      "start_s": round(start - self._t0, 3),
                                      "length_s": round(time.perf_counter() - start, 3),
                                      "attempts": self.attempts, "reconnected": False})
                    return
                self.cap, used = got
                self.gaps.append({"after_frame": self.frames_read - 1, "start_s": round(start - self._t0, 3),
                                  "length_s": round(time.perf_counter() - start, 3), "attempts": used,
                                  "reconnected": True})
                log.warning("stream %s back after %.1f s (%d attempt(s))", self.source, self.gaps[-1]["length_s"],
                            used)
                frame, self._pending = self._pending, None
                self.frames_read += 1
                yield frame
        finally:
            self.release()

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
