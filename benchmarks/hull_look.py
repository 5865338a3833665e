"""Two segmenter variants' masks on the same test frames, as a picture (no labels read).

    python benchmarks/hull_look.py --data-dir ../shared/datasets/ucsd_ped2 --out docs/hull_masks.jpg
    python benchmarks/hull_look.py --compare segmenter --out learned_masks.jpg

The default pipeline (scorer fitted on the training clips) segments a few test clips twice. ``--compare hull`` (the
default): masks without hulls (``segmenter.hull=none``, red outlines) and with them (``hull=object``, the default,
green). ``--compare segmenter``: the classical segmenter (red) and the learned one (green, the default since masks
round 3). From each clip the two frames with the most segmented objects of the second variant are drawn (2x), chosen
by that count alone. Prints the mean mask area per segmented object of each variant over the drawn clips. Chooses
nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

#: comparison -> ((name, overrides, outline colour BGR), ...): the first red, the second green
COMPARISONS = {
    "hull": (("none", ["segmenter.hull=none"], (0, 0, 255)), ("object", ["segmenter.hull=object"], (0, 255, 0))),
    "segmenter": (("classical", ["segmenter=classical"], (0, 0, 255)),
                  ("learned", ["segmenter=learned"], (0, 255, 0))),
}


def outlined(frame: np.ndarray, masks: dict, variants, zoom: int = 2) -> np.ndarray:
    """The frame zoomed, each variant's mask outlines drawn in its colour."""
    img = cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for name, _, colour in variants:
        m = cv2.resize(masks[name].astype(np.uint8), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, colour, 1)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--clips", default="1,4,6", help="test clip indices to draw from")
    ap.add_argument("--compare", choices=sorted(COMPARISONS), default="hull",
                    help="hull: without / with convex hulls (default); segmenter: classical / learned")
    ap.add_argument("--out", default="hull_masks.jpg")
    args = ap.parse_args(argv)
    variants = COMPARISONS[args.compare]
    import hydra

    from tao_lab.config import compose_config
    from tao_lab.pipeline import dataset_pipeline

    clips = [int(k) for k in args.clips.split(",")]
    segs, area = {}, {}
    for name, overrides, _ in variants:
        cfg = compose_config(["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", *overrides])
        ds = hydra.utils.instantiate(cfg.dataset)
        pipe = dataset_pipeline(cfg, ds)
        pipe.show_progress = False
        pipe.fit_scorer(ds.train)
        pixels = objects = 0
        for k in clips:
            seg = pipe.segmentation(ds.test[k], pipe.scores(ds.test[k]))
            segs[name, k] = seg.instance_maps
            pixels += int((seg.instance_maps > 0).sum())
            objects += len(seg.objects)
        area[name] = pixels / max(objects, 1)
    tiles = []
    for k in clips:
        counts = np.array([len(np.unique(m)) - 1 for m in segs[variants[1][0], k]])
        for t in np.argsort(-counts, kind="stable")[:2]:
            img = outlined(ds.test[k].frame(int(t)), {n: segs[n, k][t] > 0 for n, _, _ in variants}, variants)
            cv2.putText(img, f"{ds.test[k].clip_id} frame {t}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 0), 1)
            tiles.append(img)
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)]
    cv2.imwrite(args.out, np.concatenate(rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print("mean mask area per segmented object (px): " + ", ".join(f"{n} {area[n]:.0f}" for n, _, _ in variants)
          + f"; {len(tiles)} frames drawn to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
