"""The running average of the parameters (`TrainConfig.average`, gpurnn.averaging): the
debiased moving mean of the steps' parameters, evaluated and saved in place of the trained
ones, which go on training unchanged."""
import numpy as np
import pytest

from gpurnn import init_params
from gpurnn.arrays import to_host
from gpurnn.averaging import ParamAverage
from gpurnn.batches import SentenceBatches
from gpurnn.checkpoint import load_checkpoint
from gpurnn.train import TRAINED, TrainConfig, Trainer

V, D = 5, 4


def _data():
    rng = np.random.default_rng(2)
    xs = [rng.integers(0, V, rng.integers(1, 5)) for _ in range(12)]
    return SentenceBatches(xs, [(x + 1) % V for x in xs], batch_size=4)


def test_average_is_the_decayed_mean_of_the_steps_parameters(backend, tmp_path):
    """After t steps the average is Σ β^(t−i) θ_i / Σ β^(t−i) over the steps' parameters θ_i
    (the initial ones excluded); evaluation and the checkpoint use it, and the trained
    parameters follow the same path as without averaging."""
    decay, steps, seen = 0.7, 3, []
    trainer = Trainer(init_params(V, D, V, seed=1), TrainConfig(backend=backend, lr=0.1, average=decay),
                      callbacks=[lambda stats: seen.append(plain_copy(trainer.params))])
    trainer.fit(_data(), steps=steps, progress=False)
    weights = decay ** np.arange(steps)[::-1]
    for name, got in trainer.host_params().items():
        want = sum(w * p[name] for w, p in zip(weights, seen)) / weights.sum()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(got, seen[-1][name])                      # not the trained parameters
    plain = Trainer(init_params(V, D, V, seed=1), TrainConfig(backend=backend, lr=0.1))
    plain.fit(_data(), steps=steps, progress=False)
    for name, value in plain.host_params().items():
        np.testing.assert_allclose(seen[-1][name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    frozen = Trainer(trainer.host_params(), TrainConfig(backend="cpu"))
    assert trainer.evaluate(_data()).loss == pytest.approx(frozen.evaluate(_data()).loss, rel=1e-5)
    ckpt = load_checkpoint(trainer.save(tmp_path / "avg.safetensors"))
    for name, value in trainer.host_params().items():
        np.testing.assert_array_equal(ckpt.params[name], value)
        np.testing.assert_array_equal(ckpt.arrays[TRAINED + name], seen[-1][name])


def plain_copy(params):
    return {name: np.array(to_host(a)) for name, a in params.items()}


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan"), True])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=r"average must be a decay in \[0, 1\)"):
        ParamAverage(decay, init_params(2, 3, 2), None)
    with pytest.raises(ValueError, match="config.average"):
        Trainer(init_params(2, 3, 2), TrainConfig(backend="cpu", average=decay))
