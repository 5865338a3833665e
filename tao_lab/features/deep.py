"""Deep appearance features of object boxes from a LOCAL model file (torch imported only when used).

Three back-ends:
- ``backend="torchvision"``: any torchvision classification network; each box crop is resized to
  ``input_size`` x ``input_size``, normalised with the ImageNet statistics and embedded by the network with its
  classification head removed (``fc`` / ``classifier`` / ``head(s)`` replaced by identity). ``weights`` is either a
  state dict for ``torchvision.models.<arch>()`` (loaded with ``weights_only=True``: tensors only) or a whole
  pickled model (``torch.save(model)``). The latter can only be restored by an unrestricted unpickle, which runs
  code stored in the file, so it is refused unless ``allow_pickle=True`` says the file is trusted.
- ``backend="yolo"``: an ultralytics detection model (``.pt``); the whole frame goes through its first ``layer``+1
  modules once and every box is pooled from that feature map with torchvision's RoIAlign (``roi_size`` x
  ``roi_size``, then averaged), so the cost does not grow with the number of boxes.
- ``backend="litert"``: a YOLO LiteRT export (``.tflite``, e.g. the COCO int8 ``yolo11n_int8.tflite``): the frame
  is letterboxed exactly as the detector's pre-processing (:mod:`tao_lab.features.yolo_litert`), one interpreter
  pass, the ``layer`` map ("p3" / "p4" / "p5" = the detection head's input at stride 8 / 16 / 32, or a tensor name or
  index) is dequantised and every box is pooled from it with RoIAlign (``roi_size`` x ``roi_size``, averaged). In a
  pipeline whose detector runs the same .tflite (``detector=yolo`` / ``hybrid``) the detector's pass is reused:
  no second inference (:func:`tao_lab.features.yolo_litert.share_detector_pass`). Otherwise (detections from the
  stage cache, ``detector=background``, online use) the feature runs the network itself and says so once in the log.
A missing weights file raises FileNotFoundError naming it and how to get it.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Union

import cv2
import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes

log = logging.getLogger(__name__)

#: (weights, layer, reason) already logged as "runs the network itself": once per process, not per worker or clip
_SAID_STANDALONE: set = set()

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _require_file(path: str, what: str, how: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {os.path.abspath(path)}; {how}")
    return path


class DeepFeature(FeatureExtractor):
    """Embeddings (D depends on the model; L2-normalised when ``normalize``) of each box.

    Args:
        weights: local model file (see the module docstring).
        backend: "torchvision" | "yolo" | "litert".
        arch: torchvision constructor name (e.g. "resnet18") when ``weights`` is a state dict.
        input_size: crop size (torchvision back-end).
        imgsz: longer side (px, rounded to a multiple of 32) the frame is resized to (yolo back-end).
        layer: yolo back-end: index of the last YOLO module run (e.g. 9 = SPPF of YOLOv8, stride 32; 4 / 6 =
            stride 8 / 16). litert back-end: "p3" | "p4" | "p5" (the detection head's input at stride 8 / 16 / 32),
            or a tensor name or index of the .tflite graph. None: 9 (yolo), "p4" (litert).
        roi_size: RoIAlign output size (yolo and litert back-ends).
        num_threads: LiteRT interpreter threads (litert back-end, when it runs the network itself).
        normalize: L2-normalise the embeddings (recommended for k-NN).
        device: torch device string.
        allow_pickle: also accept a whole pickled model (torchvision back-end). Unpickling it runs code from the
            file: only for files you trust. A state dict (+ ``arch``) never needs it.
    """

    name = "deep"

    def __init__(self, weights: str, backend: str = "torchvision", arch: Optional[str] = None,
                 input_size: int = 224, imgsz: int = 320, layer: Union[int, str, None] = None, roi_size: int = 7,
                 normalize: bool = True, device: str = "cpu", allow_pickle: bool = False, num_threads: int = 1):
        if backend not in ("torchvision", "yolo", "litert"):
            raise ValueError(f"unknown deep-feature backend {backend!r}: expected 'torchvision', 'yolo' or 'litert'")
        self.weights = str(weights)
        self.backend = backend
        self.arch = arch
        self.input_size = int(input_size)
        self.imgsz = int(imgsz)
        if layer is None:  # each back-end's own default
            layer = "p4" if backend == "litert" else 9
        self.layer = layer if backend == "litert" else int(layer)
        self.num_threads = int(num_threads)
        self.roi_size = int(roi_size)
        self.normalize = bool(normalize)
        self.device = str(device)
        self.allow_pickle = bool(allow_pickle)
        self._net = None
        self._dim: Optional[int] = None
        # litert: the tap a YOLO detector of the same file fills in this pipeline (None: not shared) and the maps
        # of the current clip taken from it
        self.map_tap = None
        self._shared: dict = {}
        self._maps = None
        if backend == "litert":
            from tao_lab.detector.yolo import check_yolo_weights

            if not self.weights.endswith(".tflite"):
                raise ValueError(f"the litert deep-feature back-end needs a YOLO .tflite export, got {self.weights}")
            check_yolo_weights(self.weights)
        elif backend == "yolo":
            from tao_lab.detector.yolo import check_yolo_weights

            check_yolo_weights(self.weights)
        else:
            _require_file(self.weights, "deep-feature model file",
                          "save a torchvision model there (torch.save(model, path), or its state_dict with "
                          "features.deep.arch set) on a machine with internet, or remove the 'deep' feature")

    # ------------------------------------------------------------------ model
    def _load(self):
        if self._net is not None:
            return self._net
        import torch

        if self.backend == "yolo":
            from tao_lab.detector.yolo import load_yolo

            net = load_yolo(self.weights).model
        else:
            obj = self._load_torchvision_file()
            if isinstance(obj, torch.nn.Module):
                net = obj
            else:
                if not self.arch:
                    raise ValueError(f"{self.weights} holds a state dict: set arch (e.g. 'resnet18') to build the "
                                     f"torchvision model it belongs to")
                import torchvision

                net = getattr(torchvision.models, self.arch)(weights=None)
                net.load_state_dict(obj.get("state_dict", obj) if isinstance(obj, dict) else obj)
            for head in ("fc", "classifier", "head", "heads"):
                if hasattr(net, head):
                    setattr(net, head, torch.nn.Identity())
        self._net = net.to(self.device).eval()
        return self._net

    def _load_torchvision_file(self):
        """The state dict in ``weights`` (weights_only=True), or, only with ``allow_pickle``, a whole pickled model."""
        import torch

        from tao_lab.checkpoints import PickledObjectsError, load_weights

        expected = "a torchvision state dict (torch.save(model.state_dict(), path)) with features.deep.arch set"
        try:
            return load_weights(self.weights, expected)
        except PickledObjectsError as exc:
            if not self.allow_pickle:
                raise PickledObjectsError(
                    f"{exc} A whole pickled model (torch.save(model)) needs that: save its state dict instead "
                    f"(torch.save(model.state_dict(), path)) and set arch, or, for a file you trust, set "
                    f"features.extractors.deep.allow_pickle=true") from None
        # explicitly allowed above: a whole nn.Module is restored by unpickling its classes (runs the file's code)
        return torch.load(self.weights, map_location="cpu", weights_only=False)

    # ------------------------------------------------------------------ litert back-end
    def _litert_maps(self):
        if self._maps is None:
            from tao_lab.features.yolo_litert import YoloFeatureMaps

            self._maps = YoloFeatureMaps(self.weights, self.layer, self.num_threads)
        return self._maps

    def begin(self, clip) -> None:
        if self.backend != "litert":
            return
        self._shared = self.map_tap.take(clip.clip_id) if self.map_tap is not None else {}
        if not self._shared:
            key = (self.weights, str(self.layer), self.map_tap is None)
            if key in _SAID_STANDALONE:
                return
            _SAID_STANDALONE.add(key)
            why = ("the detections came from the stage cache (no detector pass in this process)"
                   if self.map_tap is not None else "no detector pass over this .tflite ran in this process (the "
                   "detections came from the stage cache, or the detector is another model, e.g. background)")
            log.info("deep features (litert, layer %s): %s, so they run %s themselves (one extra network pass "
                     "per frame with objects)", self.layer, why, os.path.basename(self.weights))

    def end(self) -> None:
        self._shared = {}

    def _embed_litert(self, frame: np.ndarray, boxes: np.ndarray, index: Optional[int] = None) -> np.ndarray:
        from tao_lab.features.yolo_litert import roi_pool, to_feature_map

        maps = self._litert_maps()
        rois = to_feature_map(boxes, frame.shape[:2], maps.size, maps.stride)
        shared = self._shared.get(index) if index is not None else None
        if shared is not None:  # the detector's pass over this frame: a crop of the map from x0, y0
            fmap, x0, y0 = shared
            rois[:, [0, 2]] -= x0
            rois[:, [1, 3]] -= y0
        else:
            fmap = maps(frame)
        feat = roi_pool(fmap, rois, self.roi_size)
        if self.normalize:
            feat /= np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-12)
        return feat

    @property
    def dim(self) -> int:
        if self._dim is None and self.backend == "litert":
            self._dim = self._litert_maps().channels
        if self._dim is None:
            dummy = np.zeros((64, 64, 3), np.uint8)
            self._dim = int(self._embed(dummy, np.array([[8, 8, 40, 56]], np.float32)).shape[1])
        return self._dim

    # ------------------------------------------------------------------ embedding
    def _embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if self.backend == "litert":
            return self._embed_litert(frame, boxes)
        import torch

        net = self._load()
        h, w = frame.shape[:2]
        ib = clip_boxes(boxes, h, w)
        with torch.inference_mode():
            if self.backend == "torchvision":
                crops = []
                for x1, y1, x2, y2 in ib:
                    c = cv2.resize(frame[y1:y2, x1:x2], (self.input_size, self.input_size),
                                   interpolation=cv2.INTER_LINEAR)
                    crops.append((c[..., ::-1].astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD)
                x = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()).to(self.device)
                feat = net(x)
                feat = feat.flatten(1) if feat.ndim > 2 else feat
            else:
                from torchvision.ops import roi_align

                scale = self.imgsz / max(h, w)
                nh, nw = max(32, int(round(h * scale / 32)) * 32), max(32, int(round(w * scale / 32)) * 32)
                img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)[..., ::-1]
                x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(255).unsqueeze(0).to(self.device)
                fmap = self._run_layers(net, x)
                rois = torch.zeros((len(ib), 5), dtype=torch.float32)
                rois[:, 1:] = torch.from_numpy(ib.astype(np.float32))
                rois[:, [1, 3]] *= nw / w
                rois[:, [2, 4]] *= nh / h
                pooled = roi_align(fmap, rois.to(self.device), self.roi_size, spatial_scale=fmap.shape[-1] / nw,
                                   sampling_ratio=2, aligned=True)
                feat = pooled.mean(dim=(2, 3))
            if self.normalize:
                feat = torch.nn.functional.normalize(feat, dim=1)
        return feat.cpu().numpy().astype(np.float32)

    def _run_layers(self, net, x):
        """Output of the first ``layer``+1 modules of an ultralytics model (follows each module's ``f`` inputs)."""
        outputs = []
        for i, m in enumerate(net.model):
            if i > self.layer:
                break
            src = getattr(m, "f", -1)
            if src != -1:
                x = outputs[src] if isinstance(src, int) else [x if j == -1 else outputs[j] for j in src]
            x = m(x)
            outputs.append(x)
        return x

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        if self.backend == "litert":
            return self._embed_litert(ctx.frame, boxes, ctx.index)
        return self._embed(ctx.frame, boxes)
