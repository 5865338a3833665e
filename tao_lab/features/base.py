"""Feature extraction: extractors share one decoding pass over a clip (streaming, optical flow computed once).

``extract_features(clip, objects, extractors) -> {name: (N, D) float32}`` with rows aligned with ``objects``.
Each extractor sees the frames in order through :class:`FrameContext`, which decodes a frame once and computes
the grey image and the optical flow lazily, only if some extractor asks for them, and at most once per frame.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import cv2
import numpy as np

from tao_lab.features.flow_memo import SHARED_FLOWS, clip_key
from tao_lab.types import Clip, ObjectTable


def clip_boxes(xyxy: np.ndarray, height: int, width: int, min_size: int = 1) -> np.ndarray:
    """Integer pixel boxes (K,4) int64 inside the frame, at least ``min_size`` px wide and high."""
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    x1 = np.clip(np.floor(b[:, 0]), 0, width - min_size)
    y1 = np.clip(np.floor(b[:, 1]), 0, height - min_size)
    x2 = np.clip(np.maximum(np.ceil(b[:, 2]), x1 + min_size), min_size, width)
    y2 = np.clip(np.maximum(np.ceil(b[:, 3]), y1 + min_size), min_size, height)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def grey_uint8(frame: np.ndarray) -> np.ndarray:
    """uint8 (H,W) grey image of a BGR (H,W,3) or grey (H,W) frame (what the DIS optical flow takes)."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


class FlowEstimator:
    """Dense optical flow between consecutive grey frames with OpenCV DIS.

    The default (preset "fast" refined down to pyramid level 1, i.e. half resolution instead of a quarter) was
    chosen on training clips only, with planted walkers of known speed moving through held-out training clips;
    the frame AUCs and speeds of that choice are in docs/MEASUREMENTS.md.

    preset: "ultrafast" | "fast" | "medium" (DIS presets, fastest to most accurate).
    scale: the grey frames are resized by this factor before the flow (speed) and the flow is scaled back, so
        the result is always in original pixels per frame.
    finest_scale, patch_size, patch_stride, gd_iterations, var_iterations: override the preset's DIS parameters
        (None = the preset's): finest pyramid level (0 = full resolution), patch size and stride (px), gradient
        descent iterations per patch, variational refinement iterations (0 = none; refinement smooths the flow of
        small fast objects into the static background around them).
    min_rows: instead of a fixed ``finest_scale``, per frame size the coarsest pyramid level whose image still has
        at least this many rows (level = floor(log2(rows / min_rows)), at least 0): the same resolution relative to
        the frame on every camera (120 = Ped2's validated level 1 on its 240 rows; a 160-row frame then gets full
        resolution instead of 80 rows, a 480-row frame level 2). None = ``finest_scale``.
    """

    _PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "fast", scale: float = 1.0, finest_scale: Optional[int] = 1,
                 patch_size: Optional[int] = None, patch_stride: Optional[int] = None,
                 gd_iterations: Optional[int] = None, var_iterations: Optional[int] = None,
                 min_rows: Optional[int] = None):
        self._args = dict(preset=preset, scale=scale, finest_scale=finest_scale, patch_size=patch_size,
                          patch_stride=patch_stride, gd_iterations=gd_iterations, var_iterations=var_iterations,
                          min_rows=min_rows)
        if preset not in self._PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}: expected one of {sorted(self._PRESETS)}")
        if min_rows is not None and int(min_rows) < 8:
            raise ValueError(f"min_rows must be >= 8 rows (or null: finest_scale), got {min_rows!r}")
        self.preset = preset
        self.scale = float(scale)
        self.min_rows = None if min_rows is None else int(min_rows)
        self._level_rows: Optional[int] = None  # the frame height the DIS level was last set for (min_rows)
        self._dis = cv2.DISOpticalFlow_create(self._PRESETS[preset])
        for value, setter in ((finest_scale, self._dis.setFinestScale), (patch_size, self._dis.setPatchSize),
                              (patch_stride, self._dis.setPatchStride),
                              (gd_iterations, self._dis.setGradientDescentIterations),
                              (var_iterations, self._dis.setVariationalRefinementIterations)):
            if value is not None:
                setter(int(value))

    @property
    def signature(self) -> tuple:
        """What determines the flow: the settings (tao_lab.features.flow_memo reuses flows of equal settings)."""
        return tuple(self._args.values())

    def __getstate__(self):  # the OpenCV DIS object does not pickle: a copy (e.g. in a worker process) rebuilds it
        return self._args

    def __setstate__(self, args):
        self.__init__(**args)

    def level_for(self, rows: int) -> int:
        """The finest pyramid level ``min_rows`` gives an image of ``rows`` rows."""
        return max(0, int(np.floor(np.log2(max(rows, 1) / self.min_rows)))) if self.min_rows else 0

    def __call__(self, frm: np.ndarray, to: np.ndarray) -> np.ndarray:
        """Flow (H,W,2) float32 at the pixels of ``frm`` pointing to ``to`` (dx, dy in px/frame)."""
        h, w = frm.shape
        size = (max(8, int(round(w * self.scale))), max(8, int(round(h * self.scale)))) if self.scale != 1.0 else (w, h)
        if self.min_rows is not None and size[1] != self._level_rows:
            self._dis.setFinestScale(self.level_for(size[1]))
            self._level_rows = size[1]
        if self.scale != 1.0:
            a = cv2.resize(frm, size, interpolation=cv2.INTER_AREA)
            b = cv2.resize(to, size, interpolation=cv2.INTER_AREA)
            flow = self._dis.calc(a, b, None)
            return cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / self.scale
        return self._dis.calc(frm, to, None)


