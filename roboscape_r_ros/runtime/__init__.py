"""Runtime core of the ROS graph, importable without rclpy: action specs, safety filter, policy
backends, command adapters and the sim session that the nodes wrap."""
