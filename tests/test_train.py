"""The trainer: streaming BPTT, sentence batches, the gradient step, divergence, resume bit for bit."""
import dataclasses
import pathlib

import numpy as np
import pytest

from gpurnn import Params, bptt, forward, global_norm, init_params
from gpurnn.batches import SentenceBatches, TokenStreams
from gpurnn.checkpoint import load_checkpoint
from gpurnn.train import TrainConfig, Trainer, TrainingDiverged

V = 6    # vocabulary of the tiny texts


def _text(n=400, seed=0):
    """A learnable stream: mostly the cycle 0 1 2 3 4 5, sometimes a random id."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) % V
    noise = rng.random(n) < 0.2
    ids[noise] = rng.integers(0, V, noise.sum())
    return ids


def _sentences(count=23, seed=1, last=False):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, V, rng.integers(1, 7)) for _ in range(count)]
    ys = [int(1 in x) for x in xs] if last else [(x + 1) % V for x in xs]
    return xs, ys


def _trainer(d=8, k=V, layers=1, **config):
    return Trainer(init_params(V, d, k, layers=layers, seed=3), TrainConfig(backend="cpu", **config))


@pytest.mark.parametrize("layers", [1, 2])
def test_streaming_carries_states_and_stops_gradients_at_chunk_borders(layers):
    """Chunk j starts from chunk j−1's final states (every layer's, (layers,B,d), in a stack);
    its gradient is that chunk's BPTT alone, divided by its number of targets (loss_norm="mean")."""
    seen = []

    class Record:
        def on_grads(self, trainer, step, grads):
            assert step == trainer.step_count + 1
            seen.append(grads.map(np.copy))

    trainer = _trainer(layers=layers, optimizer="sgd", lr=0.0, clip="none")
    trainer.callbacks.append(Record())
    data = TokenStreams(_text(), batch_size=4, seq_len=5)
    chunks = list(data.iter_epoch())
    trainer.fit(data, steps=3, progress=False)
    params, s0 = init_params(V, 8, V, layers=layers, seed=3), None
    assert len(seen) == 3
    for chunk, grads in zip(chunks, seen):
        ref = bptt(params, chunk.inputs, chunk.targets, s0=s0, backend="cpu")
        for got, want in zip(grads, ref.grads):
            np.testing.assert_allclose(got, want / ref.count, rtol=1e-6, atol=1e-7)
        s0 = ref.s_last


@pytest.mark.parametrize("layers", [1, 2])
def test_evaluate_streams_equals_one_forward_over_each_stream(layers):
    """Chunks with every layer's states carried score as one pass over the whole streams."""
    trainer = _trainer(layers=layers)
    data = TokenStreams(_text(), batch_size=4, seq_len=7)
    stats = trainer.evaluate(data)
    logits = forward(trainer.params, data.X, backend="cpu").logits       # (L,B,k), the whole streams
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, data.Y[..., None], -1).mean()
    assert stats.count == data.tokens_per_epoch
    assert stats.loss == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("sgd", 0.5), ("adagrad", 0.3), ("rmsprop", 0.02)])
def test_language_model_learns(optimizer, lr):
    trainer = _trainer(optimizer=optimizer, lr=lr)
    data, valid = TokenStreams(_text(1200), 4, 10), TokenStreams(_text(400, seed=9), 2, 10)
    before = trainer.evaluate(valid).loss
    trainer.fit(data, epochs=4, progress=False)
    assert trainer.evaluate(valid).loss < 0.7 * before


def test_classifier_learns_with_output_last():
    xs, labels = _sentences(200, last=True)
    data = SentenceBatches(xs, labels, batch_size=16)
    trainer = _trainer(d=12, k=2, output="last", lr=0.03)
    before = trainer.evaluate(data).loss
    trainer.fit(data, epochs=15, progress=False)
    assert trainer.evaluate(data).loss < 0.5 * before


