"""gpurnn.profiling_ranges: NVTX ranges as context managers and decorators."""
import pytest

from gpurnn import profiling_ranges
from gpurnn.profiling_ranges import STAGES, nvtx_range


def test_range_as_context_manager_and_decorator():
    with nvtx_range("forward"):
        inside = 1

    @nvtx_range("optimizer step")
    def step(x):
        return x + inside

    assert step(2) == 3
    assert set(STAGES) >= {"forward", "backward", "clip", "optimizer step"}


def test_other_names_and_colours():
    with nvtx_range("my stage", color="orange"):
        pass


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_name(bad):
    with pytest.raises(TypeError, match="name"):
        nvtx_range(bad)


def test_ranges_are_no_ops_without_the_nvtx_package(monkeypatch):
    monkeypatch.setattr(profiling_ranges, "nvtx", None)
    with nvtx_range("forward"):
        inside = 1

    @nvtx_range("optimizer step")
    def step(x):
        return x + inside

    assert step(2) == 3
    with pytest.raises(TypeError, match="name"):
        nvtx_range("")
