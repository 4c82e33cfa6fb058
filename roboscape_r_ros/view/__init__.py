"""`roboscape-r view`: datasets, world-model runs and evaluations as MCAP recordings (Foxglove, ros2 bag play)."""
