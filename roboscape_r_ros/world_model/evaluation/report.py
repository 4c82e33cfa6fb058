"""evaluate-wm's report.md and its plots, from the metrics alone (metrics.json before `json_safe`:
horizons keyed by int, NaN where not measured)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from roboscape_r_ros.data.lerobot import KINDS
from roboscape_r_ros.markdown import MISSING, number, percent, table
from roboscape_r_ros.world_model.evaluation.metrics import FAILURE_KINDS, PSNR_CAP, Metrics, Roc
from roboscape_r_ros.world_model.media import line_plot
from roboscape_r_ros.world_model.rollout import SHEET_GIF, SHEET_PNG

PSNR_PLOT, ROC_PLOT = "psnr_vs_horizon.png", "done_roc.png"


def headline_horizon(horizons: Mapping[int, Any]) -> int | None:
    """The horizon of the headline: 8 steps, else the longest scored (None without any)."""
    return 8 if 8 in horizons else (max(horizons) if horizons else None)


def write_plots(out: Path, open_loop: Metrics, roc: Roc | None) -> list[str]:
    """PSNR against the horizon, and the done head's ROC on real frames (with one); their file names."""
    rows = open_loop["horizons"]
    hs = sorted(rows)
    series: dict[str, tuple[Sequence[float], Sequence[float]]] = {
        "world model": (hs, [rows[h]["psnr"] for h in hs]),
        "copy last frame": (hs, [rows[h]["psnr_copy_last"] for h in hs]),
        "shuffled actions": (hs, [rows[h]["psnr_shuffled_actions"] for h in hs]),
        "tokenizer ceiling": (hs, [rows[h]["psnr_tokenizer_ceiling"] for h in hs]),
    }
    line_plot(out / PSNR_PLOT, series, "open-loop PSNR on held-out episodes", "horizon (world-model steps)", "PSNR dB")
    files = [PSNR_PLOT]
    if roc is not None:
        fpr, tpr = roc
        line_plot(
            out / ROC_PLOT,
            {"done head (real frames)": (fpr.tolist(), tpr.tolist())},
            "done head ROC, held-out frames (label >= 0.5 positive)",
            "false-positive rate",
            "true-positive rate",
            diagonal=True,
        )
        files.append(ROC_PLOT)
    return files


def markdown(metrics: Metrics, plots: list[str], gif: Path | None) -> str:
    """report.md: the headline, then each part of the evaluation, then its pictures."""
    m = metrics
    lines = [
        f"# World model evaluation: `{m['run']}`",
        "",
        f"Checkpoint `{m['checkpoint']}`; dataset `{m['dataset']}`; scored: {m['episodes_scored']} "
        f"({m['held_out_kinds']}). Model: {m['model']['params_m']:.2f}M parameters, {m['model']['image_size']}px "
        f"frames, {m['model']['context_length'] - 1} context frames, one step = {m['model']['frame_skip']} control "
        f"steps, {m['model']['decode_steps']} MaskGIT decoding steps per frame in {m['model']['precision']}. "
        "Perceptual distance: "
        f"**{m['perceptual_backend']}** ({m['perceptual_note']}). "
        f"Evaluation took {m['seconds']:.0f} s on {m['device']}.",
        "",
        *headline_section(m),
        *open_loop_section(m),
        *done_head_section(m),
        *goal_model_section(m),
        *controllability_section(m["controllability"]),
        "## Pictures",
        "",
        *[f"![{p}]({p})" for p in plots],
    ]
    if gif is not None:
        lines += ["", f"![real | dreamed | goal]({gif.name})"]
    lines += [
        "",
        "Definitions: module docstring of `roboscape_r_ros/commands/evaluate_wm.py`. Per-image PSNR is "
        f"capped at {PSNR_CAP:g} dB.",
        "",
    ]
    return "\n".join(lines)


