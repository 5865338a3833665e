"""Camera background: a background fitted on the training clips of the camera a clip comes from.

Why: the per-clip median background (:class:`tao_lab.detector.background.BackgroundModel`) absorbs anyone who stands
still for about half of the clip, so a loiterer vanishes from the detector's boxes and from the segmenter's masks.
Static cameras see the same scene in every training clip; the per-pixel median over those clips does not hold a
person who stood in one of them.

The one interface: the :class:`tao_lab.pipeline.Pipeline` owns a :class:`CameraBackgrounds` built from the run's
training clips (``Pipeline.set_camera_clips``) and hands it to every stage that opts in through a
``use_camera(backgrounds)`` method (the background-subtraction detector, the hybrid detector's background part, the
classical segmenter). A stage opts in per config with ``background.scope: camera`` (the configured default of the
detector and the segmenter); ``scope: clip`` (the classes' default) is the per-clip background and ignores the
provider.

Which clips are "the same camera": the training clips with the same frame size as the clip (ASSUMPTION: one static
camera per frame size, true for UCSD Ped2 and Avenue). A clip is never part of its own camera background: training
clips whose ``source`` the clip's source starts with (the clip itself, its planted copies ``<source>+plant:...``,
its sub-clips ``<source>[a:b]``) are left out (leave-one-clip-out). A dataset that mixes cameras of one frame size
(ShanghaiTech) is protected by the disagreement check: a clip whose brightness-normalised median disagrees with
the camera background on more than ``max_disagreement`` of its pixels uses its own per-clip background, and the
reason is logged. Without training clips of its size (``training.mode=unsupervised``, ``infer.py`` on one video)
a clip falls back to the per-clip background too (logged once per size).

Camera statistics (per frame size and left-out set, cached in memory): every training clip's own median and noise
(the same :class:`BackgroundModel` fit as per clip, so each training clip is decoded once per background setting);
their medians are brought to one brightness (global gain to the median of the medians), the camera background is
the per-pixel median of those, its noise the larger of the median per-clip noise and the robust spread of the
clips' medians around it (pixels whose background changes between clips, e.g. with the sun, get a higher
threshold). With one clip the camera background is that clip's median; with two it is their mean (a person
standing in one of them is then half-absorbed): three or more training clips are what it is made for.
"""
from __future__ import annotations

import copy
import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from tao_lab.detector.background import _MAD_TO_SIGMA, BackgroundModel, median_over_frames
from tao_lab.types import Clip

log = logging.getLogger(__name__)

#: ``background.scope`` values: "clip" = the clip's own median (today's default), "camera" = see the module docstring.
SCOPES = ("clip", "camera")
#: Options of a stage's ``background`` dict that belong to the scope, not to :class:`BackgroundModel`.
SCOPE_KEYS = ("scope", "max_disagreement", "max_clips", "agreement", "blend", "seen_share")
#: How a clip's background takes the camera's (BackgroundModel.blend_camera): "disagree" = the camera's background
#: where the clip's median disagrees with it; "seen" = the median of the clip's own frames that show the camera's
#: background, where at least ``seen_share`` of its sampled frames do (else the clip's median).
BLENDS = ("disagree", "seen")
DEFAULT_SEEN_SHARE = 0.1
#: Default share of a clip's pixels on which its median may disagree with the camera background (else: the clip's
#: own background). Ped2's training clips disagree with the other clips' camera background on 0.3-12% of their
#: pixels (in benchmarks/camera_background.py); the same clips seen by the validation's simulated other cameras
#: (ped2_low, ped2_oblique: same frame size) disagree with the plain Ped2 camera's background on 57-79%.
DEFAULT_MAX_DISAGREEMENT = 0.25
#: Default ``agreement``: the clip's own median is kept where it is within this fraction of the camera's foreground
#: threshold of the camera background (BackgroundModel.blend_camera explains why < 1). Chosen on the validation's
#: Ped2 loiter plants and plain training clips (benchmarks/camera_background.py; README): 1.0 found the standing
#: loiterer on 53% of its frames, 0.5 on 72% (the camera background alone: 74%), at 4.5 / 4.8 / 4.9% foreground
#: pixels per plain training frame (per-clip background: 3.4%).
DEFAULT_AGREEMENT = 0.5
#: Default cap on the training clips per camera (evenly chosen): bounds the memory of the per-clip statistics.
DEFAULT_MAX_CLIPS = 32


