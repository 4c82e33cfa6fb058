"""The sim loop for tests: `roboscape-r launch mode=sim` in namespace loop, each episode MAX_STEPS steps."""

import subprocess
import sys

from helpers import REPO

MAX_STEPS = 100


def launch(ros, *overrides: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "roboscape_r_ros.cli",
        "launch",
        "mode=sim",
        "namespace=loop",
        "param.sim_bridge.camera_resolution=64",
        "param.sim_bridge.auto_reset=false",
        f"param.sim_bridge.max_steps={MAX_STEPS}",
        *overrides,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ros.processes.append(proc)
    return proc
