"""Compare the jobs of a Hydra multirun: one table (terminal, CSV, Markdown) and a metric-vs-parameter plot.

Usage::

    python -m tao_lab.compare outputs/eval/multiruns/<time>                    # table of the main metrics
    python -m tao_lab.compare <dir> --x threshold.tau --y test/object_rbdc,test/object_tbdc   # TAO Fig. 5
    python -m tao_lab.compare <dir> --x segmenter.backbone                     # TAO Fig. 6 (bars)
    python -m tao_lab.compare <dir> --metrics all --sort test/pixel_auroc

Every job folder holds ``.hydra/overrides.yaml`` (written by Hydra) and ``metrics.json`` (written by the task); a
job that failed holds ``FAILED.json`` instead (written by :func:`tao_lab.tasks.run_task`) and is listed with its
error. Outputs go next to the sweep (``--out`` to change): ``compare.csv`` (full precision), ``compare.md`` and the
printed table (numbers rounded to 4 significant digits) and the plots:

- a grid sweep (every combination of the swept values once): ``compare_<metric>_vs_<param>.png``, the metric(s)
  against one parameter, one line per combination of the others;
- any other sweep (Optuna, continuous or many-valued parameters): ``compare_<metric>_scatter.png`` per metric, one
  scatter panel per swept parameter, the metric on the y axis, colour = trial number (``--color <param>`` for a
  second parameter), the legend/colour bar outside the axes;
- an Optuna sweep whose study was saved (``optuna_study.pkl``, configs/hparams_search/optuna.yaml): also Optuna's own
  figures ``optuna_history.png``, ``optuna_importances.png``, ``optuna_slice.png`` next to
  ``optimization_results.yaml`` (:mod:`tao_lab.optuna_study`).

A sweep whose objective is a ``test/`` metric is marked ``objective uses test labels`` above the table (and in the
CSV's ``objective`` column).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

# The columns shown by default, in this order, when present (any protocol suffix such as _tao / _gtgated kept).
MAIN_METRICS = ("test/frame_auc_micro", "test/frame_auc_macro", "test/pixel_auroc", "test/pixel_ap",
                "test/pixel_aupro@0.3", "test/pixel_f1_max", "test/pixel_auroc_tao", "test/pixel_ap_tao",
                "test/pixel_aupro_tao", "test/pixel_f1_tao", "test/object_rbdc", "test/object_tbdc",
                "val/frame_auc_mean", "val/object_rbdc", "val/object_tbdc", "val/pixel_ap")


def _parse_override(line: str) -> Optional[tuple[str, str]]:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("- "):
        line = line[2:].strip()
    line = line.strip("'\"")
    if "=" not in line:
        return (line.lstrip("~+"), "<deleted>") if line.startswith("~") else None
    key, value = line.split("=", 1)
    return key.lstrip("+~"), value.strip().strip("'\"")


def read_overrides(job_dir: Path) -> dict[str, str]:
    """The job's task overrides (``.hydra/overrides.yaml``) as {key: value string}, in command-line order."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    try:
        import yaml

        items = yaml.safe_load(path.read_text()) or []
    except Exception:  # noqa: BLE001 - fall back to line parsing of a hand-edited file
        items = path.read_text().splitlines()
    out = {}
    for item in items:
        parsed = _parse_override(str(item))
        if parsed:
            out[parsed[0]] = parsed[1]
    return out