def split_background_options(background: Optional[dict], owner: str) -> tuple[dict, str, dict]:
    """A stage's ``background`` dict -> (BackgroundModel keyword arguments, scope, scope options).

    ``owner`` names the config key in error messages (e.g. "detector.background")."""
    kwargs = dict(background or {})
    scope = str(kwargs.pop("scope", "clip"))
    if scope not in SCOPES:
        raise ValueError(f"{owner}.scope must be one of {SCOPES}, got {scope!r} ('clip': the clip's own median "
                         f"background; 'camera': fitted on the camera's training clips)")
    options = {"max_disagreement": float(kwargs.pop("max_disagreement", DEFAULT_MAX_DISAGREEMENT)),
               "max_clips": int(kwargs.pop("max_clips", DEFAULT_MAX_CLIPS)),
               "agreement": float(kwargs.pop("agreement", DEFAULT_AGREEMENT)),
               "blend": str(kwargs.pop("blend", "disagree")),
               "seen_share": float(kwargs.pop("seen_share", DEFAULT_SEEN_SHARE))}
    if options["blend"] not in BLENDS:
        raise ValueError(f"{owner}.blend must be one of {BLENDS}, got {options['blend']!r}")
    if not 0.0 < options["seen_share"] <= 1.0:
        raise ValueError(f"{owner}.seen_share must be in (0, 1] (a share of the sampled frames), got "
                         f"{options['seen_share']}")
    if not options["agreement"] > 0:
        raise ValueError(f"{owner}.agreement must be > 0 (a fraction of the camera's foreground threshold), got "
                         f"{options['agreement']}")
    if not 0.0 < options["max_disagreement"] <= 1.0:
        raise ValueError(f"{owner}.max_disagreement must be in (0, 1] (a share of the frame's pixels), got "
                         f"{options['max_disagreement']}")
    if options["max_clips"] < 1:
        raise ValueError(f"{owner}.max_clips must be >= 1, got {options['max_clips']}")
    try:
        kwargs = BackgroundModel.settings(kwargs)
    except TypeError as err:  # an unknown key: name the config key, not the class
        raise ValueError(f"{owner}: {err} (BackgroundModel's options: {', '.join(BackgroundModel.SETTINGS)}; "
                         f"scope options: {', '.join(SCOPE_KEYS)})") from None
    return kwargs, scope, options


def scoped_backgrounds(node: Any) -> Iterator[dict]:
    """Every dict of a plain stage config (nested parts included, e.g. the hybrid detector's background part) that
    holds a ``background`` dict with a ``scope``: the one place that knows where scoped backgrounds live."""
    if isinstance(node, dict):
        if isinstance(node.get("background"), dict) and "scope" in node["background"]:
            yield node
        for value in node.values():
            yield from scoped_backgrounds(value)
    elif isinstance(node, list):
        for value in node:
            yield from scoped_backgrounds(value)


def uses_camera(stage_cfg: Any) -> bool:
    """Whether some part of a plain stage config sets ``background.scope: camera``."""
    return any(owner["background"]["scope"] == "camera" for owner in scoped_backgrounds(stage_cfg))


def cache_spec(stage_cfg: dict, camera: Optional["CameraBackgrounds"]) -> dict:
    """The part of a stage's cache key that its config gives, with the background scope accounted for.

    ``stage_cfg``: the stage's plain config (e.g. ``to_plain(cfg.detector)``). Every ``background`` dict's
    ``scope: clip`` and its scope options are dropped (a config at the default keeps the key it had before the
    option existed, so existing caches stay valid); when some part uses ``scope: camera`` the sources of the
    camera clips it is fitted on are added as ``camera_clips``, so a per-clip output is never served for another
    setting or another set of training clips."""
    spec = copy.deepcopy(stage_cfg)
    camera_scope = False
    for owner in list(scoped_backgrounds(spec)):
        background = owner["background"]
        if background["scope"] == "camera":
            camera_scope = True
            continue
        for key in SCOPE_KEYS:
            background.pop(key, None)
        owner["background"] = background or None  # `background: {scope: clip}` keys as the `background: null`
    if camera_scope:
        spec["camera_clips"] = [] if camera is None else camera.sources
    return spec


