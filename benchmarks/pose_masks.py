"""BlazePose on Ped2 TRAINING boxes, label-free: pose presence, per-crop time, and person masks (BlazePose's own vs
MediaPipe's selfie model) against the classical foreground mask.

Boxes: the background-subtraction blobs (the GT-free default detector's boxes) of every ``--every``-th frame of
the first ``--clips`` training clips. Per box: BlazePose presence; the person mask of each model (ROI as
segmenter=pose_person, probability > 0.5, clipped to the box enlarged by 10 %); its IoU with the classical
foreground mask in the same region (a label-free proxy of "the mask covers the moving person and little else":
training clips have no pixel labels and test labels are not used); the mask area over the box area; ms per crop.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/pose_masks.py --data ../shared/datasets/ucsd_ped2 \
        --weights ../shared/weights
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/datasets/ucsd_ped2")
    ap.add_argument("--weights", default="../shared/weights")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--every", type=int, default=30)
    args = ap.parse_args()

    from tao_lab.dataset.ucsd import load_ucsd
    from tao_lab.detector import BackgroundSubtractionDetector
    from tao_lab.detector.background import BackgroundModel
    from tao_lab.features.blazepose import BlazePose, SelfieSegmenter
    from tao_lab.segmenter import ForegroundSegmenter

    ds = load_ucsd(args.data, "ped2", max_clips=args.clips, splits=("train",))
    bp = BlazePose(f"{args.weights}/pose_landmark_full.tflite")
    selfie = SelfieSegmenter(f"{args.weights}/selfie_segmentation.tflite")
    det = BackgroundSubtractionDetector()
    seg = ForegroundSegmenter()
    rows = []  # presence, iou_pose, iou_selfie, area_pose, area_selfie, area_fg, ms_pose, ms_selfie
    for clip in ds.train:
        model = BackgroundModel().fit(clip)
        for t in range(0, clip.num_frames, args.every):
            frame = clip.frame(t)
            H, W = frame.shape[:2]
            diff = model.difference(frame)
            fg = model.clean(diff > model.threshold)
            boxes, _ = det.boxes_from_mask(fg, diff)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            for box in boxes:
                region = seg._region(np.asarray(box, np.float64), H, W)
                inside = np.zeros((H, W), bool)
                inside[region] = True
                t0 = time.perf_counter()
                r = bp(rgb, box, mask=True)
                t1 = time.perf_counter()
                sp, stf = selfie(rgb, box)
                t2 = time.perf_counter()
                m_pose = (r.transform.mask_to_image(r.mask_prob, H, W) > 0.5) & inside
                m_selfie = (stf.mask_to_image(sp, H, W) > 0.5) & inside
                m_fg = fg & inside
                area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1.0)

                def iou(a, b):
                    return (a & b).sum() / max((a | b).sum(), 1)

                rows.append((r.presence, iou(m_pose, m_fg), iou(m_selfie, m_fg), m_pose.sum() / area,
                             m_selfie.sum() / area, m_fg.sum() / area, 1e3 * (t1 - t0), 1e3 * (t2 - t1)))
    a = np.array(rows)
    present = a[:, 0] >= 0.5
    print(f"boxes: {len(a)} from {len(ds.train)} training clips (every {args.every}th frame)")
    print(f"BlazePose presence >= 0.5: {present.mean():.3f} of boxes; median presence {np.median(a[:, 0]):.3f}")
    for name, col_iou, col_area in (("pose mask", 1, 3), ("selfie mask", 2, 4)):
        nonempty = a[:, col_area] > 0
        print(f"{name:12s}: non-empty {nonempty.mean():.3f}; IoU with the classical foreground: mean "
              f"{a[:, col_iou].mean():.3f} (boxes with presence >= 0.5: {a[present, col_iou].mean():.3f}); "
              f"mask area / box area median {np.median(a[:, col_area]):.3f}")
    print(f"classical foreground area / box area median {np.median(a[:, 5]):.3f}")
    print(f"ms per crop: BlazePose landmark+mask median {np.median(a[:, 6]):.1f} (mean {a[:, 6].mean():.1f}); "
          f"selfie median {np.median(a[:, 7]):.1f}")


if __name__ == "__main__":
    main()
