"""What the nodes run, in plain Python (importable without rclpy): gates/ (which message may pass,
when the arm holds), inference/ (policy backends, world-model runners, hot reload), sessions/ (the
dream, reward, sim, camera-ingest and recording cores) and learner.py (PPO over the topic loop)."""

# The Meta-World task of sim_bridge and of policy_controller's expert backend, and the launch files'
# `task` argument, unless set: one default for all three.
DEFAULT_TASK = "reach-v3"
