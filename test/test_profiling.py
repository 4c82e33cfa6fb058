"""bench/profile_world_model.py's accounting: each operator's time goes to the innermost label around it, a
backward operator's to the label of the forward operator that made it; the labels cost nothing unprofiled."""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from helpers import REPO
from roboscape_r_ros.profiling import label


def load_profiler_script():
    spec = importlib.util.spec_from_file_location("profile_world_model", REPO / "bench" / "profile_world_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backward_time_goes_to_the_forward_label_that_made_it():
    script = load_profiler_script()
    mlp, attention = torch.nn.Linear(64, 256), torch.nn.Linear(256, 64)
    x = torch.randn(512, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with label("train.forward"):
            with label("host.to_device"):
                y = torch.as_tensor(x)  # makes no autograd node: shares its sequence number with the next op
            with label("dynamics.mlp"):
                h = mlp(y).relu()
            with label("dynamics.attention.spatial"):
                loss = attention(h).square().mean()
        with label("train.backward"):
            loss.backward()
    components, phases = script.attribute(prof.events())
    assert components["dynamics.mlp"]["backward"] > 0 and components["dynamics.attention.spatial"]["backward"] > 0
    assert components["host.to_device"]["backward"] == 0
    assert set(phases) <= {"train.forward", "train.backward", "none"}
    total = sum(c["forward"] + c["backward"] for c in components.values())
    assert total == pytest.approx(sum(phases.values()))


def test_labels_are_nothing_without_a_profiler():
    assert isinstance(label("dynamics.mlp"), nullcontext)
    with profile(activities=[ProfilerActivity.CPU]):
        assert not isinstance(label("dynamics.mlp"), nullcontext)
