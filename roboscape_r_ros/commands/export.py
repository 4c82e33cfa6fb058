"""`roboscape-r export`: a trained policy -> an ONNX file, or a world-model run -> a folder of ONNX files,
each with its metadata and checked against torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roboscape_r_ros.config import ConfigError, option


@dataclass
class ExportConfig:
    policy: str = option("", help="policy checkpoint (.safetensors) from train-bc, train-imagination or train-sim-ppo")
    world_model: str = option(
        "", help="world-model run folder (or its .safetensors): encode, context, step, decode (+ effnet) .onnx"
    )
    output: str = option(
        "",
        help="policy: the ONNX file (default: the checkpoint's path with .onnx); world_model: the folder "
        "(default: <run>/onnx)",
    )
    tolerance: float = option(
        1e-4,
        help="largest absolute difference between ONNX Runtime and torch accepted in a float output (actions, "
        "kv cache, done probabilities, features); token ids must be equal, decoded frames within 1 level",
        above=0.0,
    )
    perceptual: bool = option(True, help="world_model: also export the reward's effnet perceptual network")
    perceptual_resolution: int = option(
        128,
        help="world_model: effnet input side the frames are resized to (the reward's perception.resolution)",
        low=0,
        high=1024,
    )

    def __post_init__(self) -> None:
        if bool(self.policy) == bool(self.world_model):
            raise ConfigError("export needs policy=<checkpoint .safetensors> or world_model=<run folder>, one of them")


def run_export(cfg: ExportConfig) -> str:
    if cfg.world_model:
        from roboscape_r_ros.export.world_model import export_world_model

        result = export_world_model(
            cfg.world_model, cfg.output, cfg.tolerance, cfg.perceptual_resolution if cfg.perceptual else None
        )
        lines = [f"{result.folder}: parity on {result.parity_inputs} at batch 1 and 16"]
        for piece, path in result.files.items():
            diffs = ", ".join(f"{k} {v:.3g}" for k, v in result.max_abs_diff[piece].items())
            lines.append(f"  {path.name:13s} max |onnxruntime - torch|: {diffs}")
        return "\n".join(lines)
    from roboscape_r_ros.export.policy import export_policy

    output = Path(cfg.output) if cfg.output else Path(cfg.policy).with_suffix(".onnx")
    exported = export_policy(cfg.policy, output, cfg.tolerance)
    return (
        f"{exported.path}: {exported.metadata['inputs']} -> {exported.metadata['output']}; "
        f"max |onnxruntime - torch| = {exported.max_abs_diff:.3g} at batch 1 and 16"
    )
