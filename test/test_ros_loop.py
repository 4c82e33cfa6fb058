"""Issue 6, must-show (b): the same policy_controller, unchanged, drives sim_bridge through the
topic loop, started by `roboscape-r launch` from the graph spec (real processes, real rclpy).

sim mode = sim_bridge (image_raw, state, /clock) -> camera_ingest (observation) -> policy_controller
(action) -> sim_bridge. The expert backend reaches Meta-World's success on reach-v3; the random
backend, in the same graph with the same parameters otherwise, does not. Ctrl-C on the launcher
stops every node cleanly.
"""

import os
import re
import signal

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

msg = pytest.importorskip("roboscape_r_ros.msg")
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from helpers.ros_harness import RELIABLE_500, Output, assert_all_stopped  # noqa: E402
from helpers.sim_loop import MAX_STEPS, launch  # noqa: E402

# sim_bridge's success is latched: a harness matched only after the loop ran still gets the last step's.
SUCCESS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def watch(ros):
    success, actions = [], []
    ros.node.create_subscription(Bool, "/loop/success", success.append, SUCCESS)
    ros.node.create_subscription(msg.Action, "/loop/action", actions.append, RELIABLE_500)
    return success, actions


def second_episode(ros, out: Output, actions: list, outcome: str) -> int:
    """Control steps of episode 1, watched from its first step; episode 0 ends with ``outcome`` first.

    Episode 0 may run before the harness is matched with every publisher (discovery under load).
    While the ended episode waits for the reset service, sim_bridge sends its last frame again and
    the controller answers it again: an answer here means the harness is matched; then the reset.
    """
    first = out.wait(ros, r"episode reach-v3-seed0-ep0000 ended after (\d+) steps: (\w+)", 90)
    assert first.group(2) == outcome, out.text()
    assert ros.spin_until(lambda: actions, 10), "the harness never received an Action"
    reset = ros.node.create_client(Trigger, "/loop/reset")
    assert reset.wait_for_service(timeout_sec=10)
    future = reset.call_async(Trigger.Request())
    assert ros.spin_until(future.done, 10) and future.result().message == "reach-v3-seed0-ep0001"
    second = out.wait(ros, r"episode reach-v3-seed0-ep0001 ended after (\d+) steps: (\w+)", 90)
    assert second.group(2) == outcome, out.text()
    return int(second.group(1))


def test_expert_backend_reaches_success_through_the_topic_loop(ros):
    success, actions = watch(ros)
    out = Output(launch(ros, "arg.backend=expert", "arg.task=reach-v3"))
    steps = second_episode(ros, out, actions, "success")
    assert 20 < steps < MAX_STEPS
    assert ros.spin_until(lambda: success and success[-1].data, 5)
    assert sum(s.data for s in success) <= 2  # the one success step of each episode, nothing else
    # Left out: answers to the first episode's last frame, sent again while the sim waited for the reset.
    watched = [a for a in actions if a.episode_id != "reach-v3-seed0-ep0000"]
    assert {a.source for a in watched} == {"expert"}
    # The latched episode id may reach the controller after the first frame: those carry none.
    assert {a.episode_id for a in watched} <= {"", "reach-v3-seed0-ep0001"}
    second = [a for a in watched if a.episode_id == "reach-v3-seed0-ep0001"]
    # One action per observation, in order (a frame seen again gets the identical action again),
    # every step of the episode (less the final answer, which may be in flight, and one frame
    # answered before the id came).
    assert second[0].step == 0 and all(b == a or b.step == a.step + 1 for a, b in zip(second, second[1:]))
    assert steps - 2 <= second[-1].step <= steps
    log = out.ctrl_c()
    assert "refused" not in log, log
    assert_all_stopped(log, out.proc)


def test_random_backend_does_not_reach_success(ros):
    success, actions = watch(ros)
    out = Output(launch(ros, "arg.backend=random", "arg.task=reach-v3"))
    assert second_episode(ros, out, actions, "truncated") == MAX_STEPS
    assert ros.spin_until(lambda: success, 5) and not any(s.data for s in success)
    second = [a for a in actions if a.episode_id == "reach-v3-seed0-ep0001"]
    assert {a.source for a in actions} == {"random"} and len(second) >= MAX_STEPS - 2
    assert_all_stopped(out.ctrl_c(), out.proc)


def test_a_node_that_cannot_start_stops_the_graph_with_its_status(ros):
    proc = launch(ros, "arg.backend=learnd")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "unknown policy backend 'learnd'" in out and "node policy_controller exited with status 2" in out, out
    assert "Traceback" not in out, out


