"""``segmenter=sam2``: SAM 2 / SAM 2.1 prompted with the filter's boxes and points (TAO's segmenter).

Modes:
- ``video``: all prompts of a chunk are added, then the masks are propagated forward from the earliest prompt to
  the clip's end (TAO); optionally also backwards (``reverse``) and with objects ended once their mask has been
  empty for ``vanish_frames`` frames (``end_on_vanish``; TAO never ends an object).
- ``image``: every prompted frame is segmented on its own; no masks on other frames (the "video tracking off"
  ablation of TAO's Table 4).

Bounded memory: sam2's video predictor holds every frame of its video as an image_size^2 float tensor, so the clip
is processed in chunks of ``chunk_size`` frames that overlap by one frame. Each chunk's frames are written as
``<int>.jpg`` into a temporary folder (deleted right after the chunk); objects alive on a chunk's last frame are
carried into the next chunk by their last mask (``add_new_mask`` on its first frame). Backward propagation reaches
back to the start of the chunk that holds the object's first prompt. With ``chunk_size`` >= the clip length this
is exactly sam2's own single-pass behaviour.

Weights: ``<weights_dir>/<name>.pt`` with the official names ``sam2.1_hiera_{tiny,small,base_plus,large}.pt`` or
``sam2_hiera_{tiny,small,base_plus,large}.pt``, loaded with ``torch.load(weights_only=True)``. Nothing is downloaded.
``random_init=True`` builds random weights (tests and timing only: the masks are meaningless). The checkpoint is
opened on first use (construction needs no weights); a missing file raises FileNotFoundError naming the file, the
official release URL and ``checkpoints/download_ckpts.sh``.

Hydra: ``import sam2`` initialises Hydra's global state (../shared/docs/STACK.md). sam2 is imported only when a
model is built; its packaged YAML is read with OmegaConf.load and instantiated here; if importing sam2 initialised
Hydra's global state, it is cleared again so that a later ``hydra.initialize`` (pytest, scripts) still works.

Pixel score (``pixel_score``): "object_x_probability" (default: the object's anomaly score x sigmoid(logit) on its
mask pixels, i.e. between 0.5 and 1 times the score), "object" (the score, constant over the mask) or "logit"
(TAO: max(0, logit), ignoring the anomaly score). The object's score on a frame is the score of its most recent
prompt (for backward-propagated frames: of its first prompt).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from tao_lab.segmenter.base import Segmenter, SegmentationBuilder
from tao_lab.types import Clip, ObjectScores, Prompts, Segmentation

MODES = ("video", "image")
VERSIONS = ("sam2", "sam2.1")
BACKBONES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
PIXEL_SCORES = ("object_x_probability", "object", "logit")
# where the official checkpoints are published (facebookresearch/sam2, checkpoints/download_ckpts.sh)
RELEASE_URLS = {"sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
                "sam2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"}


def checkpoint_name(version: str, backbone: str) -> str:
    """Official checkpoint file name, e.g. ('sam2.1', 'base_plus') -> 'sam2.1_hiera_base_plus.pt'."""
    return f"{version}_hiera_{backbone}.pt"


def config_path(version: str, backbone: str) -> Path:
    """The model YAML shipped inside the installed sam2 package (located without importing sam2)."""
    spec = importlib.util.find_spec("sam2")
    if spec is None or spec.origin is None:
        raise ImportError("sam2 is not installed: pip install sam2==1.1.0 (see requirements.txt)")
    return Path(spec.origin).parent / "configs" / version / f"{version}_hiera_{BACKBONES[backbone]}.yaml"


def missing_checkpoint_message(path: Path, version: str, backbone: str) -> str:
    name = checkpoint_name(version, backbone)
    return (f"SAM2 checkpoint not found: {path}\n"
            f"Download {name} into paths.weights_dir ({path.parent}) -- nothing is downloaded at run time. Get it "
            f"from the official SAM 2 release (https://github.com/facebookresearch/sam2, script "
            f"checkpoints/download_ckpts.sh), i.e. {RELEASE_URLS[version]}{name}, or pass "
            f"segmenter.checkpoint=<path to the .pt file>.")


@contextlib.contextmanager
def _quiet_tqdm(enabled: bool):
    """sam2 draws tqdm bars for frame loading and propagation; silence them unless progress is wanted."""
    if enabled:
        yield
        return
    import sam2.sam2_video_predictor as vp
    import sam2.utils.misc as misc

    saved = (vp.tqdm, misc.tqdm)
    vp.tqdm = misc.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        vp.tqdm, misc.tqdm = saved


def _import_sam2():
    """Imports sam2's predictors without leaving Hydra's global state initialised (see the module docstring)."""
    from hydra.core.global_hydra import GlobalHydra

    was_initialized = GlobalHydra.instance().is_initialized()
    import sam2.sam2_image_predictor  # noqa: F401  (runs sam2/__init__, which may initialise GlobalHydra)
    import sam2.sam2_video_predictor  # noqa: F401

    if not was_initialized and GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()


def _float32_inputs(module, args, kwargs):
    import torch

    def cast(x):
        return x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


class Sam2Segmenter(Segmenter):
    """SAM 2 segmenter (see the module docstring).

    Args:
        mode: "video" (prompts, then propagation) or "image" (each prompted frame on its own).
        version: "sam2.1" or "sam2" (selects the packaged config and the checkpoint name).
        backbone: "tiny", "small", "base_plus" or "large".
        weights_dir: folder holding the official checkpoint (``paths.weights_dir``).
        checkpoint: explicit checkpoint path (overrides weights_dir + the official name); None = official name.
        random_init: random weights instead of a checkpoint (tests and timing only).
        image_size: the model's input size (frames are resized to image_size^2; multiple of 32). 1024 is what
            the checkpoints were trained at; smaller is faster and coarser.
        device: "cpu", "cuda" or "cuda:<k>".
        chunk_size: video mode: frames per chunk (bounds memory: about 3 x image_size^2 x 4 bytes per frame).
        reverse: video mode: also propagate backwards from each object's first prompt.
        end_on_vanish: video mode: end an object after its mask has been empty for ``vanish_frames`` consecutive
            frames (until its next prompt).
        vanish_frames: see end_on_vanish.
        mask_threshold: logit threshold of the masks (sam2: 0).
        pixel_score: "object_x_probability", "object" or "logit" (see the module docstring).
        soft_logit_min: None = pixel scores on mask pixels only; a logit value below mask_threshold = also score
            the pixels with logit > soft_logit_min (a soft margin, as the classical segmenter's box margin).
        jpeg_quality: quality of the temporary chunk frames.
        tmp_dir: parent folder of the temporary chunk folders (None = the system's temp folder).
        num_threads: torch CPU threads (None = leave as is).
        progress: show sam2's progress bars.
        seed: torch seed of the random initialisation.
    """

    def __init__(self, mode: str = "video", version: str = "sam2.1", backbone: str = "base_plus",
                 weights_dir: str = "weights", checkpoint: Optional[str] = None, random_init: bool = False,
                 image_size: int = 1024, device: str = "cpu", chunk_size: int = 64, reverse: bool = False,
                 end_on_vanish: bool = False, vanish_frames: int = 5, mask_threshold: float = 0.0,
                 pixel_score: str = "object_x_probability", soft_logit_min: Optional[float] = None,
                 jpeg_quality: int = 95, tmp_dir: Optional[str] = None,
                 num_threads: Optional[int] = None, progress: bool = False, seed: int = 0):
        for name, value, choices in (("mode", mode, MODES), ("version", version, VERSIONS),
                                     ("backbone", backbone, tuple(BACKBONES)), ("pixel_score", pixel_score,
                                                                                PIXEL_SCORES)):
            if value not in choices:
                raise ValueError(f"segmenter {name} must be one of {choices}, got {value!r}")
        if image_size % 32 or image_size < 64:
            raise ValueError(f"image_size must be a multiple of 32 and >= 64, got {image_size}")
        if chunk_size < 2:
            raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
        self.mode, self.version, self.backbone = mode, version, backbone
        self.random_init = bool(random_init)
        # opened on first use (construction stays cheap and works without weights, like every stage here)
        self.checkpoint = Path(checkpoint) if checkpoint else Path(weights_dir) / checkpoint_name(version, backbone)
        self.image_size = int(image_size)
        self.device = str(device)
        self.chunk_size = int(chunk_size)
        self.reverse = bool(reverse)
        self.end_on_vanish = bool(end_on_vanish)
        self.vanish_frames = max(int(vanish_frames), 1)
        self.mask_threshold = float(mask_threshold)
        self.pixel_score = pixel_score
        self.soft_logit_min = None if soft_logit_min is None else float(soft_logit_min)
        if self.soft_logit_min is not None and self.soft_logit_min >= self.mask_threshold:
            raise ValueError("soft_logit_min must be below mask_threshold")
        self.jpeg_quality = int(jpeg_quality)
        self.tmp_dir = tmp_dir
        self.num_threads = num_threads
        self.progress = bool(progress)
        self.seed = int(seed)
        self._model = None

    # ------------------------------------------------------------------ model
    def prepare(self) -> None:
        """Builds the model now (Segmenter.prepare)."""
        self.build_model()

    def build_model(self):
        """Builds (once) and returns the sam2 model: SAM2VideoPredictor (video) or SAM2Base (image).

        Raises FileNotFoundError naming the checkpoint file and where to get it when it is missing."""
        if self._model is not None:
            return self._model
        import torch
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        if not self.random_init and not self.checkpoint.is_file():
            raise FileNotFoundError(missing_checkpoint_message(self.checkpoint, self.version, self.backbone))
        state = None
        if not self.random_init:  # read (weights_only=True) before the model is built: a bad file fails at once
            from tao_lab.checkpoints import load_weights

            state = load_weights(self.checkpoint, f"an official {self.version} checkpoint "
                                                  f"({self.checkpoint.name}: {{'model': state_dict}})")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"segmenter.device={self.device} but CUDA is not available; use device=cpu")
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        _import_sam2()
        cfg = OmegaConf.load(config_path(self.version, self.backbone)).model
        cfg._target_ = ("sam2.sam2_video_predictor.SAM2VideoPredictor" if self.mode == "video"
                        else "sam2.modeling.sam2_base.SAM2Base")
        # sam2's own builders apply these post-processing settings for inference
        cfg.sam_mask_decoder_extra_args = {"dynamic_multimask_via_stability": True,
                                           "dynamic_multimask_stability_delta": 0.05,
                                           "dynamic_multimask_stability_thresh": 0.98}
        if self.mode == "video":
            cfg.binarize_mask_from_pts_for_mem_enc = True
            cfg.fill_hole_area = 0  # hole filling needs sam2's CUDA extension, which is not built here
        cfg.image_size = self.image_size
        feat = self.image_size // 16  # memory attention runs on the stride-16 feature map
        for key in ("self_attention", "cross_attention"):
            cfg.memory_attention.layer[key].feat_sizes = [feat, feat]
        if self.random_init:
            torch.manual_seed(self.seed)
        model = instantiate(cfg, _recursive_=True)
        if not self.random_init:
            state = state.get("model", state) if isinstance(state, dict) else state
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise RuntimeError(f"{self.checkpoint} does not fit sam2 {self.version} {self.backbone}: "
                                   f"missing keys {list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}; "
                                   f"check segmenter.version / segmenter.backbone")
        if self.mode == "video":
            # sam2 stores frame memories in bfloat16 and relies on CUDA autocast to mix them with float32 weights;
            # without autocast (CPU) the memory attention gets bfloat16 inputs: cast them back to float32
            model.memory_attention.register_forward_pre_hook(_float32_inputs, with_kwargs=True)
        self._model = model.to(self.device).eval()
        return self._model

    # ------------------------------------------------------------------ raw logits
    def iter_logits(self, clip: Clip, prompts: Prompts) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yields (frame, obj_ids (K,) int64, logits (K, H, W) float32 at the clip's resolution) in frame order,
        for every frame that has at least one live object (video mode) or prompt (image mode)."""
        if len(prompts) == 0:
            return iter(())
        if self.mode == "image":
            return self._image_logits(clip, prompts)
        return self._video_logits(clip, prompts)

    @staticmethod
    def _prompt_args(prompts: Prompts, r: int) -> dict:
        box = prompts.xyxy[r]
        point = prompts.point[r]
        args = {}
        if np.isfinite(box).all():
            args["box"] = box.astype(np.float32)
        if np.isfinite(point).all():
            args["points"] = point.reshape(1, 2).astype(np.float32)
            args["labels"] = np.ones(1, dtype=np.int32)
        if not args:
            raise ValueError(f"prompt row {r} (frame {prompts.frame[r]}, object {prompts.obj_id[r]}) has neither "
                             f"a box nor a point")
        return args

    def _image_logits(self, clip: Clip, prompts: Prompts):
        import torch
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(self.build_model(), mask_threshold=self.mask_threshold)
        s = self.image_size
        predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]  # sam2 assumes 1024
        for t in np.unique(prompts.frame):
            if not 0 <= t < clip.num_frames:
                continue
            rows = np.flatnonzero(prompts.frame == t)
            with torch.inference_mode():
                predictor.set_image(np.ascontiguousarray(clip.frame(int(t))[..., ::-1]))  # BGR -> RGB
                ids, logits = [], []
                for r in rows:
                    a = self._prompt_args(prompts, int(r))
                    masks, _, _ = predictor.predict(point_coords=a.get("points"), point_labels=a.get("labels"),
                                                    box=a.get("box"), multimask_output=False, return_logits=True)
                    ids.append(int(prompts.obj_id[r]))
                    logits.append(masks[0].astype(np.float32))
            predictor.reset_predictor()
            yield int(t), np.array(ids, dtype=np.int64), np.stack(logits)

    def _write_chunk(self, clip: Clip, start: int, stop: int, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        for i, frame in enumerate(clip.frames(start, stop)):
            cv2.imwrite(os.path.join(folder, f"{i}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])

    def _video_logits(self, clip: Clip, prompts: Prompts):
        import torch

        predictor = self.build_model()
        T = clip.num_frames
        valid = (prompts.frame >= 0) & (prompts.frame < T)
        frames = prompts.frame[valid]
        rows_all = np.flatnonzero(valid)
        if not len(rows_all):
            return
        prompt_frames = {int(o): set(frames[prompts.obj_id[rows_all] == o].tolist())
                         for o in np.unique(prompts.obj_id[rows_all])}
        first = int(frames.min())
        start = 0 if self.reverse else first
        carried: dict[int, np.ndarray] = {}  # obj id -> bool mask on the chunk's first frame
        empty_run: dict[int, int] = {}
        ended: set[int] = set()
        workdir = tempfile.mkdtemp(prefix="tao_sam2_", dir=self.tmp_dir)
        try:
            s = start
            while s < T:
                e = min(s + self.chunk_size, T)
                in_chunk = rows_all[(frames >= s) & (frames < e)]
                outputs: dict[int, dict[int, np.ndarray]] = {}  # local frame -> obj id -> logits
                if carried or len(in_chunk):
                    folder = os.path.join(workdir, f"chunk_{s}")
                    self._write_chunk(clip, s, e, folder)
                    try:
                        with torch.inference_mode(), _quiet_tqdm(self.progress):
                            outputs = self._run_chunk(predictor, folder, s, prompts, in_chunk, carried)
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                last = e - 1
                new_carried: dict[int, np.ndarray] = {}
                for local in sorted(outputs):
                    t = s + local
                    if local == 0 and s > start:
                        continue  # the previous chunk already produced this overlap frame
                    ids, logits = [], []
                    for oid, lg in sorted(outputs[local].items()):
                        if t in prompt_frames.get(oid, ()):
                            ended.discard(oid)
                            empty_run[oid] = 0
                        if oid in ended:
                            continue
                        present = bool((lg > self.mask_threshold).any())
                        empty_run[oid] = 0 if present else empty_run.get(oid, 0) + 1
                        if self.end_on_vanish and empty_run[oid] >= self.vanish_frames:
                            ended.add(oid)
                        ids.append(oid)
                        logits.append(lg)
                        if t == last and present and oid not in ended:
                            new_carried[oid] = lg > self.mask_threshold
                    if ids:
                        yield t, np.array(ids, dtype=np.int64), np.stack(logits)
                carried = new_carried
                if e >= T:
                    break
                s = e - 1
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_chunk(self, predictor, folder: str, s: int, prompts: Prompts, rows: np.ndarray,
                   carried: dict[int, np.ndarray]) -> dict[int, dict[int, np.ndarray]]:
        """Runs sam2 on one chunk; returns local frame -> obj id -> (H, W) float32 logits."""
        state = predictor.init_state(video_path=folder, offload_video_to_cpu=True,
                                     offload_state_to_cpu=self.device != "cpu")
        for oid, mask in carried.items():
            predictor.add_new_mask(state, 0, int(oid), mask)
        first_cond: dict[int, int] = {}
        for r in rows[np.argsort(prompts.frame[rows], kind="stable")]:
            oid, local = int(prompts.obj_id[r]), int(prompts.frame[r]) - s
            predictor.add_new_points_or_box(state, local, oid, **self._prompt_args(prompts, int(r)))
            first_cond.setdefault(oid, local)
        out: dict[int, dict[int, np.ndarray]] = {}

        def collect(frame_idx, obj_ids, logits, keep=None):
            lg = logits[:, 0].float().cpu().numpy()
            for k, oid in enumerate(obj_ids):
                if keep is None or keep(int(oid), int(frame_idx)):
                    out.setdefault(int(frame_idx), {})[int(oid)] = lg[k]

        for frame_idx, obj_ids, logits in predictor.propagate_in_video(state):
            collect(frame_idx, obj_ids, logits)
        if self.reverse:
            # objects first prompted inside this chunk (not carried in) get the frames before their first prompt
            new = {o: f for o, f in first_cond.items() if o not in carried and f > 0}
            if new:
                for frame_idx, obj_ids, logits in predictor.propagate_in_video(
                        state, start_frame_idx=max(new.values()), reverse=True):
                    collect(frame_idx, obj_ids, logits, keep=lambda o, f: o in new and f < new[o])
        predictor.reset_state(state)
        return out

    # ------------------------------------------------------------------ Segmentation
    def frame_output(self, obj_ids: np.ndarray, logits: np.ndarray, obj_scores: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Logits (K, H, W) -> (masks (K, H, W) bool = logit > mask_threshold, pixel scores (K, H, W) float32, 0 outside
        the mask, or outside logit > soft_logit_min when that is set)."""
        masks = logits > self.mask_threshold
        if self.pixel_score == "logit":
            pix = np.maximum(logits, 0.0)
        elif self.pixel_score == "object":
            pix = np.broadcast_to(obj_scores[:, None, None], logits.shape).astype(np.float32)
        else:
            prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
            pix = obj_scores[:, None, None] * prob
        support = masks if self.soft_logit_min is None else logits > self.soft_logit_min
        return masks, np.where(support, pix, 0.0).astype(np.float32)

    def segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores] = None) -> Segmentation:
        builder = SegmentationBuilder(clip.num_frames, clip.height, clip.width)
        order = np.lexsort((prompts.obj_id, prompts.frame))
        for t, obj_ids, logits in self.iter_logits(clip, prompts):
            # the object's score: its most recent prompt at or before t, else its first prompt
            obj_scores = np.empty(len(obj_ids), dtype=np.float32)
            for k, oid in enumerate(obj_ids):
                rows = order[prompts.obj_id[order] == oid]
                before = rows[prompts.frame[rows] <= t]
                obj_scores[k] = prompts.score[before[-1] if len(before) else rows[0]]
            masks, pix = self.frame_output(obj_ids, logits, obj_scores)
            builder.set_frame(t, obj_ids, masks, obj_scores, pix)
        return builder.build()
