"""The data layer: clips that stream frames lazily and factories returning :class:`tao_lab.types.Dataset`.

Factories (Hydra ``_target_``s): :func:`load_ucsd`, :func:`load_avenue`, :func:`load_shanghaitech`,
:func:`make_synthetic`, :func:`load_frames_or_video`. Every frame is uint8 (H, W, 3) BGR; frame indices are 0-based;
GT masks are (H, W) bool, frame labels (T,) bool. Errors about data on disk are :class:`DataError` and name the path.
Only numpy, cv2 (and scipy, lazily) are imported.
"""
from tao_lab.dataset.errors import DataError
from tao_lab.dataset.clips import (ArrayMasks, CroppedMasks, FolderMasks, FrameFolderClip, VideoFileClip, list_images,
                                natural_key, read_image)
from tao_lab.dataset.ucsd import find_ucsd_root, load_ucsd, parse_ucsd_m, write_ucsd_layout
from tao_lab.dataset.avenue import load_avenue
from tao_lab.dataset.shanghaitech import load_shanghaitech
from tao_lab.dataset.single import load_frames_or_video
from tao_lab.dataset.synthetic import SyntheticClip, SyntheticGenerator, make_synthetic

__all__ = ["DataError", "ArrayMasks", "CroppedMasks", "FolderMasks", "FrameFolderClip", "VideoFileClip",
           "list_images", "natural_key", "read_image", "find_ucsd_root", "load_ucsd", "parse_ucsd_m",
           "write_ucsd_layout", "load_avenue", "load_shanghaitech", "load_frames_or_video", "SyntheticClip",
           "SyntheticGenerator", "make_synthetic"]
