"""kill -9 of policy_controller mid-run, 640x480 at 30 Hz in real mode.

graph_policy   under `roboscape-r launch` (and the launch files: the same spec) policy_controller is a
               `shutdown` node: its death stops the whole graph. Measured: Actions after the kill,
               how long until the launcher reports it and has stopped every node, its exit status.
restart        a lab's own supervisor (systemd, `respawn=True` in its launch file) restarts the node
               with the same command line (runner.plan gives it). Measured: kill -> first Action of
               the new process, and which safety state it starts from:
               - the rate limiter starts from rest (first commands within max_delta of zero);
               - an e-stop engaged before the kill: published latched (transient local), the new
                 controller hears it, possibly after its first frames (discovery order), and sends
                 nothing before it heard a value on estop (default parameters); published volatile
                 (edge-triggered), it cannot hear it and waits for the next value, the release.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from common import LAB_CAMERA, NAMESPACE, Probe, alive, lab_graph, private_domain, ros_env, wait_for_answers

MAX_DELTA = (0.5, 0.5, 0.5, 2.0)  # config/policy_controller.yaml


def run(run_s: float = 5.0, repeats: int = 5) -> dict:
    return {"graph_policy": graph_policy(run_s), "restart": restart(run_s, repeats)}


def graph_policy(run_s: float) -> dict:
    domain = private_domain(1)
    graph, probe = lab_graph(domain)
    try:
        if not wait_for_answers(probe, 10, 90):
            return {"error": "no Action answered the camera within 90 s", "log": graph.tail()}
        probe.stream(run_s)
        victim, others = graph.pids["policy_controller"], dict(graph.pids)
        others.pop("policy_controller")
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        probe.stream(30.0, tick=lambda: graph.proc.poll() is not None)
        exited = time.monotonic()
        code = graph.proc.wait(timeout=30)
        reported = graph.find(r"policy_controller exited with status", killed)
        late = [t for t, _ in probe.actions if t > killed + 0.05]  # answers already in flight are not late
        return {
            "on_exit": "shutdown (roboscape_r_ros/launching/graph.py)",
            "respawned": graph.find(r"started policy_controller", killed) is not None,
            "actions_after_kill": len(late),
            "launcher_reported_s": round(reported[0] - killed, 3) if reported else None,
            "graph_stopped_s": round(exited - killed, 3),
            "launcher_exit_status": code,
            "nodes_left_running": [name for name, pid in others.items() if alive(pid)],
            "launcher_line": reported[1] if reported else None,
        }
    finally:
        probe.close()
        graph.stop()


class Supervisor:
    """The processes of `roboscape-r launch mode=real` (runner.plan), started here so that one of them
    can be restarted with its own command line, as a lab's respawning supervisor would."""

    def __init__(self, env: dict[str, str]) -> None:
        from roboscape_r_ros.commands.launch import LaunchConfig, plan

        self.env = env
        cfg = LaunchConfig(mode="real", namespace=NAMESPACE, arg={"camera": LAB_CAMERA})
        self.argv = {p.name: p.argv for p in plan(cfg)}
        self.procs = {name: self._start(name) for name in self.argv}

    def _start(self, name: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv[name], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def kill_and_restart(self, name: str) -> float:
        """kill -9, reap, start again at once; the kill's monotonic time."""
        killed = time.monotonic()
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()
        self.procs[name] = self._start(name)
        return killed

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def restart(run_s: float, repeats: int) -> dict:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool

    domain = private_domain(2)
    env = ros_env(domain)
    supervisor = Supervisor(env)
    probe = Probe(domain)
    probe.camera(LAB_CAMERA)
    topic = f"/{NAMESPACE}/estop"
    latched = probe.node.create_publisher(
        Bool,
        topic,
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    latched.publish(Bool(data=False))  # the lab's e-stop, not engaged: the controller waits for its value
    volatile = probe.node.create_publisher(Bool, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def subscribers() -> set[bytes]:
        return {bytes(info.endpoint_gid) for info in probe.node.get_subscriptions_info_by_topic(topic)}

    def from_new_process(known: set[bytes]) -> list[float]:
        """Arrival times of the Actions sent by a publisher not in ``known``, in order."""
        return sorted(t for (t, _), sender in zip(probe.actions, probe.senders, strict=True) if sender not in known)

    def engaged_through_restart(release) -> dict:
        """Kill and restart the controller while the e-stop is engaged; the new process's Actions
        until the release (3 s after its e-stop subscription was discovered), then its first one after
        it. Conclusive only where the new process answered after the release (within 30 s): one that
        answers nothing at all keeps the e-stop trivially."""
        old, known = subscribers(), set(probe.senders)
        killed = supervisor.kill_and_restart("policy_controller")
        probe.stream(60.0, tick=lambda: bool(subscribers() - old))
        probe.stream(3.0)
        moving = from_new_process(known)
        heard = len(probe.senders)
        release()
        released = time.monotonic()
        probe.stream(30.0, tick=lambda: any(s not in known for s in probe.senders[heard:]))
        after = [t for t in from_new_process(known) if t > released]
        return {
            "actions_after_restart_while_engaged": len(moving),
            "kept": not moving,
            "moving_from_s": round(moving[0] - killed, 3) if moving else None,
            "moving_for_s": round(moving[-1] - moving[0], 3) if moving else 0.0,
            "first_action_after_release_s": round(after[0] - released, 3) if after else None,
            "conclusive": bool(after),
        }

    try:
        if not wait_for_answers(probe, 10, 90):
            return {"error": "no Action answered the camera within 90 s"}
        report = {}
        # 1. Flowing -> kill -9 -> restart (``repeats`` times): respawn time and where the rate
        # limiter starts. The new process is told apart by its publisher GID.
        report["restarts"] = []
        for _ in range(repeats):
            probe.stream(run_s)
            known = set(probe.senders)
            killed = supervisor.kill_and_restart("policy_controller")
            probe.stream(60.0, tick=lambda known=known: bool(set(probe.senders) - known))
            probe.stream(1.0)
            # in callback order, which is the new publisher's own order on this reliable topic (the receive
            # stamps of message_info were seen out of order under load: steps 6, 7, then 0)
            first = [(t, m) for (t, m), sender in zip(probe.actions, probe.senders, strict=True) if sender not in known]
            if not first:
                report["restarts"].append({"first_action_s": None, "note": "no Action within 60 s"})
                continue
            opening = [list(m.values) for _, m in first[:3]]
            old_last = max(
                (m.step for (_, m), sender in zip(probe.actions, probe.senders, strict=True) if sender in known),
                default=0,
            )
            # the probe hears a new publisher only once discovery matched it, so its first few Actions may be
            # missed: from rest, the k-th step's command lies within (k+1) max_delta of zero (the rate limiter)
            step0 = first[0][1].step
            report["restarts"].append(
                {
                    "first_action_s": round(first[0][0] - killed, 3),
                    "first_steps": [m.step for _, m in first[:3]],
                    "first_values": [[round(v, 3) for v in values] for values in opening],
                    "steps_restarted": step0 < old_last,
                    "rate_limiter_from_rest": all(
                        abs(v) <= (step0 + 1) * d + 1e-9 for v, d in zip(opening[0], MAX_DELTA, strict=True)
                    ),
                }
            )
        times = [r["first_action_s"] for r in report["restarts"] if r["first_action_s"] is not None]
        report["respawn_to_first_action_s"] = {
            "min": min(times, default=None),
            "max": max(times, default=None),
            "resumed": f"{len(times)}/{repeats}",
        }

        # 2. E-stop engaged on a latched (transient local) publisher, then kill -9 and restart; the
        # camera keeps streaming throughout, as a real one would. Default parameters.
        # Repeated until ``repeats`` restarts are conclusive (at most 2 x repeats tries), all counted.
        runs = report["latched_estop"] = []
        while sum(r["conclusive"] for r in runs) < repeats and len(runs) < 2 * repeats:
            latched.publish(Bool(data=True))
            probe.stream(1.0)
            runs.append(engaged_through_restart(lambda: latched.publish(Bool(data=False))))
        conclusive = [r for r in runs if r["conclusive"]]
        report["latched_estop_summary"] = {
            "restarts": len(runs),
            "conclusive": len(conclusive),
            "inconclusive": len(runs) - len(conclusive),
            "kept_in_conclusive": sum(r["kept"] for r in conclusive),
            "actions_while_engaged": sum(r["actions_after_restart_while_engaged"] for r in runs),
        }
        probe.node.destroy_publisher(latched)  # its released value would otherwise answer for the volatile one
        # 3. E-stop engaged by a volatile (edge-triggered) publisher: nothing to hear after a restart.
        volatile.publish(Bool(data=True))
        probe.stream(1.0)
        report["volatile_estop"] = engaged_through_restart(lambda: volatile.publish(Bool(data=False)))
        return report
    finally:
        probe.close()
        supervisor.stop()
