"""One output layer for ``infer.py`` offline and online: :class:`OutputSink` writes every file of ``outputs/``.

Everything is built in ``<run dir>/outputs.partial/`` and renamed to ``outputs/`` only when complete
(:meth:`OutputSink.finish`, ``summary.json`` last), so a failed or interrupted run never leaves outputs that look
complete; an error removes the partial folder (:meth:`OutputSink.abort`, or leaving the ``with`` block by an
exception). Files that grow with the input (objects, frame scores, events, masks, the annotated video) are written
as they come, so a days-long stream never holds them whole. The formats are :mod:`tao_lab.formats`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tao_lab import formats
from tao_lab.types import ObjectTable


class OutputSink:
    """The ``outputs/`` folder of one run (module docstring).

    run_dir: the run folder; masks: write ``masks/`` (one 16-bit PNG per frame); latency: frame_scores.csv gets the
    online ``latency_ms`` column.
    """

    def __init__(self, run_dir: os.PathLike, masks: bool = True, latency: bool = False):
        self.final = Path(run_dir) / "outputs"
        self.dir = self.final.with_name("outputs.partial")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.masks = bool(masks)
        if self.masks:
            (self.dir / "masks").mkdir()
        self._objects = formats.CsvFile(self.dir / "objects.csv", formats.OBJECTS_HEADER)
        self._frame_scores = formats.CsvFile(self.dir / "frame_scores.csv", formats.frame_scores_header(latency))
        self._events = formats.CsvFile(self.dir / "events.csv", formats.EVENT_HEADER)
        self._streams = [self._objects, self._frame_scores, self._events]
        self._video = None
        self._video_closed = False
        self.latency = bool(latency)

    def __enter__(self) -> "OutputSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def path(self, name: str) -> Path:
        return self.dir / name

    # ----- rows as they come ----------------------------------------------------------------------------------
    def add_objects(self, objects: ObjectTable, flagged: np.ndarray) -> None:
        """Rows of objects.csv: tracked objects with their anomaly score and flag (score above tau)."""
        self._objects.write(formats.object_lines(objects, flagged))

    def add_frame_scores(self, frames, times, scores, anomalous, latency_ms=None) -> None:
        self._frame_scores.write(formats.frame_score_lines(frames, times, scores, anomalous, latency_ms))

    def add_events(self, events: list, fps: float) -> None:
        """Rows of events.csv, flushed (online, an event is on disk as soon as it closes)."""
        self._events.write(ev.csv_row(fps) for ev in events)
        self._events.flush()

    def add_mask(self, frame: int, instance_map: np.ndarray) -> None:
        formats.write_mask_png(self.dir / "masks" / formats.mask_name(frame), instance_map)

    def mask(self, frame: int) -> Optional[np.ndarray]:
        """A written mask read back (None when masks are off or the frame has none)."""
        p = self.dir / "masks" / formats.mask_name(frame)
        return formats.read_mask_png(p) if p.is_file() else None

    def video(self, fps: float):
        """The annotated video's writer (:class:`tao_lab.report.overlay.VideoWriter`), opened on first use."""
        if self._video is None:
            from tao_lab.report.overlay import VideoWriter

            self._video = VideoWriter(self.dir / "annotated.mp4", fps)
        return self._video

    # ----- whole files ----------------------------------------------------------------------------------------
    def write_tables(self, tracks: Optional[ObjectTable] = None, segments: Optional[ObjectTable] = None,
                     prompts=None) -> None:
        """The per-run tables of an offline run: tracks.csv, tracks_mot.txt and tracks.txt (RBDC/TBDC) of the
        tracked objects; segments.csv and detections.txt of the segmented ones; prompts.csv."""
        if tracks is not None:
            formats.write_tracks_csv(self.dir / "tracks.csv", tracks)
            formats.write_mot(self.dir / "tracks_mot.txt", tracks)
            formats.write_tracks_txt(self.dir / "tracks.txt", tracks)
        if segments is not None:
            formats.write_tracks_csv(self.dir / "segments.csv", segments)
            formats.write_detections_txt(self.dir / "detections.txt", segments)
        if prompts is not None:
            formats.write_prompts_csv(self.dir / "prompts.csv", prompts)

    def write_gaps(self, gaps: list[dict]) -> None:
        formats.write_gaps_csv(self.dir / "gaps.csv", gaps)

    def write_note(self, note: str) -> None:
        formats.write_note(self.dir / "NOTE.txt", note)

    def close_streams(self) -> None:
        """Closes the line-by-line files and the video (before a report reads them)."""
        for f in self._streams:
            f.close()
        if self._video is not None and not self._video_closed:
            self._video.close()
            self._video_closed = True

    def report(self, write: Callable[[Path], object]) -> None:
        """``write(outputs folder)`` writes report.html from the (closed) files."""
        self.close_streams()
        write(self.dir)

    def finish(self, summary: dict, list_files: bool = False) -> Path:
        """Writes summary.json (last; with ``list_files``, the list of files into it) and renames the folder."""
        self.close_streams()
        if list_files:
            summary["files"] = sorted([str(p.relative_to(self.dir)) for p in self.dir.iterdir()] + ["summary.json"])
        formats.write_json(self.dir / "summary.json", summary)
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.dir, self.final)
        return self.final

    def abort(self) -> None:
        for f in self._streams:
            f.close()
        if self._video is not None and not self._video_closed:
            self._video.abort()
        shutil.rmtree(self.dir, ignore_errors=True)
