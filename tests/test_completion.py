"""Autocompletion scored as a user feels it (gpurnn.tasks.completion), on a hand-counted example."""
import pytest

from gpurnn.tasks.completion import completion_scores, frequency_completer

TRAIN = ["the", "the", "then", "there", "this", "that", "that", "that"]
HELD_OUT = ["the", "that", "thus", "an"]          # 13 letters typed in all


def test_the_baseline_offers_the_most_frequent_training_words():
    complete = frequency_completer(TRAIN)
    assert complete("th", 3) == ["that", "the", "then"]          # ties: first seen first
    assert complete("the", 3) == ["the", "then", "there"] and complete("the", 1) == ["the"]
    assert complete("xy", 3) == [] and complete("t", 3) == []


def test_scores_by_hand():
    scores = completion_scores(frequency_completer(TRAIN), HELD_OUT)
    # from 2 letters: the, that, thus are scored ("an" is too short); "th" offers that, the, then
    assert scores["top3_from_2"] == pytest.approx(2 / 3) and scores["top1_from_2"] == pytest.approx(1 / 3)
    assert scores["keystrokes_saved_from_2"] == pytest.approx((0 + 1) / 13)   # the: 3-2-1, that: 4-2-1
    # from 3 letters: that ("tha" offers that) and thus (nothing offered)
    assert scores["top3_from_3"] == scores["top1_from_3"] == pytest.approx(1 / 2)
    assert scores["keystrokes_saved_from_3"] == 0


def test_a_model_is_asked_once_per_prefix_and_needs_words():
    asked = []
    scores = completion_scores(lambda prefix, k: asked.append((prefix, k)) or [prefix + "e"], ["the", "the", "thee"],
                               prefix_lengths=(2,), k=3)
    assert sorted(asked) == [("th", 3)] and scores["top1_from_2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="held-out word"):
        completion_scores(frequency_completer(TRAIN), [])
