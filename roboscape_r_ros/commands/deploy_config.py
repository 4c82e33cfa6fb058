"""`roboscape-r deploy-config`: the parameter files that deploy a policy with its dataset's action spec.

A policy trained on a dataset emits actions in that dataset's values: the Action it is deployed with
must mean the same (names, units, scale, mode, control period, frame, limits), and the camera must
give frames of the dataset's size. import-bag and camera_ingest's recording write what their
actions mean into info.json (``action_spec``); this command turns it into a config folder for
``roboscape-r launch config_dir=<output>`` or ``ros2 launch ... config_dir:=<output>``:

    roboscape-r deploy-config dataset=outputs/datasets/my_arm output=outputs/deploy/my_arm

Every node's parameter file is copied from ``base`` (the package's config/ by default) with these
values replaced, comments kept:

    policy_controller  action_names, action_units, action_scale, action_mode, control_period_s
                       (the spec's period, else 1 / the dataset's fps), frame_id, action_lower and
                       action_upper (the spec's limits, else -1 and 1: the policy's own range);
                       max_delta and hold_last when their size no longer fits (2 = no rate limit,
                       a dimension named gripper holds its last value)
    camera_ingest      output_size (the dataset's frame size), record.action_names

The result is checked as the nodes check it (contract/action_spec.py) before anything is written.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.contract.action_spec import MODE_NAMES, ActionSpec
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.launching import graph


@dataclass
class DeployConfigConfig:
    dataset: str = option(
        "", help="dataset the policy was trained on; its info.json action_spec (import-bag, recordings) is deployed"
    )
    output: str = option("outputs/deploy", help="folder of the <node>.yaml parameter files to write")
    base: str = option("", help="folder of the parameter files to start from (empty: the package's config/)")
    overwrite: bool = option(False, help="replace the files of an existing output folder")


@dataclass(frozen=True)
class DeployConfigResult:
    output: Path
    spec: ActionSpec
    image_size: int
    dataset: Path

    def __str__(self) -> str:
        s = self.spec
        scale = ", ".join(f"{k:g} {u}" if u != "1" else f"{k:g}" for k, u in zip(s.scale, s.units))
        return "\n".join(
            [
                f"config    {self.output}",
                f"actions   {', '.join(s.names)}: one unit is {scale}, {MODE_NAMES[s.mode]} over "
                f"{1000 * s.period_s:g} ms in frame '{s.frame_id}', values in "
                f"[{', '.join(f'{v:g}' for v in s.lower)}] .. [{', '.join(f'{v:g}' for v in s.upper)}]",
                f"frames    {self.image_size}x{self.image_size} (camera_ingest output_size)",
                f"deploy    roboscape-r launch mode=real config_dir={self.output} arg.backend=learned "
                "param.policy_controller.checkpoint=<policy .safetensors or .onnx> "
                "param.policy_controller.goal_image_file=<goal PNG> arg.camera=<your camera topic> ...",
            ]
        )


def deploy_parameters(info: dict[str, Any], base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{node: {parameter: value}} for a dataset's info.json; ``base`` is the base policy_controller's values."""
    spec = info.get("action_spec")
    if not isinstance(spec, dict) or not {"names", "units", "scale", "mode"} <= spec.keys():
        raise ConfigError(
            "the dataset does not say what its actions mean (no action_spec in meta/info.json): datasets from "
            "import-bag and camera_ingest recordings do; for collect's Meta-World data use the package's config/"
        )
    names, n = list(spec["names"]), len(spec["names"])
    image_size = info["features"][next(k for k in info["features"] if k.startswith("observation.images."))]["shape"][0]
    controller = {
        "action_names": names,
        "action_units": list(spec["units"]),
        "action_scale": [float(v) for v in spec["scale"]],
        "action_mode": spec["mode"],
        "control_period_s": float(spec.get("period_s") or 1.0 / info["fps"]),
        "frame_id": spec.get("frame_id") or base["frame_id"],
        "action_lower": [float(v) for v in spec.get("lower", [-1.0] * n)],
        "action_upper": [float(v) for v in spec.get("upper", [1.0] * n)],
    }
    if len(base["max_delta"]) != n:
        controller["max_delta"] = [2.0] * n
    if len(base["hold_last"]) != n:
        controller["hold_last"] = ["gripper" in name for name in names]
    return {"policy_controller": controller, "camera_ingest": {"output_size": image_size, "record.action_names": names}}


