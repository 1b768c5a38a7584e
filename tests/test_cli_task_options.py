"""The tasks' declarations (gpurnn.tasks): each task module says its defaults, the options of
`train` it takes, the split it scores and the commands that use its model; an option given to
a task that does not take it is refused the same way for every task, naming the option and the
task, in one line with exit status 2 and nothing created."""
import pytest
import typer
from typer.testing import CliRunner

from gpurnn.checkpoint import save_checkpoint
from gpurnn.cli import app
from gpurnn.model import init_params
from gpurnn.tasks import TASK_OPTIONS, tasks
from gpurnn.train_run import GENERAL_DEFAULTS

runner = CliRunner()


def test_every_task_declares_what_the_command_line_reads():
    commands = set(typer.main.get_command(app).commands)
    assert set(tasks()) == {"charlm", "autocomplete", "tag", "classify", "sequences"}
    for name, task in tasks().items():
        assert task.name == name and {"hidden", "lr", "batch_size", "epochs"} <= set(task.defaults)
        assert set(task.defaults) <= set(GENERAL_DEFAULTS) | {"hidden", "lr", "batch_size", "epochs"}
        assert set(task.defaults) & set(TASK_OPTIONS) <= set(task.options)
        assert set(task.options) <= set(TASK_OPTIONS) and set(task.refusals) <= set(TASK_OPTIONS) - set(task.options)
        assert task.held_out_split[0] in ("valid", "test", "train") and set(task.commands) <= commands
    assert {o for task in tasks().values() for o in task.options} == set(TASK_OPTIONS)   # each taken somewhere


def _data(tmp):
    (tmp / "text.txt").write_text("the cat sat on the mat. " * 40)
    (tmp / "pos.txt").write_text("\n".join(f"a good film {i}" for i in range(20)))
    (tmp / "tag.conllu").write_text("1\tThe\tthe\tDET\t_\t_\t0\t_\t_\t_\n2\tcat\tcat\tNOUN\t_\t_\t0\t_\t_\t_\n\n")
    return {"charlm": str(tmp / "text.txt"), "autocomplete": str(tmp / "text.txt"), "tag": str(tmp / "tag.conllu"),
            "classify": f"pos={tmp / 'pos.txt'}"}


REFUSED = [                       # (task, the option given to it, its value or None for a flag)
    ("charlm", "--pool", "max"),
    ("charlm", "--word-dropout", "0.1"),
    ("charlm", "--bidirectional", None),
    ("autocomplete", "--seq-len", "20"),
    ("autocomplete", "--min-count", "1"),
    ("tag", "--pool", "max"),
    ("tag", "--valid-fraction", "0.2"),
    ("tag", "--signatures", None),
    ("classify", "--signature-dropout", "0.2"),
    ("classify", "--seq-len", "20"),
]


@pytest.mark.parametrize("task, option, value", REFUSED)
def test_an_option_the_task_does_not_take_is_refused_naming_both(tmp_path, task, option, value):
    data = _data(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    args = ["train", "--task", task, "--data", data[task], "--out", str(tmp_path / "run"), "--backend", "cpu",
            option] + ([value] if value is not None else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {option} does not apply to --task {task}: ") and "Traceback" not in line
    assert sorted(tmp_path.rglob("*")) == before


def test_one_label_and_steps_with_epochs_are_refused(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "run"
    one = runner.invoke(app, ["train", "--task", "classify", "--data", data["classify"], "--out", str(out)])
    assert one.exit_code == 2 and "every training sentence has the label 'pos'" in one.stderr, one.output
    both = runner.invoke(app, ["train", "--task", "charlm", "--data", data["charlm"], "--out", str(out),
                               "--steps", "3", "--epochs", "1"])
    assert both.exit_code == 2 and "--steps 3 and --epochs 1 both say how long to train" in both.stderr
    assert not out.exists()


def test_a_command_names_the_task_its_model_needs(tmp_path):
    symbols = ["<unk>", *"abc"]
    model = save_checkpoint(tmp_path / "char.safetensors", init_params(4, 3, 4),
                            meta={"task": "charlm", "vocab": {"symbols": symbols, "unk": "<unk>"}})
    result = runner.invoke(app, ["complete", str(model), "ab"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "holds a 'charlm' model; `gpurnn complete` needs a model trained with --task autocomplete" in result.stderr


def test_a_run_names_the_task_defaults_it_takes(tmp_path):
    data = _data(tmp_path)
    result = runner.invoke(app, ["train", "--task", "classify", "--data", data["classify"], f"neg={tmp_path / 'pos.txt'}",
                                 "--out", str(tmp_path / "run"), "--hidden", "4", "--steps", "1", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("classify defaults: lr 0.002, batch size 32, pool max, activation relu, ") and "hidden" not in first
    assert "epochs" not in first and first.endswith(", valid fraction 0.0")       # --steps given: no epochs


def test_help_shows_each_task_default_from_the_declarations():
    from gpurnn.train_run import defaults_help

    assert defaults_help("activation") == "(default: classify relu, the others tanh)"
    assert defaults_help("pool") == "(default: classify max, sequences max)"      # the others refuse --pool
    assert defaults_help("bidirectional") == "(default: sequences yes, tag yes, classify no)"
