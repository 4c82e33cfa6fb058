"""The messages policy_controller sends for one command: the Action and, each when enabled, the
adapter outputs cmd_pose, cmd_twist, cmd_array and cmd_trajectory (the mapping is contract/adapters.py).

A hold goes only to the outputs of ``adapters.hold_outputs``: zero motion on rate outputs, the current
pose on cmd_pose, the current joint positions on a DELTA cmd_trajectory, nothing on delta/absolute
outputs (in the default DELTA mode no Action at all, so a per-action simulator is not stepped by it).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roboscape_r_ros.contract import adapters
from roboscape_r_ros.contract.action_spec import MODE_ABSOLUTE, MODE_DELTA, ActionSpec
from roboscape_r_ros.msg import Action
from roboscape_r_ros.nodes.messaging import RELIABLE
from roboscape_r_ros.nodes.node_tools import ThrottledWarnings

ADAPTER_TYPES = {
    "pose": PoseStamped,
    "twist": TwistStamped,
    "array": Float64MultiArray,
    "trajectory": JointTrajectory,
}


class CommandOutputs:
    def __init__(
        self,
        node: Node,
        spec: ActionSpec,
        enabled: dict[str, bool],
        joint_order: tuple[str, ...],
        warnings: ThrottledWarnings,
    ) -> None:
        self.spec, self.joint_order, self.warnings = spec, joint_order, warnings
        self.period = Duration(sec=int(spec.period_s), nanosec=int(round((spec.period_s % 1) * 1e9)))
        self.hold_outputs = adapters.hold_outputs(spec)
        self.action_pub = node.create_publisher(Action, "action", RELIABLE)
        self.adapter_pubs = {
            name: node.create_publisher(kind, f"cmd_{name}", RELIABLE)
            for name, kind in ADAPTER_TYPES.items()
            if enabled[name]
        }
        self.ee_pose: adapters.Pose | None = None  # the hand's current pose, for cmd_pose
        self.last_action: Action | None = None  # sent again when its frame is seen again
        self.published = 0

    def describe(self) -> str:
        return ", ".join(f"cmd_{name}" for name in self.adapter_pubs) or "none"

    def repeat(self) -> None:
        """The last Action again (a frame seen again: its first answer may have been lost)."""
        if self.last_action is not None:
            self.action_pub.publish(self.last_action)

    def publish(
        self,
        values: np.ndarray,
        stamp: Time,
        *,
        step: int,
        episode_id: str,
        source: str,
        hold: bool = False,
        joints: np.ndarray | None = None,
    ) -> None:
        """``joints``: the arm's joint positions in action order (DELTA joint targets; None: none fresh)."""
        spec = self.spec
        header = Header(stamp=stamp, frame_id=spec.frame_id)
        names = self.hold_outputs if hold else {"action", *self.adapter_pubs}
        if "action" in names:
            action = Action(
                header=header,
                names=list(spec.names),
                units=list(spec.units),
                values=values.tolist(),
                scale=list(spec.scale),
                lower=list(spec.lower),
                upper=list(spec.upper),
                mode=spec.mode,
                duration=self.period,
                step=step,
                episode_id=episode_id,
                source=source,
            )
            self.action_pub.publish(action)
            self.last_action = None if hold else action
            self.published += 1
        if "twist" in self.adapter_pubs and "twist" in names:
            linear, angular = adapters.twist(spec, values)
            msg = TwistStamped(header=header)
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = linear.tolist()
            msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = angular.tolist()
            self.adapter_pubs["twist"].publish(msg)
        if "pose" in self.adapter_pubs:
            if hold:
                if self.ee_pose is not None:
                    self._publish_pose(header, self.ee_pose)  # stay where the hand is
            elif self.ee_pose is None and spec.mode != MODE_ABSOLUTE:
                self.warnings.warn("no-ee-pose", "cmd_pose needs the current pose on ee_pose: not published")
            else:
                self._publish_pose(header, adapters.pose_target(spec, values, self.ee_pose))
        if "array" in self.adapter_pubs and "array" in names:
            msg = Float64MultiArray(data=adapters.array(spec, values).tolist())
            msg.layout.dim = [MultiArrayDimension(label=",".join(spec.names), size=spec.dim, stride=spec.dim)]
            self.adapter_pubs["array"].publish(msg)
        # A DELTA hold without fresh joint positions sends nothing: the controller stops at its last point.
        if (
            "trajectory" in self.adapter_pubs
            and "trajectory" in names
            and (joints is not None or spec.mode != MODE_DELTA)
        ):
            joint_names, point = adapters.joint_trajectory(spec, values, self.joint_order, joints)
            # A zero stamp means "start now" to ros2_control's joint_trajectory_controller; the
            # observation's stamp would put the point in the past.
            msg = JointTrajectory(header=Header(frame_id=spec.frame_id), joint_names=joint_names)
            msg.points = [
                JointTrajectoryPoint(
                    positions=list(point.positions), velocities=list(point.velocities), time_from_start=self.period
                )
            ]
            self.adapter_pubs["trajectory"].publish(msg)

    def _publish_pose(self, header: Header, target: adapters.Pose) -> None:
        msg = PoseStamped(header=header)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = target.position.tolist()
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = target.orientation.tolist()
        self.adapter_pubs["pose"].publish(msg)
