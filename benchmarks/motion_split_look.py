"""What the detector's motion split cuts, as a picture (training clips only, no labels read).

    python benchmarks/motion_split_look.py --data-dir ../shared/datasets/ucsd_ped2 --out docs/motion_split.png

For the first training clips of a UCSD-layout dataset, every 11th frame, each blob the plain detector
(``detector.split_motion=0``) boxes as one object that the default detector cuts by motion is shown zoomed (3x):
the plain box in red, the default's boxes in green. Prints how many boxes each detector found and how many crops
were drawn. Chooses nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def crop(frame: np.ndarray, box: np.ndarray, cut: np.ndarray, size: int = 80, zoom: int = 3) -> np.ndarray:
    """A zoomed ``size`` px square around ``box``, the plain box red and the cut boxes green."""
    x1, y1, x2, y2 = box
    X1 = int(np.clip((x1 + x2) / 2 - size / 2, 0, max(frame.shape[1] - size, 0)))
    Y1 = int(np.clip((y1 + y2) / 2 - size / 2, 0, max(frame.shape[0] - size, 0)))
    tile = cv2.resize(frame[Y1:Y1 + size, X1:X1 + size], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for b, colour, inset in [(box, (0, 0, 255), 0)] + [(c, (0, 255, 0), 2) for c in cut]:
        p1 = (int((b[0] - X1) * zoom) + inset, int((b[1] - Y1) * zoom) + inset)
        p2 = (int((b[2] - X1) * zoom) - inset, int((b[3] - Y1) * zoom) - inset)
        cv2.rectangle(tile, p1, p2, colour, 1)
    return cv2.copyMakeBorder(tile, 0, size * zoom - tile.shape[0], 0, size * zoom - tile.shape[1],
                              cv2.BORDER_CONSTANT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--clips", type=int, default=4, help="training clips to look at")
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--out", default="motion_split.png")
    args = ap.parse_args(argv)
    from hydra.utils import instantiate

    from tao_lab.config import compose_config
    from tao_lab.dataset.ucsd import load_ucsd

    cfg = compose_config([], config_name="pipeline")
    default = instantiate(cfg.detector)
    plain = instantiate(cfg.detector, split_motion=0.0)
    tiles, counts = [], [0, 0]
    for clip in load_ucsd(args.data_dir, splits=("train",)).train[:args.clips]:
        a, b = plain.detect(clip), default.detect(clip)
        counts[0] += len(a)
        counts[1] += len(b)
        for i in range(5, clip.num_frames, 11):
            A, B = a.xyxy[a.frame == i], b.xyxy[b.frame == i]
            for box in A:
                inside = [c for c in B if c[0] >= box[0] - 0.5 and c[2] <= box[2] + 0.5 and c[1] >= box[1] - 0.5
                          and c[3] <= box[3] + 0.5]
                if len(inside) >= 2 and len(tiles) < args.tiles:
                    tiles.append(crop(clip.frame(i), box, np.array(inside)))
    print(f"boxes: {counts[0]} without the motion split, {counts[1]} with it; {len(tiles)} cut blobs drawn")
    if not tiles:
        return 1
    per_row = 4
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
    rows = [np.hstack(tiles[k:k + per_row]) for k in range(0, len(tiles), per_row)]
    cv2.imwrite(args.out, np.vstack(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
