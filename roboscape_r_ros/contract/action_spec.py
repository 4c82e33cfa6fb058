"""What an action means on the wire: names, units, scale, limits, mode and control period.

``ActionSpec`` is the contract between whoever produces a roboscape_r_ros/Action (a policy, an
expert, a teleoperator) and whoever executes it (sim_bridge, an arm driver). ``check_command``
is the driver-side check of msg/Action.msg: it refuses, never repairs, a command that does not
match the spec, so a refused command moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from roboscape_r_ros.errors import RoboscapeError

# Values of msg/Action.mode (kept here so that the core needs no generated message module).
MODE_ABSOLUTE, MODE_DELTA, MODE_VELOCITY = 0, 1, 2
MODE_NAMES = {MODE_ABSOLUTE: "absolute", MODE_DELTA: "delta", MODE_VELOCITY: "velocity"}


class ActionSpecError(RoboscapeError, ValueError):
    """A spec whose per-dimension lists disagree or whose limits are inverted."""


class CommandRejected(RoboscapeError):
    """An Action that a driver must not execute. ``reason`` is a short stable key for throttled logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ActionSpec:
    names: tuple[str, ...]
    units: tuple[str, ...]
    scale: tuple[float, ...]  # physical quantity (in `units`) per unit of value
    lower: tuple[float, ...]  # limits on the values (not on value * scale)
    upper: tuple[float, ...]
    mode: int = MODE_DELTA
    period_s: float = 1.0 / 80.0  # one control step: the Action's duration
    frame_id: str = "world"
    hold_last: tuple[bool, ...] = field(default=())  # dims that keep their last value on a hold (grippers)

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise ActionSpecError("an action needs at least one dimension (action_names is empty)")
        if len(set(self.names)) != n:
            raise ActionSpecError(f"action names must be unique, got {list(self.names)}")
        for key in ("units", "scale", "lower", "upper"):
            if len(getattr(self, key)) != n:
                raise ActionSpecError(
                    f"action_{key} has {len(getattr(self, key))} entries but action_names has {n} "
                    f"({', '.join(self.names)})"
                )
        if self.hold_last and len(self.hold_last) != n:
            raise ActionSpecError(f"hold_last has {len(self.hold_last)} entries, expected {n}")
        if not all(np.isfinite(self.lower + self.upper + self.scale)):
            raise ActionSpecError("action limits and scales must be finite numbers")
        bad = [name for name, lo, hi in zip(self.names, self.lower, self.upper) if lo >= hi]
        if bad:
            raise ActionSpecError(
                f"action_lower must be below action_upper for every dimension (not for {', '.join(bad)})"
            )
        if self.mode not in MODE_NAMES:
            raise ActionSpecError(
                f"mode must be one of {sorted(MODE_NAMES)} (absolute, delta, velocity), got {self.mode}"
            )
        if not self.period_s > 0:
            raise ActionSpecError(f"the control period must be positive, got {self.period_s}")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def hold_mask(self) -> np.ndarray:
        return np.asarray(self.hold_last or (False,) * self.dim, bool)

    def physical(self, values: np.ndarray) -> np.ndarray:
        """Values -> physical quantities in ``units`` (value * scale)."""
        return np.asarray(values, np.float64) * np.asarray(self.scale, np.float64)


def metaworld_action_spec(period_s: float = 1.0 / 80.0) -> ActionSpec:
    """Meta-World's Sawyer: hand displacement of 1 cm per unit per 80 Hz step, gripper effort."""
    return ActionSpec(
        names=("dx", "dy", "dz", "gripper"),
        units=("m", "m", "m", "1"),
        scale=(0.01, 0.01, 0.01, 1.0),
        lower=(-1.0,) * 4,
        upper=(1.0,) * 4,
        mode=MODE_DELTA,
        period_s=period_s,
        frame_id="world",
        hold_last=(False, False, False, True),
    )


def check_command(
    spec: ActionSpec,
    *,
    names: Sequence[str],
    units: Sequence[str],
    values: Sequence[float],
    scale: Sequence[float],
    mode: int,
) -> np.ndarray:
    """The fields of an Action -> float64 [dim] values, or CommandRejected saying what is wrong.

    Checks (msg/Action.msg): names equal the spec's names in order; names/units/values lengths agree;
    units equal the spec's when given; scale is empty or equals the spec's; the mode is the spec's;
    every value is finite and inside [lower, upper]. Nothing is clipped: a refused command moves nothing.
    """
    names, units = list(names), list(units)
    values_arr = np.asarray(list(values), np.float64)
    if len(values_arr) != len(names) or (units and len(units) != len(names)):
        raise CommandRejected(
            "length", f"names, units and values lengths differ ({len(names)}, {len(units)}, {len(values_arr)})"
        )
    if names != list(spec.names):
        raise CommandRejected("names", f"action names {names} are not {list(spec.names)}")
    if units and units != list(spec.units):
        raise CommandRejected("units", f"action units {units} are not {list(spec.units)}")
    if len(scale) and not np.allclose(np.asarray(list(scale), np.float64), spec.scale, rtol=1e-9, atol=0.0):
        raise CommandRejected("scale", f"action scale {list(scale)} is not {list(spec.scale)}")
    if mode != spec.mode:
        raise CommandRejected(
            "mode",
            f"action mode {MODE_NAMES.get(mode, mode)} is not {MODE_NAMES[spec.mode]} (this driver executes only that)",
        )
    if not np.isfinite(values_arr).all():
        raise CommandRejected("nonfinite", f"action values {values_arr.tolist()} are not all finite")
    low, high = np.asarray(spec.lower), np.asarray(spec.upper)
    outside = (values_arr < low) | (values_arr > high)
    if outside.any():
        dims = ", ".join(
            f"{spec.names[i]}={values_arr[i]:.4g} not in [{low[i]:g}, {high[i]:g}]" for i in np.flatnonzero(outside)
        )
        raise CommandRejected("range", f"action out of range: {dims}")
    return values_arr
