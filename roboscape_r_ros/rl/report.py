"""Success statistics of evaluation episodes and their markdown report.

Success rates carry Wilson score intervals (95% by default; sound at 0% and 100% and for few
episodes, unlike the normal approximation). Relative improvement is reported as the paper does
("+37.5% on average over baselines, out of domain"): for each baseline b, (S_ours - S_b) / S_b
on the pooled out-of-domain success rate, then the mean over baselines. A baseline below
``min_baseline`` success makes that ratio meaningless: it is reported as n/a and left out of the
mean, and the absolute rates with their intervals come first. Whether our policy beats a baseline
is tested on the matched episodes (same task, scene, seed and episode: the same reset state): an
exact McNemar test, i.e. a two-sided binomial test of the episodes only one of the two solved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from roboscape_r_ros.markdown import MISSING, percent, table
from roboscape_r_ros.stats import mcnemar_p, wilson_interval

IN_DOMAIN = "in-domain"


@dataclass(frozen=True)
class EpisodeResult:
    actor: str
    task: str
    scene: str  # IN_DOMAIN or the name of an out-of-domain scene
    seed: int  # evaluation seed
    episode: int  # episode number under that seed
    reset_seed: int  # the env reset seed (same for every actor: paired comparison)
    success: bool
    steps: int  # control steps until success or the step cap

    @property
    def in_domain(self) -> bool:
        return self.scene == IN_DOMAIN


@dataclass(frozen=True)
class Rate:
    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    def __str__(self) -> str:
        if not self.n:
            return MISSING
        return f"{percent(self.value)} [{100 * self.low:.0f}, {100 * self.high:.0f}] n={self.n}"


def rate(results: Iterable[EpisodeResult]) -> Rate:
    outcomes = [r.success for r in results]
    successes = sum(outcomes)
    return Rate(successes, len(outcomes), *wilson_interval(successes, len(outcomes)))


def relative_improvement(ours: float, baseline: float, min_baseline: float = 0.05) -> float | None:
    """(ours - baseline) / baseline, or None when the baseline is under ``min_baseline``."""
    if not baseline >= min_baseline:
        return None
    return (ours - baseline) / baseline


def mean_relative_improvement(
    ours: float, baselines: dict[str, float], min_baseline: float = 0.05
) -> tuple[float | None, dict[str, float | None]]:
    """The paper's headline number: the mean over baselines of the relative gain (None if none is defined)."""
    per_baseline = {name: relative_improvement(ours, b, min_baseline) for name, b in baselines.items()}
    defined = [g for g in per_baseline.values() if g is not None]
    return (float(np.mean(defined)) if defined else None), per_baseline


@dataclass(frozen=True)
class PairedTest:
    ours_only: int  # matched episodes that only our policy solved
    baseline_only: int  # ... that only the baseline solved
    p_value: float  # exact McNemar (two-sided binomial on the discordant pairs); 1.0 without any


def mcnemar(ours: Sequence[EpisodeResult], baseline: Sequence[EpisodeResult]) -> PairedTest:
    """Paired comparison of two actors' results on the episodes both ran (matched by their identity)."""
    key = lambda r: (r.task, r.scene, r.seed, r.episode)  # noqa: E731
    theirs = {key(r): r.success for r in baseline}
    pairs = [(r.success, theirs[key(r)]) for r in ours if key(r) in theirs]
    b = sum(o and not t for o, t in pairs)
    c = sum(t and not o for o, t in pairs)
    return PairedTest(b, c, mcnemar_p(b, c))


def _relative(x: float | None) -> str:
    """A relative gain: "+37.5%"."""
    return percent(x, 1, sign=True)


def _points(x: float) -> str:
    """A difference of success rates in percentage points: "+12.5 pts"."""
    return percent(x, 1, sign=True, unit=" pts")


def _paired(test: PairedTest) -> str:
    return f"{test.ours_only} / {test.baseline_only}, p = {test.p_value:.3g}"


def _group(results: Sequence[EpisodeResult]) -> dict[tuple[str | int, ...], list[EpisodeResult]]:
    """Results by (actor, scene), (actor, "ood"), and (actor, domain, seed) / (actor, domain, task)."""
    by: dict[tuple[str | int, ...], list[EpisodeResult]] = defaultdict(list)
    for r in results:
        domain = IN_DOMAIN if r.in_domain else "ood"
        by[r.actor, r.scene].append(r)
        by[r.actor, domain, r.seed].append(r)
        by[r.actor, domain, r.task].append(r)
        if not r.in_domain:
            by[r.actor, "ood"].append(r)
    return by


