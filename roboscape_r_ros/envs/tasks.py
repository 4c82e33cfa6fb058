"""Meta-World task registry: task names, their instructions and their scripted experts."""

from __future__ import annotations

from collections.abc import Callable

from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
from metaworld.policies import ENV_POLICY_MAP
from metaworld.policies.policy import Policy
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from roboscape_r_ros.config import ConfigError

MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# One sentence per task, phrased for what the frames show (goal markers are visible).
INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "Put the ring on the peg.",
    "basketball-v3": "Dunk the ball into the basket.",
    "bin-picking-v3": "Move the puck from one bin to the other.",
    "box-close-v3": "Put the lid on the box.",
    "button-press-topdown-v3": "Press the button from the top.",
    "button-press-topdown-wall-v3": "Press the button behind the wall from the top.",
    "button-press-v3": "Press the button from the front.",
    "button-press-wall-v3": "Press the button behind the wall from the front.",
    "coffee-button-v3": "Press the button on the coffee machine.",
    "coffee-pull-v3": "Pull the mug away from the coffee machine.",
    "coffee-push-v3": "Push the mug under the coffee machine.",
    "dial-turn-v3": "Turn the dial.",
    "disassemble-v3": "Pick the ring off the peg.",
    "door-close-v3": "Close the door.",
    "door-lock-v3": "Lock the door by turning the lock.",
    "door-open-v3": "Open the door.",
    "door-unlock-v3": "Unlock the door by turning the lock.",
    "drawer-close-v3": "Push the drawer closed.",
    "drawer-open-v3": "Pull the drawer open.",
    "faucet-close-v3": "Turn the faucet handle clockwise.",
    "faucet-open-v3": "Turn the faucet handle counter-clockwise.",
    "hammer-v3": "Hammer the nail into the wall.",
    "hand-insert-v3": "Insert the gripper into the hole.",
    "handle-press-side-v3": "Press the handle down from the side.",
    "handle-press-v3": "Press the handle down.",
    "handle-pull-side-v3": "Pull the handle up from the side.",
    "handle-pull-v3": "Pull the handle up.",
    "lever-pull-v3": "Pull the lever up.",
    "peg-insert-side-v3": "Insert the peg into the hole from the side.",
    "peg-unplug-side-v3": "Unplug the peg from the side.",
    "pick-out-of-hole-v3": "Pick the peg out of the hole.",
    "pick-place-v3": "Pick up the puck and place it at the goal.",
    "pick-place-wall-v3": "Pick up the puck and place it at the goal behind the wall.",
    "plate-slide-back-side-v3": "Slide the plate sideways out of the cabinet to the goal.",
    "plate-slide-back-v3": "Slide the plate back out of the cabinet to the goal.",
    "plate-slide-side-v3": "Slide the plate sideways into the cabinet.",
    "plate-slide-v3": "Slide the plate into the cabinet.",
    "push-back-v3": "Pull the puck back to the goal.",
    "push-v3": "Push the puck to the goal.",
    "push-wall-v3": "Push the puck around the wall to the goal.",
    "reach-v3": "Move the gripper to the goal.",
    "reach-wall-v3": "Move the gripper over the wall to the goal.",
    "shelf-place-v3": "Place the block on the shelf.",
    "soccer-v3": "Kick the ball into the goal.",
    "stick-pull-v3": "Pull the bottle with the stick.",
    "stick-push-v3": "Push the bottle with the stick.",
    "sweep-into-v3": "Sweep the puck into the hole.",
    "sweep-v3": "Sweep the puck off the table.",
    "window-close-v3": "Slide the window closed.",
    "window-open-v3": "Slide the window open.",
}

KNOWN_TASKS: tuple[str, ...] = tuple(sorted(INSTRUCTIONS))


class UnknownTaskError(ConfigError):
    """A task name that is not a known Meta-World v3 task."""


def check_task(task: str) -> None:
    if task not in INSTRUCTIONS:
        raise UnknownTaskError(f"unknown task {task!r} (known: {', '.join(KNOWN_TASKS)})")


def instruction(task: str) -> str:
    check_task(task)
    return INSTRUCTIONS[task]


def expert_policy(task: str) -> Policy:
    """A fresh instance of Meta-World's scripted expert; it reads the 39-d Meta-World observation."""
    check_task(task)
    expert: Callable[[], Policy] = ENV_POLICY_MAP[task]  # concrete classes, typed by the map as the abstract base
    return expert()


def sim_class(task: str) -> type[SawyerXYZEnv]:
    """The goal-observable Meta-World env class (the experts need the goal in the observation)."""
    check_task(task)
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]