def headline_section(m: Metrics) -> list[str]:
    ol, done, goal = m["open_loop"]["horizons"], m["done_head"], m["goal_model"]
    rows = []
    h = headline_horizon(ol)
    if h is not None:
        r = ol[h]
        rows += [
            [
                f"{h}-step open-loop PSNR gain over copy-last-frame",
                f"{number(r['psnr_gain'])} dB ({number(r['psnr'])} vs {number(r['psnr_copy_last'])})",
            ],
            [f"{h}-step controllability dPSNR (true - shuffled actions)", f"{number(r['dpsnr'])} dB"],
        ]
    rows.append(["done AUROC, real held-out frames (label >= 0.5 positive)", number(done["auroc"], 3)])
    for kind in ("failed", "random"):
        f = done[f"fpr_{kind}"]
        rows.append(
            [
                f"done false-positive rate (p >= {done['threshold']}), {kind} episodes: frames / episodes",
                f"{number(f['frame_fpr'], 3)} / {number(f['episode_fpr'], 2)} ({f['episodes']} episodes)",
            ]
        )
    if goal.get("episodes"):
        rows.append(
            [
                f"goal model: {m['perceptual_backend']} distance to the true final frame (lower is better)",
                f"{number(goal['perceptual_goal'], 3)} vs task mean final frame "
                f"{number(goal['perceptual_task_mean_final'], 3)} "
                f"(first frame {number(goal['perceptual_first_frame'], 3)})",
            ]
        )
    return ["## Headline", "", *table(["metric", "value"], rows)]


def open_loop_section(m: Metrics) -> list[str]:
    ol, backend = m["open_loop"]["horizons"], m["perceptual_backend"]
    header = ["h", "windows (episodes)", "PSNR", "copy-last", "gain", "ceiling", "shuffled", "dPSNR", "SSIM / copy"]
    header += [f"{backend} / copy", "PSNR changed px / copy", "changed px"]
    rows = [
        [
            h,
            f"{r['windows']} ({r['episodes']})",
            number(r["psnr"]),
            number(r["psnr_copy_last"]),
            number(r["psnr_gain"]),
            number(r["psnr_tokenizer_ceiling"]),
            number(r["psnr_shuffled_actions"]),
            number(r["dpsnr"]),
            f"{number(r['ssim'], 3)} / {number(r['ssim_copy_last'], 3)}",
            f"{number(r['perceptual'], 3)} / {number(r['perceptual_copy_last'], 3)}",
            f"{number(r['psnr_changed'])} / {number(r['psnr_changed_copy_last'])}",
            percent(r["changed_pixel_share"], 1),
        ]
        for h, r in sorted(ol.items())
    ]
    cr = m["change_rates"]
    kinds = [k for k in KINDS if any(k in ol[h]["by_kind"] for h in ol)]
    by_kind = []
    for h in sorted(ol):
        cells = []
        for kind in kinds:
            b = ol[h]["by_kind"].get(kind)
            cells.append(f"{number(b['psnr_gain'])} / {number(b['dpsnr'])} (n={b['windows']})" if b else MISSING)
        by_kind.append([h, *cells])
    return [
        "",
        "## Open-loop rollouts",
        "",
        "Frame h steps ahead of the last real context frame; means over windows. `ceiling`: the tokenizer's "
        "reconstruction of the true frame. Changed pixels: where the true frame differs from the last context "
        f"frame by more than {m['config']['change_threshold']}/255 in a channel.",
        "",
        *table(header, rows),
        "",
        f"Change between consecutive world-model frames ({cr['frame_pairs']} pairs): token ids the dynamics "
        f"reads {percent(cr['tokens'], 1)} (token_hold_threshold {cr['token_hold_threshold']}; each frame's "
        f"own ids {percent(cr['tokens_per_frame'], 1)}), 8x8 patches {percent(cr['patches'], 1)}, pixels "
        f"{percent(cr['pixels'], 1)} (changed: a channel by more than {cr['change_threshold']}/255).",
        "",
        "By episode kind (PSNR gain over copy-last / dPSNR, dB):",
        "",
        *table(["h", *kinds], by_kind),
    ]


