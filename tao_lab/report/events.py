"""The report's opening section: the event list, the score timeline and the annotated video in the page.

Choosing an event (its row or its time) seeks the video to the event's start; the script is a few lines inline,
so the report stays one self-contained file next to ``annotated.mp4``.
"""
from __future__ import annotations

import html
from typing import Optional

_SCRIPT = ("<script>function seekTo(t){var v=document.getElementById('annotated');if(!v)return;"
           "v.currentTime=Math.max(0,t-%.3f);v.scrollIntoView({behavior:'smooth',block:'center'});v.play();}"
           "</script>")


def events_html(events: list[dict], crops: dict, timeline_png: Optional[bytes], fps: float,
                video: Optional[str] = "annotated.mp4", max_rows: int = 500, video_offset_s: float = 0.0) -> str:
    """HTML of the lead section. events: ``Event.to_dict`` rows; crops: {tracks.csv row: BGR crop} of the events'
    top objects (looked up by the objects' ``row`` when present); video: path relative to the report or None;
    video_offset_s: stream time of the video's first frame (the online video starts after the warm-up)."""
    from tao_lab.report.html import image_data_uri, png_data_uri

    parts = [f"<h2>Events ({len(events)})</h2>"]
    if not events:
        parts.append("<p class='sub'>No frame was flagged by the alarm.</p>")
    else:
        parts.append("<p class='sub'>Runs of flagged frames. Choose an event to play it in the video below.</p>")
        head = "".join(f"<th>{c}</th>" for c in ("#", "start", "end", "duration", "peak score", "top objects", ""))
        rows = []
        for ev in events[:max_rows]:
            t0 = max(0.0, float(ev["start_s"]) - 0.5)
            objs = ", ".join(f"track {o['track_id']}" + (f" (class {o['cls']})" if o.get("cls") else "") +
                             f" {o['score']:.3g}" + (" fragment" if o.get("fragment") else "")
                             for o in ev.get("objects", []))
            crop = ""
            top = ev.get("objects", [])[:1]
            if top and top[0].get("row") in crops:
                crop = f"<img style='height:64px' src='{image_data_uri(crops[top[0]['row']])}' alt='object'>"
            rows.append(f"<tr style='cursor:pointer' onclick='seekTo({t0:.3f})'><td class='num'>{ev['event']}</td>"
                        f"<td class='num'><a href='#annotated' onclick='seekTo({t0:.3f});return false'>"
                        f"{ev['start_s']:.2f} s</a></td><td class='num'>{ev['end_s']:.2f} s</td>"
                        f"<td class='num'>{ev['duration_s']:.2f} s</td><td class='num'>{ev['peak_score']:.4g}</td>"
                        f"<td>{html.escape(objs)}</td><td>{crop}</td></tr>")
        if len(events) > max_rows:
            rows.append(f"<tr><td colspan='7' class='sub'>... {len(events) - max_rows} more in events.csv</td></tr>")
        parts.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    if timeline_png is not None:
        parts.append(f"<h2>Score timeline</h2><img class='plot' src='{png_data_uri(timeline_png)}' alt='timeline'>")
    if video:
        parts.append(f"<h2>Annotated video</h2><video id='annotated' controls preload='metadata' "
                     f"style='width:min(100%,720px)' src='{html.escape(video)}'></video>"
                     f"<div class='sub'>{html.escape(video)} next to this report</div>")
    parts.append(_SCRIPT % float(video_offset_s))
    return "\n".join(parts)
