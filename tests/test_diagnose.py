"""The diagnose studies and figures at tiny sizes (the real run is `gpurnn diagnose`)."""
import json

import numpy as np
import pytest

from gpurnn.diagnostics.figures import markdown_tables, measured_rate, run_diagnose
from gpurnn.diagnostics import spectral_radius
from gpurnn.diagnostics.studies import lag_study, longest_solved, recurrent_matrix, train_run


def test_recurrent_matrix_has_the_asked_spectral_radius():
    assert spectral_radius(recurrent_matrix(6, 1.5, seed=2)) == pytest.approx(1.5)


def test_lag_study_respects_the_bound_and_vanishes_for_logistic():
    curves = lag_study(("tanh", "logistic"), (0.5, 1.5), T=12, d=6, batch=2)
    assert [c.activation for c in curves] == ["tanh", "tanh", "logistic", "logistic"]
    assert [c.rho for c in curves] == pytest.approx([0.5, 1.5, 0.5, 1.5])
    assert all(c.violations == 0 for c in curves)
    assert all(measured_rate(c.jacobian_geomean) < 1 for c in curves if c.activation == "logistic")


def test_train_run_logs_every_step_and_clips():
    """Clipped to ‖g‖ ≤ 1e-3, an SGD step of lr 0.3 moves θ (so ‖W‖_F) by at most 3e-4, while the
    logged norms before clipping are far larger; without clipping the same run moves further."""
    clipped = train_run(length=10, clip=1e-3, steps=4, hidden=4, batch=3, sequences=50)
    free = train_run(length=10, clip=None, steps=4, hidden=4, batch=3, sequences=50)
    assert clipped.log.column("step").tolist() == [1, 2, 3, 4] and not clipped.diverged
    assert (clipped.log.column("norm") > 0.01).all() and 0 <= clipped.evaluation.error <= 1
    start = np.linalg.norm(recurrent_matrix(4, 1.2, 0))
    moves = np.abs(np.diff(np.concatenate(([start], clipped.weight_norm))))
    assert moves.max() <= 0.3 * 1e-3 * (1 + 1e-9)
    assert np.abs(free.weight_norm[-1] - start) > 10 * np.abs(clipped.weight_norm[-1] - start)
    np.testing.assert_array_equal(free.log.column("norm")[0], clipped.log.column("norm")[0])   # same start


def test_longest_solved_states_its_rule():
    with pytest.raises(ValueError, match="min_solved must lie in \\[1, 2\\]"):
        longest_solved((10,), seeds=(0, 1), min_solved=3)


def test_measured_rate():
    assert measured_rate(0.5 ** np.arange(30)) == pytest.approx(0.5)
    curve = 0.1 ** np.arange(30.0)
    curve[5:] = 0
    assert measured_rate(curve) == pytest.approx(0.1)


def test_run_diagnose_writes_figures_and_numbers(tmp_path):
    lines = []
    page = tmp_path / "page.md"
    page.write_text("intro\nNumbers and figures of this page: old\n\n| a |\n|---|\n\ntext\n| b |\n\n| c |\nend\n")
    numbers = run_diagnose(tmp_path, T=6, hidden=4, length=10, steps=2, search=(10,), seeds=1, run_seeds=2,
                           min_solved=1, sequences=100, echo=lines.append, command="test", page=page)
    tables = markdown_tables(numbers)
    assert page.read_text() == (f"intro\n{tables['provenance']}\n\n{tables['lag']}\n\ntext\n{tables['clipping']}\n\n"
                                f"{tables['longest_solved']}\nend\n")
    assert (tmp_path / "gradient-flow-lag.png").stat().st_size > 0
    assert (tmp_path / "gradient-flow-clipping.png").stat().st_size > 0
    assert json.loads((tmp_path / "gradient-flow.json").read_text()) == json.loads(json.dumps(numbers))
    assert len(numbers["lag_study"]) == 12
    stages = [line for line in lines if not line.startswith("metric ")]
    assert [line.split("stage ")[1][:3] for line in stages if " stage " in line] == ["1/3", "2/3", "3/3"]
    assert "  seed 2/2: solved without clipping " in "\n".join(stages) and "  no clipping: length 10 solved by " in "\n".join(stages)
    assert stages[-1].endswith(f"wrote {tmp_path}/: gradient-flow-lag.png, gradient-flow-clipping.png, "
                               f"gradient-flow.json, gradient-flow-tables.md; rewrote the tables of {page}")
    assert numbers["provenance"]["command"] == "test" and numbers["settings"]["min_solved"] == 1
    assert len(numbers["clipping"]) == 4 and set(numbers["clipping_solved"]) == {"None", "1.0"}
    assert (tmp_path / "gradient-flow-tables.md").read_text().count("\n| tanh | 0.5 |") == 1


def test_diagnose_command_writes_under_runs_of_the_current_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gpurnn.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["diagnose", "--steps", "1", "--seeds", "1", "--min-solved", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.index("stage 1/3") < result.stdout.index("stage 3/3") < result.stdout.index("wrote runs/diagnose/")
    assert (tmp_path / "runs" / "diagnose" / "gradient-flow.json").is_file()
