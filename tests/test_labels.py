"""The label scheme's helpers: length masks and labels <-> segments (semicrf.labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semicrf.labels import PAD_LABEL, label_runs, labels_from_segments, length_mask


def test_length_mask_marks_positions_inside_each_length():
    mask = length_mask(torch.tensor([3, 1, 4]), 4)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False], [True] * 4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6)), min_size=1, max_size=12),
       st.integers(0, 3))
def test_labels_and_segments_round_trip(runs, pad):
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in runs])
    segments = label_runs(np.concatenate([labels, np.full(pad, PAD_LABEL)]))
    assert np.array_equal(labels_from_segments(segments, labels.size), labels)
    assert all(a[2] != b[2] for a, b in zip(segments, segments[1:]))  # maximal runs
    assert label_runs(torch.from_numpy(labels)) == segments


@pytest.mark.parametrize("segments", [[], [(1, 4, 0)], [(0, 2, 0), (3, 4, 1)], [(0, 0, 1), (0, 4, 0)],
                                      [(0, 3, 0)]])
def test_labels_from_segments_refuses_what_does_not_tile(segments):
    with pytest.raises(ValueError, match="tile"):
        labels_from_segments(segments, 4)


def test_label_runs_refuses_float_labels():
    with pytest.raises(ValueError, match="integer"):
        label_runs(np.array([0.0, 1.0]))
