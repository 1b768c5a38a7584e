"""1-NN with dependent DTW: the UEA archive's classic baseline for multivariate series.

Dependent DTW (Shokoohi-Yekta et al. 2017) warps all channels together: the point cost of
aligning step i of a with step j of b is the squared Euclidean distance ‖a_i − b_j‖², and

    D[i, j] = cost(i, j) + min(D[i−1, j], D[i, j−1], D[i−1, j−1]),   D[0, 0] = cost(0, 0)

over the full window (no band). A test sequence takes the label of the training sequence
with the smallest D[end, end]; the raw values are used (no standardisation), as the
archive's published baselines do.

    .venv/bin/python profiling/dtw_baseline.py TRAIN.ts TEST.ts      prints `metric accuracy ...`
"""
from __future__ import annotations

import sys

import numpy as np
from numba import njit

from gpurnn.data.measurements import read_measurements


@njit(cache=True)
def dtw_distance(a, b):
    """Dependent DTW between a (Ta, n) and b (Tb, n), squared Euclidean point cost."""
    Ta, Tb = a.shape[0], b.shape[0]
    D = np.full((Ta + 1, Tb + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, Ta + 1):
        for j in range(1, Tb + 1):
            cost = 0.0
            for c in range(a.shape[1]):
                diff = a[i - 1, c] - b[j - 1, c]
                cost += diff * diff
            D[i, j] = cost + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return D[Ta, Tb]


def nearest_neighbour_accuracy(train, test) -> float:
    """Accuracy of 1-NN under dependent DTW: each test sequence takes its nearest training label."""
    right = 0
    for x, label in zip(test.series, test.labels):
        distances = [dtw_distance(x, y) for y in train.series]
        right += train.labels[int(np.argmin(distances))] == label
    return right / len(test.series)


def main(train_path, test_path):
    accuracy = nearest_neighbour_accuracy(read_measurements(train_path), read_measurements(test_path))
    print(f"metric accuracy {accuracy:.6g}")


if __name__ == "__main__":
    main(*sys.argv[1:])
