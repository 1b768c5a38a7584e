"""Published figures that stay true: docs/gradient-flow.md is what `gpurnn diagnose` renders from its
numbers (docs/figures/gradient-flow.json), and those numbers agree with the code, recomputed where
that is cheap, in what holds on every machine.

Numba compiles for the host CPU and OpenBLAS picks kernels per CPU, so last bits differ between
machines, and the studies amplify them: the lag study's forward runs at ρ(W) = 3 are chaotic, and
a training run's gradient norms are a trajectory (a clipped run's max ‖g‖ moved 4% on another
CPU). So the lag study is checked to the page's 3 digits, and the clipped run by its verdict
(solved, error to 3 digits, steps run), not by its norms.

When one of these fails, the code no longer gives what the page says: rerun
`gpurnn diagnose --out docs/figures --page docs/gradient-flow.md`, which rewrites the page's tables."""
import json
from pathlib import Path

import pytest

from gpurnn.diagnostics.figures import RHOS, markdown_tables, measured_rate, update_page
from gpurnn.diagnostics.studies import lag_study, train_run

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = json.loads((ROOT / "docs" / "figures" / "gradient-flow.json").read_text())
PAGE = (ROOT / "docs" / "gradient-flow.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["provenance", "lag", "clipping", "longest_solved"])
def test_the_page_quotes_the_numbers_verbatim(name):
    assert markdown_tables(NUMBERS)[name] in PAGE


def test_the_page_is_what_the_code_renders_from_the_numbers():
    assert update_page(PAGE, NUMBERS) == PAGE


def test_the_numbers_say_where_they_come_from():
    p = NUMBERS["provenance"]
    assert p["command"].startswith("gpurnn diagnose") and p["date"][:4].isdigit() and p["commit"]
    assert not p["commit"].endswith("-dirty")


def test_the_lag_study_reproduces():
    cfg = NUMBERS["settings"]
    studies = [lag_study(rhos=RHOS, T=cfg["T"], d=cfg["hidden"], seed=seed) for seed in range(cfg["lag_seeds"])]
    assert sum(c.violations for curves in studies for c in curves) == 0 == NUMBERS["lag_violations_all_seeds"]
    for seed, curves in enumerate(studies):
        for c in curves:
            published = NUMBERS["lag_rate_by_seed"][f"{c.activation}_rho{c.rho:g}"][seed]
            assert measured_rate(c.jacobian_geomean) == pytest.approx(published, rel=1e-3)
    for c, row in zip(studies[0], NUMBERS["lag_study"], strict=True):
        # λ = ‖W‖₂ of a fixed W: one SVD, a few ulps
        assert (c.activation, c.norm) == (row["activation"], pytest.approx(row["norm"], rel=1e-12))
        for lag in (10, cfg["T"] - 1):
            assert c.jacobian_geomean[lag] == pytest.approx(row[f"geomean_lag{lag}"], rel=1e-3)
            assert c.bound[lag] == pytest.approx(row[f"bound_lag{lag}"], rel=1e-9)    # (γλ)^lag


def test_a_clipped_training_run_reproduces():
    cfg = NUMBERS["settings"]
    row = next(r for r in NUMBERS["clipping"] if r["seed"] == 0 and r["clip"] is not None)
    run = train_run(length=cfg["length"], clip=row["clip"], lr=cfg["lr"], steps=cfg["steps"], hidden=cfg["hidden"],
                    seed=0, sequences=cfg["sequences"])
    norms = run.log.column("norm")
    assert (run.evaluation.solved, run.diverged, len(norms)) == (row["solved"], row["diverged"], row["steps"])
    assert run.evaluation.error == pytest.approx(row["error"], abs=1e-3)