def test_norm_is_logged_before_clipping_and_loss_norm():
    norms = []

    class Record:
        def on_grads(self, trainer, step, grads):
            norms.append(global_norm(grads))

    xs, ys = _sentences()
    data = SentenceBatches(xs, ys, 8, shuffle=False)
    trainer = _trainer(clip="norm", max_norm=1e-3, optimizer="sgd", momentum=0.0, lr=1.0)
    trainer.callbacks.append(Record())
    before = trainer.host_params()
    stats = trainer.step(next(data.iter_epoch()))
    assert stats.grad_norm == pytest.approx(norms[0]) and stats.grad_norm > 1e-3
    assert global_norm(_delta(before, trainer)) == pytest.approx(1e-3, rel=1e-4)
    summed = _trainer(clip="none", optimizer="sgd", momentum=0.0, lr=1.0, loss_norm="sum")
    mean = _trainer(clip="none", optimizer="sgd", momentum=0.0, lr=1.0)
    batch = next(data.iter_epoch())
    count = mean.step(batch).count
    summed.step(batch)
    np.testing.assert_allclose(_delta(before, summed).W, count * _delta(before, mean).W, rtol=1e-4, atol=1e-7)


def _delta(before, trainer):
    return type(before)(*(a - b for a, b in zip(trainer.host_params(), before)))


def test_clip_by_value():
    xs, ys = _sentences()
    trainer = _trainer(clip="value", clip_value=1e-4, optimizer="sgd", momentum=0.0, lr=1.0)
    before = trainer.host_params()
    trainer.step(SentenceBatches(xs, ys, 8).batch(range(8)))
    delta = _delta(before, trainer)                 # biases start at 0: their change is exact
    assert np.abs(delta.c).max() == np.abs(delta.b).max() == np.float32(1e-4)


@pytest.mark.parametrize("poison", ["grads", "loss"])
def test_non_finite_stops_with_the_last_good_state(tmp_path, poison):
    def reduce(grads, loss, count):
        if trainer.step_count < 2:
            return grads, loss, count
        return (grads.map(lambda g: g * np.nan), loss, count) if poison == "grads" else (grads, np.inf, count)

    trainer = Trainer(init_params(V, 8, V, seed=3), TrainConfig(backend="cpu"), out_dir=tmp_path, reduce=reduce)
    data = TokenStreams(_text(), 4, 5)
    with pytest.raises(TrainingDiverged, match="diverged at step 3.*state after step 2"):
        trainer.fit(data, steps=10, progress=False)
    good = trainer.host_params()
    assert all(np.isfinite(a).all() for a in good) and trainer.step_count == 2
    ckpt = load_checkpoint(tmp_path / "last_good.safetensors")
    assert ckpt.meta["trainer"]["step"] == 2
    for a, b in zip(good, ckpt.params):
        np.testing.assert_array_equal(a, b)


def _run(tmp_path, data, config, steps, stop_at=None):
    """Train `steps` steps straight, or get killed after step `stop_at` (a checkpoint every
    `stop_at` steps) and resume from the checkpoint with the same `fit` call."""
    def kill(stats):
        if stats.step == stop_at + 1:
            raise KeyboardInterrupt("killed")

    params = init_params(V, 8, data_k(config), seed=3)
    if stop_at is None:
        trainer = Trainer(params, config)
        trainer.fit(data, steps=steps, progress=False)
        return trainer
    config = dataclasses.replace(config, checkpoint_every=stop_at)
    with pytest.raises(KeyboardInterrupt):
        Trainer(params, config, out_dir=tmp_path, callbacks=[kill]).fit(data, steps=steps, progress=False)
    resumed = Trainer.load(tmp_path / "checkpoint.safetensors", backend="cpu")
    assert resumed.step_count == stop_at
    resumed.fit(data, steps=steps, progress=False)
    return resumed


def data_k(config):
    return 2 if config.output == "last" else V


@pytest.mark.parametrize("kind", ["streams", "averaged", "sentences", "bucketed", "classify"])
def test_resume_is_bit_identical(tmp_path, kind):
    if kind in ("streams", "averaged"):
        data = TokenStreams(_text(), batch_size=3, seq_len=6)
        config = TrainConfig(backend="cpu", optimizer="adam", schedule="cosine", truncate=3, lr=0.02,
                             average=0.8 if kind == "averaged" else 0.0)
    else:
        xs, ys = _sentences(23, last=kind == "classify")
        data = SentenceBatches(xs, ys, batch_size=4, bucket=kind == "bucketed")
        config = TrainConfig(backend="cpu", optimizer="sgd", schedule="step", lr_step_every=4, clip="value",
                             output="last" if kind == "classify" else "all", seed=7)
    steps = 2 * len(data) + 3                     # ends mid-epoch; the stop falls mid-epoch too
    straight = _run(tmp_path, data, config, steps)
    resumed = _run(tmp_path, data, config, steps, stop_at=len(data) + 2)
    assert resumed.step_count == straight.step_count == steps
    for a, b in zip(straight.host_params(), resumed.host_params()):     # the average, when there is one
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    for key, value in straight.optimizer.state_dict().items():
        np.testing.assert_array_equal(value, resumed.optimizer.state_dict()[key])
    np.testing.assert_array_equal(straight.carry, resumed.carry)
    assert straight.position == resumed.position


