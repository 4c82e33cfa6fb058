"""Runtime core of the ROS graph, importable without rclpy: action specs, safety filter, policy
backends (scripted, random, learned), command adapters, the topic-loop PPO learner, and the sim,
dream and reward sessions that the nodes wrap."""