def _job_sort_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders under a multirun folder: every folder with a ``.hydra/overrides.yaml`` (not the sweep root)."""
    sweep_dir = Path(sweep_dir)
    jobs = [p.parent.parent for p in sweep_dir.rglob("overrides.yaml") if p.parent.name == ".hydra"]
    return sorted({j for j in jobs if j != sweep_dir}, key=_job_sort_key)


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One record per job: ``{"job", "status", "error", "overrides": {...}, "metrics": {...}, "tags": [...],
    "objective"}`` (objective: the Optuna objective note of the job's metrics.json, "" outside a search)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"multirun folder not found: {sweep_dir}")
    records = []
    for job in find_jobs(sweep_dir):
        rec: dict[str, Any] = {"job": str(job.relative_to(sweep_dir)), "status": "missing", "error": "",
                               "overrides": read_overrides(job), "metrics": {}, "tags": [], "objective": ""}
        failed, metrics = job / "FAILED.json", job / "metrics.json"
        if failed.is_file():
            info = json.loads(failed.read_text())
            rec["status"] = "failed"
            rec["error"] = f"{info.get('type', 'Error')}: {info.get('message', '')}"[:120]
        elif metrics.is_file():
            rec["status"] = "ok"
            loaded = json.loads(metrics.read_text())
            rec["metrics"] = {k: v for k, v in loaded.items() if isinstance(v, (int, float))}
            rec["objective"] = str(loaded.get("objective", ""))  # set by an optimising sweeper's jobs
        else:
            rec["error"] = "no metrics.json (still running, killed, or failed outside the task)"
        cfg = job / "config_resolved.yaml"
        if cfg.is_file():
            try:
                import yaml

                rec["tags"] = list((yaml.safe_load(cfg.read_text()) or {}).get("tags") or [])
            except Exception:  # noqa: BLE001
                pass
        records.append(rec)
    if not records:
        raise FileNotFoundError(f"no Hydra job folders (with .hydra/overrides.yaml) under {sweep_dir}")
    return records


def varying_params(records: Sequence[dict]) -> list[str]:
    """Override keys whose value differs between jobs (the swept parameters), in first-seen order."""
    keys = list(dict.fromkeys(k for r in records for k in r["overrides"]))
    return [k for k in keys if len({r["overrides"].get(k) for r in records}) > 1]


def choose_metrics(records: Sequence[dict], wanted: Optional[str]) -> list[str]:
    present = list(dict.fromkeys(k for r in records for k in r["metrics"]))
    if wanted and wanted != "main":
        if wanted == "all":
            return [k for k in present if not k.startswith("time/")]
        out = []
        for w in (s.strip() for s in wanted.split(",") if s.strip()):
            matches = [k for k in present if k == w or k.startswith(w + "_") or k.startswith(w + "@")]
            out.extend(matches or [w])
        return list(dict.fromkeys(out))
    main = [k for m in MAIN_METRICS for k in present if k == m or k == m + "_gtgated"]
    return main or [k for k in present if not k.startswith("time/")][:8]


def build_table(records: Sequence[dict], metrics: Sequence[str], params: Sequence[str],
                sort_by: Optional[str] = None) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        row: dict[str, Any] = {"job": r["job"], "status": r["status"]}
        for p in params:
            row[p] = r["overrides"].get(p, "")
        for m in metrics:
            row[m] = r["metrics"].get(m, float("nan"))
        if r["error"]:
            row["error"] = r["error"]
        rows.append(row)
    if sort_by:
        def key(row):
            v = row.get(sort_by, float("nan"))
            return (not isinstance(v, (int, float)) or math.isnan(v), -(v if isinstance(v, (int, float)) else 0))
        rows.sort(key=key)
    return rows


def round_sig(v: float, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits, without an exponent in the usual range (0.9361, 21.35, 1234)."""
    if math.isnan(v) or math.isinf(v):
        return str(v)
    text = f"{v:.{digits}g}"
    if "e" in text and 1e-4 <= abs(v) < 1e15:
        text = f"{float(text):f}".rstrip("0").rstrip(".")
    return text


