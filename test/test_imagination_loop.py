"""Issue 6, must-show (a): the imagination loop, started by `roboscape-r launch mode=imagination` from
the graph spec (real processes, real rclpy): dreamer (the world model as the environment) ->
observation -> policy_controller (random backend, unchanged) -> action -> dreamer, with
reward_publisher pairing each dreamed frame with the dreamer's done by stamp. Goals are imagined by
reward_publisher's goal model from each episode's first frame and the context episode's instruction
(published on goal_image). A tiny random-weight world model is enough for the plumbing.
"""

from __future__ import annotations

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

msg = pytest.importorskip("roboscape_r_ros.msg")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from helpers import REPO  # noqa: E402
from helpers.ros_harness import LATCHED, Output, assert_all_stopped  # noqa: E402
from helpers.wm_synthetic import tiny_run  # noqa: E402

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
MAX_STEPS = 5


def key(header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


def test_dreamer_reward_and_policy_exchange_steps_rewards_done_and_episodes(ros, tmp_path):
    import subprocess
    import sys

    run = tiny_run(tmp_path)
    seen = {name: [] for name in ("reward", "done", "action", "episode", "goal_image")}
    for name, kind, qos in (
        ("reward", msg.Reward, RELIABLE),
        ("done", msg.Reward, RELIABLE),
        ("action", msg.Action, RELIABLE),
        ("episode", String, LATCHED),
        ("goal_image", Image, LATCHED),
    ):
        ros.node.create_subscription(kind, f"/dream/{name}", seen[name].append, qos)
    ros.env["OMP_NUM_THREADS"] = "1"  # one torch thread per node on a 2-core machine
    cmd = [
        sys.executable,
        "-m",
        "roboscape_r_ros.cli",
        "launch",
        "mode=imagination",
        "namespace=dream",
        f"arg.world_model={run}",
        "param.reward_publisher.perception=ssim",
        "param.reward_publisher.goal_max_steps=4",
        f"param.dreamer.max_steps={MAX_STEPS}",
        "param.dreamer.done_threshold=1.0",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ros.processes.append(proc)
    out = Output(proc)

    # Three whole episodes: steps 0..MAX_STEPS each, the last one truncated (the done head never fires at 1.0).
    # (the loop runs at tens of steps/s: wait until the harness has seen the dreamer's dones too)
    def complete() -> bool:
        stamps = {key(d.header) for d in seen["done"]}
        answered = sum(key(a.header) in stamps for a in seen["action"])
        return (
            sum(r.done for r in seen["reward"]) >= 4
            and sum(d.done for d in seen["done"]) >= 2
            and answered >= 3 * MAX_STEPS
        )

    assert ros.spin_until(complete, 90), out.text()
    rewards = seen["reward"]
    done_stamps = {key(d.header) for d in seen["done"]}
    # Each reward is a dreamed frame's, stamped like it (the harness may miss the very first dones,
    # and a reward may overtake its done on the way here).
    assert all(key(r.header) in done_stamps for r in rewards if min(done_stamps) <= key(r.header) <= max(done_stamps))
    assert len({(r.episode_id, r.step) for r in rewards}) == len(rewards)  # once per step, republished or not
    # The loop may run before reward_publisher (or the harness) listens: the first episode seen may
    # be partial, the ones after it are whole.
    episodes = sorted({r.episode_id for r in rewards})
    numbers = [int(e.removeprefix("dream-ep")) for e in episodes]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) >= 3, episodes
    for episode in episodes[:3]:
        steps = [r for r in rewards if r.episode_id == episode]
        first = 0 if episode != episodes[0] else steps[0].step
        assert [r.step for r in steps] == list(range(first, MAX_STEPS + 1)), episode
        assert [r.done for r in steps] == [False] * (MAX_STEPS - first) + [True] and steps[-1].truncated
        assert all(
            r.perceptual_backend == "ssim" and r.instruction and 0.0 < r.done_probability < 1.0 for r in steps if r.step
        )
        assert all(r.done_probability == 0.0 for r in steps if r.step == 0)  # a real context frame: no prediction
        assert all(
            abs(r.reward - r.goal_alignment) < 1e-9 and r.done_bonus == 0.0 for r in steps
        )  # no bonus at p < 0.9
    # Every action answers a frame the dreamer published, under the episode of that frame, or none yet,
    # or the previous one when a first frame overtook the latched id (the dreamer drops those silently).
    by_stamp = {key(d.header): d for d in seen["done"]}
    actions = [a for a in seen["action"] if key(a.header) in by_stamp]
    assert len(actions) >= 3 * MAX_STEPS and {a.source for a in seen["action"]} == {"random"}
    for a in actions:
        episode = by_stamp[key(a.header)].episode_id
        previous = f"dream-ep{int(episode.removeprefix('dream-ep')) - 1:04d}"
        assert a.episode_id in ("", episode) or (a.episode_id == previous and by_stamp[key(a.header)].step == 0), a
    goal = seen["goal_image"][-1]
    assert (goal.encoding, goal.width, goal.height) == ("rgb8", 32, 32)
    # The reset service starts a new episode at once; its first reward (step 0) follows.
    client = ros.node.create_client(Trigger, "/dream/dream/reset")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    assert ros.spin_until(future.done, 10) and future.result().success
    new = future.result().message
    assert ros.spin_until(lambda: any(r.episode_id == new and r.step == 0 for r in rewards), 10), new
    log = out.ctrl_c()
    assert "refused" not in log and "dropped" not in log, log
    assert_all_stopped(log, proc)
