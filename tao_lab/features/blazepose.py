"""BlazePose GHUM "full" through LiteRT: 33 body keypoints, pose presence and a person mask for one box.

What runs: ``pose_landmark_full.tflite`` (MediaPipe 0.10.21, Apache-2.0; ``../shared/weights/PROVENANCE.md``) with
``ai_edge_litert.interpreter.Interpreter``, one crop at a time. The person detector (``pose_detection.tflite``) is
NOT run: our objects already come with a box from the detector/tracker, and MediaPipe itself only runs its detector
to get a region of interest (ROI) when it has none (on later frames it tracks the ROI from the previous landmarks).
We build that ROI from the track box instead (below). The detector's extra output would be a rotation of the ROI
(from its hip-centre -> head keypoints); surveillance cameras see people upright, so the ROI is unrotated.

The steps follow MediaPipe's published pose graphs (``mediapipe/modules/pose_landmark``), option by option:

1. ROI (``pose_detection_to_roi.pbtxt``, version 0.8.4 on; ``pose_landmarks_to_roi.pbtxt``): a square around
   the body (``AlignmentPointsRectsCalculator``: centred on the hips, side = the body's enclosing diameter),
   enlarged by ``RectTransformationCalculator {scale_x: 1.25 scale_y: 1.25 square_long: true}``. From a box:
   centre = the box centre, side = 1.25 x the box's longer side (:func:`roi_from_box`), rotation 0.
2. Crop to tensor (``pose_landmark_by_roi_cpu.pbtxt``, ``ImageToTensorCalculator``): ``output_tensor_width: 256,
   output_tensor_height: 256, keep_aspect_ratio: true, output_tensor_float_range {min: 0.0 max: 1.0}``, border
   mode unset = BORDER_REPLICATE (the calculator's default), RGB input, bilinear. The ROI's corners map to the
   tensor's corners (OpenCV's perspective warp from the ROI's box points); with ``keep_aspect_ratio`` a non-square
   ROI is first padded to the tensor's aspect (letterbox) and the padding is undone on the outputs. Our ROI is
   square, so the letterbox is empty, but :class:`LetterboxTransform` implements the general case.
3. Outputs (``tensors_to_pose_landmarks_and_segmentation.pbtxt``): ``Identity`` (1, 195) = 39 landmarks x (x, y,
   z, visibility, presence) in tensor pixels, decoded by ``TensorsToLandmarksCalculator {num_landmarks: 39,
   input_image_width: 256, input_image_height: 256, visibility_activation: SIGMOID, presence_activation:
   SIGMOID}``; refined by ``RefineLandmarksFromHeatmapCalculator {kernel_size: 7}`` on ``Identity_3`` (64x64x39
   heatmap logits; ``min_confidence_to_refine`` = the proto default 0.5; presence/visibility not refined), see
   :func:`refine_from_heatmap`; the first 33 are the body keypoints. ``Identity_1`` is the pose-presence logit:
   ``TensorsToFloatsCalculator`` (sigmoid) then ``ThresholdingCalculator {threshold: 0.5}``. ``Identity_2`` (256x256
   logits) -> ``TensorsToSegmentationCalculator {activation: SIGMOID}``: a person probability per tensor pixel.
4. Back to the image (``PoseLandmarksAndSegmentationInverseProjection``: letterbox removal, then projection
   through the ROI): :meth:`LetterboxTransform.to_image` for keypoints, :meth:`LetterboxTransform.mask_to_image`
   (the inverse warp) for the mask.

Speed: one ``pose_landmark_full`` pass is about 11 ms on one thread of this CPU (PROVENANCE.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

#: Size of the landmark model's input tensor (px).
TENSOR_SIZE = 256
#: Body keypoints (of the 39 landmarks the model gives; the last 6 are auxiliary ROI points).
NUM_KEYPOINTS = 33
#: ``RectTransformationCalculator`` scale of MediaPipe's pose ROI (pose_detection_to_roi.pbtxt, 0.8.4 on).
ROI_SCALE = 1.25
#: ``ThresholdingCalculator`` threshold on the pose presence (tensors_to_pose_landmarks_and_segmentation.pbtxt).
PRESENCE_THRESHOLD = 0.5
LANDMARK_MODEL = "pose_landmark_full.tflite"
SELFIE_MODEL = "selfie_segmentation.tflite"


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -80.0, 80.0)))


def check_weights(path: str) -> str:
    """``path`` if it is a file, else FileNotFoundError naming it and where the BlazePose files come from."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"BlazePose weights not found: {path}. To get {os.path.basename(path)}: use the copy in "
            f"../shared/weights (run with paths.weights_dir=../shared/weights or set TAO_WEIGHTS_DIR; "
            f"../shared/weights/PROVENANCE.md says where it comes from), or download the official mediapipe==0.10.21 "
            f"wheel and copy it from mediapipe/modules/ (pose_landmark/ or selfie_segmentation/).")
    return path