def test_seeded_runs_repeat_and_seeds_differ():
    xs, ys = _sentences(30)
    data = SentenceBatches(xs, ys, batch_size=4)
    runs = [_trainer(seed=s) for s in (5, 5, 6)]
    for trainer in runs:
        trainer.fit(data, epochs=2, progress=False)
    np.testing.assert_array_equal(runs[0].params.W, runs[1].params.W)
    assert not np.array_equal(runs[0].params.W, runs[2].params.W)


def test_early_stopping_and_files(tmp_path):
    xs, ys = _sentences(16)
    data = SentenceBatches(xs, ys, batch_size=4)
    evals, steps = [], []
    trainer = Trainer(init_params(V, 8, V, seed=3), TrainConfig(backend="cpu", lr=5.0, optimizer="sgd", patience=2,
                                                               eval_every=1, clip="none"),
                      out_dir=tmp_path, meta={"vocab": list("abcdef")},
                      callbacks=[steps.append, type("E", (), {"on_eval": lambda self, t, s: evals.append(s)})()])
    history = trainer.fit(data, steps=200, valid=data, progress=False)
    assert len(history) == len(steps) == len(evals) < 200                 # stopped early
    best = min(e.loss for e in evals)
    assert trainer.position["best_loss"] == best and trainer.position["evals_since_best"] == 2
    assert load_checkpoint(tmp_path / "best.safetensors").vocab == list("abcdef")
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").meta["trainer"]["step"] == len(history)
    assert all(s.tokens_per_s > 0 and s.tokens > 0 for s in history)


def test_checkpoint_from_any_backend_loads_and_runs_on_the_cpu(tmp_path, backend):
    """A model trained on `backend` (the GPU, or the simulator) samples on the CPU from its checkpoint."""
    data = TokenStreams(_text(60), batch_size=2, seq_len=4)
    trainer = Trainer(init_params(V, 4, V, seed=3), TrainConfig(backend=backend, lr=0.05), meta={"vocab": list("abcdef")})
    trainer.fit(data, steps=2, progress=False)
    held = [trainer.params.W, trainer.carry, *trainer.optimizer.state_dict().values()]
    assert all(isinstance(a, np.ndarray) == (backend == "cpu") for a in held)    # kept on the device
    xs, ys = _sentences(4)
    assert trainer.evaluate(SentenceBatches(xs, ys, 2, bucket=True)).count == sum(len(x) for x in xs)
    ckpt = load_checkpoint(trainer.save(tmp_path / "ck.safetensors"))
    assert all(isinstance(a, np.ndarray) for a in ckpt.params) and ckpt.meta["trainer"]["step"] == 2
    for a, b in zip(trainer.host_params(), ckpt.params):
        np.testing.assert_array_equal(a, b)
    logits = forward(ckpt.params, np.array([[0], [1]]), activation=ckpt.activation, backend="cpu").logits
    assert logits.shape == (2, 1, V) and np.isfinite(logits).all()
    resumed = Trainer.load(tmp_path / "ck.safetensors", backend="cpu")
    assert resumed.config.backend == "cpu" and resumed.optimizer.t == 2


@pytest.mark.parametrize("change, match", [
    ({"optimizer": "lbfgs"}, "config.optimizer must be one of"),
    ({"clip": "both"}, "config.clip must be one of"),
    ({"activation": "gelu"}, "activation must be one of"),
    ({"max_norm": 0}, "config.max_norm must be > 0"),
    ({"patience": -1}, "config.patience must be an int >= 0"),
    ({"backend": "tpu"}, "backend must be"),
])
def test_bad_config(change, match):
    with pytest.raises(ValueError, match=match):
        Trainer(init_params(2, 3, 2), dataclasses.replace(TrainConfig(backend="cpu"), **change))


