"""Reading labelled measurement sequences (`.ts`, `.npz`), splitting and standardising them.

Every malformed `.ts` file is refused with a `DataError` naming the file and line (or the
file alone when the problem is the whole file) and what was expected.
"""
import numpy as np
import pytest

from gpurnn.data.errors import DataError
from gpurnn.data.measurements import Standardizer, class_names, read_measurements, stratified_split

HEADER = "# a comment\n@problemName toy\n@timeStamps false\n@missing false\n@univariate false\n" \
         "@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n"
GOOD = "1,2,3:4,5,6:a\n7,8:9,10:b\n"


def write(tmp_path, text, name="toy.ts"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_variable_length_multivariate_series_with_labels(tmp_path):
    data = read_measurements(write(tmp_path, HEADER + GOOD + "\n# trailing comment\n"))
    assert data.channels == 2 and data.labels == ["a", "b"] and data.classes == ["a", "b"]
    np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(data.series[1], [[7, 9], [8, 10]])


def test_equal_length_and_unlabelled_files(tmp_path):
    header = HEADER.replace("@equalLength false", "@equalLength true\n@seriesLength 2").replace(
        "@classLabel true a b", "@classLabel false")
    data = read_measurements(write(tmp_path, header + "1,2:3,4\n5,6:7,8\n"), need_labels=False)
    assert data.labels is None and [x.shape for x in data.series] == [(2, 2), (2, 2)]
    with pytest.raises(DataError, match="no class labels"):
        read_measurements(write(tmp_path, header + "1,2:3,4\n"))


@pytest.mark.parametrize("text,line,message", [
    (HEADER.replace("@data\n", "") + GOOD, 9, "data before @data"),
    (HEADER.replace("@data\n", ""), None, "no @data line"),
    (HEADER.replace("@missing false", "@missing true") + "1,?:2,3:a\n", 4, "@missing true"),
    (HEADER.replace("@timeStamps false", "@timeStamps true") + GOOD, 3, "@timeStamps true"),
    (HEADER.replace("@missing false", "@missing maybe") + GOOD, 4, "must be true or false"),
    (HEADER.replace("@dimensions 2", "@dimensions two") + GOOD, 6, "positive integer"),
    (HEADER.replace("@problemName toy", "@colour red") + GOOD, 2, "unknown header line @colour"),
    (HEADER.replace("@classLabel true a b", "@classLabel true") + GOOD, 8, "must list the class labels"),
    (HEADER + "1,2,3:4,5:a\n", 10, "ragged channels"),
    (HEADER + "1,2,x:4,5,6:a\n", 10, "channel 1: 'x' is not a number"),
    (HEADER + "1,2,3:4,,6:a\n", 10, "channel 2: '' is not a number"),
    (HEADER + "1,2,3:4,5,nan:a\n", 10, "NaN or infinite"),
    (HEADER + "1,2,3:4,inf,6:a\n", 10, "channel 2: a value is NaN or infinite"),
    (HEADER + "-inf,2,3:4,5,6:a\n", 10, "channel 1: a value is NaN or infinite"),
    (HEADER + GOOD + "1,2:3,4:c\n", 12, "class label 'c' is not one of those @classLabel declares"),
    (HEADER + "1,2,3:4,5,6:7,8,9:a\n", 10, "expected 2 channels and a class label separated by ':', got 4"),
    (HEADER + "1,2,3:a\n", 10, "got 2 fields"),
    (HEADER.replace("@equalLength false", "@equalLength true") + GOOD, 11, "@equalLength true"),
    (HEADER.replace("@equalLength false", "@equalLength true\n@seriesLength 2") + GOOD, 11, "@seriesLength 2"),
    (HEADER + "\n# only comments\n", None, "no sequences after @data"),
])
def test_malformed_ts_files_name_file_line_and_expectation(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        read_measurements(path)
    where = f"{path}:{line}: " if line else f"{path}: "
    assert str(info.value).startswith(where) and info.value.line == line
    assert "\n" not in str(info.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"expected a \.ts or \.npz file"):
        read_measurements(write(tmp_path, GOOD, "toy.csv"))
    with pytest.raises(DataError, match="cannot read file"):
        read_measurements(tmp_path / "absent.ts")


def test_npz_padded_with_lengths_and_list_of_arrays(tmp_path):
    X = np.arange(24, dtype=np.float64).reshape(3, 4, 2)
    np.savez(tmp_path / "padded.npz", X=X, y=np.array([2, 10, 2]), lengths=np.array([4, 1, 2]))
    data = read_measurements(tmp_path / "padded.npz")
    assert [len(x) for x in data.series] == [4, 1, 2] and data.labels == ["2", "10", "2"]
    np.testing.assert_array_equal(data.series[2], X[2, :2])
    assert class_names(data) == ["2", "10"]               # integers sort as numbers
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.ones((3, 2)), np.zeros((5, 2))]
    np.savez(tmp_path / "list.npz", X=ragged, y=np.array(["up", "down"]))
    data = read_measurements(tmp_path / "list.npz")
    assert [x.shape for x in data.series] == [(3, 2), (5, 2)] and class_names(data) == ["down", "up"]


@pytest.mark.parametrize("arrays,message", [
    (dict(y=np.zeros(2)), "no array X"),
    (dict(X=np.zeros((2, 3))), r"X must be \(N, T, n\)"),
    (dict(X=np.zeros((2, 3, 1)), y=np.zeros(3)), r"y must have shape \(2,\)"),
    (dict(X=np.zeros((2, 3, 1)), lengths=np.array([3, 0])), r"sequence 1 must be a \(T_i >= 1, 1\)"),
    (dict(X=np.full((1, 2, 1), np.inf)), "NaN or infinite"),
])
def test_malformed_npz_files(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_measurements(tmp_path / "bad.npz")


def test_stratified_split_holds_out_every_class():
    labels = ["a"] * 10 + ["b"] * 20 + ["c"] * 2
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(32))
    assert sorted(labels[i] for i in held) == ["a", "b", "b", "c"]
    assert np.array_equal(held, stratified_split(labels, 0.1, seed=3)[1])


def test_standardizer_uses_real_steps_and_round_trips_through_json():
    series = [np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[5.0, 5.0]])]
    scaler = Standardizer.fit(series)
    np.testing.assert_allclose(scaler.mean, [3.0, 5.0])
    np.testing.assert_allclose(scaler.std, [np.sqrt(8 / 3), 1.0])     # a constant channel keeps std 1
    again = Standardizer.from_json(scaler.to_json())
    np.testing.assert_array_equal(again(series[0]), scaler(series[0]))
    assert scaler(series[0]).dtype == np.float32
