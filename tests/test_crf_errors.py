"""Every bad input listed in the contract raises a ValueError naming the argument."""

from __future__ import annotations

import pytest
import torch
from crf_cases import random_case

import semicrf

FUNCS = [semicrf.log_partition, semicrf.viterbi, semicrf.marginals]


def _args(**override):
    case = random_case(2, 5, 3, 3, seed=0)
    args = dict(scores=case.scores, transition=case.transition, duration=case.duration,
                lengths=case.lengths, start=case.start)
    args.update(override)
    return args


BAD = {
    "scores rank": (dict(scores=torch.zeros(5, 3, dtype=torch.float64)), "scores"),
    "scores int": (dict(scores=torch.zeros(2, 5, 3, dtype=torch.int64)), "scores"),
    "scores nan": (dict(scores=torch.full((2, 5, 3), float("nan"), dtype=torch.float64)), "scores"),
    "scores inf": (dict(scores=torch.full((2, 5, 3), float("inf"), dtype=torch.float64)), "scores"),
    "transition shape": (dict(transition=torch.zeros(3, 2, dtype=torch.float64)), "transition"),
    "transition +inf": (dict(transition=torch.full((3, 3), float("inf"), dtype=torch.float64)),
                        "transition"),
    "duration +inf": (dict(duration=torch.full((3, 3), float("inf"), dtype=torch.float64)),
                      "duration"),
    "start +inf": (dict(start=torch.full((3,), float("inf"), dtype=torch.float64)), "start"),
    "duration labels": (dict(duration=torch.zeros(3, 2, dtype=torch.float64)), "duration"),
    "duration K=0": (dict(duration=torch.zeros(0, 3, dtype=torch.float64)), "K >= 1"),
    "duration nan": (dict(duration=torch.full((3, 3), float("nan"), dtype=torch.float64)), "duration"),
    "start shape": (dict(start=torch.zeros(2, dtype=torch.float64)), "start"),
    "start nan": (dict(start=torch.full((3,), float("nan"), dtype=torch.float64)), "start"),
    "lengths zero": (dict(lengths=torch.tensor([0, 5])), "lengths"),
    "lengths beyond T": (dict(lengths=torch.tensor([6, 5])), "lengths"),
    "lengths float": (dict(lengths=torch.tensor([5.0, 5.0])), "lengths"),
    "lengths shape": (dict(lengths=torch.tensor([5, 5, 5])), "lengths"),
    "lengths list": (dict(lengths=[5, 5]), "lengths"),
}


@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", BAD)
def test_bad_input_raises_value_error(func, name):
    override, needle = BAD[name]
    with pytest.raises(ValueError, match=needle):
        func(**_args(**override))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        semicrf.log_partition(**_args(), backend="cuda")


SEGMENTS = {
    "gap": ([[(0, 2, 0), (3, 5, 1)], [(0, 5, 0)]], "tile"),
    "overlap": ([[(0, 3, 0), (2, 5, 1)], [(0, 5, 0)]], "tile"),
    "too long": ([[(0, 5, 0)], [(0, 1, 0)]], "length 5"),
    "empty segment": ([[(0, 0, 0), (0, 5, 0)], [(0, 1, 0)]], "length 0"),
    "label": ([[(0, 2, 3), (2, 5, 1)], [(0, 1, 0)]], "label 3"),
    "negative label": ([[(0, 2, -1), (2, 5, 1)], [(0, 1, 0)]], "label -1"),
    "beyond T": ([[(0, 3, 0), (3, 6, 1)], [(0, 1, 0)]], "beyond T"),
    "batch": ([[(0, 1, 0)]], "one list per sequence"),
    "empty list": ([[], [(0, 1, 0)]], "empty"),
}


@pytest.mark.parametrize("name", SEGMENTS)
def test_bad_segments_raise_value_error(name):
    segments, needle = SEGMENTS[name]
    args = _args()
    with pytest.raises(ValueError, match=needle):
        semicrf.segmentation_score(args["scores"], args["transition"], args["duration"], segments,
                                   args["start"])


def test_bad_labels_raise_value_error():
    from semicrf.crf.likelihood import label_nll

    args = _args()
    labels = torch.zeros(2, 5, dtype=torch.int64)
    labels[0, 1] = 3
    with pytest.raises(ValueError, match="labels"):
        label_nll(args["scores"], args["transition"], args["duration"], args["lengths"], labels)
    with pytest.raises(ValueError, match="labels"):
        label_nll(args["scores"], args["transition"], args["duration"], args["lengths"],
                  torch.zeros(2, 4, dtype=torch.int64))


def test_labels_past_length_are_ignored():
    from semicrf.crf.likelihood import label_nll

    args = _args(lengths=torch.tensor([5, 2]))
    labels = torch.zeros(2, 5, dtype=torch.int64)
    labels[1, 2:] = -100
    nll = label_nll(args["scores"], args["transition"], args["duration"], args["lengths"], labels)
    assert torch.isfinite(nll).all()
