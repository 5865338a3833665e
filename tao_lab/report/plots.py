"""Plots as PNG bytes (matplotlib with the Agg backend, imported lazily): evaluation curves, score timelines and
sweep comparisons. Every function returns ``bytes`` (or writes a file) so callers can embed, log or save them.
"""
from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np

# Recognised curve families: (x array name, y array names, title, x label, y label).
_KNOWN = [
    (("fpr", "rbdr", "tbdr"), "fpr", ("rbdr", "tbdr"), "RBDC / TBDC (detection rate vs false positives per frame)",
     "false positives per frame", "detection rate"),
    (("fpr", "tpr"), "fpr", ("tpr",), "ROC", "false positive rate", "true positive rate"),
    (("recall", "precision"), "recall", ("precision",), "precision-recall", "recall", "precision"),
    (("fpr", "pro"), "fpr", ("pro",), "PRO (per-region overlap vs FPR)", "false positive rate", "PRO"),
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def subsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` evenly spaced points of a curve (first and last kept)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if len(x) <= max_points or max_points < 2:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
    return x[idx], y[idx]


def curve_specs(curves: dict[str, dict[str, Any]]) -> list[dict]:
    """Plot specs of the evaluation curves ``{family: {array name: 1-D array}}``.

    A family is recognised by its array names: (fpr, rbdr, tbdr) = RBDC/TBDC, (fpr, tpr) = ROC, (recall,
    precision) = PR, (fpr, pro) = PRO; a family may also hold sub-families as nested dicts (e.g.
    ``{"pixel": {"roc": {...}, "pr": {...}}}``). Unrecognised families are skipped.
    Returns ``[{"key", "title", "xname", "yname", "series": {label: (x, y)}}]``.
    """
    specs = []

    def visit(name: str, family: Any) -> None:
        if not isinstance(family, dict):
            return
        arrays = {k: np.asarray(v) for k, v in family.items() if not isinstance(v, dict)}
        arrays = {k: v for k, v in arrays.items() if v.ndim == 1 and v.dtype.kind in "fiub"}
        for names, xname, ynames, title, xlabel, ylabel in _KNOWN:
            if all(n in arrays for n in names) and all(len(arrays[n]) == len(arrays[xname]) for n in names):
                series = {f"{name} {y}".strip(): (arrays[xname], arrays[y]) for y in ynames}
                specs.append({"key": name.replace(" ", "_").replace("/", "_"), "title": f"{name}: {title}",
                              "xname": xlabel, "yname": ylabel, "series": series})
                break
        for k, v in family.items():
            if isinstance(v, dict):
                visit(f"{name}_{k}" if name else k, v)

    for name, family in curves.items():
        visit(name, family)
    return specs


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def curves_figure_png(specs: list[dict], dpi: int = 90) -> Optional[bytes]:
    """One figure with a panel per curve spec (None when there is nothing to draw)."""
    if not specs:
        return None
    plt = _pyplot()
    n = len(specs)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=dpi, squeeze=False)
    for ax, spec in zip(axes.ravel(), specs):
        for label, (x, y) in spec["series"].items():
            x, y = subsample(x, y, 2000)
            ax.plot(x, y, label=label, lw=1.5)
        ax.set_title(spec["title"], fontsize=9)
        ax.set_xlabel(spec["xname"], fontsize=8)
        ax.set_ylabel(spec["yname"], fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def timeline_png(frame_scores: np.ndarray, tau: Optional[float] = None, fps: float = 25.0,
                 flagged: Optional[np.ndarray] = None, title: str = "frame anomaly score",
                 width: float = 10.0, height: float = 2.6, dpi: int = 100) -> bytes:
    """Frame score over time (seconds on x), the frame alarm's threshold ``tau`` as a dashed line (named "alarm
    threshold": the object threshold that picks prompts is another tau, on another scale), flagged spans shaded."""
    plt = _pyplot()
    s = np.asarray(frame_scores, np.float64)
    t = np.arange(len(s)) / max(float(fps), 1e-6)
    fig, ax = plt.subplots(figsize=(width, height), dpi=dpi)
    ax.plot(t, s, color="#1f5fa8", lw=1.2, label="frame score")
    if tau is not None and np.isfinite(tau):
        ax.axhline(float(tau), color="#c0392b", ls="--", lw=1.0, label=f"alarm threshold {tau:.4g}")
    if flagged is not None and len(flagged) == len(s) and np.any(flagged):
        ymax = float(np.nanmax(s)) if len(s) else 1.0
        ax.fill_between(t, 0, ymax, where=np.asarray(flagged, bool), color="#e74c3c", alpha=0.15, step="mid",
                        label="flagged frames")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(t[-1] if len(t) else 1.0, 1e-3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def metric_vs_param_png(x_values: Sequence[Any], series: dict[str, Sequence[float]], xname: str,
                        title: str = "", dpi: int = 100) -> bytes:
    """Metrics against a swept parameter: lines when every x is numeric (sorted), grouped bars otherwise."""
    plt = _pyplot()
    xs = list(x_values)
    numeric = all(_is_number(v) for v in xs)
    fig, ax = plt.subplots(figsize=(8.4, 3.8), dpi=dpi)
    if numeric:
        order = np.argsort([float(v) for v in xs], kind="stable")
        xf = np.asarray([float(xs[i]) for i in order])
        for label, ys in series.items():
            y = np.asarray([_num(ys[i]) for i in order], np.float64)
            ax.plot(xf, y, marker="o", lw=1.5, label=label)
    else:
        n = max(len(series), 1)
        pos = np.arange(len(xs))
        width = 0.8 / n
        for j, (label, ys) in enumerate(series.items()):
            ax.bar(pos + (j - (n - 1) / 2) * width, [_num(v) for v in ys], width, label=label)
        ax.set_xticks(pos)
        ax.set_xticklabels([str(v) for v in xs], rotation=20, ha="right")
    ax.set_xlabel(xname)
    ax.set_ylabel("metric")
    ax.set_title(title or f"metrics vs {xname}", fontsize=10)
    ax.grid(alpha=0.3)
    # outside the axes: inside, the legend hid the bars or line ends of the last values
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return _png(fig)


def params_scatter_png(panels: Sequence[tuple[str, Sequence[Any]]], y: Sequence[float], colour: Sequence[Any],
                       colour_name: str, yname: str, title: str = "", dpi: int = 100) -> bytes:
    """One scatter panel per parameter (``panels``: [(name, one value per job)]), ``y`` (one metric value per job)
    on a shared y axis, points coloured by ``colour`` (numbers: a colour bar; anything else: a legend), the colour
    bar / legend outside the axes. Numeric axes keep matplotlib's round ticks; category labels are rounded to 4
    significant digits. For sweeps that are not grids (Optuna, continuous parameters)."""
    plt = _pyplot()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    yv = np.asarray([_num(v) for v in y], np.float64)
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 1.0, 3.4), dpi=dpi, sharey=True, squeeze=False)
    numeric_colour = all(_is_number(c) for c in colour)
    if numeric_colour:
        cv = np.asarray([float(c) for c in colour])
        norm = Normalize(float(cv.min()), float(cv.max()) if cv.max() > cv.min() else float(cv.min()) + 1.0)
        cmap = plt.get_cmap("viridis")
        point_colours = cmap(norm(cv))
    else:
        categories = list(dict.fromkeys(str(c) for c in colour))
        palette = plt.get_cmap("tab10")
        point_colours = [palette(categories.index(str(c)) % 10) for c in colour]
    for ax, (name, values) in zip(axes[0], panels):
        if all(_is_number(v) for v in values):
            xv = np.asarray([float(v) for v in values])
        else:  # categories side by side, their labels rounded
            labels = list(dict.fromkeys(str(v) for v in values))
            xv = np.asarray([labels.index(str(v)) for v in values], np.float64)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([_short(v) for v in labels], rotation=20, ha="right")
        ax.scatter(xv, yv, c=point_colours, s=34, edgecolors="k", linewidths=0.4, zorder=3)
        ax.set_xlabel(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel(yname, fontsize=9)
    if numeric_colour:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label=colour_name, pad=0.02,
                     fraction=0.04)
    else:
        handles = [Line2D([], [], marker="o", ls="", markerfacecolor=plt.get_cmap("tab10")(i % 10),
                          markeredgecolor="k", label=_short(c)) for i, c in enumerate(categories)]
        axes[0][-1].legend(handles=handles, title=colour_name, fontsize=8, title_fontsize=8, loc="upper left",
                           bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def _short(v: Any) -> str:
    """A label: numbers to 4 significant digits, anything else as it is."""
    return f"{float(v):.4g}" if _is_number(v) else str(v)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def roc_pr_points(scores: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """ROC and precision-recall curve points of pooled scores (ties grouped into one operating point).

    Returns ``{"roc": {"fpr", "tpr"}, "pr": {"recall", "precision"}}``; empty dict when one class is missing.
    """
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return {}
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tied-score group
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1 - tp).astype(np.float64)
    fpr, tpr = np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / pos
    return {"roc": {"fpr": fpr, "tpr": tpr},
            "pr": {"recall": np.r_[0.0, recall], "precision": np.r_[precision[0], precision]}}


def frame_curves(frame_scores: Sequence[np.ndarray], frame_labels: Sequence[np.ndarray]) -> dict[str, dict]:
    """Frame-level ROC and PR curves, all test frames pooled (micro): ``{"frame_roc": ..., "frame_pr": ...}``."""
    if not frame_scores:
        return {}
    pts = roc_pr_points(np.concatenate([np.asarray(s, np.float64) for s in frame_scores]),
                        np.concatenate([np.asarray(l, bool) for l in frame_labels]))
    return {f"frame_{k}": v for k, v in pts.items()}


def pixel_curves(pixel_metrics, max_points: int = 2000) -> dict[str, dict[str, np.ndarray]]:
    """Pixel ROC, PR and PRO curves of a :class:`tao_lab.metrics.PixelMetrics` accumulator (standard protocol).

    Uses its exact rank counts (one extra pass over the stored scores, so only called when a logger wants
    curves). Returns ``{"pixel_roc": {fpr, tpr}, "pixel_pr": {recall, precision}, "pixel_pro": {fpr, pro}}``
    with at most ``max_points`` points each; families that cannot be computed are left out.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        rc = pixel_metrics.rank_counts()
    except Exception:  # noqa: BLE001 - curves are a bonus, never a reason to fail an evaluation
        return out
    if rc.n_pos == 0 or rc.n_neg == 0 or len(rc.u) == 0:
        return out
    tp, fp = rc.pos_ge[::-1].astype(np.float64), rc.neg_ge[::-1].astype(np.float64)  # descending thresholds
    fpr, tpr = subsample(np.r_[0.0, fp / rc.n_neg, 1.0], np.r_[0.0, tp / rc.n_pos, 1.0], max_points)
    out["pixel_roc"] = {"fpr": fpr, "tpr": tpr}
    recall, precision = subsample(tp / rc.n_pos, tp / np.maximum(tp + fp, 1.0), max_points)
    out["pixel_pr"] = {"recall": recall, "precision": precision}
    try:
        from tao_lab.metrics._core import pro_curve

        n_regions = int(getattr(pixel_metrics, "num_regions", 0))
        if n_regions and rc.pos_weight is not None:
            f, p = pro_curve(rc, n_regions)
            keep = f <= 0.3 + 1e-12  # the integrated part (FPR limit of the AUPRO)
            f, p = subsample(f[keep], p[keep], max_points)
            out["pixel_pro"] = {"fpr": f, "pro": p}
    except Exception:  # noqa: BLE001
        pass
    return out
