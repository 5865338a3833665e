"""Appearance feature maps of a YOLO LiteRT (.tflite) detector, and one detector pass shared with the features.

What this module gives :class:`tao_lab.features.DeepFeature` (``backend="litert"``):

- :func:`letterbox_geometry` / :func:`letterbox`: the frame placed in the model's square input exactly as
  ultralytics' ``LetterBox`` does for these fixed-size exports (``auto=False``, centred, grey 114 padding, resized
  with ``cv2.INTER_LINEAR``), then BGR -> RGB and /255, as ultralytics' predictor feeds the LiteRT backend.
- :func:`to_feature_map`: frame-pixel boxes -> feature-map coordinates (x * r + pad) / stride.
- :func:`head_inputs`: the tensors the detection head reads at stride 8 / 16 / 32 ("p3", "p4", "p5"; for YOLOv8n and
  YOLO11n 80x80x64, 40x40x128, 20x20x256 at 640 px), found from the graph's structure, not from tensor names (which
  the converter numbers differently in every export): each per-stride output concat joins a box branch and a class
  branch; the tensor both branches start from, the latest common ancestor, is the head input.
- :class:`YoloFeatureMaps`: one interpreter (``experimental_preserve_all_tensors`` so intermediate tensors stay
  readable after ``invoke``) that runs a frame and returns the chosen map (dequantised when the tensor is int8).
- :func:`roi_pool`: torchvision's RoIAlign (``aligned=True``, sampling ratio 2) of each box into roi_size x roi_size
  bins, averaged: the mean of the bilinearly sampled map over the box.
- :class:`FeatureMapTap` and :func:`share_detector_pass`: in one pipeline, the detector's own LiteRT interpreter is
  swapped for a preserving one whose ``invoke`` also copies the chosen map of every frame it runs into the tap; the
  feature stage of the same clip then pools from those maps instead of running the network again. The sharing is
  in-process only: detections read from the stage cache (or a detector that is not this .tflite) leave the tap
  empty, and the feature runs the backbone itself (it says so once in the log).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Named layers: the detection head's input at each stride.
HEAD_LAYERS = {"p3": 8, "p4": 16, "p5": 32}
#: Grey of ultralytics' letterbox padding.
PAD_VALUE = 114


def letterbox_geometry(height: int, width: int, size: int) -> tuple[float, int, int, int, int]:
    """(r, left, top, new_w, new_h) of ultralytics' LetterBox(size, auto=False, center=True) on a height x width
    frame: the frame is resized by r to new_w x new_h and placed at (left, top) in the size x size input."""
    r = min(size / height, size / width)
    new_w, new_h = max(round(width * r), 1), max(round(height * r), 1)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    return r, round(dw - 0.1), round(dh - 0.1), new_w, new_h


def letterbox(frame: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) float32 RGB in [0, 1]: what ultralytics feeds a LiteRT export for this BGR uint8 frame."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    _, left, top, new_w, new_h = letterbox_geometry(h, w, size)
    img = frame if (new_w, new_h) == (w, h) else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE,) * 3)
    return img[..., ::-1].astype(np.float32) / 255.0


def to_feature_map(boxes: np.ndarray, frame_shape: tuple[int, int], size: int, stride: int) -> np.ndarray:
    """(K,4) float32 xyxy in frame pixels -> the same boxes in feature-map cells of a map of this stride
    (continuous coordinates: cell j covers [j, j+1), so input pixel p maps to p / stride)."""
    r, left, top, _, _ = letterbox_geometry(int(frame_shape[0]), int(frame_shape[1]), size)
    b = np.asarray(boxes, np.float32).reshape(-1, 4) * r
    b[:, [0, 2]] += left
    b[:, [1, 3]] += top
    return b / float(stride)


def roi_pool(fmap: np.ndarray, rois: np.ndarray, roi_size: int = 7) -> np.ndarray:
    """(K, C) float32: the mean of RoIAlign(roi_size x roi_size, sampling ratio 2, aligned) of (C,H,W) ``fmap``
    over each box ``rois`` (K,4) xyxy in feature-map cells. For a box on whole cells whose bins hold whole cells
    this is the plain mean of the map over the box (tests/test_features_litert.py pins it)."""
    import torch
    from torchvision.ops import roi_align

    k = len(rois)
    if k == 0:
        return np.zeros((0, fmap.shape[0]), np.float32)
    boxes = torch.zeros((k, 5), dtype=torch.float32)
    boxes[:, 1:] = torch.from_numpy(np.asarray(rois, np.float32).reshape(k, 4))
    x = torch.from_numpy(np.ascontiguousarray(fmap, dtype=np.float32))[None]
    with torch.inference_mode():
        pooled = roi_align(x, boxes, roi_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return pooled.mean(dim=(2, 3)).numpy().astype(np.float32)


def _producers_consumers(interpreter) -> tuple[dict[int, int], dict[int, list[int]], list[dict]]:
    """{tensor: producing op}, {tensor: consuming ops}, ops (the model's own ops, delegate nodes left out)."""
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    prod, cons = {}, {}
    for k, op in enumerate(ops):
        for t in op["outputs"]:
            prod[int(t)] = k
        for t in op["inputs"]:
            cons.setdefault(int(t), []).append(k)
    return prod, cons, ops


def head_inputs(interpreter, size: int) -> dict[str, int]:
    """{"p3"|"p4"|"p5": tensor index} of the detection head's input at stride 8 / 16 / 32 (module docstring)."""
    prod, _, ops = _producers_consumers(interpreter)
    details = {int(d["index"]): d for d in interpreter.get_tensor_details()}

    def ancestors(t: int) -> dict[int, int]:
        """{ancestor tensor: its producing op index} of tensor t (t included)."""
        seen, todo = {}, [t]
        while todo:
            x = todo.pop()
            if x in seen or x not in prod:
                continue
            seen[x] = prod[x]
            todo.extend(int(i) for i in ops[prod[x]]["inputs"])
        return seen

    found = {}
    for op in ops:
        if op["op_name"] != "CONCATENATION" or len(op["inputs"]) != 2:
            continue
        out = details[int(op["outputs"][0])]["shape"]
        if len(out) != 4 or out[1] != out[2] or size % out[1]:
            continue
        stride = size // int(out[1])
        name = next((n for n, s in HEAD_LAYERS.items() if s == stride), None)
        a, b = (ancestors(int(i)) for i in op["inputs"])
        common = [t for t in a if t in b and len(details[t]["shape"]) == 4
                  and tuple(details[t]["shape"][1:3]) == tuple(out[1:3])]
        if name is None or not common:
            continue
        # the box and class branches run from the same head input: the common ancestor produced last;
        # concats of the neck itself have no such 2-branch structure at the output's size -> keep the LAST concat
        found[name] = max(common, key=lambda t: a[t])
    return found


def _dequantise(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(x.dtype, np.integer) and scale:
        return (x.astype(np.float32) - zero) * scale
    return x.astype(np.float32, copy=False)


def resolve_layer(interpreter, layer, size: int) -> tuple[int, int]:
    """(tensor index, stride) of ``layer``: "p3" | "p4" | "p5", a tensor name, or a tensor index."""
    details = {int(d["index"]): d for d in interpreter.get_tensor_details()}
    if isinstance(layer, str) and layer in HEAD_LAYERS:
        found = head_inputs(interpreter, size)
        if layer not in found:
            raise ValueError(f"could not find the detection head input {layer!r} in the graph (found "
                             f"{sorted(found)}); give the tensor's name or index as layer instead")
        idx = found[layer]
    elif isinstance(layer, str) and not layer.lstrip("-").isdigit():
        idx = next((i for i, d in details.items() if d["name"] == layer), None)
        if idx is None:
            raise ValueError(f"no tensor named {layer!r} in the model; use p3 | p4 | p5 or a tensor index")
    else:
        idx = int(layer)
        if idx not in details:
            raise ValueError(f"tensor index {idx} not in the model (0..{max(details)})")
    shape = details[idx]["shape"]
    if len(shape) != 4 or size % int(shape[1]):
        raise ValueError(f"tensor {idx} ({details[idx]['name']!r}, shape {list(shape)}) is not an NHWC feature map "
                         f"of the {size}x{size} input")
    return idx, size // int(shape[1])


def input_size(interpreter) -> int:
    shape = interpreter.get_input_details()[0]["shape"]
    if shape[1] != shape[2]:
        raise ValueError(f"expected a square NHWC input, got {list(shape)}")
    return int(shape[1])


def new_interpreter(weights: str, num_threads: int = 1):
    """A LiteRT interpreter of ``weights`` whose intermediate tensors stay readable after ``invoke``.

    (Preserving the tensors turns off the default XNNPACK delegate; for the float-activation int8 exports here the
    outputs are bitwise equal and the speed the same, measured in benchmarks/features_cost.py.)
    """
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": here it is what we need
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_path=str(weights), experimental_preserve_all_tensors=True, num_threads=int(num_threads))
    it.allocate_tensors()
    return it


def set_input(interpreter, img: np.ndarray) -> None:
    """Writes a (S,S,3) float [0,1] image as the input, quantised when the input tensor is integer."""
    d = interpreter.get_input_details()[0]
    x = img[None]
    if np.issubdtype(np.dtype(d["dtype"]), np.integer):
        scale, zero = d["quantization"]
        info = np.iinfo(d["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    interpreter.set_tensor(d["index"], x.astype(d["dtype"]))


class YoloFeatureMaps:
    """Runs a YOLO .tflite on frames and returns one intermediate feature map (C, H, W) float32."""

    def __init__(self, weights: str, layer="p4", num_threads: int = 1):
        self.weights = str(weights)
        self.interpreter = new_interpreter(self.weights, num_threads)
        self.size = input_size(self.interpreter)
        self.tensor, self.stride = resolve_layer(self.interpreter, layer, self.size)
        self._detail = next(d for d in self.interpreter.get_tensor_details() if int(d["index"]) == self.tensor)
        self.channels = int(self._detail["shape"][3])

    def read(self, interpreter=None) -> np.ndarray:
        """The chosen map (C,H,W) float32 of the last ``invoke`` (of this or an identical interpreter)."""
        x = (interpreter or self.interpreter).get_tensor(self.tensor)[0]
        return np.ascontiguousarray(_dequantise(x, self._detail).transpose(2, 0, 1))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        set_input(self.interpreter, letterbox(frame, self.size))
        self.interpreter.invoke()
        return self.read()


class FeatureMapTap:
    """Feature maps the detector's pass produced, per frame of the clip being processed, for the feature stage.

    Filled by :class:`CapturingInterpreter` (one map per ``invoke``, in order) and :meth:`assign` (which frames
    those were); emptied by :meth:`take`. Holds one clip at a time (a new clip drops the previous one), as float16
    maps cropped to the cells the frame covers, so memory is bounded by one clip's maps.
    """

    def __init__(self, weights: str, layer="p4"):
        self.weights = str(weights)
        self.layer = layer
        self.maps: Optional[YoloFeatureMaps] = None  # built on the first capture (layer resolution, dequantising)
        self._pending: list[np.ndarray] = []
        self._clip: Optional[str] = None
        self._frames: dict[int, tuple[np.ndarray, int, int]] = {}
        self._lock = threading.Lock()

    def capture(self, interpreter) -> None:
        if self.maps is None:
            self.maps = YoloFeatureMaps(self.weights, self.layer)
        self._pending.append(self.maps.read(interpreter))

    def discard_pending(self) -> None:
        self._pending.clear()

    def assign(self, clip_id: str, frame_indices, frame_shape: tuple[int, int]) -> None:
        """The maps captured since the last call belong to these frames of clip ``clip_id`` (in order)."""
        pending, self._pending = self._pending, []
        frame_indices = list(frame_indices)
        if len(pending) != len(frame_indices):  # e.g. a backend that batches differently: never guess
            log.warning("deep features: %d detector passes captured for %d frames of %s; those frames run the "
                        "backbone again", len(pending), len(frame_indices), clip_id)
            return
        with self._lock:
            if clip_id != self._clip:
                self._clip, self._frames = clip_id, {}
            stride = self.maps.stride
            _, left, top, new_w, new_h = letterbox_geometry(int(frame_shape[0]), int(frame_shape[1]),
                                                            self.maps.size)
            # cells the frame covers, plus one for RoIAlign's bilinear samples at the edge
            x0, y0 = max(0, left // stride - 1), max(0, top // stride - 1)
            x1, y1 = -(-(left + new_w) // stride) + 1, -(-(top + new_h) // stride) + 1
            for i, m in zip(frame_indices, pending):
                self._frames[int(i)] = (m[:, y0:y1, x0:x1].astype(np.float16), x0, y0)

    def take(self, clip_id: str) -> dict[int, tuple[np.ndarray, int, int]]:
        """{frame: (cropped map float16 (C,h,w), x0, y0)} of ``clip_id`` (empty if the detector did not run it
        here); the tap forgets them."""
        with self._lock:
            if clip_id != self._clip:
                return {}
            out, self._clip, self._frames = self._frames, None, {}
            return out


class CapturingInterpreter:
    """A LiteRT interpreter whose ``invoke`` also hands the tapped feature map to a :class:`FeatureMapTap`."""

    def __init__(self, inner, tap: FeatureMapTap):
        self._inner = inner
        self._tap = tap

    def invoke(self):
        out = self._inner.invoke()
        self._tap.capture(self._inner)
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


def install_tap(predictor, tap: FeatureMapTap) -> bool:
    """Swaps the LiteRT interpreter of an ultralytics predictor's backend for a preserving, capturing one
    (same model file, same thread count: identical outputs). False when the backend is not LiteRT."""
    backend = getattr(getattr(predictor, "model", None), "backend", None)
    inner = getattr(backend, "interpreter", None)
    if inner is None:
        return False
    if isinstance(inner, CapturingInterpreter):
        return True
    from ultralytics.utils import NUM_THREADS

    fresh = new_interpreter(tap.weights, NUM_THREADS)
    backend.interpreter = CapturingInterpreter(fresh, tap)
    return True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def yolo_detectors(detector) -> list:
    """The YOLO detectors inside ``detector`` (itself, or the parts of a detector made of detectors)."""
    from tao_lab.detector.yolo import YoloDetector

    if isinstance(detector, YoloDetector):
        return [detector]
    return [p for name in getattr(detector, "part_names", ()) for p in yolo_detectors(getattr(detector, name))]


def share_detector_pass(detector, extractors) -> int:
    """Links each LiteRT deep feature to a YOLO detector running the same .tflite file: the detector's pass then
    fills the feature's tap. Returns how many links were made (0: the features run the network themselves)."""
    linked = 0
    for det in yolo_detectors(detector):
        if not det.weights.endswith(".tflite"):
            continue
        for e in extractors:
            if getattr(e, "backend", None) == "litert" and _same_file(e.weights, det.weights):
                tap = FeatureMapTap(e.weights, e.layer)
                det.map_tap = e.map_tap = tap
                linked += 1
                break  # one tap per detector
    return linked
