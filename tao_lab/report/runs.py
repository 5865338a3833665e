"""The report.html of an ``infer.py`` run, offline (:func:`write_infer_report`) and online
(:func:`write_online_report`); written into the run's outputs by :class:`tao_lab.outputs.OutputSink`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from tao_lab.scene_check import DESCRIPTION as SCENE_CHECK_DESCRIPTION
from tao_lab.types import Clip


#: infer's report: the scene check table (tao_lab.scene_check), with how to read it
SCENE_CHECK_TITLE = (f"Scene check: {SCENE_CHECK_DESCRIPTION}; a share far above the fit window's says that group "
                     f"fires on ordinary objects of this video")


def write_infer_report(path: Path, cfg, clip: Clip, summary: dict, frame_scores: np.ndarray, alarm_tau: float,
                       flagged: np.ndarray, gallery, fit_note: str, key_frame=None, event_crops=None) -> Path:
    """report.html: opens with the events (click one to seek the annotated video) and the score timeline."""
    from tao_lab.report.events import events_html
    from tao_lab.report.html import image_data_uri, write_report
    from tao_lab.report.plots import timeline_png
    from tao_lab.run_info import resolved_config

    plot = timeline_png(frame_scores, tau=alarm_tau, fps=clip.fps, flagged=flagged,
                        title=f"frame anomaly score of {clip.clip_id} (red: flagged by the alarm)")
    config_text = OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg)))
    shown = {k: v for k, v in summary.items() if k not in ("scorer", "files", "events", "alarm", "scene_check")}
    check = [{"group": g, "whole video": f"{100 * v['video']:.2f}%", "fit window": f"{100 * v['fit_window']:.2f}%"}
             for g, v in (summary.get("scene_check") or {}).items()]
    a = summary["alarm"]
    alarm_note = (f"Alarm: a frame is flagged when its score exceeds {a['threshold']:.4g}, fitted for a target "
                  f"false-alarm rate of {a['target_false_alarm_rate']:g} on normal frames by {a['method']} on "
                  f"{a['held_out_fit_frames']} held-out fit frames ({a['calibration']}); rate reached there: "
                  f"{a['false_alarm_rate_on_held_out_fit_frames']:.4g}. Flagged inside the fit window: "
                  f"{summary['flagged_in_fit_window']} of {summary['fit_window_frames']}. The object threshold "
                  f"tau={summary['prompt_threshold_tau']:g} only chooses which objects are segmented.")
    lead = events_html(summary["events"], event_crops or {}, plot, clip.fps,
                       video="annotated.mp4" if cfg.get("write_video", True) else None)
    sections = []  # annotated.mp4 (H.264, next to report.html) is already in the lead, where events seek it
    if key_frame is not None:
        img = (f"<img class='plot' style='width:min(100%,720px)' src='{image_data_uri(key_frame[0])}' alt='frame'>"
               f"<div class='sub'>{key_frame[1]}</div>")
        sections.append(("Most anomalous frame (as in annotated.mp4)", img))
    return write_report(path, title=f"tao_lab inference: {clip.clip_id}",
                        subtitle=f"input {cfg.get('input')} | {clip.num_frames} frames at {clip.fps:g} fps | "
                                 f"{clip.width}x{clip.height}",
                        notes=[fit_note, alarm_note, "Outputs next to this file: annotated.mp4, events.csv, masks/, "
                                                     "objects.csv, tracks.csv, segments.csv, frame_scores.csv, prompts.csv."],
                        lead=lead, summary=shown, gallery=gallery, sections=sections,
                        gallery_title="Most anomalous objects (highest-scored frame of each top track; fragments "
                                      "only after every real object)",
                        config_text=config_text, tables=[(SCENE_CHECK_TITLE, check)] if check else ())


def write_online_report(out: Path, cfg, summary: dict) -> Path:
    """report.html of an online run: events (seeking annotated.mp4), the score timeline, gaps, summary."""
    from tao_lab.report.events import events_html
    from tao_lab.report.html import write_report
    from tao_lab.formats import pooled_frame_scores
    from tao_lab.report.plots import timeline_png

    scores, flags, step = pooled_frame_scores(out / "frame_scores.csv")
    a = summary.get("alarm") or {}
    plot = timeline_png(scores, tau=a.get("threshold"), fps=summary["fps"] / step, flagged=flags,
                        title="frame anomaly score after the warm-up (red: flagged by the alarm)") \
        if len(scores) else None
    # the video starts after the warm-up, event times are stream times
    lead = events_html(summary["events"], {}, plot, summary["fps"],
                       video="annotated.mp4" if (out / "annotated.mp4").exists() else None,
                       video_offset_s=summary["warmup_frames"] / max(summary["fps"], 1e-6))
    notes = [summary.get("scorer", ""), f"Stopped: {summary['stopped']}."]
    if a:
        notes.append(f"Alarm: frame score above {a['threshold']:.4g}, fitted for a target false-alarm rate of "
                     f"{a['target_false_alarm_rate']:g} ({a['calibration']}); "
                     f"{a['false_alarm_rate_on_held_out_fit_frames']:.4g} reached on {a['held_out_fit_frames']} "
                     f"held-out warm-up frames.")
    shown = {k: v for k, v in summary.items() if k not in ("events", "gaps", "alarm", "scorer", "latency",
                                                           "stage_seconds")}
    shown.update({f"latency_{k}": v for k, v in summary.get("latency", {}).items()})
    return write_report(out / "report.html", title=f"tao_lab online: {summary['input']}", notes=notes, lead=lead,
                        summary=shown, tables=[("Stream gaps (network drops)", summary["gaps"])])
