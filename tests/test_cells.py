"""Both directions of a layer in one call (`recurrence_forward_cells`, `recurrence_backward_cells`):
the planner's pairing and its fallbacks, the CUDA backend's one choice of path (`cuda_recurrence.route`),
and each cell's result equal, bit for bit, to a run of that cell alone on the same path (and close
to the CPU backend's), under the simulator for the CUDA kernels."""
import dataclasses
import types
import warnings

import numpy as np
import pytest

from gpurnn.backends import get_backend
from gpurnn.kernels import persistent_backward as pb
from gpurnn.kernels import persistent_forward as pf
from gpurnn.kernels import persistent_plan as pp

F32, F64 = np.float32, np.float64
TOL = {F32: 2e-5, F64: 1e-12}


# ---------------------------------------------------------------- the planner: pairs and their fallbacks

def test_block_cells_pair_with_rows_chosen_for_both_directions():
    single, paired = pp.plan(128, 256, F32), pp.plan(128, 256, F32, cells=2)
    assert (single.variant, single.rows, single.grid, single.cells) == ("block", 1, 128, 1)
    assert (paired.variant, paired.rows, paired.grid, paired.cells) == ("block", 2, 64, 2)   # 128 blocks in all
    assert "2 cells as independent blocks" in paired.reason
    truncated = pp.plan(32, 128, F32, direction="backward", truncate=4, cells=2)
    assert (truncated.variant, truncated.cells, truncated.chains) == ("block", 2, 5)


def test_cooperative_cells_pair_only_where_twice_the_grid_is_co_resident():
    paired = pp.plan(32, 512, F32, cells=2)
    assert (paired.variant, paired.cells, paired.rows) == ("coop", 2, 8)
    per_sm = pp.H100.regs_per_sm // (pp.COOP_THREADS * pp.COOP_REGS)
    assert paired.grid * paired.cells <= per_sm * pp.H100.sm_count
    alone = pp.plan(64, 512, F32, cells=2)          # 2 × 128 blocks > 132: one launch per direction
    assert (alone.variant, alone.cells) == ("coop", 1)
    assert alone.reason.startswith("one launch per direction (B = 64 × 2 cells")
    assert alone == dataclasses.replace(pp.plan(64, 512, F32), reason=alone.reason)


def test_no_persistent_plan_leaves_the_pair_to_the_step_path_and_bad_cells_are_refused():
    assert pp.plan(128, 512, F32, cells=2) == pp.plan(128, 512, F32)        # "step", the same reason
    with pytest.raises(ValueError, match="cells must be 1 or 2"):
        pp.plan(4, 64, F32, cells=3)
    with pytest.raises(ValueError, match="cells must be 1 or 2"):
        pp.custom_plan("block", 4, 64, F32, rows=1, cells=0)


def test_a_paired_cooperative_grid_counts_both_cells_blocks_at_launch():
    paired = pp.plan(32, 512, F32, cells=2)
    blocks = paired.grid * paired.cells
    assert pp.launch_blocker(paired, regs_per_thread=154, max_threads_per_block=256, coop_grid_limit=blocks) is None
    why = pp.launch_blocker(paired, regs_per_thread=154, max_threads_per_block=256, coop_grid_limit=blocks - 1)
    assert f"cooperative grid of {blocks} blocks" in why


# ---------------------------------------------------------------- the CUDA backend's one choice

@pytest.fixture
def router(monkeypatch):
    """`cuda_recurrence.route` on a stand-in backend, with the H100's limits (no device here)."""
    from gpurnn.backends import cuda_recurrence

    monkeypatch.setattr(pp, "device_limits", lambda: pp.H100)
    be = types.SimpleNamespace(persistent=True, refused=set())
    return be, lambda *shape, truncate=None, direction="forward": cuda_recurrence.route(
        be, direction, *shape, truncate, 2)


