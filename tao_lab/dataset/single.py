"""A user's own video file or frame folder as a test-only dataset without ground truth (for inference)."""
from __future__ import annotations

import os
from typing import Optional

from tao_lab.dataset.clips import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FrameFolderClip, VideoFileClip, list_images, \
    natural_key
from tao_lab.dataset.common import check_limit
from tao_lab.dataset.errors import DataError
from tao_lab.types import Clip, Dataset


def load_frames_or_video(path: str, max_frames: Optional[int] = None, fps: Optional[float] = None,
                         clip_id: Optional[str] = None, max_clips: Optional[int] = None) -> Dataset:
    """``path`` as a Dataset with no training clips and test clips without GT (``clip.gt is None``).

    - a video file (mp4/avi/mov/mkv/...): one clip;
    - a folder of images (jpg/jpeg/png/tif/tiff/bmp, natural numeric order): one clip;
    - a folder of videos and/or frame sub-folders (no images directly in it): one clip per entry.
    ``clip_id`` defaults to the file/folder name; fps defaults to the video's (25 for frame folders).
    """
    max_frames = check_limit("max_frames", max_frames)
    max_clips = check_limit("max_clips", max_clips)
    p = os.path.abspath(os.path.expanduser(str(path)))
    name = os.path.splitext(os.path.basename(p.rstrip(os.sep)))[0] or "input"
    if os.path.isfile(p):
        if os.path.splitext(p)[1].lower() not in VIDEO_EXTENSIONS:
            raise DataError(f"{p} is not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)}) or a folder "
                            f"of frames")
        return Dataset(name, [], [VideoFileClip(p, clip_id or name, max_frames=max_frames, fps=fps)])
    if not os.path.isdir(p):
        raise DataError(f"input not found: {p} (give a video file or a folder of frames)")
    if list_images(p):
        return Dataset(name, [], [FrameFolderClip(p, clip_id or name, fps=fps or 25.0, max_frames=max_frames)])
    clips: list[Clip] = []
    for n in sorted(os.listdir(p), key=natural_key):
        q = os.path.join(p, n)
        if n.startswith("."):
            continue
        if os.path.isfile(q) and os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS:
            clips.append(VideoFileClip(q, os.path.splitext(n)[0], max_frames=max_frames, fps=fps))
        elif os.path.isdir(q) and list_images(q):
            clips.append(FrameFolderClip(q, n, fps=fps or 25.0, max_frames=max_frames))
        if max_clips is not None and len(clips) >= max_clips:
            break
    if not clips:
        raise DataError(f"no video files or image frames ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) in {p}")
    return Dataset(name, [], clips)