def run_deploy_config(cfg: DeployConfigConfig) -> DeployConfigResult:
    if not cfg.dataset:
        raise ConfigError("dataset=<folder> is needed: the dataset the policy was trained on")
    dataset = EpisodeDataset.open(cfg.dataset)
    base = Path(cfg.base) if cfg.base else graph.config_dir()
    files = {spec.name: base / spec.params_file for spec in graph.NODES}
    if missing := [str(p) for p in files.values() if not p.is_file()]:
        raise ConfigError(f"base folder {base} lacks {', '.join(missing)}")
    texts = {node: path.read_text() for node, path in files.items()}
    values = deploy_parameters(dataset.info, parameters_of(texts["policy_controller"], "policy_controller"))
    controller = values["policy_controller"]
    modes = {name: mode for mode, name in MODE_NAMES.items()}
    if controller["action_mode"] not in modes:
        raise ConfigError(f"action_spec mode {controller['action_mode']!r} is not one of {', '.join(modes)}")
    merged = parameters_of(texts["policy_controller"], "policy_controller") | controller
    spec = ActionSpec(  # the node's own check, now rather than at launch
        tuple(merged["action_names"]),
        tuple(merged["action_units"]),
        tuple(merged["action_scale"]),
        tuple(merged["action_lower"]),
        tuple(merged["action_upper"]),
        modes[merged["action_mode"]],
        merged["control_period_s"],
        merged["frame_id"],
        tuple(merged["hold_last"]),
    )
    for node, changes in values.items():
        texts[node] = with_values(texts[node], node, changes)
    _write_folder(Path(cfg.output), {files[node].name: text for node, text in texts.items()}, cfg.overwrite)
    return DeployConfigResult(Path(cfg.output), spec, values["camera_ingest"]["output_size"], dataset.root)


def parameters_of(text: str, node: str) -> dict[str, Any]:
    return yaml.safe_load(text)[f"/**/{node}"]["ros__parameters"]


def with_values(text: str, node: str, values: dict[str, Any]) -> str:
    """``text`` with each ``name: value`` line of ``values`` replaced (its comment kept); a parameter the
    file does not list is added at the end. JSON is YAML: one flow value per line."""
    lines = text.splitlines()
    for name, value in values.items():
        pattern = re.compile(rf"^(\s+){re.escape(name)}:\s*(?:\[[^\]]*\]|[^#\s][^#]*?|)(\s*#.*)?$")
        found = next(((i, match) for i, line in enumerate(lines) if (match := pattern.match(line))), None)
        if found is not None:
            i, match = found
            indent, comment = match.group(1, 2)
            lines[i] = f"{indent}{name}: {json.dumps(value)}{comment or ''}"
        else:
            lines.append(f"    {name}: {json.dumps(value)}")
    result = "\n".join(lines) + "\n"
    written = parameters_of(result, node)
    if any(written[name] != value for name, value in values.items()):  # a line the pattern misread
        raise ConfigError(f"could not set {', '.join(values)} in {node}'s parameter file")
    return result


def _write_folder(output: Path, files: dict[str, str], overwrite: bool) -> None:
    """All files or none: written into a sibling temporary folder, then moved in."""
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not overwrite)):
        raise ConfigError(f"{output}: exists and is not empty (overwrite=true replaces its files)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        for name, text in files.items():
            (tmp / name).write_text(text)
        if output.is_dir():
            for name in files:
                (tmp / name).replace(output / name)
            shutil.rmtree(tmp)
        else:
            tmp.replace(output)
    except OSError as err:
        raise ConfigError(f"{output}: cannot write the parameter files ({err.strerror})") from None
