#!/usr/bin/env bash
# Does a dataset written by this package load in LeRobot's own LeRobotDataset, and does LeRobot's
# QUANTILES normalisation read one written by `roboscape-r collect --preset tiny`? Not part of CI: it
# builds a separate venv with lerobot (minutes, GBs with a CUDA torch); docs/lerobot_interop.md has
# the commands and what they printed.
#
#   tools/check_lerobot_interop.sh [VENV]          # default VENV: outputs/lerobot-venv
#   TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" tools/check_lerobot_interop.sh outputs/lerobot-venv-cuda
#
# lerobot is installed without its dependencies (it pins its own torch) against TORCH_SPEC (default:
# the project's torch pin from requirements/core.txt), then the few packages its dataset code imports.
# Run from the repository root, with this package's venv active (the dataset is written there).
# Video decoding goes through torchcodec, which needs FFmpeg's shared libraries (Debian 12: apt-get install
# libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4).
set -euo pipefail

VENV=${1:-outputs/lerobot-venv}
LEROBOT=${LEROBOT:-lerobot==0.4.4}  # the last release for Python 3.11 (0.5 and later need Python >= 3.12)
# lerobot.datasets imports torchvision; 0.28.0 is the release built for torch 2.13 (the project's pin)
TORCH_SPEC=${TORCH_SPEC:-"$(grep -h '^torch==' requirements/core.txt) torchvision==0.28.0"}
DATA=${DATA:-outputs/lerobot-interop}

python -c "import roboscape_r_ros" || { echo "activate this package's venv first" >&2; exit 2; }
rm -rf "$DATA"
python tools/lerobot_interop.py write "$DATA"
roboscape-r collect --preset tiny output="$DATA/collected" > /dev/null

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
pin=$(mktemp)
echo "$TORCH_SPEC" | tr ' ' '\n' > "$pin"
"$VENV/bin/pip" install -q $TORCH_SPEC
"$VENV/bin/pip" install -q --no-deps "$LEROBOT"
# what lerobot.datasets imports (its own requirements list pulls torch, wandb, diffusers, rerun, ...)
"$VENV/bin/pip" install -q -c "$pin" datasets huggingface-hub jsonlines packaging pillow av accelerate torchcodec
# ... and what lerobot.processor (the normaliser) imports through its teleoperator and motor modules
"$VENV/bin/pip" install -q -c "$pin" draccus==0.10.0 pyserial deepdiff termcolor einops "gymnasium<2"
rm -f "$pin"

echo "== LeRobotDataset on the datasets written here ($("$VENV/bin/pip" list 2>/dev/null | grep -E '^(torch|torchvision|lerobot) ' | tr -s ' ' | paste -sd, -))"
HF_HUB_OFFLINE=1 "$VENV/bin/python" tools/lerobot_interop.py load "$DATA"
echo "== LeRobot's NormalizerProcessorStep with NormalizationMode.QUANTILES"
HF_HUB_OFFLINE=1 "$VENV/bin/python" tools/lerobot_interop.py quantiles "$DATA/collected"
