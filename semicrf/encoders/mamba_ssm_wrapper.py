"""Bidirectional Mamba on mamba-ssm's CUDA kernels (``--encoder mamba``).

mamba-ssm is a GPU-only optional dependency (``pip install 'semicrf[gpu]'``); it is imported
only when this encoder is constructed. The architecture and parameter names are those of
``mamba_stub``, so checkpoints move between the two.
"""

from __future__ import annotations

import torch

from semicrf.encoders.mamba_stub import D_CONV, D_STATE, EXPAND, BidirectionalMambaEncoder

_HINT = (
    "install the GPU extra with `pip install 'semicrf[gpu]'` on a CUDA machine, or use "
    "`--encoder mamba_stub`, the pure-PyTorch Mamba with the same parameters"
)


class MambaUnavailableError(ImportError):
    """The ``mamba`` encoder cannot run here: mamba-ssm is missing or CUDA is absent."""


def _import_mamba() -> type:
    if not torch.cuda.is_available():
        raise MambaUnavailableError(f"encoder 'mamba' needs CUDA, which is not available; {_HINT}")
    try:
        from mamba_ssm import Mamba
    except Exception as err:  # ImportError, or its CUDA extension failing to load
        raise MambaUnavailableError(
            f"encoder 'mamba' needs mamba-ssm, which failed to import ({err}); {_HINT}"
        ) from err
    return Mamba


class MambaEncoder(BidirectionalMambaEncoder):
    """``--encoder mamba``: bidirectional Mamba with ``mamba_ssm.Mamba`` mixers.

    features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length. The
    module must be moved to a CUDA device before use (mamba-ssm's kernels are CUDA-only).

    Raises:
        MambaUnavailableError: (an ImportError) when mamba-ssm does not import or CUDA is
            absent; the message points to ``mamba_stub`` and the ``gpu`` extra.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        mamba = _import_mamba()
        super().__init__(
            input_dim, hidden_dim, num_layers,
            lambda d_model: mamba(d_model=d_model, d_state=D_STATE, d_conv=D_CONV,
                                  expand=EXPAND),
        )
