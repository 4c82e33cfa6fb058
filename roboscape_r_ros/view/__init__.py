"""Datasets, world-model runs and evaluations as MCAP recordings (Foxglove, ros2 bag play); the
`roboscape-r view` command is commands/view.py."""