def _cell(v: Any) -> str:
    """A table cell: numbers (also numeric parameter values such as Optuna's 15-digit floats) to 4 significant
    digits; integers and other strings as they are."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return round_sig(v)
    if isinstance(v, str) and re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", v.strip()):
        return round_sig(float(v))
    return str(v)


def _columns(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def format_terminal(rows: Sequence[dict]) -> str:
    cols = _columns(rows)
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def format_markdown(rows: Sequence[dict]) -> str:
    cols = _columns(rows)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c, "")).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out)


def format_csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _num(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def is_grid(records: Sequence[dict], params: Sequence[str], sweep_dir: Optional[Path] = None) -> bool:
    """True for a grid sweep (``-m a=1,2 b=x,y``): every combination of the swept values at most once, and at least
    half of the combinations there (a few jobs may be missing or extra). False for an Optuna sweep
    (``optimization_results.yaml`` in ``sweep_dir``) and other sweeps where every job has its own values."""
    if sweep_dir is not None and (Path(sweep_dir) / "optimization_results.yaml").is_file():
        return False
    if not params:
        return True
    combos = [tuple(r["overrides"].get(p) for p in params) for r in records]
    size = math.prod(len({c[i] for c in combos}) for i in range(len(params)))
    return len(set(combos)) == len(combos) and 2 * len(combos) >= size


def plot(records: Sequence[dict], x: str, ys: Sequence[str], out_path: Path, title: str = "") -> Optional[Path]:
    """Metric(s) against one swept parameter; the other swept parameters split the lines/bars (grid sweeps)."""
    from tao_lab.report.plots import metric_vs_param_png

    ok = [r for r in records if r["status"] == "ok" and x in r["overrides"]]
    if not ok:
        return None
    others = [p for p in varying_params(ok) if p != x]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        label = ", ".join(f"{p}={_cell(r['overrides'].get(p, ''))}" for p in others)
        groups.setdefault(label, []).append(r)
    xs = list(dict.fromkeys(r["overrides"][x] for r in ok))
    if all(isinstance(_num(v), float) for v in xs):
        xs.sort(key=float)
    series = {}
    for label, rs in groups.items():
        by_x = {r["overrides"][x]: r for r in rs}
        for y in ys:
            name = y + (f" [{label}]" if label else "")
            series[name] = [by_x[v]["metrics"].get(y, float("nan")) if v in by_x else float("nan") for v in xs]
    png = metric_vs_param_png([_num(v) for v in xs], series, x, title=title)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(png)
    return out_path


def _trial_number(record: dict, index: int) -> float:
    job = Path(record["job"]).name
    return float(job) if job.isdigit() else float(index)


def scatter(records: Sequence[dict], params: Sequence[str], y: str, out_path: Path,
            color: Optional[str] = None, title: str = "") -> Optional[Path]:
    """One panel per swept parameter: ``y`` against the parameter, one point per job, coloured by the trial number
    (or by the parameter ``color``); for sweeps that are not grids (Optuna, continuous parameters)."""
    from tao_lab.report.plots import params_scatter_png

    ok = [r for r in records if r["status"] == "ok" and isinstance(r["metrics"].get(y), (int, float))]
    if not ok or not params:
        return None
    panels = [(p, [_num(r["overrides"].get(p, "")) for r in ok]) for p in params]
    if color:
        colours, colour_name = [_num(r["overrides"].get(color, "")) for r in ok], color
    else:
        colours, colour_name = [_trial_number(r, i) for i, r in enumerate(ok)], "trial"
    png = params_scatter_png(panels, [r["metrics"][y] for r in ok], colours, colour_name, y,
                             title=title or f"{y} per swept parameter ({len(ok)} jobs)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(png)
    return out_path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@.]+", "_", text).strip("_")


def objective_line(records: Sequence[dict]) -> str:
    """"objective: <metric>: objective uses test labels" (or its training-only wording) for the jobs of an
    optimising sweep, "" otherwise."""
    notes = list(dict.fromkeys(r.get("objective", "") for r in records if r.get("objective")))
    return f"objective: {'; '.join(notes)}" if notes else ""


def compare(sweep_dir: Path, metrics: Optional[str] = None, x: Optional[str] = None, y: Optional[str] = None,
            out_dir: Optional[Path] = None, sort_by: Optional[str] = None, quiet: bool = False,
            color: Optional[str] = None) -> dict[str, Any]:
    """Collects the sweep, writes compare.csv / compare.md and the plots, prints the table; returns paths/rows."""
    sweep_dir = Path(sweep_dir)
    records = collect(sweep_dir)
    params = varying_params(records)
    if not params:  # a single job or identical overrides: still show what was set
        params = list(dict.fromkeys(k for r in records for k in r["overrides"]))
    cols = choose_metrics(records, metrics)
    rows = build_table(records, cols, params, sort_by)
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    objective = objective_line(records)
    by_job = {r["job"]: r.get("objective", "") for r in records}
    csv_rows = [{**row, "objective": by_job.get(row["job"], "")} for row in rows] if objective else rows
    (out_dir / "compare.csv").write_text(format_csv(csv_rows))
    md = format_markdown(rows)
    (out_dir / "compare.md").write_text((f"**{objective}**\n\n" if objective else "") + md + "\n")
    result: dict[str, Any] = {"rows": rows, "csv": out_dir / "compare.csv", "markdown": out_dir / "compare.md",
                              "plot": None, "plots": [], "params": params, "metrics": cols,
                              "objective": objective, "grid": is_grid(records, params, sweep_dir)}
    x = x or (params[0] if params else None)
    if x:
        default_ys = cols[:4]
        if not y and objective:  # the sweep's objective first (its note starts with the metric's key)
            default_ys = list(dict.fromkeys([r["objective"].split(":")[0] for r in records if r.get("objective")]
                                            + cols))[:4]
        ys = [s.strip() for s in (y.split(",") if y else default_ys) if s.strip()]
        ys = [m for m in (choose_metrics(records, ",".join(ys))) if any(m in r["metrics"] for r in records)] or ys
        if result["grid"]:
            plots = [plot(records, x, ys, out_dir / f"compare_{_slug(ys[0])}_vs_{_slug(x)}.png",
                          title=f"{', '.join(ys)} vs {x}")]
        else:
            panels = [x] if x not in params else [x] + [p for p in params if p != x]
            plots = [scatter(records, panels, m, out_dir / f"compare_{_slug(m)}_scatter.png", color) for m in ys]
        result["plots"] = [p for p in plots if p is not None]
        result["plot"] = result["plots"][0] if result["plots"] else None
    from tao_lab.optuna_study import STUDY_FILE

    if (sweep_dir / STUDY_FILE).is_file():  # Optuna's own figures from the saved study
        from tao_lab.optuna_study import write_figures

        result["optuna_figures"] = write_figures(sweep_dir, out_dir)
        result["plots"] += result["optuna_figures"]
    if not quiet:
        n_failed = sum(r["status"] != "ok" for r in records)
        print(f"{len(records)} jobs in {sweep_dir} ({n_failed} failed or incomplete)")
        if objective:
            print(objective)
        print(format_terminal(rows))
        print(f"\nwritten: {result['csv']}\n         {result['markdown']}")
        for path in result["plots"]:
            print(f"         {path}")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tao_lab.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a Hydra multirun folder (outputs/<task>/multiruns/<time>)")
    ap.add_argument("--metrics", default=None,
                    help="comma-separated metric keys or prefixes, 'main' (default) or 'all'")
    ap.add_argument("--x", default=None, help="swept parameter for the plot's x axis (default: the first swept one)")
    ap.add_argument("--y", default=None, help="comma-separated metrics to plot (default: the first 4 columns)")
    ap.add_argument("--sort", default=None, help="sort rows by this metric, best first")
    ap.add_argument("--color", default=None,
                    help="scatter plots (non-grid sweeps): colour by this swept parameter (default: trial number)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep folder)")
    args = ap.parse_args(argv)
    try:
        compare(args.sweep_dir, args.metrics, args.x, args.y, args.out, args.sort, color=args.color)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
