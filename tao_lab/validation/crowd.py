"""A crowd added to a training clip: the validation's simulation of a busier day at the same camera.

A camera's new video is often busier than its training clips (Ped2's test clips: about 1.4x the objects per frame of
its held-out training clips, session 49), and crowding changes what the scorer measures, not only how many objects
it sees: boxes merge into groups, a person behind another is cut to a piece, the strip below one person shows the
next person's body. None of that is in a held-out training clip, so the validation's negatives never showed it.

:class:`CrowdedClip` pastes the moving objects of a donor clip of the same camera (:class:`Crowd`) over a base clip,
frame i over frame i: the donor's pixels wherever some channel differs from the donor's own background (the
per-pixel median of ``samples`` frames) by more than ``threshold``, holes closed, specks opened away, grown by
``dilate`` px. The donor's people walk in front of the base's. The cross-scene validation takes each scene's donors
from clips of the same camera that none of its folds fits on (:func:`tao_lab.validation.scenes.spare_clips`), so the
crowd is new to every fold's scorer, as a new day's people are. The donor must be at least as long as the base: a
donor that wrapped around would make its people jump from one place to another in a single frame, and the optical
flow reads that jump as the fastest motion of the clip (a first version that crowded a clip with its own frames half
a clip later did, and its frames around the seam scored up to 9x the clip's usual level).
"""
from __future__ import annotations

from typing import Iterator, Optional

import cv2
import numpy as np

from tao_lab.types import Clip


def _channels(frame: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 view of a grey (H, W) or colour (H, W, C) frame."""
    return (frame[..., None] if frame.ndim == 2 else frame).astype(np.float32)


class Crowd:
    """The moving objects of ``donor``, a clip of the camera a crowd is added to: its background (the per-pixel,
    per-channel median of ``samples`` frames spread over it, computed once however many clips it crowds) and, per
    frame, the mask of what differs from it (:meth:`mask`)."""

    def __init__(self, donor: Clip, threshold: float = 20.0, samples: int = 40, dilate: int = 1):
        if donor.num_frames < 1 or float(threshold) <= 0 or int(samples) < 1 or int(dilate) < 0:
            raise ValueError(f"crowd: need a donor with frames, threshold > 0, samples >= 1, dilate >= 0; got "
                             f"{donor.num_frames} frames, {threshold!r}, {samples!r}, {dilate!r}")
        self.donor = donor
        self.threshold, self.samples, self.dilate = float(threshold), int(samples), int(dilate)
        self.source = f"{donor.source}/{self.threshold:g}/{self.samples}/{self.dilate}"  # part of the crowded clips'
        self._background: Optional[np.ndarray] = None  # cache keys

    def background(self) -> np.ndarray:
        """(H, W, C) float32: the donor's per-pixel, per-channel median over ``samples`` frames spread over it."""
        if self._background is None:
            idx = np.unique(np.linspace(0, self.donor.num_frames - 1,
                                        min(self.samples, self.donor.num_frames)).round().astype(int))
            self._background = np.median(np.stack([_channels(self.donor.frame(int(i))) for i in idx]), axis=0)
        return self._background

    def mask(self, donor_frame: np.ndarray) -> np.ndarray:
        """(H, W) bool: the donor frame's moving objects: pixels where some channel differs from the donor's
        background by more than ``threshold`` (a colour walker on a grey walkway may differ in one channel only),
        holes closed (a body whose middle matches the ground stays whole), specks opened away, grown by
        ``dilate`` px."""
        diff = np.abs(_channels(donor_frame) - self.background()).max(axis=2)
        mask = (diff > self.threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if self.dilate:
            mask = cv2.dilate(mask, np.ones((2 * self.dilate + 1,) * 2, np.uint8))
        return mask.astype(bool)


class CrowdedClip(Clip):
    """``base`` with the moving objects of ``crowd``'s donor (same size, at least as many frames) pasted over it,
    frame by frame (see the module docstring). ``labels`` (a planted base's frame labels) pass through: the crowd
    may hide the plant, as a crowd hides anything, and its frames stay labelled."""

    def __init__(self, base: Clip, crowd: Crowd):
        donor = crowd.donor
        if (base.height, base.width) != (donor.height, donor.width):
            raise ValueError(f"crowd donor {donor.clip_id} is {donor.height}x{donor.width}, base {base.clip_id} "
                             f"is {base.height}x{base.width}: a crowd comes from the same camera")
        if donor.num_frames < base.num_frames:
            raise ValueError(f"crowd donor {donor.clip_id} has {donor.num_frames} frames, fewer than the "
                             f"{base.num_frames} of {base.clip_id}: a donor must cover every frame it crowds")
        super().__init__(f"{base.clip_id}+crowd", base.num_frames, base.height, base.width, base.fps, gt=None,
                         source=f"{base.source}+crowd:{crowd.source}")
        self.base, self.crowd = base, crowd
        if hasattr(base, "labels"):
            self.labels = base.labels

    def _compose(self, frame: np.ndarray, donor_frame: np.ndarray) -> np.ndarray:
        mask = self.crowd.mask(donor_frame)
        if donor_frame.ndim != frame.ndim:  # a grey donor on a colour base, or the reverse
            donor_frame = (cv2.cvtColor(donor_frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 3
                           else cv2.cvtColor(donor_frame, cv2.COLOR_BGR2GRAY))
        out = frame.copy()
        out[mask] = donor_frame[mask]
        return out

    def _read(self, i: int) -> np.ndarray:
        return self._compose(self.base.frame(i), self.crowd.donor.frame(i))

    def _sequential(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for frame, donor_frame in zip(self.base.frames(start, stop), self.crowd.donor.frames(start, stop)):
            yield self._compose(frame, donor_frame)
