"""The small network of ``segmenter=learned`` and the box-relative crops it reads and writes.

A prompt box is seen through a square window: the box enlarged by ``context`` of its width / height on each side,
resampled to ``size`` x ``size`` pixels (so every box lands on the same central square of the crop, whatever its size
and shape: the prompt needs no channel of its own). Three input channels per crop pixel:

- ``grey``: the frame's grey level / 255 - 0.5;
- ``diff``: the background difference (grey levels, the segmenter's background model) / 50, clipped to [0, 2];
- ``fg``: the background model's cleaned foreground (0 / 1).

The network (:class:`MaskNet`, a 3-level U-Net of 8-16-32 channels, 30k weights) returns one logit per crop
pixel: whether the pixel belongs to the object the box was drawn around. :func:`crop_to_frame` warps its
probabilities back onto the frame's pixels of any region. Torch is imported by the functions that need it only.
"""
from __future__ import annotations

import cv2
import numpy as np

#: input channels of :func:`crop_inputs`
CHANNELS = ("grey", "diff", "fg")
#: grey levels of background difference that map to 1 in the ``diff`` channel
DIFF_SCALE = 50.0


def crop_transform(box: np.ndarray, context: float, size: int) -> np.ndarray:
    """(2, 3) affine map from frame pixel coordinates to crop coordinates: the window (``box`` enlarged by
    ``context`` x its width / height on each side) onto [0, size) x [0, size)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    wx0, wy0 = x1 - context * w, y1 - context * h
    sx, sy = size / (w * (1 + 2 * context)), size / (h * (1 + 2 * context))
    return np.float32([[sx, 0, -wx0 * sx], [0, sy, -wy0 * sy]])


def _warp(image: np.ndarray, m: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    # warpAffine maps output pixel centres through the inverse: the half-pixel shift keeps centres on centres
    shift = np.float32([[1, 0, 0.5 * (m[0, 0] - 1)], [0, 1, 0.5 * (m[1, 1] - 1)]])
    m = m.copy()
    m[:, 2] += shift[:, 2]
    return cv2.warpAffine(image, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def grey_levels(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32 grey levels of a frame: the mean of its channels (a grey frame as it is).

    The same bits as ``frame.astype(np.float32).mean(axis=2)`` (float32 channel sum in channel order, then divided by
    the count), about 10x faster: numpy's reduction over a last axis of 3 runs a short loop per pixel."""
    if frame.ndim != 3:
        return frame.astype(np.float32)
    if frame.dtype != np.uint8:  # video frames are uint8; anything else takes numpy's own path
        return frame.astype(np.float32).mean(axis=2)
    out = frame[..., 0].astype(np.float32)
    for c in range(1, frame.shape[2]):
        out += frame[..., c]
    out /= np.float32(frame.shape[2])
    return out


def frame_channels(grey: np.ndarray, diff: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, ...]:
    """The whole frame's arrays the input channels are cut from, (H, W) float32 each: computed once per frame, then
    seen through each box's window by :func:`window_inputs`."""
    return (np.asarray(grey, np.float32) / np.float32(255.0), np.asarray(diff, np.float32) / np.float32(DIFF_SCALE),
            np.asarray(fg, np.float32), np.ones(np.shape(grey)[:2], np.float32))


def window_inputs(channels: tuple[np.ndarray, ...], box: np.ndarray, context: float, size: int) -> np.ndarray:
    """(3, size, size) float32: the :func:`frame_channels` seen through the box's window (module docstring); the
    window's pixels outside the frame read 0 in every channel."""
    m = crop_transform(box, context, size)
    grey, diff, fg, inside = (_warp(c, m, size, cv2.INTER_LINEAR) for c in channels)
    return np.stack([(grey - 0.5) * inside, np.clip(diff, 0.0, 2.0), fg]).astype(np.float32)


def crop_inputs(grey: np.ndarray, diff: np.ndarray, fg: np.ndarray, box: np.ndarray, context: float,
                size: int) -> np.ndarray:
    """(3, size, size) float32 network input of one box: ``grey`` (H, W) uint8 or float grey levels, ``diff``
    (H, W) background difference in grey levels, ``fg`` (H, W) bool foreground (module docstring). Pixels of the
    window outside the frame read 0 in every channel."""
    return window_inputs(frame_channels(grey, diff, fg), box, context, size)


def crop_target(mask: np.ndarray, box: np.ndarray, context: float, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: a frame's (H, W) bool mask seen through the box's window (the training
    target; bilinear, so border pixels are fractional)."""
    return _warp(np.asarray(mask, np.float32), crop_transform(box, context, size), size, cv2.INTER_LINEAR)


def crop_to_frame(prob: np.ndarray, box: np.ndarray, context: float, region: tuple[slice, slice]) -> np.ndarray:
    """(h, w) float32: the crop's ``prob`` (size, size) on the frame pixels of ``region`` (rows, cols slices);
    0 outside the window."""
    size = prob.shape[0]
    m = crop_transform(box, context, size).astype(np.float64)
    # frame -> crop, then the region's offset: crop coordinates of region pixel (0, 0) and its steps
    ys, xs = region
    h, w = ys.stop - ys.start, xs.stop - xs.start
    if h <= 0 or w <= 0:
        return np.zeros((max(h, 0), max(w, 0)), np.float32)
    # sample the crop at the region's pixel centres (x + 0.5) mapped into crop pixel-centre coordinates (- 0.5)
    cols = (np.arange(xs.start, xs.stop) + 0.5) * m[0, 0] + m[0, 2] - 0.5
    rows = (np.arange(ys.start, ys.stop) + 0.5) * m[1, 1] + m[1, 2] - 0.5
    map_x = np.broadcast_to(cols[None, :], (h, w)).astype(np.float32)
    map_y = np.broadcast_to(rows[:, None], (h, w)).astype(np.float32)
    return cv2.remap(np.asarray(prob, np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def build_mask_net(width: int = 8):
    """A :class:`MaskNet` (torch imported here)."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class MaskNet(nn.Module):
        """3-level U-Net: (B, 3, S, S) crops -> (B, 1, S, S) logits (S divisible by 4)."""

        def __init__(self, width: int):
            super().__init__()
            self.width = int(width)
            c1, c2, c3 = width, 2 * width, 4 * width
            self.enc1, self.enc2, self.enc3 = block(len(CHANNELS), c1), block(c1, c2), block(c2, c3)
            self.dec2, self.dec1 = block(c3 + c2, c2), block(c2 + c1, c1)
            self.out = nn.Conv2d(c1, 1, 1)

        def forward(self, x):
            f = nn.functional
            e1 = self.enc1(x)
            e2 = self.enc2(f.max_pool2d(e1, 2))
            e3 = self.enc3(f.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([f.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False),
                                      e2], 1))
            d1 = self.dec1(torch.cat([f.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False),
                                      e1], 1))
            return self.out(d1)

    return MaskNet(width)


def for_inference(net):
    """A copy of a trained :class:`MaskNet` with each BatchNorm folded into the convolution before it (eval mode):
    the same outputs up to float rounding, about 15 % less time per crop on a CPU."""
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for block in net.modules():
        if isinstance(block, torch.nn.Sequential):
            for i in range(len(block) - 1):
                if isinstance(block[i], torch.nn.Conv2d) and isinstance(block[i + 1], torch.nn.BatchNorm2d):
                    block[i], block[i + 1] = fuse_conv_bn_eval(block[i], block[i + 1]), torch.nn.Identity()
    return net