def roi_from_box(box, scale: float = ROI_SCALE) -> np.ndarray:
    """The square pose ROI (cx, cy, side) in image pixels of an xyxy box: centred on the box, side = ``scale`` x
    its longer side (MediaPipe's detection-to-ROI margin and ``square_long``)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, scale * max(x2 - x1, y2 - y1, 1.0)])


@dataclass
class LetterboxTransform:
    """Image <-> tensor mapping of one unrotated ROI (``ImageToTensorCalculator`` with ``keep_aspect_ratio``).

    roi: (cx, cy, width, height) in image pixels (OpenCV convention: pixel centres at integer coordinates).
    The ROI is padded to the tensor's aspect (square): ``pad`` = (left, top, right, bottom) letterbox padding as
    fractions of the tensor (MediaPipe's LETTERBOX_PADDING), then its corners map to the tensor's corners.
    """

    cx: float
    cy: float
    width: float
    height: float
    size: int = TENSOR_SIZE

    def __post_init__(self):
        side = max(self.width, self.height)  # keep_aspect_ratio into a square tensor
        self.side = float(side)
        self.left = self.cx - side / 2.0
        self.top = self.cy - side / 2.0
        self.scale = self.size / self.side  # tensor px per image px
        px, py = (side - self.width) / 2.0 / side, (side - self.height) / 2.0 / side
        self.pad = (px, py, px, py)

    @classmethod
    def square(cls, roi, size: int = TENSOR_SIZE) -> "LetterboxTransform":
        cx, cy, side = (float(v) for v in roi)
        return cls(cx, cy, side, side, size)

    def matrix(self) -> np.ndarray:
        """2x3 affine image -> tensor pixels (the perspective warp of an unrotated rectangle is affine)."""
        s = self.scale
        return np.array([[s, 0.0, -self.left * s], [0.0, s, -self.top * s]])

    def to_tensor(self, xy) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        return (xy - np.array([self.left, self.top])) * self.scale

    def to_image(self, xy) -> np.ndarray:
        """Tensor pixels -> image pixels. Equal to MediaPipe's letterbox removal (x' = (x/size - pad_l) / (1 -
        pad_l - pad_r)) followed by the projection through the unpadded ROI (cx + (x' - 0.5) * width)."""
        xy = np.asarray(xy, np.float64)
        return xy / self.scale + np.array([self.left, self.top])

    def crop(self, frame_rgb: np.ndarray) -> np.ndarray:
        """(size, size, 3) float32 in [0, 1]: the ROI warped into the tensor, border replicated, bilinear."""
        out = cv2.warpAffine(frame_rgb, self.matrix(), (self.size, self.size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return out.astype(np.float32) / 255.0

    def mask_to_image(self, prob: np.ndarray, height: int, width: int) -> np.ndarray:
        """A (size, size) tensor-space map warped back to an (height, width) image map (0 outside the ROI)."""
        return cv2.warpAffine(np.ascontiguousarray(prob, np.float32), self.matrix(), (width, height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0)


def refine_from_heatmap(xy_norm: np.ndarray, heatmap: np.ndarray, kernel_size: int = 7,
                        min_confidence: float = 0.5) -> np.ndarray:
    """MediaPipe's ``RefineLandmarksFromHeatmapCalculator`` (x, y refinement only).

    xy_norm: (L, 2) landmark positions as fractions of the tensor; heatmap: (h, w, L) logits. For each landmark
    inside the heatmap, the sigmoid-weighted mean (col, row) over the kernel around int(x * w), int(y * h)
    (clipped at the edges) replaces it, divided by w / h, when the kernel's largest confidence is >= min_confidence.
    """
    hm_h, hm_w, n = heatmap.shape
    out = np.array(xy_norm, np.float64, copy=True)
    off = (kernel_size - 1) // 2
    for i in range(min(n, len(out))):
        c, r = int(out[i, 0] * hm_w), int(out[i, 1] * hm_h)
        if c < 0 or c >= hm_w or r < 0 or r >= hm_h:
            continue
        r0, r1, c0, c1 = max(0, r - off), min(hm_h, r + off + 1), max(0, c - off), min(hm_w, c + off + 1)
        conf = sigmoid(heatmap[r0:r1, c0:c1, i])
        total = conf.sum()
        if conf.max() >= min_confidence and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i] = ((cols * conf).sum() / hm_w / total, (rows * conf).sum() / hm_h / total)
    return out


@dataclass
class PoseResult:
    """One box's BlazePose output in image pixels."""

    keypoints: np.ndarray  # (33, 2) float64 x, y image px
    visibility: np.ndarray  # (33,) sigmoid of the visibility logit
    presence: float  # pose presence in [0, 1] (the model's own output; see the module docstring)
    transform: LetterboxTransform
    mask_prob: Optional[np.ndarray] = None  # (256, 256) person probability in tensor space (sigmoid)


class BlazePose:
    """The landmark model on one ROI per box (see the module docstring for the published graph it follows).

    Args:
        landmark_weights: ``pose_landmark_full.tflite``. Missing -> FileNotFoundError naming it.
        roi_scale: ROI side / the box's longer side (MediaPipe: 1.25).
        num_threads: LiteRT CPU threads.
        refine: apply the heatmap refinement of the published graph.
    """

    def __init__(self, landmark_weights: str, roi_scale: float = ROI_SCALE, num_threads: int = 1,
                 refine: bool = True):
        self.weights = check_weights(landmark_weights)
        self.roi_scale = float(roi_scale)
        self.num_threads = int(num_threads)
        self.refine = bool(refine)
        self._interp = None

    def _load(self):
        if self._interp is None:
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=self.weights, num_threads=self.num_threads)
            it.allocate_tensors()
            self._input = it.get_input_details()[0]["index"]
            self._outputs = {d["name"]: d["index"] for d in it.get_output_details()}
            missing = {"Identity", "Identity_1", "Identity_2", "Identity_3"} - set(self._outputs)
            if missing:
                raise ValueError(f"{self.weights}: not a BlazePose landmark model (outputs {sorted(self._outputs)}, "
                                 f"missing {sorted(missing)})")
            self._interp = it
        return self._interp

    def run_tensor(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs of one (256, 256, 3) float32 [0, 1] RGB tensor: {name: array without the batch axis}."""
        it = self._load()
        it.set_tensor(self._input, np.ascontiguousarray(tensor[None], np.float32))
        it.invoke()
        return {k: it.get_tensor(i)[0].copy() for k, i in self._outputs.items()}

    def __call__(self, frame_rgb: np.ndarray, box, mask: bool = False) -> PoseResult:
        """BlazePose on the ROI of ``box`` (xyxy image px) in an RGB uint8 (or grey) frame."""
        if frame_rgb.ndim == 2:
            frame_rgb = cv2.cvtColor(frame_rgb, cv2.COLOR_GRAY2RGB)
        tf = LetterboxTransform.square(roi_from_box(box, self.roi_scale))
        out = self.run_tensor(tf.crop(frame_rgb))
        lm = out["Identity"].reshape(-1, 5)  # 39 x (x, y, z, visibility, presence), tensor px
        xy = lm[:, :2] / TENSOR_SIZE
        if self.refine:
            xy = refine_from_heatmap(xy, out["Identity_3"])
        xy_img = tf.to_image(xy[:NUM_KEYPOINTS] * TENSOR_SIZE)
        presence = float(out["Identity_1"].reshape(-1)[0])  # already a probability (module docstring)
        prob = sigmoid(out["Identity_2"][..., 0]).astype(np.float32) if mask else None
        return PoseResult(xy_img, sigmoid(lm[:NUM_KEYPOINTS, 3]), presence, tf, prob)


class SelfieSegmenter:
    """MediaPipe's selfie segmentation (``selfie_segmentation.tflite``, 256x256 RGB [0, 1] in, person probability
    out) on the same square ROI as :class:`BlazePose`; for the comparison of person masks only."""

    def __init__(self, weights: str, roi_scale: float = ROI_SCALE, num_threads: int = 1):
        self.weights = check_weights(weights)
        self.roi_scale = float(roi_scale)
        from ai_edge_litert.interpreter import Interpreter

        self._interp = Interpreter(model_path=self.weights, num_threads=int(num_threads))
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        self._output = self._interp.get_output_details()[0]["index"]

    def __call__(self, frame_rgb: np.ndarray, box) -> tuple[np.ndarray, LetterboxTransform]:
        tf = LetterboxTransform.square(roi_from_box(box, self.roi_scale))
        self._interp.set_tensor(self._input, tf.crop(frame_rgb)[None])
        self._interp.invoke()
        return self._interp.get_tensor(self._output)[0, ..., 0].astype(np.float32), tf
