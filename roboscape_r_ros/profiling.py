"""Labels on the code paths whose time bench/profile_world_model.py reports (tokenizer, attention, MLP,
MaskGIT iterations, done head, perceptual network): ``with label("dynamics.mlp"): ...`` is a
torch.profiler ``record_function`` while a profiler runs and nothing otherwise, so the hot loops pay one
flag check and ONNX export and torch.compile never see it."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch.profiler import record_function

PREFIX = "rs:"  # marks these labels among the profiler's events

_NOTHING = nullcontext()


def label(name: str) -> AbstractContextManager:
    if not torch.autograd.profiler._is_profiler_enabled:
        return _NOTHING
    return record_function(PREFIX + name)
