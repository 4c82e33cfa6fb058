"""The ``learned`` policy backend: a trained ``rl.policy.ImagePolicy`` (safetensors) behind the backend API.

Goal-conditioned: it reads the current frame and the goal frame, both at the checkpoint's image
size. By default it emits the Gaussian's mean (deterministic); ``options.sample`` draws from the
Gaussian instead (exploration, and policy_controller's learning mode) and keeps the sample's
log-probability and value in ``last_decision`` for PPO. A chunked policy (K actions per decision)
decides on every K-th step and emits the chunk's actions one per control step; a new episode drops
the rest of a chunk. Actions leave clipped to [-1, 1] (the policy's own action range).

Imported only when selected (``policies.BACKENDS``): torch stays out of nodes that do not use it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.rl.policy import ImagePolicy, obs_batch
from roboscape_r_ros.runtime.inference.policies import BackendError, BackendOptions, PolicyBackend, PolicyInput
from roboscape_r_ros.runtime.inference.runners import open_policy_runner


@dataclass(frozen=True)
class Decision:
    """One policy decision as PPO stores it."""

    image: np.ndarray  # uint8 [H,W,3] the frame decided on
    goal: np.ndarray  # uint8 [H,W,3]
    action: np.ndarray  # float32 [K,A] unclipped sample (the mean when not sampling)
    logprob: float  # log-probability of ``action`` under the policy that decided (nan: not sampled)
    value: float  # the critic's value of the frame (nan: not sampled)


class LearnedPolicy(PolicyBackend):
    name = "learned"
    needs_goal = True
    source = "learned"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        if not options.checkpoint:
            raise BackendError(
                "the learned backend needs a policy checkpoint (parameter checkpoint: .safetensors or exported .onnx)"
            )
        self.sample = options.sample
        try:
            if self.sample:  # sampling and PPO need the Gaussian and the critic: the torch checkpoint
                if options.runtime == "onnx" or options.checkpoint.endswith(".onnx"):
                    raise BackendError(
                        "sampling (sample_actions, learning mode) needs the .safetensors checkpoint under runtime "
                        "torch; an exported ONNX file holds the mean action only"
                    )
                device = torch_device(options.device)
                self.policy = ImagePolicy.load(options.checkpoint, action_dim=options.spec.dim, device=device)
                torch.manual_seed(options.seed)
            else:
                self.runner = open_policy_runner(
                    options.checkpoint, options.runtime, options.device, options.spec.dim, options.threads
                )
        except RoboscapeError as err:
            raise BackendError(f"learned backend: {err}") from None
        cfg = self.policy.cfg if self.sample else self.runner.cfg
        self.size, self.chunk = cfg.image_size, cfg.chunk
        self.pending: deque[np.ndarray] = deque()  # the current chunk's actions not yet emitted
        self.last_decision: Decision | None = None  # set when ``act`` decided (not when it emitted from a chunk)

    def describe(self) -> str:
        if self.sample:
            return f"'learned' (torch on {self.policy.device}, sampling)"
        return f"'learned' ({self.runner.describe()})"

    def reset(self, episode_id: str) -> None:
        self.pending.clear()

    def reload(self, path: str) -> str:
        """Between two decisions (the chunk in progress finishes with the old policy); sizes must match."""
        if self.sample:
            raise BackendError("sampling and learning mode keep the policy they train: no reload")
        try:
            runner = open_policy_runner(
                path, self.options.runtime, self.options.device, self.options.spec.dim, self.options.threads
            )
        except RoboscapeError as err:
            raise BackendError(f"reload refused, the old policy keeps running: {err}") from None
        old, new = self.runner.cfg, runner.cfg
        if (new.image_size, new.chunk) != (old.image_size, old.chunk):
            raise BackendError(
                f"reload refused, the old policy keeps running: {path} reads {new.image_size}px frames in chunks "
                f"of {new.chunk}, the running one {old.image_size}px in chunks of {old.chunk}"
            )
        self.runner = runner
        return f"{path} ({runner.describe()})"

    def act(self, inputs: PolicyInput) -> np.ndarray:
        self.last_decision = None
        if not self.pending:
            self.last_decision = self.decide(inputs.image, inputs.goal)
            self.pending.extend(np.clip(self.last_decision.action, -1.0, 1.0))
        return self.pending.popleft()

    def decide(self, image: np.ndarray, goal: np.ndarray | None) -> Decision:
        for name, frame in (("observation", image), ("goal image", goal)):
            if frame is None:
                raise BackendError(f"the learned backend needs a {name}")
            if frame.shape != (self.size, self.size, 3):
                height, width = frame.shape[:2]
                raise BackendError(
                    f"the {name} is {width}x{height}, the checkpoint reads {self.size}x{self.size} frames "
                    f"(set camera_ingest's output_size to {self.size})"
                )
        assert goal is not None, "the loop above refused a missing goal image"
        if not self.sample:  # the mean only: the critic is not needed to act
            action = self.runner.mean(image[None], goal[None])[0]  # [K,A]
            return Decision(image, goal, action, float("nan"), float("nan"))
        obs = obs_batch(image, goal, self.policy.device)
        with torch.no_grad():
            action, logprob, _, value = self.policy.get_action_and_value(obs)  # [1,K,A], [1], _, [1]
        return Decision(image, goal, action[0].cpu().numpy(), float(logprob[0]), float(value[0]))
