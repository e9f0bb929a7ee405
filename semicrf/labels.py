"""The label scheme: one place for class indices and names.

Labels are per-position integers. With ``num_classes = 3``: 0 intergenic, 1 exon,
2 intron. With ``num_classes = 5`` the scheme adds 3 5'UTR and 4 3'UTR. Positions
labelled :data:`PAD_LABEL` (-100, PyTorch's ``ignore_index``) are padding.
"""

from __future__ import annotations

import operator

INTERGENIC = 0
EXON = 1
INTRON = 2
UTR5 = 3
UTR3 = 4

#: Name of each class, indexed by label.
CLASS_NAMES: tuple[str, ...] = ("intergenic", "exon", "intron", "utr5", "utr3")

#: Label of padding positions (ignored by metrics and losses).
PAD_LABEL = -100


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of labels ``0 .. num_classes - 1``.

    The benchmark uses 3 or 5 classes; any prefix of the scheme (1 to 5 classes) is
    accepted so that small test cases can use fewer labels.
    """
    if isinstance(num_classes, bool):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise ValueError(f"num_classes must be an int, got {num_classes!r}") from None
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")
    return CLASS_NAMES[:num_classes]
