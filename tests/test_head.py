"""SemiCRFHead: parameters, normalised loss, decoding, runs longer than K."""

from __future__ import annotations

import brute_force as bf
import brute_force_runs as bfr
import pytest
import torch

from semicrf import SemiCRFHead
from semicrf.crf.survival import log_survival


def _head(duration="learned", max_duration=3, labels=3, hidden=4, **kw):
    torch.manual_seed(0)
    head = SemiCRFHead(hidden, labels, max_duration, duration=duration, **kw).double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    return head


def test_uniform_duration_is_a_fixed_zero_buffer():
    head = SemiCRFHead(4, 3, 5, duration="uniform")
    names = {n for n, _ in head.named_parameters()}
    assert "duration" not in names and torch.all(head.duration == 0)
    assert "duration" in {n for n, _ in SemiCRFHead(4, 3, 5).named_parameters()}


def test_run_longer_than_k_is_the_sum_over_all_its_splits():
    """A run of 5 positions with K = 2: P(y) sums every split of the run into 1s and 2s."""
    head = _head(max_duration=2, semantics="segments")
    hidden = torch.randn(1, 6, 4, dtype=torch.float64)
    labels = torch.tensor([[1, 1, 1, 1, 1, 0]])
    nll = head.nll(hidden, torch.tensor([6]), labels)
    scores = head.scores(hidden)[0].detach()
    all_sc = bf.all_scores(scores, head.transition.detach(), head.duration.detach(), 6,
                           head.start.detach())
    paths = bf.segmentations(6, 2, 3)
    keep = torch.tensor([all(labels[0, i] == c for s, e, c in p for i in range(s, e)) for p in paths])
    want = torch.logsumexp(all_sc, 0) - torch.logsumexp(all_sc[keep], 0)
    torch.testing.assert_close(nll[0], want, atol=1e-9, rtol=0)
    assert int(keep.sum()) == 8  # compositions of 5 into parts of size <= 2 (then 1 for the 0)


def test_loss_is_normalised_per_position_and_nonnegative():
    head = _head()
    hidden = torch.randn(3, 10, 4, dtype=torch.float64)
    lengths = torch.tensor([10, 7, 3])
    labels = torch.randint(0, 3, (3, 10))
    labels[1, 7:] = -100
    labels[2, 3:] = -100
    nll = head.nll(hidden, lengths, labels)
    assert torch.all(nll >= 0)
    torch.testing.assert_close(head.loss(hidden, lengths, labels), nll.sum() / 20)


def test_decode_labels_match_segments_and_padding():
    head = _head(max_duration=4)
    hidden = torch.randn(2, 12, 4, dtype=torch.float64)
    lengths = torch.tensor([12, 8])
    labels, segments = head.decode(hidden, lengths)
    for b, segs in enumerate(segments):
        assert segs[-1][1] == int(lengths[b])
        for s, e, c in segs:
            assert torch.all(labels[b, s:e] == c)
    assert torch.all(labels[1, 8:] == -100)


@pytest.mark.parametrize("duration", ["learned", "uniform"])
def test_training_steps_reduce_the_loss(duration):
    torch.manual_seed(1)
    head = SemiCRFHead(5, 3, 6, duration=duration)
    hidden = torch.randn(4, 30, 5)
    labels = (hidden[..., 0] > 0).long() + (hidden[..., 1] > 1).long()
    lengths = torch.full((4,), 30)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = head.loss(hidden, lengths, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert torch.all(head.duration_scores() == 0) == (duration == "uniform")


def test_runs_head_scores_the_labelling_with_a_censored_last_run():
    """Default head: runs semantics, learned tail < 0, the last run censored (generator data)."""
    head = _head(max_duration=2)
    assert head.semantics == "runs" and bool((head.tail() < 0).all())
    hidden = torch.randn(1, 6, 4, dtype=torch.float64)
    labels = torch.tensor([[1, 1, 1, 1, 1, 0]])
    nll = head.nll(hidden, torch.tensor([6]), labels)
    scores = head.scores(hidden)[0].detach()
    args = (scores, head.transition.detach(), head.duration_scores().detach(), head.start.detach(),
            head.tail().detach())
    all_sc = bfr.all_scores(*args, 6, (False, True))
    gold = bfr.labelling_score(*args, (1, 1, 1, 1, 1, 0), (False, True))
    torch.testing.assert_close(nll[0], torch.logsumexp(all_sc, 0) - gold, atol=1e-9, rtol=0)


def test_uniform_runs_head_has_no_length_parameters():
    head = SemiCRFHead(4, 3, 5, duration="uniform")
    names = {n for n, _ in head.named_parameters()}
    assert names == {"projection.weight", "projection.bias", "transition", "start"}
    assert torch.all(head.tail() == 0)


def test_smooth_duration_form_trains_and_gives_posterior_durations():
    torch.manual_seed(2)
    head = SemiCRFHead(5, 3, 8, duration_form="smooth")
    assert head.duration_scores().shape == (8, 3)
    assert "duration_weights" in {n for n, _ in head.named_parameters()}
    hidden = torch.randn(2, 20, 5)
    labels = (hidden[..., 0] > 0).long()
    head.loss(hidden, torch.tensor([20, 15]), labels).backward()
    assert head.duration_weights.grad.abs().sum() > 0 and head.tail_raw.grad.abs().sum() > 0
    counts = head.posterior_durations(hidden, torch.tensor([20, 15]))
    assert counts.shape == (2, 8, 3) and bool((counts >= 0).all())


def test_bad_construction():
    with pytest.raises(ValueError, match="max_duration"):
        SemiCRFHead(4, 3, 0)
    with pytest.raises(ValueError, match="duration"):
        SemiCRFHead(4, 3, 5, duration="poisson")
    with pytest.raises(ValueError, match="semantics"):
        SemiCRFHead(4, 3, 5, semantics="run")
    with pytest.raises(ValueError, match="duration_form"):
        SemiCRFHead(4, 3, 5, duration_form="spline")


def test_posterior_decoder_takes_the_argmax_of_the_exact_marginals():
    head = _head(max_duration=4)
    hidden = torch.randn(2, 12, 4, dtype=torch.float64)
    lengths = torch.tensor([12, 8])
    labels, segments = head.decode(hidden, lengths, decoder="posterior")
    post = head.marginals(hidden, lengths)
    assert torch.equal(labels[0], post[0].argmax(-1)) and torch.equal(labels[1, :8], post[1, :8].argmax(-1))
    assert torch.all(labels[1, 8:] == -100)
    for b, segs in enumerate(segments):
        assert segs[-1][1] == int(lengths[b]) and all(torch.all(labels[b, s:e] == c) for s, e, c in segs)
    with pytest.raises(ValueError, match="decoder"):
        head.decode(hidden, lengths, decoder="mea")


@pytest.mark.parametrize("form", ["table", "smooth"])
def test_learned_runs_durations_are_normalised_so_a_censored_run_costs(form: str) -> None:
    """Runs semantics: each label's durations are a log-pmf over all lengths (table + tail),
    so the log-survival of a censored run is 0 at length 1 and decreases after."""
    torch.manual_seed(4)
    head = SemiCRFHead(4, 3, 12, duration_form=form).double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    surv = log_survival(head.duration_scores(), head.tail(), torch.arange(1, 30))
    torch.testing.assert_close(surv[0], torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((surv.diff(dim=0) < 0).all())