def kill_camera_ingest(ros) -> tuple[Output, str]:
    """A graph whose camera_ingest was killed and is about to be respawned: (its output, the dead pid)."""
    out = Output(launch(ros, "arg.backend=random"))
    started = out.wait(ros, r"started camera_ingest \(pid (\d+)\)", 60)
    out.wait(ros, r"\[camera_ingest\] .*publishing", 60)
    os.kill(int(started.group(1)), signal.SIGKILL)
    out.wait(ros, r"camera_ingest exited with status -9: respawning in 2 s", 20)
    return out, started.group(1)


def test_a_respawn_node_comes_back_and_a_shutdown_node_stops_the_graph(ros):
    """graph.py's on_exit: camera_ingest is respawned after it dies, policy_controller's death stops the graph."""
    out, dead = kill_camera_ingest(ros)
    again = out.wait(ros, r"started camera_ingest \(pid (?!" + dead + r"\))(\d+)\)", 20)
    controller = re.search(r"started policy_controller \(pid (\d+)\)", out.text())
    os.kill(int(controller.group(1)), signal.SIGKILL)
    out.proc.wait(timeout=60)
    out.thread.join(timeout=10)
    log = out.text()
    assert out.proc.returncode == 2 and "policy_controller exited with status -9: stopping the graph" in log, log
    assert "all nodes stopped" in log and "node policy_controller exited with status -9" in log, log
    with pytest.raises(ProcessLookupError):
        os.kill(int(again.group(1)), 0)


def test_ctrl_c_during_a_respawn_delay_stops_the_graph_cleanly(ros):
    """The node waiting to be respawned was reported when it died: Ctrl-C then is a clean stop."""
    out, _ = kill_camera_ingest(ros)
    log = out.ctrl_c()
    assert out.proc.returncode == 0 and "all nodes stopped" in log and "did not stop cleanly" not in log, log
    assert len(re.findall(r"started camera_ingest", log)) == 1 and "Traceback" not in log, log


def test_real_mode_drives_an_arm_elsewhere_by_remapping_only(ros):
    """mode=real is how a lab arm is driven: here the 'arm' is a sim_bridge in its own namespace,
    reached only through the camera/command/state/estop launch arguments (remappings)."""
    ros.start(
        "roboscape_r_ros.nodes.sim_bridge",
        "-r",
        "__ns:=/arm",
        "-p",
        "camera_resolution:=64",
        "-p",
        "auto_reset:=false",
        "-p",
        f"max_steps:={MAX_STEPS}",
    )
    # The stand-in arm stamps with simulated time: the graph follows its clock like a sim would.
    arm = Output(ros.processes[-1])
    out = Output(
        launch(
            ros,
            "mode=real",
            "arg.backend=expert",
            "arg.camera=/arm/image_raw",
            "arg.command=/arm/action",
            "arg.state=/arm/state",
            "arg.estop=/arm/estop",  # the arm's e-stop (sim_bridge's: never engaged)
            "param.policy_controller.use_sim_time=true",
            "param.camera_ingest.use_sim_time=true",
        )
    )
    arm.wait(ros, r"ended after \d+ steps: success", 90)
    log = out.ctrl_c()
    assert out.proc.returncode == 0 and "started sim_bridge" not in log and "Traceback" not in log, log


def test_an_out_of_domain_hold_that_times_out_asks_sim_bridge_for_the_next_episode(ros):
    """The guard's defined end in the sim graph: a held arm makes no new frames to score, so after
    ood_guard.hold_timeout_s the controller asks sim_bridge's reset service (same name, same namespace)
    for a new episode, whose id ends the hold, and the arm moves again.
    dream/error comes from the test here (the dreamer in shadow mode publishes it beside a real arm)."""
    from std_msgs.msg import Float32

    _, actions = watch(ros)
    guard = ("threshold=0.01", "trip_after=1", "hold_timeout_s=1.0")
    out = Output(launch(ros, "arg.backend=random", *(f"param.policy_controller.ood_guard.{g}" for g in guard)))
    error_pub = ros.node.create_publisher(Float32, "/loop/dream/error", RELIABLE_500)
    assert ros.spin_until(lambda: error_pub.get_subscription_count() > 0 and actions, 60), out.text()
    error_pub.publish(Float32(data=0.5))
    out.wait(ros, r"held for 1 s: episode reach-v3-seed0-ep0000 ended", 30)
    out.wait(ros, r"asked /loop/reset for a new episode: reach-v3-seed0-ep0001", 10)
    out.wait(ros, r"a new episode ends its hold", 10)
    moving = lambda: sum(a.episode_id == "reach-v3-seed0-ep0001" for a in actions) >= 10  # noqa: E731
    assert ros.spin_until(moving, 10), out.text()
    assert_all_stopped(out.ctrl_c(), out.proc)