def test_fit_needs_a_horizon_and_reserved_meta():
    trainer = _trainer()
    with pytest.raises(ValueError, match="fit needs steps or epochs"):
        trainer.fit(TokenStreams(_text(), 2, 4), progress=False)
    with pytest.raises(ValueError, match="at least one batch"):
        trainer.fit([], steps=1, progress=False)
    with pytest.raises(ValueError, match="reserved keys"):
        Trainer(init_params(2, 3, 2), TrainConfig(backend="cpu"), meta={"config": 1})


def test_max_seconds_bounds_a_call():
    trainer = _trainer()
    assert trainer.fit(TokenStreams(_text(), 2, 4), steps=10**6, max_seconds=0, progress=False) == []
    assert trainer.step_count == 0


def test_streaming_steps_match_torch(backend):
    """Four steps of PyTorch's word_language_model loop (tests/golden/make_train_golden.py): state
    carried and detached at chunk borders, mean cross-entropy, clip_grad_norm_ (which adds 1e-6
    to the norm), Adam; losses, norms before clipping and the final weights agree."""
    golden = np.load(pathlib.Path(__file__).parent / "golden" / "trainer_torch.npz")
    init = Params(*(golden[f"init.{k}"] for k in "UWVbc"))
    trainer = Trainer(init, TrainConfig(backend=backend, optimizer="adam", lr=0.05, clip="norm", max_norm=0.5))
    history = trainer.fit(TokenStreams(golden["ids"], batch_size=3, seq_len=4), steps=4, progress=False)
    # float64 throughout; torch's clip coefficient max_norm/(‖g‖ + 1e-6) leaves ~1e-7 after clipped steps
    np.testing.assert_allclose([s.loss for s in history], golden["losses"], rtol=1e-6)
    np.testing.assert_allclose([s.grad_norm for s in history], golden["norms"], rtol=1e-6)
    np.testing.assert_allclose([s.loss for s in history[:2]], golden["losses"][:2], rtol=1e-12)  # before any clip
    for key, value in trainer.host_params().items():
        np.testing.assert_allclose(value, golden[f"final.{key}"], rtol=1e-5, atol=1e-7, err_msg=key)


def test_reduce_hook_sits_before_normalisation_and_clipping():
    """Two ranks holding the same batch: an all-reduce (sum) of gradients, losses and counts
    leaves the mean-per-target update unchanged."""
    def all_reduce_two_ranks(grads, loss_sum, count):
        return grads.map(lambda g: g * 2), loss_sum * 2, count * 2

    xs, ys = _sentences()
    batch = SentenceBatches(xs, ys, 8, shuffle=False).batch(range(8))
    alone = _trainer(max_norm=0.1)
    ranks = Trainer(init_params(V, 8, V, seed=3), TrainConfig(backend="cpu", max_norm=0.1), reduce=all_reduce_two_ranks)
    a, b = alone.step(batch), ranks.step(batch)
    assert b.count == 2 * a.count and b.loss == pytest.approx(a.loss) and b.grad_norm == pytest.approx(a.grad_norm)
    for x, y in zip(alone.host_params(), ranks.host_params()):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("last", [False, True])
def test_evaluate_sentences_equals_the_bptt_loss(last):
    xs, ys = _sentences(11, last=last)
    data = SentenceBatches(xs, ys, 4, shuffle=False)
    trainer = _trainer(k=2 if last else V, output="last" if last else "all")
    output = "last" if last else "all"
    results = [bptt(trainer.params, b.inputs, b.targets, lengths=b.lengths, output=output, backend="cpu")
               for b in data.iter_epoch()]
    stats = trainer.evaluate(data)
    assert stats.count == sum(r.count for r in results) == (11 if last else sum(len(x) for x in xs))
    assert stats.loss == pytest.approx(sum(r.loss for r in results) / stats.count, rel=1e-6)


def test_bad_ids_in_data_moved_to_a_gpu_stop_fit_before_its_first_step(backend):
    """Data the trainer moves to a GPU is checked on the host first (its steps then skip the
    checks that would wait for the device); on the CPU each step checks its own batch."""
    ids = np.arange(41) % 5
    ids[35] = 9                                     # stream 1, step 15: a target of chunk 2 (n = k = 5)
    trainer = Trainer(init_params(5, 4, 5, seed=0), TrainConfig(backend=backend))
    with pytest.raises(ValueError, match=r"targets must be < k = 5"):
        trainer.fit(TokenStreams(ids, batch_size=2, seq_len=5), steps=4, progress=False)
    assert trainer.step_count == (2 if backend == "cpu" else 0)
