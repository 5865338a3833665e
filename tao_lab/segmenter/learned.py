"""``segmenter=learned`` (the default since masks round 3, benchmarks/validation/masks_round3.yaml): a small
network, trained without labels on the camera's training clips, decides which of a box's foreground belongs to the
object the box was drawn around.

The classical segmenter (tao_lab.segmenter.classical) takes every foreground pixel of the object's enlarged box and
outlines them with their convex hull, so a neighbour reaching into the box, or a blob merged with the object, joins
its mask. This segmenter keeps everything else of the classical one (the box plan and carrying, the background
model, hole filling and hull, the fallback for boxes without foreground, the pixel score) and replaces that one step:
a 3-level U-Net (tao_lab.segmenter.mask_net) reads the box's window (grey level, background difference, foreground)
and gives each pixel the probability that it is the object's. Mask = probability >= ``mask_threshold`` inside the
enlarged box (``box_margin``, as the classical masks: a mask never leaves it), then the classical post-processing;
pixel score on the mask = ``score x (floor + (1 - floor) x probability)``.

Training (tao_lab.segmenter.learned_training): copy-paste crops of the foreground blobs of the camera's training
clips, with distractor blobs pasted beside them; no label and no downloaded weight. With ``checkpoint: null`` (the
default) the network is trained on the run's training clips the first time a mask is asked for (1-3 min on 2 CPU
cores; kept under the stage cache dir, ``segmenter_nets/``, and in memory, for the next run or pipeline on the same
clips and settings; ``python train.py`` also writes it as ``segmenter.ckpt`` into the run dir); with a path it
is loaded from that file (written by :meth:`LearnedSegmenter.save_checkpoint`). A run with neither (no training
clips: ``training.mode=unsupervised``, a video without a training split) gets the classical step, with a warning in
its log, as a camera background falls back to the clip's own without training clips.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tao_lab.library_threads import torch_threads
from tao_lab.segmenter.classical import ForegroundSegmenter
from tao_lab.segmenter.mask_net import crop_to_frame, frame_channels, grey_levels, window_inputs
from tao_lab.types import Clip

log = logging.getLogger(__name__)

#: what a learned segmenter checkpoint holds besides the weights
CHECKPOINT_KIND = "tao_lab.segmenter.learned"
#: what such a checkpoint is and where it comes from (error messages)
CHECKPOINT_EXPECTED = ("a learned segmenter checkpoint (segmenter.ckpt, written by `python train.py` with "
                       "segmenter=learned, the default; or set segmenter.checkpoint=null to train one on the run's "
                       "training clips)")
#: the training options (tao_lab.segmenter.learned_training) and their defaults
TRAINING_DEFAULTS = {"num_crops": 6000, "epochs": 8, "batch_size": 64, "lr": 3e-3, "seed": 0, "frames_per_clip": 40,
                     "min_area": 30, "jitter": 0.1, "distractor_prob": 0.5, "stretch_prob": 0.5, "max_stretch": 1.8,
                     "max_clips": 16}


#: networks trained in this process, by training settings and clips (:meth:`LearnedSegmenter.fit`): the pipelines
#: of one run (the run's own, the in-run validation's folds, which see the same camera) train once
_TRAINED: dict = {}
_TRAINED_LOCK = threading.Lock()


def learns_from_clips(segmenter) -> bool:
    """Whether ``segmenter`` trains on the run's training clips (``segmenter=learned`` without a checkpoint)."""
    return isinstance(segmenter, LearnedSegmenter) and segmenter.checkpoint is None


def network_ready(segmenter, clips: Optional[Sequence[Clip]] = None) -> Optional[float]:
    """For a caller that times the segmenter afterwards (the benchmarks): a segmenter that learns from the training
    clips gets its network now (trained on ``clips``, default the camera's, or read from its cache); the seconds it
    took, None for any other segmenter."""
    if not learns_from_clips(segmenter):
        return None
    start = time.perf_counter()
    segmenter.fit(clips)
    return time.perf_counter() - start


