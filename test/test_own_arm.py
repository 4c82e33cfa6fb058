""" "Your own arm" end to end, as a lab runs it (docs/your_own_arm.md), with the sim graph as the arm:

    a rosbag2 of the arm (test/helpers/sim_bag.py: camera, state, hand pose, Action commands, episodes, success)
    -> roboscape-r import-bag -> train-wm -> train-imagination (BC, then PPO in the world model, the goal
    given as an image) -> deploy-config (the dataset's action spec) -> roboscape-r launch mode=sim

Everything is tiny (32x32 frames, four episodes, tens of training steps): the test checks that the chain
runs, that each stage's output loads, and that the deployed policy's commands carry the dataset's
action spec and move the arm; not that the policy succeeds.
"""

from __future__ import annotations

import shutil
import time

import cv2
import numpy as np
import pytest
import yaml

from helpers.cli_runner import assert_one_line_error, cli
from helpers.sim_bag import TOPICS, write_sim_bag
from roboscape_r_ros.contract.action_spec import MODE_NAMES
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.world_model.model import WorldModel

# Each test here runs on a model or a run trained for the module (seconds to a minute on 2 cores).
pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 300) -> str:
    result = cli(*args, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_arm")
    outcomes = write_sim_bag(root / "bag", episodes=4, max_steps=60, resolution=32)
    assert all(success for _, success in outcomes), outcomes  # the expert reaches: labels to learn from
    dataset, wm, policies, config = (root / name for name in ("dataset", "wm", "policies", "deploy"))
    imported = run(
        "import-bag",
        f"bags=[{root / 'bag'}]",
        f"camera.topic={TOPICS['camera']}",
        "camera.size=32",
        "action.source=action",
        f"action.topic={TOPICS['action']}",
        f"states=[{TOPICS['state']},{TOPICS['pose']}]",
        "episodes.split=topic",
        f"episodes.topic={TOPICS['episode']}",
        "labels.source=topic",
        f"labels.topic={TOPICS['success']}",
        "task=reach-v3",
        f"output={dataset}",
    )
    run(
        "train-wm",
        "--preset",
        "tiny",
        f"dataset={dataset}",
        f"run={wm}",
        "model.train.tokenizer_steps=30",
        "model.train.action_steps=30",
        "model.train.goal_steps=0",  # goals are images: no goal model
        "model.train.checkpoint_every=30",
    )
    # the goal as an image: here the last frame of a successful episode (a lab: a photo of the goal)
    goal = EpisodeDataset.open(dataset).episode(0).frames[-1]
    cv2.imwrite(str(root / "goal.png"), cv2.cvtColor(goal, cv2.COLOR_RGB2BGR))
    run(
        "train-imagination",
        "--preset",
        "tiny",
        f"bc.dataset={dataset}",
        f"imagination.world_model={wm}",
        "imagination.goal=image",
        f"imagination.goal_image={root / 'goal.png'}",
        "imagination.max_steps=8",
        "imagination.reward.perception.backend=ssim",
        "bc.steps=20",
        "bc.eval_every=10",
        "ppo.total_steps=32",
        "ppo.num_steps=16",
        f"output={policies}",
    )
    deployed = run("deploy-config", f"dataset={dataset}", f"output={config}")
    return root, imported, deployed


def test_each_stage_leaves_what_the_next_one_loads(trained):
    root, imported, deployed = trained
    dataset = EpisodeDataset.open(root / "dataset")
    assert dataset.num_episodes == 4 and dataset.image_shape == (32, 32, 3) and "4 of 4 episodes succeeded" in imported
    assert dataset.state_names[-7:] == [f"ee_pose.{n}" for n in ("x", "y", "z", "qx", "qy", "qz", "qw")]
    WorldModel.from_checkpoint(root / "wm" / "world_model.safetensors")
    for name in ("bc", "imagination"):
        ImagePolicy.load(root / "policies" / f"{name}.safetensors", action_dim=4, image_size=32)
    spec = dataset.info["action_spec"]
    params = yaml.safe_load((root / "deploy" / "policy_controller.yaml").read_text())["/**/policy_controller"]
    params = params["ros__parameters"]
    assert (params["action_names"], params["action_units"], params["action_scale"], params["action_mode"]) == (
        spec["names"],
        spec["units"],
        spec["scale"],
        spec["mode"],
    )
    assert params["control_period_s"] == spec["period_s"] == 0.0125
    ingest = yaml.safe_load((root / "deploy" / "camera_ingest.yaml").read_text())["/**/camera_ingest"]
    assert ingest["ros__parameters"]["output_size"] == 32
    assert "dx, dy, dz, gripper: one unit is 0.01 m, 0.01 m, 0.01 m, 1, delta over 12.5 ms" in deployed


def test_a_dataset_that_does_not_say_what_its_actions_mean_is_refused(trained, tmp_path):
    root, _, _ = trained
    collected = tmp_path / "collected"
    shutil.copytree(root / "dataset", collected)
    info = collected / "meta" / "info.json"
    info.write_text(info.read_text().replace('"action_spec"', '"not_a_spec"'))
    assert_one_line_error(
        cli("deploy-config", f"dataset={collected}", f"output={tmp_path / 'cfg'}"), "no action_spec in meta/info.json"
    )
    assert not (tmp_path / "cfg").exists()


def test_the_deployed_policy_commands_the_sim_arm_with_the_datasets_action_spec(trained, ros):
    msg = pytest.importorskip("roboscape_r_ros.msg")
    from helpers.ros_harness import RELIABLE_500, Output
    from helpers.sim_loop import launch

    root, _, _ = trained
    spec = EpisodeDataset.open(root / "dataset").info["action_spec"]
    actions = []
    ros.node.create_subscription(msg.Action, "/loop/action", actions.append, RELIABLE_500)
    out = Output(
        launch(
            ros,
            f"config_dir={root / 'deploy'}",
            "arg.backend=learned",
            f"param.policy_controller.checkpoint={root / 'policies' / 'imagination.safetensors'}",
            f"param.policy_controller.goal_image_file={root / 'goal.png'}",  # the goal, as an image
        )
    )
    start = time.monotonic()
    assert ros.spin_until(lambda: len([a for a in actions if a.source == "learned"]) >= 10, 90), out.text()
    log = out.ctrl_c()
    print(f"{len(actions)} Actions in {time.monotonic() - start:.0f} s")
    learned = [a for a in actions if a.source == "learned"]
    for action in learned:  # the dataset's action spec, on every command
        assert list(action.names) == spec["names"] and list(action.units) == spec["units"]
        assert action.scale.tolist() == spec["scale"] and MODE_NAMES[action.mode] == spec["mode"]
        assert action.duration.sec + action.duration.nanosec * 1e-9 == pytest.approx(spec["period_s"])
        assert action.header.frame_id == spec["frame_id"] and np.isfinite(action.values).all()
    assert max(a.step for a in learned) >= 5, [a.step for a in learned]  # the sim stepped on them
    assert "refused" not in log and "Traceback" not in log, log


def test_deploy_config_fits_another_arms_spec_and_refuses_to_overwrite(tmp_path):
    """A 6-D twist dataset (no limits, no period in its spec): the controller gets its names, units and
    scale, limits -1..1, the dataset's frame period, and max_delta/hold_last of the new size."""
    from roboscape_r_ros.commands.deploy_config import deploy_parameters, parameters_of, with_values
    from roboscape_r_ros.launching import graph

    info = {
        "fps": 30,
        "features": {"observation.images.wrist": {"shape": [48, 48, 3]}},
        "action_spec": {
            "names": ["vx", "vy", "vz", "wx", "wy", "wz"],
            "units": ["m/s"] * 3 + ["rad/s"] * 3,
            "scale": [0.05] * 3 + [0.5] * 3,
            "mode": "velocity",
            "period_s": None,
            "frame_id": "tool0",
        },
    }
    base_text = (graph.config_dir() / "policy_controller.yaml").read_text()
    values = deploy_parameters(info, parameters_of(base_text, "policy_controller"))
    text = with_values(base_text, "policy_controller", values["policy_controller"])
    written = parameters_of(text, "policy_controller")
    assert written["action_names"] == ["vx", "vy", "vz", "wx", "wy", "wz"] and written["action_mode"] == "velocity"
    assert written["control_period_s"] == pytest.approx(1 / 30) and written["frame_id"] == "tool0"
    assert written["action_lower"] == [-1.0] * 6 and written["max_delta"] == [2.0] * 6
    assert written["hold_last"] == [False] * 6 and values["camera_ingest"]["output_size"] == 48
    assert '# Action.mode (one of absolute, delta, velocity)\n    action_mode: "velocity"' in text  # comments kept


def test_deploy_config_does_not_write_over_a_folder(trained):
    root, _, _ = trained
    assert_one_line_error(
        cli("deploy-config", f"dataset={root / 'dataset'}", f"output={root / 'deploy'}"), "exists and is not empty"
    )