def done_head_section(m: Metrics) -> list[str]:
    done, dd = m["done_head"], m["open_loop"]["done_on_dreamed_frames"]
    rows = []
    for kind in FAILURE_KINDS:
        f = done[f"fpr_{kind}"]
        rows.append(
            [
                f"{kind} ({f['episodes']})",
                f["frames"],
                number(f["frame_fpr"], 4),
                number(f["episode_fpr"], 2),
                number(f["max_probability"], 3),
            ]
        )
    by_task = ", ".join(
        f"{task} {number(t['fired'], 2)} of {t['episodes']}"
        for task, t in done["successful_episodes_fired_near_end_by_task"].items()
    )
    return [
        "",
        "## Done head",
        "",
        f"Real held-out frames: {done['frames']} ({done['positives']} with label >= 0.5). AUROC "
        f"{number(done['auroc'], 3)}, accuracy at p = 0.5 {number(done['accuracy_at_0.5'], 3)}; at the done "
        f"threshold {done['threshold']}: true-positive rate {number(done['tpr_at_threshold'], 3)}, false-positive "
        f"rate on label < 0.5 frames {number(done['fpr_at_threshold_negatives'], 4)}.",
        "",
        *table(["episodes", "frames", "frames with p >= threshold", "episodes where done fires", "max p"], rows),
        "",
        f"Successful held-out episodes where done fires on a label >= 0.5 frame: "
        f"{number(done['successful_episodes_fired_near_end'], 2)}; where it fires earlier (label < 0.5): "
        f"{number(done['successful_episodes_fired_early'], 2)}. By task (near the end): "
        f"{by_task or 'no successful episode'}.",
        f"On the open-loop rollouts' dreamed frames ({dd['frames']} frames, {dd['positives']} positive): "
        f"AUROC {number(dd['auroc'], 3)}.",
        "",
    ]


def goal_model_section(m: Metrics) -> list[str]:
    goal, backend = m["goal_model"], m["perceptual_backend"]
    if not goal.get("episodes"):
        return [
            "## Goal model",
            "",
            "None: the run trained no goal stage (model.train.goal_steps=0)."
            if not goal["trained"]
            else "Not scored: no scored episode is a success.",
            "",
        ]
    baselines = [
        ["goal model", number(goal["perceptual_goal"], 3), number(goal["psnr_goal"])],
        [
            f"task mean final frame ({goal['task_mean_final_source']})",
            number(goal["perceptual_task_mean_final"], 3),
            number(goal["psnr_task_mean_final"]),
        ],
        ["first frame", number(goal["perceptual_first_frame"], 3), number(goal["psnr_first_frame"])],
    ]
    by_task = [
        [
            task,
            t["episodes"],
            number(t["perceptual_goal"], 3),
            number(t["perceptual_task_mean_final"], 3),
            percent(t["fired"]),
        ]
        for task, t in goal["by_task"].items()
    ]
    return [
        "## Goal model",
        "",
        f"{goal['episodes']} successful held-out episodes, imagined from frame 0 and the instruction for up to "
        f"{goal['max_steps']} steps. Done fired in {percent(goal['fired'])} of them, at control step "
        f"{number(goal['goal_step_control_steps'], 0)} on average (true first success: frame "
        f"{number(goal['true_success_frame'], 0)}).",
        "",
        *table(["goal frame vs true final frame", f"{backend} distance", "PSNR"], baselines),
        "",
        f"The goal frame is closer than the task's mean final frame in "
        f"{percent(goal['goal_closer_than_mean_final'])} of episodes.",
        "",
        *table(["task", "episodes", "goal model", "task mean final", "done fired"], by_task),
        "",
    ]


def controllability_section(sheet: Metrics) -> list[str]:
    """The controllability sheet's section: the held actions' divergences and the sheet's pictures."""
    if not sheet["contexts"]:
        return ["## Controllability", "", "No scored episode holds a context window.", ""]
    contexts = ", ".join(f"{c['task']} episode {c['episode']} from frame {c['start']}" for c in sheet["contexts"])
    rows = [[label, number(v["divergence"]), number(v["change"])] for label, v in sheet["held_actions"].items()]
    return [
        "## Controllability",
        "",
        f"From real contexts ({contexts}) the model imagines {sheet['steps']} steps ({sheet['control_steps']} "
        "control steps) under each held action. Divergence: mean absolute pixel difference (0-255) of the final "
        "dreamed frame from the other held actions' final frames (near 0: the model ignores the action); "
        f"change: from the last context frame. Mean over pairs: **{number(sheet['mean_pairwise_divergence'])}**.",
        "",
        *table(["held action", "divergence", "change"], rows),
        "",
        f"![controllability]({SHEET_PNG})",
        "",
        f"![held actions side by side]({SHEET_GIF})",
        "",
    ]
