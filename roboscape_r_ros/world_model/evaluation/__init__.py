"""The world model's evaluation on recorded episodes (`roboscape-r evaluate-wm`), apart from its report.

    metrics.py   what is scored (`Scored`: a model and its episodes), image metrics, change rates,
                 the done head on real frames, the goal model; every result a JSON-ready dict
    rollouts.py  open-loop rollouts scored per horizon, and the real | dreamed | goal GIF
    report.py    report.md and its plots, from those dicts alone

What each number means: the docstring of roboscape_r_ros/commands/evaluate_wm.py, the command that
opens a run, calls these and writes the files.
"""