def fit_background(clip: Clip, kwargs: dict, scope: str, options: dict,
                   camera: Optional["CameraBackgrounds"]) -> BackgroundModel:
    """The fitted background of ``clip`` for a stage with these :func:`split_background_options`: its own median
    (``scope: clip``), or the camera's with the per-clip fallbacks of :meth:`CameraBackgrounds.model` (``camera``:
    the provider the pipeline handed the stage; None = no training clips, so the per-clip background)."""
    if scope == "camera":
        return (camera or CameraBackgrounds()).model(clip, kwargs, **options)[0]
    return BackgroundModel(**kwargs).fit(clip)


def camera_settings(stage: Any) -> list[tuple[dict, int]]:
    """(BackgroundModel keyword arguments, max_clips) of each camera background ``stage`` will ask for (a stage opts in
    with a ``camera_settings()`` method; empty for any other stage and for ``scope: clip``)."""
    method = getattr(stage, "camera_settings", None)
    return list(method()) if callable(method) else []


def _stats_key(clip: Clip, kwargs: dict) -> tuple[str, str]:
    """The key of one training clip's statistics for these BackgroundModel keyword arguments (defaults filled in, so
    two spellings of the same settings share one fit)."""
    return clip.source, repr(sorted(BackgroundModel.settings(kwargs).items()))


def derived_from(source: str, base: str) -> bool:
    """True when ``source`` is ``base`` or made from it (planted copy ``base+...``, sub-clip ``base[a:b]``)."""
    return source == base or (source.startswith(base) and source[len(base):len(base) + 1] in ("+", "["))


