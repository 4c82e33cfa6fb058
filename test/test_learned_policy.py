"""The ``learned`` policy backend (runtime/inference/learned_policy.py) without ROS: checkpoints that cannot be
used fail at construction with one clear BackendError, the mean is the default action, sampling keeps
what PPO needs, frame sizes are checked, chunks are emitted one action per control step."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from roboscape_r_ros.contract.action_spec import metaworld_action_spec
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig, obs_batch
from roboscape_r_ros.runtime.inference.policies import BackendError, BackendOptions, PolicyInput, make_backend

SPEC = metaworld_action_spec()
TINY = dict(image_size=16, action_dim=4, channels=[8], hidden=16)


def checkpoint(tmp_path, name="policy.safetensors", **changes) -> str:
    torch.manual_seed(0)
    policy = ImagePolicy(PolicyConfig(**{**TINY, **changes}))
    with torch.no_grad():
        policy.actor_mean.weight.normal_(0.0, 0.5)  # a mean far enough from 0 to tell actions apart
    return str(policy.save(tmp_path / name))


def frames(seed=0, size=16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3), np.uint8), rng.integers(0, 255, (size, size, 3), np.uint8)


def learned(path, **options):
    return make_backend("learned", BackendOptions(SPEC, checkpoint=path, **options))


def test_the_mean_is_the_default_action_and_sampling_keeps_logprob_and_value(tmp_path):
    path = checkpoint(tmp_path)
    image, goal = frames()
    backend = learned(path)
    assert backend.name == "learned" and backend.needs_goal and not backend.needs_state
    first = backend.act(PolicyInput(image=image, goal=goal))
    expected = ImagePolicy.load(path).mean(obs_batch(image, goal))[0, 0].detach().numpy()
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_array_equal(backend.act(PolicyInput(image=image, goal=goal)), first)  # deterministic
    sampler = learned(path, sample=True, seed=3)
    samples = np.stack([sampler.act(PolicyInput(image=image, goal=goal)) for _ in range(20)])
    assert samples.std(0).min() > 0.05 and np.abs(samples).max() <= 1.0  # drawn, executed clipped
    decision = sampler.last_decision
    assert np.isfinite(decision.logprob) and np.isfinite(decision.value) and decision.action.shape == (1, 4)
    np.testing.assert_array_equal(np.clip(decision.action[0], -1, 1), samples[-1])


def test_a_chunk_is_emitted_one_action_per_step_and_a_new_episode_drops_its_rest(tmp_path):
    path = checkpoint(tmp_path, chunk=3)
    backend = learned(path)
    image, goal = frames()
    actions, decided = [], []
    for _ in range(4):
        actions.append(backend.act(PolicyInput(image=image, goal=goal)))
        decided.append(backend.last_decision is not None)
    assert decided == [True, False, False, True]  # one decision per 3 control steps
    chunk = ImagePolicy.load(path).mean(obs_batch(image, goal))[0].detach().numpy()  # [K=3,A]
    np.testing.assert_allclose(np.stack(actions[:3]), chunk, atol=1e-6)
    assert not np.allclose(actions[0], actions[1])
    backend.reset("next-episode")
    backend.act(PolicyInput(image=image, goal=goal))
    assert backend.last_decision is not None  # a fresh decision, not the rest of the old chunk


def test_frames_of_another_size_fail_with_a_clear_error(tmp_path):
    backend = learned(checkpoint(tmp_path))
    image, goal = frames(size=16)
    big, _ = frames(size=32)
    with pytest.raises(
        BackendError,
        match=r"the observation is 32x32, the checkpoint reads 16x16 frames \(set camera_ingest's output_size to 16\)",
    ):
        backend.act(PolicyInput(image=big, goal=goal))
    with pytest.raises(BackendError, match="the goal image is 32x32"):
        backend.act(PolicyInput(image=image, goal=big))
    with pytest.raises(BackendError, match="needs a goal image"):
        backend.act(PolicyInput(image=image, goal=None))


def test_unusable_checkpoints_fail_at_construction_with_one_clear_error(tmp_path):
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00garbage" * 10)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "someone.else/1"})
    cases = {
        "": "needs a policy checkpoint",
        str(tmp_path / "missing.safetensors"): "no such policy checkpoint",
        str(tmp_path / "corrupt.safetensors"): "not a readable safetensors file",
        str(tmp_path / "foreign.safetensors"): "not a policy checkpoint",
        checkpoint(tmp_path, "wide.safetensors", action_dim=6): "emits 6-D actions, expected 4-D",
    }
    for path, expected in cases.items():
        with pytest.raises(BackendError, match=expected) as err:
            learned(path)
        assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match="device 'gpu please' is not a torch device"):
        learned(checkpoint(tmp_path), device="gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="torch sees no CUDA device"):
            learned(checkpoint(tmp_path), device="cuda:0")


def test_torch_is_imported_only_when_the_learned_backend_is_selected():
    code = (
        "import sys, roboscape_r_ros.nodes.policy_controller as n; "
        "from roboscape_r_ros.runtime.inference.policies import make_backend, BackendOptions; "
        "from roboscape_r_ros.contract.action_spec import metaworld_action_spec; "
        "make_backend('random', BackendOptions(metaworld_action_spec())); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
