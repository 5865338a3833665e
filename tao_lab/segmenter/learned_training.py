"""How ``segmenter=learned`` learns, with no label: copy-paste crops from the camera's training clips.

Objects: on evenly spaced frames of each training clip, the connected blobs of the segmenter's own foreground (the
background model's cleaned foreground, 8-connected) of at least ``min_area`` pixels, not touching the frame edge.
Each becomes a target: its blob's pixels, exactly, are the object the box was drawn around.

A training crop (:func:`training_crops`) is one target's frame seen through the box window of
:mod:`tao_lab.segmenter.mask_net`:
- with probability ``stretch_prob`` the blob is pasted back over itself scaled by independent factors along x and y
  (up to ``max_stretch``; its bottom centre kept): the camera's training clips show walkers, the objects to segment
  are anomalous ones of any shape (carts, bikes, people lying), so the network must not learn the walkers' shape;
- the prompt box is the blob's box jittered by up to ``jitter`` of its size (a detector's or tracker's box is a few
  pixels off);
- with probability ``distractor_prob`` another blob (from any training frame of the same size) is pasted beside it,
  its centre outside the target's box but its pixels reaching into the window (a neighbour walking past): the
  foreground is recomputed on the pasted frame, and the target loses the pixels the distractor covers. Neighbours
  already in the frame stay as they are: they are not the target either.
So the network learns which of the window's foreground belongs to the object in the box, the part the classical
segmenter leaves to the box (every foreground pixel of the enlarged box, then their convex hull).

What it cannot learn: the targets are the foreground's own blobs, so parts the background difference misses (clothes
the colour of the ground) are missing from the targets too, and two walkers touching in every training frame read
as one object.

:class:`MaskNetModule` is the Lightning module (binary cross-entropy per crop pixel, AdamW);
:func:`train_mask_net` fits it on CPU with one ``lightning.Trainer``.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from tao_lab.segmenter.mask_net import crop_inputs, crop_target, grey_levels
from tao_lab.types import Clip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Blob:
    """One foreground blob of a training frame: where it is and its pixels (a crop of the frame)."""

    clip: int
    frame: int
    box: np.ndarray  # xyxy, pixel edges
    mask: np.ndarray  # (h, w) bool over the box
    pixels: np.ndarray  # (h, w, C) uint8 over the box


def find_blobs(clips: Sequence[Clip], models: Sequence[Callable], frames_per_clip: int, min_area: int,
               frames: Optional[dict] = None) -> list[Blob]:
    """The targets of :func:`training_crops` (module docstring). ``models[c]`` is clip c's ``model(t, frame) ->
    (diff, fg)`` (the segmenter's background model). ``frames``: filled with {(clip, frame index): frame} of the
    frames that hold a blob (decoded once, for the crops)."""
    out: list[Blob] = []
    for c, (clip, model) in enumerate(zip(clips, models)):
        H, W = clip.height, clip.width
        for t in np.unique(np.linspace(0, clip.num_frames - 1, min(frames_per_clip, clip.num_frames)).astype(int)):
            frame = clip.frame(int(t))
            _, fg = model(int(t), frame)
            labels, _ = ndimage.label(fg, structure=np.ones((3, 3)))
            found = len(out)
            for k, sl in enumerate(ndimage.find_objects(labels), start=1):
                if sl is None:
                    continue
                ys, xs = sl
                if ys.start == 0 or xs.start == 0 or ys.stop == H or xs.stop == W:
                    continue  # cut by the frame edge: its box is not the object's
                mask = labels[sl] == k
                if int(mask.sum()) < min_area or ys.stop - ys.start < 6 or xs.stop - xs.start < 3:
                    continue
                out.append(Blob(c, int(t), np.array([xs.start, ys.start, xs.stop, ys.stop], np.float64), mask,
                                frame[sl].copy()))
            if frames is not None and len(out) > found:
                frames[c, int(t)] = frame
    return out


def _jittered(box: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
    out = box + d
    if out[2] - out[0] < 2:
        out[[0, 2]] = box[[0, 2]]
    if out[3] - out[1] < 2:
        out[[1, 3]] = box[[1, 3]]
    return out


def _paste_beside(frame: np.ndarray, target: np.ndarray, other: Blob, rng: np.random.Generator
                  ) -> Optional[np.ndarray]:
    """Paste ``other``'s pixels into ``frame`` (in place) beside the ``target`` box: its centre outside the box,
    its box overlapping the box enlarged by half its size. Returns the (H, W) bool mask of the pasted pixels, or
    None when it does not fit in the frame."""
    H, W = frame.shape[:2]
    oh, ow = other.mask.shape
    x1, y1, x2, y2 = target
    tw, th = x2 - x1, y2 - y1
    side = rng.choice(4)
    if side < 2:  # left / right: beside it on the same row band
        cx = x1 - rng.uniform(0.1, 0.5) * ow if side == 0 else x2 + rng.uniform(0.1, 0.5) * ow
        cy = rng.uniform(y1, y2)
    else:  # above / below: one behind the other in depth
        cy = y1 - rng.uniform(0.1, 0.5) * oh if side == 2 else y2 + rng.uniform(0.1, 0.5) * oh
        cx = rng.uniform(x1, x2)
    ox, oy = int(round(cx - ow / 2)), int(round(cy - oh / 2))
    if ox < 0 or oy < 0 or ox + ow > W or oy + oh > H or not (tw > 0 and th > 0):
        return None
    region = frame[oy:oy + oh, ox:ox + ow]
    region[other.mask] = other.pixels[other.mask]
    pasted = np.zeros((H, W), bool)
    pasted[oy:oy + oh, ox:ox + ow] = other.mask
    return pasted


def _stretched(blob: Blob, frame: np.ndarray, max_stretch: float, rng: np.random.Generator
               ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Paste ``blob`` into ``frame`` (in place) scaled by independent factors in [1 / max_stretch, max_stretch]
    along x and y, its bottom centre where it was. Returns (its (H, W) bool mask, its xyxy box), or None when it
    leaves the frame."""
    import cv2

    H, W = frame.shape[:2]
    sx, sy = np.exp(rng.uniform(-np.log(max_stretch), np.log(max_stretch), 2))
    h, w = blob.mask.shape
    nh, nw = max(int(round(h * sy)), 4), max(int(round(w * sx)), 3)
    cx, bottom = (blob.box[0] + blob.box[2]) / 2, blob.box[3]
    x0, y0 = int(round(cx - nw / 2)), int(round(bottom - nh))
    if x0 < 1 or y0 < 1 or x0 + nw > W - 1 or y0 + nh > H - 1:
        return None
    mask = cv2.resize(blob.mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(bool)
    if not mask.any():
        return None
    pixels = cv2.resize(blob.pixels, (nw, nh), interpolation=cv2.INTER_LINEAR).reshape(nh, nw, *blob.pixels.shape[2:])
    frame[y0:y0 + nh, x0:x0 + nw][mask] = pixels[mask]
    out = np.zeros((H, W), bool)
    out[y0:y0 + nh, x0:x0 + nw] = mask
    return out, np.array([x0, y0, x0 + nw, y0 + nh], np.float64)


def training_crops(clips: Sequence[Clip], foreground: Callable[[Clip], Callable], num_crops: int, size: int,
                   context: float, seed: int = 0, frames_per_clip: int = 40, min_area: int = 30,
                   jitter: float = 0.1, distractor_prob: float = 0.5, stretch_prob: float = 0.5,
                   max_stretch: float = 1.8, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, 3, size, size) float32, targets (N, size, size) float32) of N = ``num_crops`` copy-paste
    crops (module docstring), reproducible from ``seed``. Raises ValueError when the clips hold no usable blob."""
    rng = np.random.default_rng(seed)
    models = [foreground(clip) for clip in clips]  # each clip's background, fitted once
    frames: dict[tuple[int, int], np.ndarray] = {}  # the frames holding blobs, decoded once
    blobs = find_blobs(clips, models, frames_per_clip, min_area, frames)
    if not blobs:
        raise ValueError("segmenter=learned: the training clips show no foreground blob to learn from "
                         f"(blobs of >= {min_area} px not touching the frame edge, {frames_per_clip} frames per clip)")
    inputs = np.zeros((num_crops, 3, size, size), np.float32)
    targets = np.zeros((num_crops, size, size), np.float32)
    from tao_lab.pipeline import progress as progress_bar

    for n in progress_bar(range(num_crops), "learned segmenter: training crops", enabled=progress):
        blob = blobs[int(rng.integers(len(blobs)))]
        frame = frames[blob.clip, blob.frame].copy()
        H, W = frame.shape[:2]
        target = np.zeros((H, W), bool)
        x1, y1, x2, y2 = blob.box.astype(int)
        target[y1:y2, x1:x2] = blob.mask
        box = blob.box
        if rng.random() < stretch_prob:  # an object of another shape than the camera's walkers (a cart, a bike)
            got = _stretched(blob, frame, max_stretch, rng)
            if got is not None:
                target, box = got
        if rng.random() < distractor_prob:
            others = [b for b in (blobs[int(i)] for i in rng.integers(len(blobs), size=8))
                      if b is not blob and b.pixels.shape[2:] == frame.shape[2:]]
            for other in others:
                pasted = _paste_beside(frame, box, other, rng)
                if pasted is not None:
                    target &= ~pasted
                    break
        diff, fg = models[blob.clip](blob.frame, frame)
        box = _jittered(box, jitter, rng)
        inputs[n] = crop_inputs(grey_levels(frame), diff, fg, box, context, size)
        targets[n] = crop_target(target, box, context, size)
    return inputs, targets


def build_module(width: int, lr: float):
    """The Lightning module around :func:`tao_lab.segmenter.mask_net.build_mask_net` (imports lightning here)."""
    import lightning
    import torch

    from tao_lab.segmenter.mask_net import build_mask_net

    class MaskNetModule(lightning.LightningModule):
        """Per-pixel binary cross-entropy between the crop's logits and its (fractional) target."""

        def __init__(self):
            super().__init__()
            self.net = build_mask_net(width)
            self.lr = float(lr)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x)[:, 0], y)
            self.log("train_loss", loss, prog_bar=False)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
            steps = max(int(self.trainer.estimated_stepping_batches), 1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return MaskNetModule()


@contextlib.contextmanager
def _quiet_lightning():
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(LeafSpec|litlogger|stepping batches).*")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def train_mask_net(inputs: np.ndarray, targets: np.ndarray, width: int = 8, epochs: int = 8, batch_size: int = 64,
                   lr: float = 3e-3, seed: int = 0, progress: bool = False):
    """The trained :class:`tao_lab.segmenter.mask_net` network (eval mode, on CPU) and its last-epoch mean loss."""
    import lightning
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tao_lab.user_errors import fit_keeping_interrupts

    lightning.seed_everything(seed, workers=True, verbose=False)
    module = build_module(width, lr)
    data = TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    with _quiet_lightning():  # its hardware, tips and deprecation lines say nothing about this training
        trainer = lightning.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
                                    enable_checkpointing=False, enable_progress_bar=progress,
                                    enable_model_summary=False, num_sanity_val_steps=0, deterministic=True)
        fit_keeping_interrupts(trainer, module, loader)  # Ctrl+C stays an interruption (not exit 1)
    net = module.net.eval()
    with torch.no_grad():
        losses = [float(torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y))
                  for x, y in DataLoader(data, batch_size=256)]
    return net, float(np.mean(losses))
