"""A small rosbag2 of "your own arm", recorded from the sim's own streams: the stand-in for a lab's bag
in the "your own arm" example (test/test_own_arm.py, docs/your_own_arm.md).

sim_bridge's core (runtime/sessions/sim_session.py, Meta-World) driven by its scripted expert, written as the
topics an arm's graph records: the camera (sensor_msgs/Image rgb8), the arm's state (JointState: the
Meta-World observation by name, as sim_bridge publishes it), the hand pose (PoseStamped), the commands
(the package's Action in Meta-World's spec: dx, dy, dz in m x 0.01, gripper; DELTA, 12.5 ms) stamped
with the frame they answer, episode ids (String) and the success flag (Bool).

    PYTHONPATH=test python -m helpers.sim_bag outputs/bags/own_arm --episodes 6 --max-steps 60 --resolution 64
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from helpers.bag_writer import BagWriter
from roboscape_r_ros.contract.action_spec import metaworld_action_spec
from roboscape_r_ros.runtime.inference.policies import BackendOptions, ExpertPolicy, PolicyInput
from roboscape_r_ros.runtime.sessions.sim_session import METAWORLD_OBS_NAMES, PERIOD_NS, SimSession

TOPICS = {
    "camera": "/camera/image_raw",
    "state": "/arm/state",
    "pose": "/arm/ee_pose",
    "action": "/arm/action",
    "episode": "/episode",
    "success": "/success",
}


def write_sim_bag(
    path: str | Path,
    *,
    task: str = "reach-v3",
    episodes: int = 4,
    max_steps: int = 60,
    resolution: int = 32,
    seed: int = 0,
    storage: str = "mcap",
) -> list[tuple[int, bool]]:
    """Write the bag; returns (steps, success) per episode."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    spec = metaworld_action_spec(PERIOD_NS / 1e9)
    session = SimSession(task, resolution=resolution, seed=seed, max_steps=max_steps)
    expert = ExpertPolicy(BackendOptions(spec=spec, task=task))
    outcomes = []
    try:
        with BagWriter(path, storage) as bag:
            for _ in range(episodes):
                frame = session.reset()
                bag.string(TOPICS["episode"], frame.time_ns - 1, frame.episode_id)
                while True:
                    t = frame.time_ns
                    bag.image(TOPICS["camera"], t, frame.image)
                    bag.joint_state(TOPICS["state"], t, METAWORLD_OBS_NAMES, frame.metaworld_obs)
                    bag.pose(TOPICS["pose"], t, frame.hand_position, (0.0, 0.0, 0.0, 1.0))
                    if frame.ended:
                        break
                    values = expert.act(PolicyInput(image=frame.image, state=frame.metaworld_obs))
                    bag.action(
                        TOPICS["action"], t, spec.names, values, scale=spec.scale, units=spec.units,
                        period_s=spec.period_s,
                    )  # fmt: skip
                    frame = session.step(values)
                    bag.boolean(TOPICS["success"], frame.time_ns - 1, frame.success)
                outcomes.append((frame.step, frame.success))
    finally:
        session.close()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="bag folder to create")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    args = parser.parse_args()
    outcomes = write_sim_bag(
        args.output,
        task=args.task,
        episodes=args.episodes,
        max_steps=args.max_steps,
        resolution=args.resolution,
        storage=args.storage,
    )
    print(f"{args.output}: {len(outcomes)} episodes, steps and success: {outcomes}")


if __name__ == "__main__":
    main()