def test_route_pairs_then_one_launch_per_cell_then_the_step_path(router):
    be, route = router
    paired = route(8, 64, F32)
    assert paired.plan.cells == 2
    be.refused.add(("forward", paired.plan))
    alone = route(8, 64, F32)
    assert alone.plan.cells == 1 and alone.reason.startswith("the device refused the paired launch")
    be.refused.add(("forward", alone.plan))
    assert route(8, 64, F32).plan is None and "refused the persistent forward kernel" in route(8, 64, F32).reason
    assert route(8, 64, F32, direction="backward").plan.cells == 2      # each direction remembered apart
    assert route(128, 512, F32).plan is None and "cooperative grid" in route(128, 512, F32).reason
    be.persistent = False
    assert route(8, 64, F32).plan is None and "turned off" in route(8, 64, F32).reason


# ---------------------------------------------------------------- each cell equals its run alone

def _case(rng, T, B, d, dtype):
    """Two cells' (XP, W, s0, G, g_last) and lengths (one T, one 0)."""
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[0], lengths[-1] = T, 0
    cells = []
    for _ in range(2):
        G = rng.standard_normal((T, B, d)).astype(dtype)
        G[np.arange(T)[:, None] >= lengths[None, :]] = 0
        XP, W = rng.standard_normal((T, B, d)), rng.standard_normal((d, d)) / np.sqrt(d)
        s0, g_last = 0.5 * rng.standard_normal((B, d)), rng.standard_normal((B, d))
        cells.append((XP.astype(dtype), W.astype(dtype), s0.astype(dtype), G, g_last.astype(dtype)))
    return cells, lengths


def _backend(backend, path):
    if backend == "cpu":
        if path == "step":
            pytest.skip("the CPU backend has one path (it loops over the cells)")
        return get_backend("cpu")
    from gpurnn.backends.cuda import CUDABackend

    return CUDABackend(gemm="numba", persistent=path == "persistent")


def _host(be, arrays):
    return [None if a is None else be.to_host(a) for a in arrays]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("path", ["persistent", "step"])
