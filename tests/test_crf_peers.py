"""K = 1 is a linear-chain CRF: agree with pytorch-crf (kmkurn) on likelihood and Viterbi.

Convention map: pytorch-crf's ``transitions[i, j]`` scores i -> j like ours ``[src, dst]``;
its ``start_transitions`` is our ``start``; it has ``end_transitions``, which we do not, so
they are set to zero; our duration row 0 is a per-label bias, added to its emissions.
"""

from __future__ import annotations

import pytest
import torch
from crf_cases import random_case

import semicrf
from semicrf.crf.likelihood import label_nll

torchcrf = pytest.importorskip("torchcrf")


def _peer(case):
    labels = case.scores.shape[2]
    crf = torchcrf.CRF(labels, batch_first=True).double()
    with torch.no_grad():
        crf.transitions.copy_(case.transition)
        crf.start_transitions.copy_(case.start)
        crf.end_transitions.zero_()
    emissions = case.scores + case.duration[0]
    mask = torch.arange(case.scores.shape[1]) < case.lengths.view(-1, 1)
    return crf, emissions, mask


@pytest.mark.parametrize("seed", range(5))
def test_k1_likelihood_equals_pytorch_crf(seed):
    case = random_case(4, 25, 1, 4, seed=seed)
    crf, emissions, mask = _peer(case)
    tags = torch.randint(0, 4, case.scores.shape[:2], generator=torch.Generator().manual_seed(seed))
    want = -crf(emissions, tags * mask, mask=mask, reduction="none")
    got = label_nll(*case.args[:4], tags, case.start)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", range(5))
def test_k1_viterbi_equals_pytorch_crf(seed):
    case = random_case(4, 25, 1, 3, seed=seed)
    crf, emissions, mask = _peer(case)
    want = crf.decode(emissions, mask=mask)
    _, paths = semicrf.viterbi(*case.args)
    got = [[c for s, e, c in path for _ in range(s, e)] for path in paths]
    assert got == want