class LearnedSegmenter(ForegroundSegmenter):
    """Classical segmenter whose box-to-mask step is a network trained on the camera's training clips (module
    docstring).

    Args:
        checkpoint: a file written by :meth:`save_checkpoint` (``python train.py`` writes ``segmenter.ckpt`` into
            its run dir), or None: train on the run's training clips at first use.
        crop_size: side (px) of the square window the network reads (divisible by 4).
        context: the window is the box enlarged by this fraction of its width / height on each side.
        width: channels of the network's first level (8: 30k weights).
        mask_threshold: probability at and above which a pixel of the enlarged box is on the mask.
        inference_threads: torch threads of the network's forward pass; None = torch's own count (all cores). A
            frame's few small crops run as fast on one thread as split over two, for about a third less CPU (Ped2,
            4 test clips: 42-46 against 30-35 frames per CPU-second); the masks were the same, and the float16
            scores differed in their last bit on about 1e-7 of the pixels (split sums add in another order).
        training: options of the training (:data:`TRAINING_DEFAULTS`): crops, epochs, batch size, learning rate,
            seed, frames sampled per clip, smallest blob (px), box jitter, share of crops with a distractor, share
            of crops whose object is stretched and how far, at most this many training clips.
        progress: show progress bars while training.
        **classical: every ForegroundSegmenter option (background, box_margin, hull, fallback, pixel score, box plan).
    """

    def __init__(self, checkpoint: Optional[str] = None, crop_size: int = 40, context: float = 0.25, width: int = 8,
                 mask_threshold: float = 0.3, training: Optional[dict] = None, progress: bool = False,
                 inference_threads: Optional[int] = 1, **classical):
        super().__init__(**classical)
        if inference_threads is not None and int(inference_threads) < 1:
            raise ValueError(f"inference_threads must be >= 1 or null (torch's own count), got {inference_threads!r}")
        self.inference_threads = None if inference_threads is None else int(inference_threads)
        if crop_size < 8 or crop_size % 4:
            raise ValueError(f"crop_size must be a multiple of 4 and >= 8, got {crop_size}")
        if not context >= 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if not 0 < mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
        unknown = set(training or {}) - set(TRAINING_DEFAULTS)
        if unknown:
            raise ValueError(f"segmenter.training: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(TRAINING_DEFAULTS)}")
        if self.grabcut:
            raise ValueError("segmenter=learned replaces the foreground-to-mask step; grabcut does not apply")
        self.checkpoint = None if checkpoint in (None, "") else str(checkpoint)
        self.crop_size = int(crop_size)
        self.context = float(context)
        self.width = int(width)
        self.mask_threshold = float(mask_threshold)
        self.training = {**TRAINING_DEFAULTS, **dict(training or {})}
        self.progress = bool(progress)
        self.fit_metrics: dict = {}
        self.without_network = False  # no checkpoint and no training clips: the classical step (logged once)
        self.cache_dir: Optional[Path] = None
        self._net = None
        self._folded = (None, None)  # (network, its BatchNorm-folded copy for inference)
        self._lock = threading.Lock()

    def __getstate__(self):  # the lock does not pickle (worker processes rebuild it)
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def use_cache_dir(self, cache_dir) -> None:
        """Keep trained networks under ``cache_dir``/segmenter_nets (given by the pipeline; None = not kept)."""
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    # ----- the network ----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The network now (loaded, read from the cache or trained): see :meth:`net`."""
        _ = self.net

    @property
    def net(self):
        """The network: loaded from ``checkpoint``, or trained on the camera's training clips at first use; None when
        there is neither (the classical step is used then, see :meth:`_object_in_region`)."""
        if self._net is None and not self.without_network:
            with self._lock:
                if self._net is None and not self.without_network:
                    if self.checkpoint is not None:
                        self._net = self._load(self.checkpoint)
                    elif getattr(self.camera, "clips", None):
                        self.fit()
                    else:
                        self.without_network = True
                        log.warning("segmenter=learned: no training clips to learn from (training.mode=unsupervised, "
                                    "a video without a training split, or segmenter.background.scope=clip) and no "
                                    "segmenter.checkpoint: the masks come from the classical segmenter's step (every "
                                    "foreground pixel of the enlarged box); for the learned masks give it a "
                                    "network, e.g. the segmenter.ckpt that `python train.py` writes for a dataset "
                                    "of this camera")
        return self._net

    def fit(self, clips: Optional[Sequence[Clip]] = None) -> dict:
        """Trains the network on ``clips`` (default: the run's training clips, handed over with the camera
        backgrounds) and returns what the training measured (crops, blobs, loss, seconds)."""
        from tao_lab.segmenter.learned_training import train_mask_net, training_crops

        if clips is None:
            clips = list(getattr(self.camera, "clips", None) or [])
        if not clips:
            raise ValueError("segmenter=learned has no training clips to learn from (training.mode=unsupervised, a "
                             "video without a training split, or segmenter.background.scope=clip, which hands the "
                             "segmenter no training clip): give it a trained network with "
                             "segmenter.checkpoint=<path>, e.g. the segmenter.ckpt that `python train.py` writes "
                             "for a dataset of the same camera")
        opts = self.training
        clips = list(clips)
        if len(clips) > opts["max_clips"]:
            clips = [clips[int(i)] for i in np.linspace(0, len(clips) - 1, opts["max_clips"]).round()]
        key = self._training_key(clips)
        with _TRAINED_LOCK:
            kept = _TRAINED.get(key)
        if kept is not None:
            self._net, self.fit_metrics = kept
            log.info("segmenter=learned: the network trained earlier in this run on the same clips and settings")
            return self.fit_metrics
        cached = self._cached_path(key)
        if cached is not None and cached.is_file():
            self._net = self._load(str(cached))
            self.fit_metrics = {"crops": 0, "clips": len(clips), "cached": 1}
            log.info("segmenter=learned: network read from the cache (%s)", cached)
            with _TRAINED_LOCK:
                _TRAINED[key] = (self._net, dict(self.fit_metrics))
            return self.fit_metrics
        start = time.perf_counter()
        log.info("segmenter=learned: training on %d training clips (%d crops, %d epochs)", len(clips),
                 opts["num_crops"], opts["epochs"])
        inputs, targets = training_crops(clips, self._foreground_model, opts["num_crops"], self.crop_size,
                                         self.context, seed=opts["seed"], frames_per_clip=opts["frames_per_clip"],
                                         min_area=opts["min_area"], jitter=opts["jitter"],
                                         distractor_prob=opts["distractor_prob"],
                                         stretch_prob=opts["stretch_prob"], max_stretch=opts["max_stretch"],
                                         progress=self.progress)
        crops_s = time.perf_counter() - start
        net, loss = train_mask_net(inputs, targets, width=self.width, epochs=opts["epochs"],
                                   batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                                   progress=self.progress)
        self._net = net
        self.fit_metrics = {"crops": len(inputs), "clips": len(clips), "loss": loss,
                            "target_share": float(targets.mean()), "crops_seconds": crops_s,
                            "seconds": time.perf_counter() - start}
        log.info("segmenter=learned: trained in %.0f s (loss %.4f)", self.fit_metrics["seconds"], loss)
        with _TRAINED_LOCK:
            _TRAINED[key] = (net, dict(self.fit_metrics))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            self.save_checkpoint(str(cached))
        return self.fit_metrics

    def _cached_path(self, key: str) -> Optional[Path]:
        import hashlib

        if self.cache_dir is None:
            return None
        return self.cache_dir / "segmenter_nets" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"

    def _training_key(self, clips: Sequence[Clip]) -> str:
        """Everything the trained network depends on: its geometry and training options, how the foreground is
        computed, and the clips (their sources, and which camera background each gets)."""
        settings = (self._geometry(), sorted(self.training.items()), self.foreground, sorted(self.background.items()),
                    self.scope, sorted(self.camera_options.items()), self.diff_gap, self.diff_neighbours,
                    self.diff_threshold, sorted(getattr(self.camera, "sources", None) or []))
        return repr((settings, [c.source for c in clips]))

    def _geometry(self) -> dict:
        return {"crop_size": self.crop_size, "context": self.context, "width": self.width}

    def save_checkpoint(self, path: str) -> None:
        """Writes the network (weights and geometry only; loaded with ``weights_only=True``), atomically."""
        import torch

        from tao_lab.artifacts import atomic_path

        net = self.net
        ckpt = {"kind": CHECKPOINT_KIND, "geometry": self._geometry(), "training": dict(self.training),
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)

    def missing_checkpoint_message(self, path: Optional[str] = None) -> str:
        """What to do when ``checkpoint`` (or ``path``) names no file (also the run's preflight check,
        tao_lab.preflight)."""
        return f"segmenter.checkpoint: {path or self.checkpoint} not found; expected {CHECKPOINT_EXPECTED}"

    def _load(self, path: str):
        from tao_lab.checkpoints import CheckpointError, load_weights
        from tao_lab.segmenter.mask_net import build_mask_net

        if not Path(path).is_file():
            raise FileNotFoundError(self.missing_checkpoint_message(path))
        ckpt = load_weights(path, CHECKPOINT_EXPECTED)
        if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path} is not {CHECKPOINT_EXPECTED}")
        if ckpt.get("geometry") != self._geometry():
            raise CheckpointError(f"{path} was trained with {ckpt.get('geometry')}; this segmenter is configured "
                                  f"with {self._geometry()}: set the same crop_size, context and width")
        net = build_mask_net(self.width)
        net.load_state_dict(ckpt["state_dict"])
        return net.eval()

    # ----- masks ----------------------------------------------------------------------------------------------
    def probabilities(self, frame: np.ndarray, boxes: list, diff: np.ndarray, fg: np.ndarray,
                      regions: list) -> list:
        """Per box, (h, w) float32 in [0, 1] over its region: the network's probability that the pixel is the
        object's (one forward pass for all of a frame's boxes)."""
        import torch

        if not boxes:
            return []
        channels = frame_channels(grey_levels(frame), diff, fg)  # once per frame, then one window per box
        x = torch.from_numpy(np.stack([window_inputs(channels, box, self.context, self.crop_size) for box in boxes]))
        net = self._inference_net()  # trained here at first use, so outside inference_mode
        with torch.inference_mode(), torch_threads(self.inference_threads):
            prob = torch.sigmoid(net(x))[:, 0].numpy()
        return [crop_to_frame(p, box, self.context, region) for p, box, region in zip(prob, boxes, regions)]

    def _inference_net(self):
        """The network with its BatchNorms folded (tao_lab.segmenter.mask_net.for_inference), made once."""
        net = self.net
        if self._folded[0] is not net:
            from tao_lab.segmenter.mask_net import for_inference

            self._folded = (net, for_inference(net))
        return self._folded[1]

    def _objects_in_regions(self, frame: np.ndarray, boxes: list, diff: np.ndarray, fg: np.ndarray) -> list:
        if self.net is None:
            return super()._objects_in_regions(frame, boxes, diff, fg)
        H, W = fg.shape
        regions = [self._region(box, H, W) for box in boxes]
        out = []
        for box, region, prob in zip(boxes, regions, self.probabilities(frame, boxes, diff, fg, regions)):
            mask = self.outline(prob >= self.mask_threshold)
            if self.too_little(mask, box):
                out.append((region, self._fallback_mask(box, H, W)[region], np.zeros(mask.shape, np.float32)))
            else:
                out.append((region, mask, prob.astype(np.float32)))
        return out

    def _object_in_region(self, frame: np.ndarray, box: np.ndarray, diff: np.ndarray, fg: np.ndarray
                          ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        if self.net is None:  # the classical step (the parent's list of them calls this one)
            return super()._object_in_region(frame, box, diff, fg)
        return self._objects_in_regions(frame, [box], diff, fg)[0]