def test_forward_cells_equal_each_cell_alone(backend, path, dtype, monkeypatch):
    be = _backend(backend, path)
    cells, lengths = _case(np.random.default_rng(1), 4, 3, 8, dtype)
    launches = []
    launch = pf.persistent_forward_cells
    monkeypatch.setattr(pf, "persistent_forward_cells", lambda group, *a, **k: launches.append(len(group)) or launch(
        group, *a, **k))
    dev = [[be.asarray(a) for a in cell[:3]] for cell in cells]
    L = be.asarray(lengths)
    both = _host(be, be.recurrence_forward_cells([c[0] for c in dev], [c[1] for c in dev], [c[2] for c in dev], L, 0))
    assert launches == ([2] if backend == "cuda" and path == "persistent" else [])    # one launch, both cells
    cpu = get_backend("cpu")
    for (XP, W, s0), S, cell in zip(dev, both, cells):
        assert S.tobytes() == be.to_host(be.recurrence_forward(XP, W, s0, L, 0)).tobytes()
        np.testing.assert_allclose(S, cpu.recurrence_forward(*cell[:3], lengths, 0), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("truncate", [None, 1])
@pytest.mark.parametrize("path", ["persistent", "step"])
def test_backward_cells_equal_each_cell_alone(backend, path, truncate):
    """Cell 0 with G only, cell 1 with g_last only (each cell's own "no gradient" rows), then both
    with both."""
    be = _backend(backend, path)
    dtype = F64
    cells, lengths = _case(np.random.default_rng(2), 4, 3, 8, dtype)
    cpu, L = get_backend("cpu"), be.asarray(lengths)
    Ss = [cpu.recurrence_forward(XP, W, s0, lengths, 1) for XP, W, s0, _, _ in cells]
    for terms in ([(True, False), (False, True)], [(True, True), (True, True)]):
        Gs = [be.asarray(cell[3]) if g else None for cell, (g, _) in zip(cells, terms)]
        lasts = [be.asarray(cell[4]) if last else None for cell, (_, last) in zip(cells, terms)]
        Sd, Wd = [be.asarray(S) for S in Ss], [be.asarray(cell[1]) for cell in cells]
        both = be.recurrence_backward_cells(Gs, lasts, Sd, Wd, L, 1, truncate)
        for i, (delta, ds0) in enumerate(both):
            alone = be.recurrence_backward(Gs[i], lasts[i], Sd[i], Wd[i], L, 1, truncate)
            ref = cpu.recurrence_backward(*_host(be, [Gs[i], lasts[i]]), Ss[i], cells[i][1], lengths, 1, truncate)
            for got, one, want in zip((delta, ds0), alone, ref):
                assert be.to_host(got).tobytes() == be.to_host(one).tobytes()
                np.testing.assert_allclose(be.to_host(got), want, atol=1e-12, rtol=1e-12)


def _cooperative_cells_equal_each_cell_alone(T, B, d, rows):
    """Both cells in one launch of the cooperative kernels equal each cell launched alone."""
    dtype = F32
    cells, lengths = _case(np.random.default_rng(3), T, B, d, dtype)
    paired = pp.custom_plan("coop", B, d, dtype, rows=rows, pairs=True, cells=2)
    alone = dataclasses.replace(paired, cells=1)
    Ss = [np.full((T + 1, B, d), np.nan, dtype) for _ in cells]
    pf.persistent_forward_cells([(XP, W, s0, S) for (XP, W, s0, _, _), S in zip(cells, Ss)], lengths, 0, plan=paired)
    outs = [(np.full((T, B, d), np.nan, dtype), np.full((B, d), np.nan, dtype)) for _ in cells]
    pb.persistent_backward_cells([(G, last, S, W, *out) for (_, W, _, G, last), S, out in zip(cells, Ss, outs)],
                                 lengths, 0, None, plan=paired)
    cpu = get_backend("cpu")
    for (XP, W, s0, G, last), S, (delta, ds0) in zip(cells, Ss, outs):
        S1 = np.full_like(S, np.nan)
        pf.persistent_forward(XP, W, s0, lengths, 0, S1, plan=alone)
        delta1, ds01 = np.full_like(delta, np.nan), np.full_like(ds0, np.nan)
        pb.persistent_backward(G, last, S, W, lengths, 0, None, delta1, ds01, plan=alone)
        assert S.tobytes() == S1.tobytes() and delta.tobytes() == delta1.tobytes() and ds0.tobytes() == ds01.tobytes()
        np.testing.assert_allclose(S, cpu.recurrence_forward(XP, W, s0, lengths, 0), atol=1e-4, rtol=1e-4)


@pytest.mark.sim
def test_one_block_cooperative_cells_equal_each_cell_alone():
    """A one-block grid per cell: the simulator's grid barrier is a block barrier, and the cells
    never read each other's data."""
    _cooperative_cells_equal_each_cell_alone(3, 3, 32, rows=4)


@pytest.mark.cuda
def test_multi_block_cooperative_cells_gpu():
    """9 blocks a cell (3 column groups × 3 batch groups), 18 across one grid barrier per step."""
    _cooperative_cells_equal_each_cell_alone(30, 5, 96, rows=2)


@pytest.mark.sim
def test_a_refused_pair_runs_one_launch_per_cell_and_warns_once(monkeypatch):
    from gpurnn.backends import cuda_recurrence
    from gpurnn.backends.cuda import CUDABackend, PersistentFallbackWarning

    launch, launches = pf.persistent_forward_cells, []

    def no_pairs(group, *args, plan, **kwargs):
        launches.append(plan.cells)
        if plan.cells == 2:
            raise pp.PersistentUnavailable("a test refuses pairs")
        return launch(group, *args, plan=plan, **kwargs)

    monkeypatch.setattr(pf, "persistent_forward_cells", no_pairs)
    monkeypatch.setattr(cuda_recurrence, "_warned", set())
    be = CUDABackend(gemm="numba", persistent=True)
    cells, lengths = _case(np.random.default_rng(4), 3, 2, 8, F64)
    args = [[be.asarray(c[i]) for c in cells] for i in range(3)] + [be.asarray(lengths), 2]
    with pytest.warns(PersistentFallbackWarning, match="a test refuses pairs; one launch per cell runs instead"):
        first = be.recurrence_forward_cells(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = be.recurrence_forward_cells(*args)
    assert launches == [2, 1, 1, 1, 1]           # refused once, then one launch per cell
    for a, b, cell in zip(first, again, cells):
        assert be.to_host(a).tobytes() == be.to_host(b).tobytes()
        np.testing.assert_allclose(be.to_host(a), get_backend("cpu").recurrence_forward(*cell[:3], lengths, 2),
                                   atol=1e-12)
