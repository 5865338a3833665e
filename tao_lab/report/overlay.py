"""Overlay frames and the annotated video: masks, boxes, ids and scores drawn on the frame, plus a timeline bar.

All images are uint8 BGR (OpenCV order). Boxes are xyxy in original pixels.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

log = logging.getLogger(__name__)

TIMELINE_HEIGHT = 36


def color_for(obj_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour for an object id (golden-ratio hue walk)."""
    hue = int((int(obj_id) * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_objects(frame: np.ndarray, instance_map: Optional[np.ndarray] = None, boxes: Optional[np.ndarray] = None,
                 ids: Optional[np.ndarray] = None, scores: Optional[np.ndarray] = None,
                 tau: Optional[float] = None, alpha: float = 0.45, flagged_only_boxes: bool = False,
                 classes: Optional[list] = None, faint: float = 0.35) -> np.ndarray:
    """The frame with instance masks blended in (colour per id), boxes, and "id [class] score" labels.

    instance_map: (H, W) int, 0 = background, k = object id k. boxes (K, 4) xyxy; ids (K,); scores (K,);
    classes: optional (K,) class names put in the labels.
    With ``tau``, boxes whose score passes it are drawn thick and red-labelled, the others faintly (thin, blended
    with weight ``faint``) and without a label, so a crowded scene stays readable (or they are skipped with
    ``flagged_only_boxes``); without ``tau`` every box is drawn thin with its label.
    """
    out = frame.copy()
    if instance_map is not None and np.any(instance_map):
        inst = np.asarray(instance_map)
        color = np.zeros_like(out)
        for k in np.unique(inst[inst > 0]):
            color[inst == k] = color_for(int(k))
        m = inst > 0
        out[m] = (out[m].astype(np.float32) * (1 - alpha) + color[m].astype(np.float32) * alpha).astype(np.uint8)
        # mask outlines make small objects visible
        edges = cv2.morphologyEx((m * 255).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        out[edges] = color[edges]
    if boxes is not None and len(boxes):
        h, w = out.shape[:2]
        font_scale = max(0.35, min(0.6, h / 600))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        flags = [tau is not None and scores is not None and float(scores[r]) >= tau for r in range(len(boxes))]
        if tau is not None and not flagged_only_boxes and not all(flags):
            # unflagged objects: thin boxes blended in faintly, no label (drawn first, under the flagged ones)
            layer = out.copy()
            for r in np.flatnonzero(~np.asarray(flags)):
                x1, y1, x2, y2 = (int(round(v)) for v in boxes[r])
                cv2.rectangle(layer, (x1, y1), (x2 - 1, y2 - 1),
                              color_for(int(ids[r]) if ids is not None else r + 1), 1, cv2.LINE_AA)
            out = cv2.addWeighted(layer, float(faint), out, 1.0 - float(faint), 0.0)
        for r, box in enumerate(boxes):
            obj_id = int(ids[r]) if ids is not None else r + 1
            score = float(scores[r]) if scores is not None else None
            flagged = flags[r]
            if tau is not None and not flagged:
                continue  # drawn faintly above, or skipped with flagged_only_boxes
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            x1, y1 = max(0, min(w - 1, x1)), max(0, min(h - 1, y1))
            x2, y2 = max(0, min(w - 1, x2 - 1)), max(0, min(h - 1, y2 - 1))
            col = (0, 0, 255) if flagged else color_for(obj_id)
            cv2.rectangle(out, (x1, y1), (x2, y2), col, 2 if flagged else 1, cv2.LINE_AA)
            label = f"{obj_id}" + (f" {classes[r]}" if classes is not None else "") + \
                (f" {score:.2f}" if score is not None else "")
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            ty = y1 - 3 if y1 - th - 4 >= 0 else min(h - 2, y2 + th + 3)
            cv2.rectangle(out, (x1, ty - th - 2), (min(w - 1, x1 + tw + 2), ty + base - 1), col, -1)
            cv2.putText(out, label, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


class TimelineBar:
    """A bar under the frame showing the whole video's frame scores, the threshold and the current position.

    The bar image is drawn once (width = frame width); ``render(i)`` only adds the cursor, so it costs a copy.
    """

    def __init__(self, frame_scores: np.ndarray, width: int, tau: Optional[float] = None,
                 height: int = TIMELINE_HEIGHT):
        s = np.asarray(frame_scores, np.float64)
        self.n = len(s)
        self.width, self.height = int(width), int(height)
        finite = s[np.isfinite(s)]
        lo = float(min(finite.min(), tau if tau is not None else finite.min())) if len(finite) else 0.0
        hi = float(max(finite.max(), tau if tau is not None else finite.max())) if len(finite) else 1.0
        span = hi - lo if hi > lo else 1.0
        bar = np.full((self.height, self.width, 3), 30, np.uint8)
        if self.n:
            # column c shows the max score of the frames that fall into it
            cols = np.minimum((np.arange(self.n) * self.width) // max(self.n, 1), self.width - 1)
            col_max = np.full(self.width, np.nan)
            col_flag = np.zeros(self.width, bool)
            for c in np.unique(cols):
                vals = s[cols == c]
                col_max[c] = np.nanmax(vals) if np.any(np.isfinite(vals)) else np.nan
                col_flag[c] = tau is not None and np.nanmax(vals) >= tau
            # fill gaps (video shorter than the bar is wide)
            idx = np.arange(self.width)
            good = np.isfinite(col_max)
            if good.any():
                col_max = np.interp(idx, idx[good], col_max[good])
                col_flag = np.interp(idx, idx[good], col_flag[good].astype(float)) >= 0.5
            plot_h = self.height - 6
            for c in range(self.width):
                v = (col_max[c] - lo) / span
                top = self.height - 3 - int(round(v * plot_h))
                bar[top:self.height - 3, c] = (60, 60, 235) if col_flag[c] else (200, 160, 60)
            if tau is not None:
                ty = self.height - 3 - int(round((float(tau) - lo) / span * plot_h))
                bar[max(0, ty), ::4] = (255, 255, 255)
        self.bar = bar

    def render(self, i: int) -> np.ndarray:
        out = self.bar.copy()
        if self.n:
            x = min(self.width - 1, int(i * self.width / max(self.n, 1)))
            cv2.line(out, (x, 0), (x, self.height - 1), (255, 255, 255), 1)
        return out


def compose_frame(annotated: np.ndarray, timeline: Optional[TimelineBar], i: int, text: str = "") -> np.ndarray:
    """The annotated frame with the timeline bar below it and a status text in the top-left corner."""
    out = annotated
    if text:
        out = out.copy()
        cv2.putText(out, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if timeline is not None:
        out = np.vstack([out, timeline.render(i)])
    return out


class VideoWriter:
    """Writes frames to ``<path>.partial.<ext>`` and renames on ``close()`` (never half-written).

    ``.mp4`` is H.264 (libx264, yuv420p, ``+faststart``) through the ffmpeg binary of the ``imageio-ffmpeg`` wheel,
    so the video plays in every browser (OpenCV's bundled FFmpeg only has MPEG-4 part 2, ``mp4v``, which browsers
    refuse); odd frame sizes get one black row/column because yuv420p needs even ones. Without imageio-ffmpeg it
    falls back to ``mp4v`` with a warning. ``.avi`` is MJPG. ``codec`` ('h264', 'mp4v', 'mjpg') forces one.
    Frames must all have the size of the first one. ``abort()`` deletes the partial file.
    """

    def __init__(self, path: os.PathLike, fps: float, codec: Optional[str] = None):
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.tmp = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        if codec is None:
            codec = "mjpg" if self.path.suffix.lower() == ".avi" else ("h264" if _have_ffmpeg() else "mp4v")
            if codec == "mp4v":
                log.warning("imageio-ffmpeg is not installed: %s is written as MPEG-4 part 2 (mp4v), which browsers do "
                            "not play; pip install imageio-ffmpeg (see requirements.txt) for H.264", self.path)
        self.codec = codec
        self._writer = None
        self._ffmpeg = None
        self.size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == "h264":
            import imageio_ffmpeg

            self._ffmpeg = imageio_ffmpeg.write_frames(
                str(self.tmp), (w + w % 2, h + h % 2), pix_fmt_in="bgr24", pix_fmt_out="yuv420p", fps=self.fps,
                codec="libx264", quality=None, macro_block_size=1, ffmpeg_log_level="error",
                output_params=["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"])
            self._ffmpeg.send(None)  # starts the ffmpeg process
            return
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.codec == "mjpg" else "mp4v"))
        self._writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
        if not self._writer.isOpened():
            raise RuntimeError(f"cannot open a video writer for {self.tmp} (codec not available in this OpenCV)")

    def write(self, frame: np.ndarray) -> None:
        if self.size is None:
            h, w = frame.shape[:2]
            self.size = (w, h)
            self._open(w, h)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        if self._ffmpeg is not None:
            w, h = self.size
            if w % 2 or h % 2:
                frame = cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            try:
                self._ffmpeg.send(np.ascontiguousarray(frame, dtype=np.uint8))
            except (OSError, RuntimeError) as e:
                raise RuntimeError(f"ffmpeg failed while writing {self.tmp}: {e}") from e
        else:
            self._writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def _release(self) -> None:
        if self._ffmpeg is not None:
            gen, self._ffmpeg = self._ffmpeg, None
            gen.close()  # waits for ffmpeg to finish the file
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def close(self) -> Optional[Path]:
        if self.size is None:
            return None
        self._release()
        self.size = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._release()
        finally:
            self.tmp.unlink(missing_ok=True)


def _have_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def crop_with_context(frame: np.ndarray, box: np.ndarray, pad: float = 0.25, size: int = 128,
                      instance_map: Optional[np.ndarray] = None, obj_id: Optional[int] = None) -> np.ndarray:
    """A square-ish thumbnail (``size`` px on the long side) around a box, with the object's mask outlined."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = [float(v) for v in box]
    bw, bh = max(x2 - x1, 2.0), max(y2 - y1, 2.0)
    cx1, cy1 = int(max(0, x1 - pad * bw)), int(max(0, y1 - pad * bh))
    cx2, cy2 = int(min(w, x2 + pad * bw)), int(min(h, y2 + pad * bh))
    crop = frame[cy1:max(cy2, cy1 + 1), cx1:max(cx2, cx1 + 1)]
    ch, cw = crop.shape[:2]
    scale = size / max(ch, cw)
    out = cv2.resize(crop, (max(1, int(round(cw * scale))), max(1, int(round(ch * scale)))),
                     interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    # outlines are drawn after scaling so they stay one pixel wide whatever the zoom
    if instance_map is not None and obj_id is not None:
        m = (instance_map[cy1:max(cy2, cy1 + 1), cx1:max(cx2, cx1 + 1)] == obj_id).astype(np.uint8)
        if m.any():
            m = cv2.resize(m, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, (0, 0, 255), 1)
    p1 = (int((x1 - cx1) * scale), int((y1 - cy1) * scale))
    p2 = (int((x2 - cx1) * scale) - 1, int((y2 - cy1) * scale) - 1)
    cv2.rectangle(out, p1, p2, (0, 255, 255), 1)
    return out


def frame_rows(objects, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, ids, scores) of the rows of an ObjectTable on frame i."""
    sel = objects.frame == i
    return objects.xyxy[sel], objects.track_id[sel], objects.score[sel]


def best_frame_overlay(clip, scores, seg, threshold=None) -> tuple[float, np.ndarray, str]:
    """(frame score, overlay image, caption) of the clip's most anomalous frame, with its segmented objects drawn
    (masks from ``seg.instance_maps``; boxes, ids and scores from ``seg.objects``, else the scored objects)."""
    fs = np.asarray(scores.frame_scores, np.float64)
    i = int(np.nanargmax(fs)) if len(fs) and np.any(np.isfinite(fs)) else 0
    tau = float(threshold.tau) if threshold is not None and getattr(threshold, "tau", None) is not None else None
    inst = seg.instance_maps[i] if getattr(seg, "instance_maps", None) is not None else None
    table = seg.objects if len(seg.objects) and np.any(seg.objects.frame == i) else scores.objects
    boxes, ids, obj_scores = frame_rows(table, i)
    img = draw_objects(clip.frame(i), inst, boxes, ids, obj_scores, tau=tau)
    score = float(fs[i]) if len(fs) else 0.0
    caption = f"{clip.clip_id} frame {i} (0-based): frame score {score:.3f}"
    return score, img, caption


def rolling_bar(scores: list[float], width: int, tau: float, height: int) -> np.ndarray:
    """The last scores as a bar strip (newest on the right), threshold dotted; for live output."""
    bar = np.full((height, width, 3), 30, np.uint8)
    if not scores:
        return bar
    s = np.asarray(scores, np.float64)
    hi = max(float(s.max()), tau * 1.25, 1e-6)
    n = len(s)
    xs = np.linspace(0, width - 1, n).astype(int) if n > 1 else np.array([width - 1])
    for k in range(n):
        x0 = xs[k]
        x1 = xs[k + 1] if k + 1 < n else width
        top = height - 3 - int(round(min(s[k] / hi, 1.0) * (height - 6)))
        bar[top:height - 3, x0:max(x1, x0 + 1)] = (60, 60, 235) if s[k] >= tau else (200, 160, 60)
    ty = height - 3 - int(round(min(tau / hi, 1.0) * (height - 6)))
    bar[max(0, ty), ::4] = (255, 255, 255)
    return bar
