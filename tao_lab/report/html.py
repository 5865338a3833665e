"""A self-contained HTML report (one file, images embedded as base64; no network; scripts only inline, in a
``lead`` section that needs them, e.g. the event list seeking the video)."""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222;
     background:#fafafa}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}
.note{background:#fff4d6;border:1px solid #e6c65c;padding:8px 12px;border-radius:4px;font-size:14px;margin:10px 0}
.oracle{background:#fde2e1;border-color:#d9534f}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;font-size:12px;text-align:center}
.card img{display:block;margin:0 auto 4px auto;image-rendering:pixelated}
pre{background:#fff;border:1px solid #ddd;padding:10px;font-size:12px;overflow:auto;max-height:480px}
img.plot{max-width:100%;border:1px solid #ddd;background:#fff}
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_data_uri(image_bgr: np.ndarray, quality: int = 90) -> str:
    """A BGR uint8 image as an embedded JPEG data URI."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("could not encode image")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(rows: Sequence[dict], columns: Optional[Sequence[str]] = None) -> str:
    if not rows:
        return "<p class='sub'>(none)</p>"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cls = " class='num'" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(path: os.PathLike, title: str, subtitle: str = "", notes: Sequence[str] = (),
                 summary: Optional[dict] = None, sections: Sequence[tuple[str, str]] = (),
                 plots: Sequence[tuple[str, bytes]] = (), gallery: Sequence[tuple[np.ndarray, str]] = (),
                 gallery_title: str = "Most anomalous objects", tables: Sequence[tuple[str, list[dict]]] = (),
                 config_text: str = "", oracle: bool = False, lead: str = "") -> Path:
    """Writes the report atomically (``<path>.tmp`` then rename) and returns its path.

    notes: highlighted lines (e.g. how the scorer was fitted); plots: (caption, PNG bytes); gallery: (BGR image,
    caption); tables: (title, rows); sections: (title, raw HTML) placed after the plots; config_text: the
    resolved YAML config shown at the end; lead: raw HTML placed right after the notes, before the summary (what
    the reader needs first, e.g. the events).
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<div class='sub'>{html.escape(subtitle)}</div>")
    for note in notes:
        parts.append(f"<div class='note{' oracle' if oracle else ''}'>{html.escape(note)}</div>")
    if lead:
        parts.append(lead)
    if summary:
        parts.append("<h2>Summary</h2>")
        parts.append(table_html([{"quantity": k, "value": v} for k, v in summary.items()]))
    for caption, png in plots:
        parts.append(f"<h2>{html.escape(caption)}</h2><img class='plot' src='{png_data_uri(png)}' "
                     f"alt='{html.escape(caption)}'>")
    for sec_title, body in sections:
        parts.append(f"<h2>{html.escape(sec_title)}</h2>{body}")
    if gallery:
        parts.append(f"<h2>{html.escape(gallery_title)}</h2><div class='gallery'>")
        for img, caption in gallery:
            parts.append(f"<div class='card'><img src='{image_data_uri(img)}' alt='object'>"
                         f"{html.escape(caption).replace(chr(10), '<br>')}</div>")
        parts.append("</div>")
    for tab_title, rows in tables:
        parts.append(f"<h2>{html.escape(tab_title)}</h2>{table_html(rows)}")
    if config_text:
        parts.append(f"<h2>Configuration used</h2><pre>{html.escape(config_text)}</pre>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
