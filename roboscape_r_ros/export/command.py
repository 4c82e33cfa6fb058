"""`roboscape-r export`: a trained policy -> an ONNX file with its metadata, checked against torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.export.policy import export_policy


@dataclass
class ExportConfig:
    policy: str = option("", help="policy checkpoint (.safetensors) from train-bc, train-imagination or train-sim-ppo")
    output: str = option("", help="ONNX file to write (default: the checkpoint's path with .onnx)")
    tolerance: float = option(
        1e-4, help="largest absolute action difference between ONNX Runtime and torch that is accepted"
    )

    def __post_init__(self) -> None:
        if not self.policy:
            raise ConfigError("export needs policy=<checkpoint .safetensors>")
        if self.tolerance <= 0:
            raise ConfigError(f"tolerance must be > 0, got {self.tolerance}")


def run_export(cfg: ExportConfig) -> str:
    output = Path(cfg.output) if cfg.output else Path(cfg.policy).with_suffix(".onnx")
    result = export_policy(cfg.policy, output, cfg.tolerance)
    return (
        f"{result.path}: {result.metadata['inputs']} -> {result.metadata['output']}; "
        f"max |onnxruntime - torch| = {result.max_abs_diff:.3g} at batch 1 and 16"
    )
