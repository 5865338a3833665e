"""The segmenter's masks with and without convex hulls, as a picture (test frames, no labels read).

    python benchmarks/hull_look.py --data-dir ../shared/datasets/ucsd_ped2 --out docs/hull_masks.jpg

The default pipeline (scorer fitted on the training clips) segments a few test clips twice: masks of the box's
foreground as it is (``segmenter.hull=none``, red outlines) and their convex hull (``hull=object``, the default,
green). From each clip the two frames with the most segmented objects are drawn (2x), chosen by that count alone.
Prints the mean mask area per segmented object of each variant over the drawn clips. Chooses nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = (("none", (0, 0, 255)), ("object", (0, 255, 0)))


def outlined(frame: np.ndarray, masks: dict, zoom: int = 2) -> np.ndarray:
    """The frame zoomed, each variant's mask outlines drawn in its colour."""
    img = cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for hull, colour in VARIANTS:
        m = cv2.resize(masks[hull].astype(np.uint8), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, colour, 1)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--clips", default="1,4,6", help="test clip indices to draw from")
    ap.add_argument("--out", default="hull_masks.jpg")
    args = ap.parse_args(argv)
    import hydra

    from tao_lab.config import compose_config
    from tao_lab.pipeline import Pipeline

    clips = [int(k) for k in args.clips.split(",")]
    segs, area = {}, {}
    for hull, _ in VARIANTS:
        cfg = compose_config(["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", f"segmenter.hull={hull}"])
        ds = hydra.utils.instantiate(cfg.dataset)
        pipe = Pipeline(cfg)
        pipe.set_camera_clips(ds.train)
        pipe.show_progress = False
        pipe.fit_scorer(ds.train)
        pixels = objects = 0
        for k in clips:
            seg = pipe.segmentation(ds.test[k], pipe.scores(ds.test[k]))
            segs[hull, k] = seg.instance_maps
            pixels += int((seg.instance_maps > 0).sum())
            objects += len(seg.objects)
        area[hull] = pixels / max(objects, 1)
    tiles = []
    for k in clips:
        counts = np.array([len(np.unique(m)) - 1 for m in segs["object", k]])
        for t in np.argsort(-counts, kind="stable")[:2]:
            img = outlined(ds.test[k].frame(int(t)), {h: segs[h, k][t] > 0 for h, _ in VARIANTS})
            cv2.putText(img, f"{ds.test[k].clip_id} frame {t}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 0), 1)
            tiles.append(img)
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)]
    cv2.imwrite(args.out, np.concatenate(rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"mean mask area per segmented object (px): none {area['none']:.0f}, hull {area['object']:.0f}; "
          f"{len(tiles)} frames drawn to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
