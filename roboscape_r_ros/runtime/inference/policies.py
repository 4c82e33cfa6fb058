"""Policy backends behind one small interface, so that policy_controller never changes.

A backend turns what the robot sees into one action (float32 [dim] in the action spec's value
range). Built-in backends:

    expert   Meta-World's scripted expert for ``task``; reads the 39-d Meta-World state
             (privileged: sim only, the ``state`` topic of sim_bridge)
    random   uniform actions in the spec's limits (seeded): the control of every success test

    learned  a trained goal-conditioned ImagePolicy (safetensors checkpoint; runtime/inference/learned_policy.py,
             imported only when selected so that torch stays out of nodes that do not use it)

Another policy is one more class: subclass ``PolicyBackend``, set ``needs_goal`` (and
``needs_state`` if it reads proprioception), load ``options.checkpoint`` in ``__init__``, return an
action from ``act``, and register it::

    @register_backend("learned")
    class LearnedPolicy(PolicyBackend):
        needs_goal = True
        def __init__(self, options): ...          # e.g. an ONNX session on options.checkpoint
        def act(self, inputs): ...                # inputs.image [H,W,3] uint8, inputs.goal, ...

or add ``"<name>": "roboscape_r_ros.runtime.<module>:<Class>"`` to ``BACKENDS`` so that it is
imported only when selected (torch/ONNX stay out of nodes that do not use them).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from roboscape_r_ros.contract.action_spec import ActionSpec
from roboscape_r_ros.errors import RoboscapeError


class BackendError(RoboscapeError):
    """A backend that cannot be built from the options given (unknown name, bad task, missing file)."""


@dataclass(frozen=True)
class BackendOptions:
    spec: ActionSpec
    task: str = ""  # the expert backend's Meta-World task (policy_controller passes its `task`)
    seed: int = 0
    checkpoint: str = ""  # weights of a learned backend (ONNX or safetensors); unused by expert/random
    device: str = "cpu"
    sample: bool = False  # stochastic backends: draw actions from the policy's distribution, not its mean
    runtime: Literal["torch", "onnx", "auto"] = "auto"  # learned backend; auto: by the checkpoint's suffix (runners.py)
    threads: int = 0  # ONNX Runtime's intra-op threads (0: its default)


@dataclass(frozen=True)
class PolicyInput:
    image: np.ndarray  # uint8 [H, W, 3] RGB, the model-size observation
    goal: np.ndarray | None = None  # uint8 [H, W, 3] goal frame, when one was received
    state: np.ndarray | None = None  # float64 [S] in the backend's ``state_names`` order
    step: int = 0  # control step inside the episode


class PolicyBackend:
    """One action per observation. Subclasses override ``act`` (and ``reset`` when stateful)."""

    name = "base"
    needs_state = False  # True: wait for a ``state`` message stamped like the observation
    needs_goal = False  # True: hold until a goal image arrived
    state_names: tuple[str, ...] | None = None  # the order ``PolicyInput.state`` is given in
    source = "policy"  # written into Action.source

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    def describe(self) -> str:
        """The backend as the start-up log names it."""
        return f"'{self.name}'"

    def reset(self, episode_id: str) -> None:
        """A new episode begins (recurrent state, action history...)."""

    def reload(self, path: str) -> str:
        """Swap in the policy file at ``path`` (a description of it), or raise BackendError and keep the old."""
        raise BackendError(f"backend '{self.name}' has no policy file to reload")

    def act(self, inputs: PolicyInput) -> np.ndarray:
        raise NotImplementedError


# Backends living in other modules, imported only when selected: name -> "module:Class".
BACKENDS: dict[str, str] = {"learned": "roboscape_r_ros.runtime.inference.learned_policy:LearnedPolicy"}
# Backends registered with @register_backend (the built-in ones below).
_REGISTERED: dict[str, type[PolicyBackend]] = {}


def register_backend(name: str) -> Callable[[type[PolicyBackend]], type[PolicyBackend]]:
    def add(cls: type[PolicyBackend]) -> type[PolicyBackend]:
        cls.name = name
        _REGISTERED[name] = cls
        return cls

    return add


def backend_names() -> list[str]:
    return sorted(set(BACKENDS) | set(_REGISTERED))


def make_backend(name: str, options: BackendOptions) -> PolicyBackend:
    if name in _REGISTERED:
        return _REGISTERED[name](options)
    if name not in BACKENDS:
        raise BackendError(f"unknown policy backend '{name}' (known: {', '.join(backend_names())})")
    module, _, attr = BACKENDS[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise BackendError(f"policy backend '{name}' cannot be loaded: {err} (is its package installed?)") from None
    return cls(options)


@register_backend("random")
class RandomPolicy(PolicyBackend):
    source = "random"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self.low = np.asarray(options.spec.lower, np.float64)
        self.high = np.asarray(options.spec.upper, np.float64)
        self.rng = np.random.default_rng(options.seed)

    def act(self, inputs: PolicyInput) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


@register_backend("expert")
class ExpertPolicy(PolicyBackend):
    """Meta-World's scripted expert: needs the 39-d Meta-World observation (sim_bridge's ``state``)."""

    needs_state = True
    source = "expert"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        from roboscape_r_ros.envs.tasks import expert_policy  # metaworld: only when this backend is used
        from roboscape_r_ros.runtime.sessions.sim_session import METAWORLD_OBS_NAMES

        if options.spec.names != ("dx", "dy", "dz", "gripper"):
            raise BackendError(
                f"the expert backend drives Meta-World's dx, dy, dz, gripper, not {', '.join(options.spec.names)}"
            )
        try:
            self.policy = expert_policy(options.task)
        except RoboscapeError as err:
            raise BackendError(str(err)) from None
        self.state_names = METAWORLD_OBS_NAMES

    def act(self, inputs: PolicyInput) -> np.ndarray:
        if inputs.state is None:
            raise BackendError("the expert backend needs the Meta-World state")
        with warnings.catch_warnings():  # the experts warn on every saturated action
            warnings.simplefilter("ignore", UserWarning)
            action = self.policy.get_action(np.asarray(inputs.state, np.float64))
        return np.clip(np.asarray(action, np.float32), -1.0, 1.0)
