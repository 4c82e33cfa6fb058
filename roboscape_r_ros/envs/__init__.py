"""Meta-World tasks as pixel-observation gymnasium envs, with scene variations.

mujoco picks its GL backend from MUJOCO_GL when it is first imported, so the headless default is
set here, before any module of this package imports it: EGL where no X display is set (servers,
CI, containers), and a value the user exported always wins.
"""

import os

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"
