"""gpurnn.profiling_ranges: NVTX ranges as context managers and decorators, in the gpurnn domain
with the stages' colours, and the trainer's phases wrapped in them step by step."""
import contextlib

import numpy as np
import pytest

import gpurnn
import gpurnn.train
from gpurnn import profiling_ranges
from gpurnn.batches import Batch, SentenceBatches
from gpurnn.profiling_ranges import DOMAIN, STAGES, nvtx_range


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_gets_its_colour_in_the_gpurnn_domain(name):
    message, color, domain = nvtx_range(name).init_args[:3]
    assert (message, color, domain) == (name, STAGES[name], "gpurnn") and DOMAIN == "gpurnn"


def test_other_names_get_cyan_or_the_colour_asked():
    assert nvtx_range("my stage").init_args[:3] == ("my stage", "cyan", "gpurnn")
    assert nvtx_range("forward", color="orange").init_args[1] == "orange"


@pytest.mark.parametrize("nvtx_installed", [True, False])
def test_range_as_context_manager_and_decorator_runs_the_code(nvtx_installed, monkeypatch):
    if not nvtx_installed:                          # a bare GPU image: every range is a no-op
        monkeypatch.setattr(profiling_ranges, "nvtx", None)
    with nvtx_range("forward"):
        inside = 1

    @nvtx_range("optimizer step")
    def step(x):
        return x + inside

    assert step(2) == 3


def test_the_trainer_wraps_each_phase_of_a_step_and_evaluation(monkeypatch):
    events = []

    @contextlib.contextmanager
    def recording(name, color=None):
        events.append(("enter", name))
        yield
        events.append(("exit", name))

    monkeypatch.setattr(gpurnn.train, "nvtx_range", recording)
    trainer = gpurnn.train.Trainer(gpurnn.init_params(3, 4, 3, seed=0), gpurnn.train.TrainConfig(backend="cpu"))
    batch = Batch(np.array([[0], [1], [2]]), np.array([[1], [2], [0]]))
    trainer.step(batch)
    phases = ["bptt", "clip", "optimizer step"]
    assert events == [e for name in phases for e in (("enter", name), ("exit", name))]
    events.clear()
    trainer.evaluate(SentenceBatches([np.array([0, 1])], [np.array([1, 2])], 1, shuffle=False))
    assert events == [("enter", "evaluate"), ("exit", "evaluate")]


@pytest.mark.parametrize("nvtx_installed", [True, False])
@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_name(bad, nvtx_installed, monkeypatch):
    if not nvtx_installed:
        monkeypatch.setattr(profiling_ranges, "nvtx", None)
    with pytest.raises(TypeError, match="name"):
        nvtx_range(bad)