class CameraBackgrounds:
    """Camera backgrounds fitted on a run's training clips, handed out per clip (see the module docstring).

    clips: the training clips (any frame sizes; grouped by size). cameras: instead, the training clips grouped by
    camera (one list per camera; the cross-scene validation's simulated cameras share Ped2's frame size): a clip
    derived from a training clip uses that clip's group, any other clip the clips of its frame size.
    Thread-safe: the pipeline's extraction threads share one instance.

    A clip's fitted background (:meth:`model`) is kept for the next stage that asks for it with the same settings (the
    segmenter, after the detector): one fit per clip instead of one per stage. Kept per clip object (a weak reference:
    another clip with the same source is fitted on its own), at most ``keep_bytes`` of models, least recently used
    first out. The models handed out are shared, so they are read-only (BackgroundModel.replaced makes a copy).
    """

    def __init__(self, clips: Sequence[Clip] = (), cameras: Optional[Sequence[Sequence[Clip]]] = None,
                 keep_bytes: int = 256 << 20):
        if cameras is not None and len(clips):
            raise ValueError("give the training clips either as clips (one camera per frame size) or as cameras "
                             "(one list per camera), not both")
        self.groups = None if cameras is None else [list(g) for g in cameras]
        self.clips = list(clips) if cameras is None else [c for g in self.groups for c in g]
        self._stats: dict = {}  # (source, kwargs) -> (median, sigma) of one training clip
        self._cameras: dict = {}  # (kwargs, sources) -> (background, sigma)
        self._warned: set = set()
        self._lock = threading.Lock()
        self.keep_bytes = int(keep_bytes)
        # (id(clip), settings) -> (weak reference to the clip, (model, reason, share), bytes): see the class docstring
        self._fitted: "OrderedDict[tuple, tuple]" = OrderedDict()
        self._fitted_bytes = 0

    @property
    def sources(self) -> list:
        """The training clips' sources, sorted (per camera when grouped): what the camera backgrounds are fitted on
        (cache keys)."""
        if self.groups is not None:
            return sorted(sorted(c.source for c in g) for g in self.groups)
        return sorted(c.source for c in self.clips)

    def camera_clips(self, clip: Clip, max_clips: int = DEFAULT_MAX_CLIPS) -> list[Clip]:
        """The training clips that make ``clip``'s camera background: same frame size, not ``clip`` itself nor
        what it derives from; at most ``max_clips``, evenly chosen."""
        pool = self.clips
        if self.groups is not None:  # the group of the most specific training clip it derives from (a warped
            # copy <source>+warp:... of a Ped2 clip belongs to the warped camera, not to Ped2)
            matches = [(len(c.source), g) for g in self.groups for c in g if derived_from(clip.source, c.source)]
            if matches:
                pool = max(matches, key=lambda m: m[0])[1]
        same = [c for c in pool if (c.height, c.width) == (clip.height, clip.width)
                and not derived_from(clip.source, c.source)]
        if len(same) > max_clips:
            same = [same[int(i)] for i in np.linspace(0, len(same) - 1, max_clips).round()]
        return same

    def model(self, clip: Clip, kwargs: Optional[dict] = None, max_disagreement: float = DEFAULT_MAX_DISAGREEMENT,
              max_clips: int = DEFAULT_MAX_CLIPS, agreement: float = DEFAULT_AGREEMENT, blend: str = "disagree",
              seen_share: float = DEFAULT_SEEN_SHARE) -> tuple[BackgroundModel, str, float]:
        """(fitted :class:`BackgroundModel` of ``clip``, "camera" or the reason it is the clip's own background,
        the share of pixels on which the clip's median disagrees with the camera background (NaN: no camera)).

        ``kwargs``: BackgroundModel keyword arguments (the stage's ``background`` without its scope options);
        ``blend`` / ``seen_share``: see :data:`BLENDS`."""
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        kwargs = BackgroundModel.settings(kwargs)
        key = (id(clip), repr(sorted(kwargs.items())), max_disagreement, max_clips, agreement, blend, seen_share)
        with self._lock:
            kept = self._fitted.get(key)
            if kept is not None and kept[0]() is clip:
                self._fitted.move_to_end(key)
                return kept[1]
        fitted = self._fit_model(clip, kwargs, max_disagreement, max_clips, agreement, blend, seen_share)
        self._keep(key, clip, fitted)
        return fitted

    def _keep(self, key: tuple, clip: Clip, fitted: tuple) -> None:
        size = fitted[0].nbytes
        with self._lock:
            old = self._fitted.pop(key, None)
            if old is not None:
                self._fitted_bytes -= old[2]
            if size > self.keep_bytes:
                return
            self._fitted[key] = (weakref.ref(clip), fitted, size)
            self._fitted_bytes += size
            while self._fitted_bytes > self.keep_bytes:
                _, (_, _, dropped) = self._fitted.popitem(last=False)
                self._fitted_bytes -= dropped

    def _fit_model(self, clip: Clip, kwargs: dict, max_disagreement: float, max_clips: int, agreement: float,
                   blend: str, seen_share: float) -> tuple[BackgroundModel, str, float]:
        """:meth:`model` without the kept fits."""
        others = self.camera_clips(clip, max_clips)
        model = BackgroundModel(**kwargs).fit(clip, keep_samples=bool(others) and blend == "seen")
        if not others:
            reason = (f"no training clip of this camera ({clip.width}x{clip.height}) to fit a camera background on: "
                      f"per-clip backgrounds")
            with self._lock:
                if (clip.height, clip.width) not in self._warned:
                    self._warned.add((clip.height, clip.width))
                    log.info("background.scope=camera: %s (e.g. %s)", reason, clip.clip_id)
            return model, reason, float("nan")
        camera_bg, camera_sigma = self._camera(others, kwargs)
        _, share = model.blend_camera(camera_bg, camera_sigma, max_share=max_disagreement, agreement=agreement,
                                      seen_share=seen_share if blend == "seen" else None)
        if share > max_disagreement:  # the model was left as the clip's own
            reason = (f"clip {clip.clip_id}: its median disagrees with the camera background of {len(others)} "
                      f"training clip(s) of size {clip.width}x{clip.height} on {100 * share:.1f}% of the pixels "
                      f"(> max_disagreement {100 * max_disagreement:.0f}%): another camera or scene? Using its "
                      f"own per-clip background")
            log.warning("background.scope=camera: %s", reason)
            return model, reason, share
        log.debug("clip %s: camera background of %d clips (disagreement %.1f%%)", clip.clip_id, len(others),
                  100 * share)
        return model, "camera", share

    def fit_statistics(self, kwargs: Optional[dict] = None) -> None:
        """Fits every training clip's own median and noise for these BackgroundModel keyword arguments now (they are
        otherwise fitted on first use): lets a benchmark keep this once-per-run cost out of its per-frame times."""
        for clip in self.clips:
            self._clip_stats(clip, dict(kwargs or {}))

    def missing_statistics(self, settings: Sequence[tuple[dict, int]], clips: Sequence[Clip]
                           ) -> list[tuple[Clip, dict]]:
        """(training clip, BackgroundModel keyword arguments) of every clip statistic that the camera backgrounds of
        ``clips`` need for these ``settings`` ((keyword arguments, max_clips) of each stage: :func:`camera_settings`)
        and that is not fitted yet: what the workers of a parallel pass would otherwise each fit again (forked
        workers do not share what they fit)."""
        wanted: dict = {}
        for kwargs, max_clips in settings:
            for clip in clips:
                for other in self.camera_clips(clip, max_clips):
                    wanted[_stats_key(other, kwargs)] = (other, BackgroundModel.settings(kwargs))
        with self._lock:
            return [job for key, job in wanted.items() if key not in self._stats]

    def clip_statistics(self, clip: Clip, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
        """(median, noise) of one training clip for these BackgroundModel keyword arguments (fitted once, kept)."""
        return self._clip_stats(clip, dict(kwargs))

    def add_statistics(self, clip: Clip, kwargs: dict, stats: tuple[np.ndarray, np.ndarray]) -> None:
        """Keeps ``stats`` (:meth:`clip_statistics` computed elsewhere, e.g. in a worker process)."""
        with self._lock:
            self._stats[_stats_key(clip, kwargs)] = stats

    def _clip_stats(self, clip: Clip, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
        key = _stats_key(clip, kwargs)
        with self._lock:
            hit = self._stats.get(key)
        if hit is None:
            m = BackgroundModel(**BackgroundModel.settings(kwargs)).fit(clip)
            hit = (m.background, m.sigma)
            with self._lock:
                self._stats[key] = hit
        return hit

    def _camera(self, clips: list[Clip], kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
        kwargs = BackgroundModel.settings(kwargs)
        key = (repr(sorted(kwargs.items())), tuple(sorted(c.source for c in clips)))
        with self._lock:
            hit = self._cameras.get(key)
        if hit is not None:
            return hit
        stats = [self._clip_stats(c, kwargs) for c in clips]
        medians = np.stack([s[0] for s in stats])
        sigma = median_over_frames(np.stack([s[1] for s in stats]))
        if len(stats) > 1 and kwargs.get("normalize_brightness", True):
            # one brightness for all clips: each clip's global gain to the median of the medians (sparse grid)
            ref = np.maximum(median_over_frames(medians)[2::4, 2::4], 1.0)
            gains = np.median(ref[None] / np.maximum(medians[:, 2::4, 2::4], 1.0), axis=(1, 2))
            medians = medians * gains[:, None, None].astype(np.float32)
        background = median_over_frames(medians)
        if len(stats) >= 3:  # pixels whose background changes between clips get a higher threshold
            between = _MAD_TO_SIGMA * median_over_frames(np.abs(medians - background))
            sigma = np.maximum(sigma, between)
        hit = (background.astype(np.float32), sigma.astype(np.float32))
        with self._lock:
            self._cameras[key] = hit
        return hit