class FrameContext:
    """What extractors may read about the current frame; expensive parts are computed on first access.

    index: 0-based frame index; frame: uint8 (H,W,3) BGR; grey: uint8 (H,W);
    classes: (K,) int64 detector classes of the frame's boxes (the objects' ``cls``), None when not known;
    flow: (H,W,2) float32 motion of the pixels of THIS frame in px/frame (dx right, dy down), estimated as the
        negated flow from this frame to the previous one (so it is located on the object's current pixels, which
        is where its box is); for frame 0 the forward flow to frame 1; zeros for a one-frame clip.
    """

    def __init__(self, index: int, frame: np.ndarray, flow_estimator: FlowEstimator,
                 prev_grey: Optional[np.ndarray], next_frame: Optional[np.ndarray],
                 classes: Optional[np.ndarray] = None,
                 known_flow: Optional[Callable[[np.ndarray, np.ndarray], Optional[np.ndarray]]] = None):
        self.index = index
        # (grey, previous grey) -> this frame's flow if the detector left it (tao_lab.features.flow_memo), else None
        self._known_flow = known_flow
        self.frame = frame
        self.classes = classes
        self._flow_estimator = flow_estimator
        self._prev_grey = prev_grey
        self._next_frame = next_frame
        self._grey: Optional[np.ndarray] = None
        self._flow: Optional[np.ndarray] = None

    @property
    def grey(self) -> np.ndarray:
        if self._grey is None:
            self._grey = grey_uint8(self.frame)
        return self._grey

    @property
    def has_flow(self) -> bool:
        """Whether :attr:`flow` was computed (or handed over) already."""
        return self._flow is not None

    @property
    def flow(self) -> np.ndarray:
        if self._flow is None:
            if self._prev_grey is not None:
                known = None if self._known_flow is None else self._known_flow(self.grey, self._prev_grey)
                self._flow = known if known is not None else -self._flow_estimator(self.grey, self._prev_grey)
            elif self._next_frame is not None:
                self._flow = self._flow_estimator(self.grey, grey_uint8(self._next_frame))
            else:
                self._flow = np.zeros(self.grey.shape + (2,), np.float32)
        return self._flow


