"""The four benchmark models: one encoder, four output layers.

========================  ===================================================
``softmax``               per-position softmax (cross-entropy), no structure
``linear``                linear-chain CRF: a Semi-CRF head with K = 1
``semicrf``               Semi-CRF head (runs semantics), K = ``max_duration``, learned
                          duration scores (table or smooth) and geometric tail
``semicrf_uniform``       same head, duration table and tail fixed at zero, never trained
========================  ===================================================

In runs semantics a zero duration model is not "no length model" but a geometric one (the
emission bias times the length), which is what a linear-chain CRF or an HMM assumes: the
benchmark compares learned explicit durations with geometric ones.

``structure``: ``"plain"`` scores the C output labels directly (``linear`` in segments
semantics at K = 1); ``"gene"`` puts ``linear``, ``semicrf`` and ``semicrf_uniform`` on the
gene grammar's frame-aware internal states with boundary sensors (:class:`GeneHead`; ``linear``
is its K = 1 geometric baseline in runs semantics); ``softmax`` is position-wise either way.

All share the encoder architecture and sizes; every model maps features (B, T, D) and
lengths (B,) to a loss (a scalar, NLL per position) or to decoded labels (B, T).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from semicrf.crf.gene_head import GeneHead
from semicrf.crf.head import SemiCRFHead
from semicrf.gene_grammar import GeneGrammar
from semicrf.labels import PAD_LABEL, length_mask

MODEL_NAMES: tuple[str, ...] = ("softmax", "linear", "semicrf", "semicrf_uniform")
STRUCTURES: tuple[str, ...] = ("plain", "gene")


class SoftmaxHead(nn.Module):
    """Per-position classifier: hidden (B, T, H) -> logits (B, T, C), cross-entropy loss."""

    def __init__(self, hidden_dim: int, num_labels: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_dim, num_labels)

    def loss(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
             censored: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over the positions inside each length (``censored`` unused)."""
        target = labels.masked_fill(~length_mask(lengths, labels.shape[1]), PAD_LABEL)
        logits = self.projection(hidden)
        return functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD_LABEL
        )

    @torch.no_grad()
    def decode(self, hidden: Tensor, lengths: Tensor, censored: Tensor | None = None,
               decoder: str = "viterbi") -> tuple[Tensor, None]:
        """Per-position argmax (every decoder is the same here: positions are independent)."""
        labels = self.projection(hidden).argmax(-1)
        return labels.masked_fill(~length_mask(lengths, labels.shape[1]), PAD_LABEL), None


class SegmentationModel(nn.Module):
    """Encoder + output head. ``loss`` and ``decode`` take features (B, T, D), lengths (B,)."""

    def __init__(self, name: str, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.name, self.encoder, self.head = name, encoder, head

    def loss(self, features: Tensor, lengths: Tensor, labels: Tensor,
             censored: Tensor | None = None) -> Tensor:
        """Scalar training loss, normalised per position. ``censored`` (B, 2) bool: first / last
        run cut by the window (None: the head's default)."""
        return self.head.loss(self.encoder(features, lengths), lengths, labels, censored)

    @torch.no_grad()
    def decode(self, features: Tensor, lengths: Tensor, censored: Tensor | None = None,
               decoder: str = "viterbi") -> Tensor:
        """Predicted labels (B, T) int64, -100 past each length (``decoder``: "viterbi" or
        "posterior", see :data:`semicrf.crf.head.DECODERS`)."""
        labels, _ = self.head.decode(self.encoder(features, lengths), lengths, censored,
                                     decoder=decoder)
        return labels

    @torch.no_grad()
    def loss_and_decode(self, features: Tensor, lengths: Tensor, labels: Tensor,
                        censored: Tensor | None = None,
                        decoder: str = "viterbi") -> tuple[Tensor, Tensor]:
        """Loss and decoded labels from one encoder pass (for evaluation)."""
        hidden = self.encoder(features, lengths)
        decoded, _ = self.head.decode(hidden, lengths, censored, decoder=decoder)
        return self.head.loss(hidden, lengths, labels, censored), decoded

    def duration_table(self) -> Tensor | None:
        """The head's (K, C) duration scores, or None for the softmax model."""
        scores = getattr(self.head, "duration_scores", None)
        return None if scores is None else scores()


def build_model(
    name: str,
    *,
    input_dim: int,
    num_labels: int,
    encoder: str,
    hidden_dim: int,
    num_layers: int,
    max_duration: int,
    crf_backend: str = "auto",
    duration_form: str = "table",
    structure: str = "plain",
    whole_codons: bool = False,
    start_anywhere: bool = False,
) -> SegmentationModel:
    """One of :data:`MODEL_NAMES` on a fresh encoder (``encoder`` names the architecture).

    ``structure`` is one of :data:`STRUCTURES`; with ``"gene"``, ``whole_codons`` (a gene ends
    after whole codons: real genes) and ``start_anywhere`` (windows cut inside genes) set the
    grammar."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    if max_duration < 1:
        raise ValueError(f"max_duration (K) must be >= 1, got {max_duration}")
    from semicrf.encoders import build_encoder  # encoders load only when a model is built

    body = build_encoder(encoder, input_dim, hidden_dim, num_layers)
    if name == "softmax":
        head: nn.Module = SoftmaxHead(hidden_dim, num_labels)
    elif structure == "gene":
        grammar = GeneGrammar(num_labels, whole_codons=whole_codons)
        mode = "uniform" if name == "semicrf_uniform" else "learned"
        head = GeneHead(hidden_dim, grammar, 1 if name == "linear" else max_duration, mode,
                        crf_backend, duration_form="table" if name == "linear" else duration_form,
                        start_anywhere=start_anywhere)
    elif name == "linear":
        head = SemiCRFHead(hidden_dim, num_labels, 1, duration="learned", backend=crf_backend,
                           semantics="segments")
    else:
        mode = "learned" if name == "semicrf" else "uniform"
        head = SemiCRFHead(hidden_dim, num_labels, max_duration, duration=mode, backend=crf_backend,
                           duration_form=duration_form)
    return SegmentationModel(name, body, head)