def calibration_table(imagined: dict[str, dict], results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown lines: each policy's success as the world model imagines it (``imagined``: actor ->
    rl/calibration.py's rates) beside its real in-domain success, overall and per task."""
    by = _group(results)
    rows = []
    for actor, rates in imagined.items():
        real = rate(by[actor, IN_DOMAIN])
        tasks = ", ".join(
            f"{task} {percent(value)} / {percent(rate(by[actor, IN_DOMAIN, task]).value)}"
            for task, value in rates["per_task"].items()
        )
        gap = percent(rates["success"] - real.value, sign=True, unit=" pts")
        rows.append([actor, f"{percent(rates['success'])} (n={rates['episodes']})", str(real), gap, tasks])
    return table(["policy", "imagined", "real, in domain", "gap", "per task: imagined / real"], rows)


def scene_table(results: Sequence[EpisodeResult], scenes: Sequence[str] | None = None) -> list[str]:
    """Markdown lines: success per actor (rows) and scene (columns, ``scenes`` order), pooled over tasks and seeds."""
    by = _group(results)
    actors = list(dict.fromkeys(r.actor for r in results))
    scenes = list(scenes or dict.fromkeys(r.scene for r in results))
    has_ood = any(s != IN_DOMAIN for s in scenes)
    header = ["policy", *scenes] + (["out-of-domain (all)"] if has_ood else [])
    rows = []
    for actor in actors:
        cells = [str(rate(by[actor, s])) for s in scenes]
        rows.append([actor, *cells] + ([str(rate(by[actor, "ood"]))] if has_ood else []))
    return table(header, rows)


def success_tables(
    results: Sequence[EpisodeResult],
    scenes: Sequence[str] | None = None,
    ours: Sequence[str] = (),
    min_baseline: float = 0.05,
) -> list[str]:
    """Markdown lines: success per actor and scene, per seed, per task, and the relative improvement of each of
    ``ours`` over the actors not in ``ours`` (the baselines)."""
    by = _group(results)
    actors = list(dict.fromkeys(r.actor for r in results))
    lines = ["### Success rate (95% Wilson interval, episodes pooled over tasks and seeds)", ""]
    lines += scene_table(results, scenes)

    seeds = sorted({r.seed for r in results})
    tasks = list(dict.fromkeys(r.task for r in results))
    for title, keys in (("seed", seeds), ("task", tasks)):
        lines += ["", f"### Per {title} (in-domain / out-of-domain success)", ""]
        rows = []
        for actor in actors:
            cells = []
            for key in keys:
                parts = [rate(by[actor, domain, key]) for domain in (IN_DOMAIN, "ood")]
                cells.append(" / ".join(percent(p.value) for p in parts))
            rows.append([actor, *cells])
        lines += table([title, *map(str, keys)], rows)

    baselines = [a for a in actors if a not in ours]
    for name in ours:
        lines += relative_improvement_lines(results, name, baselines, min_baseline)
    return lines


def relative_improvement_lines(
    results: Sequence[EpisodeResult],
    ours: str,
    baselines: Sequence[str],
    min_baseline: float = 0.05,
) -> list[str]:
    """Markdown lines: ``ours`` against each baseline on the matched episodes, the paper's relative gain and
    an exact McNemar test; empty without ``ours`` or out-of-domain episodes."""
    by = _group(results)
    actors = list(dict.fromkeys(r.actor for r in results))
    if ours not in actors or all(r.in_domain for r in results):
        return []
    lines = ["", f"### Relative improvement of {ours}", ""]
    out = {a: rate(by[a, "ood"]).value for a in actors}
    within = {a: rate(by[a, IN_DOMAIN]).value for a in actors}
    mean_gain, gains = mean_relative_improvement(out[ours], {a: out[a] for a in baselines}, min_baseline)
    rows = []
    for b in baselines:
        test = {d: mcnemar(by[ours, d], by[b, d]) for d in ("ood", IN_DOMAIN)}
        rows.append(
            [
                b,
                _points(out[ours] - out[b]),
                _relative(gains[b]),
                _paired(test["ood"]),
                _relative(relative_improvement(within[ours], within[b], min_baseline)),
                _paired(test[IN_DOMAIN]),
            ]
        )
    lines += table(
        [
            "baseline",
            "out-of-domain: absolute",
            "out-of-domain: relative",
            "out-of-domain: only ours / only baseline, McNemar p",
            "in-domain: relative",
            "in-domain: only ours / only baseline, McNemar p",
        ],
        rows,
    )
    lines += [
        "",
        f"Mean relative out-of-domain improvement over baselines (the paper's measure): **{_relative(mean_gain)}**"
        f" (relative gains over baselines under {100 * min_baseline:.0f}% success are n/a and left out). "
        "McNemar: exact two-sided test on the matched episodes that only one of the two policies solved.",
    ]
    return lines