class FeatureExtractor:
    """One per-object feature. Subclasses set ``name`` and implement ``dim`` and ``compute``.

    ``begin(clip)`` is called once before the clip's first frame, ``compute(ctx, boxes)`` once per frame that has
    objects (boxes (K,4) float32 xyxy in original pixels) and returns (K, dim) float32; ``end()`` after the clip.
    """

    name: str = "feature"

    @property
    def dim(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def begin(self, clip: Clip) -> None:
        pass

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def end(self) -> None:
        pass


def extract_features(clip: Clip, objects: ObjectTable,
                     extractors: Sequence[FeatureExtractor] | Mapping[str, FeatureExtractor], progress: bool = True,
                     flow: Optional[FlowEstimator] = None, leave_flows: bool = False) -> dict[str, np.ndarray]:
    """Features of every object of ``clip``: ``{extractor.name: (N, D) float32}``, rows aligned with ``objects``.

    The frames are decoded once, in order, and shared by all extractors; only the previous grey frame is kept (and,
    for frame 0 only, one frame of look-ahead for its flow). The flow of a frame is computed only when an extractor
    reads it, so frames without objects cost a decode and a grey conversion. ``flow`` is the shared
    :class:`FlowEstimator` (default: ``FlowEstimator()``).
    ``leave_flows``: leave every frame's flow (frames after the first) in ``SHARED_FLOWS`` for a segmenter that
    segments this clip next with the same flow settings (tao_lab.features.flow_memo: the segmenter takes them and
    drops the rest); False drops the clip's flows when done, as a caller that does not segment next should.
    """
    exts = list(extractors.values()) if isinstance(extractors, Mapping) else list(extractors)
    names = [e.name for e in exts]
    if len(set(names)) != len(names):
        raise ValueError(f"feature extractors have duplicate names: {names}")
    flow = flow or FlowEstimator()
    n = len(objects)
    out = {e.name: np.zeros((n, e.dim), np.float32) for e in exts}
    if n == 0 or not exts:
        return out
    if objects.frame.min() < 0 or objects.frame.max() >= clip.num_frames:
        raise ValueError(f"clip {clip.clip_id}: object frame indices must be in [0, {clip.num_frames}), got "
                         f"[{objects.frame.min()}, {objects.frame.max()}]")
    order = np.argsort(objects.frame, kind="stable")
    frames_sorted = objects.frame[order]
    starts = np.searchsorted(frames_sorted, np.arange(clip.num_frames + 1))
    for e in exts:
        e.begin(clip)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=clip.num_frames, desc=f"features {clip.clip_id}", leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    prev_grey = None
    pending = None  # frame 0 waits for frame 1 (its flow needs the next frame)
    memo_key = clip_key(clip, flow.signature)  # flows the detector computed for this clip (motion split)

    def process(i: int, frame: np.ndarray, prev: Optional[np.ndarray], nxt: Optional[np.ndarray]) -> np.ndarray:
        rows = order[starts[i]:starts[i + 1]]
        ctx = FrameContext(i, frame, flow, prev, nxt, objects.cls[rows],
                           lambda grey, previous: SHARED_FLOWS.take(memo_key, i, grey, previous))
        if len(rows):
            boxes = objects.xyxy[rows]
            for e in exts:
                out[e.name][rows] = e.compute(ctx, boxes)
        if leave_flows and prev is not None and ctx.has_flow:  # only flows already computed: never one extra
            SHARED_FLOWS.put(memo_key, i, ctx.flow, ctx.grey, prev)
        if bar is not None:
            bar.update(1)
        return ctx.grey

    for i, frame in enumerate(clip.frames()):
        if i == 0:
            pending = frame
            continue
        if pending is not None:
            prev_grey = process(0, pending, None, frame)
            pending = None
        prev_grey = process(i, frame, prev_grey, None)
    if pending is not None:
        process(0, pending, None, None)
    if not leave_flows:
        SHARED_FLOWS.drop(memo_key)
    for e in exts:
        e.end()
    if bar is not None:
        bar.close()
    return out


class FeatureSet:
    """A named set of extractors plus the shared flow settings; what ``configs/features/*.yaml`` builds.

    extractors: {name: FeatureExtractor}; each extractor's ``name`` is set to its key.
    flow: keyword arguments of the shared :class:`FlowEstimator` (None = its defaults).
    progress: show a per-clip progress bar.
    """

    def __init__(self, extractors: Mapping[str, FeatureExtractor], flow: Optional[Mapping] = None,
                 progress: bool = False):
        self.extractors = dict(extractors)
        for key, e in self.extractors.items():
            e.name = key
        self.flow_kwargs = dict(flow or {})
        FlowEstimator(**self.flow_kwargs)  # fail at build time on a bad flow setting
        self.progress = bool(progress)

    def extract(self, clip: Clip, objects: ObjectTable, progress: Optional[bool] = None,
                leave_flows: bool = False) -> dict[str, np.ndarray]:
        """``extract_features`` with this set's extractors and flow settings (``leave_flows``: see there)."""
        return extract_features(clip, objects, self.extractors, self.progress if progress is None else progress,
                                flow=FlowEstimator(**self.flow_kwargs), leave_flows=leave_flows)

    __call__ = extract

    @property
    def dims(self) -> dict[str, int]:
        return {k: e.dim for k, e in self.extractors.items()}

    def stream(self, ctx) -> "FeatureStream":
        """The per-frame form (online) of :meth:`extract`, with the same extractors and flow settings."""
        return FeatureStream(self.extractors, FlowEstimator(**self.flow_kwargs), ctx.info, ctx.flows)


class FeatureStream:
    """Features frame by frame (online): ``step(index, frame, boxes) -> {name: (K, D) float32}``.

    The same extractors as the per-clip pass, begun once on the stream (``info``: a Clip giving its size and fps);
    a frame's flow is its motion from the previous frame (:class:`FrameContext`). :meth:`prime` gives the frame
    before the first step (the last warm-up frame), so the first step gets real flow too.
    """

    def __init__(self, extractors: Mapping[str, FeatureExtractor], flow: FlowEstimator, info: Clip, flows=None):
        self.extractors = list(extractors.values())
        self.flow = flow
        self.flows = flows  # the stream's FlowMemo: the frame's flow if the detector computed it (motion split)
        self._prev_grey: Optional[np.ndarray] = None
        for e in self.extractors:
            e.begin(info)

    def prime(self, frame: np.ndarray) -> None:
        self._prev_grey = grey_uint8(frame)

    def step(self, index: int, frame: np.ndarray, boxes: np.ndarray,
             classes: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """``classes``: the boxes' ``cls`` (None = unknown), for extractors that depend on it (pose)."""
        known = None if self.flows is None else (
            lambda grey, previous: self.flows.take(self.flow.signature, 0, grey, previous))
        ctx = FrameContext(index, frame, self.flow, self._prev_grey, None, classes, known)
        k = len(boxes)
        out = {e.name: (np.asarray(e.compute(ctx, boxes), np.float32).reshape(k, e.dim) if k
                        else np.zeros((0, e.dim), np.float32)) for e in self.extractors}
        self._prev_grey = ctx.grey
        return out
