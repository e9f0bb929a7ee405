"""Mamba's selective scan in pure PyTorch: a chunked form for speed and a sequential reference.

The recurrence (Mamba-1, one state vector of size N per channel d)::

    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * u_t[d] * B_t[n]
    y_t[d]    = sum_n C_t[n] * h_t[d, n]                              (h_{-1} = 0)

Because the decay exp(delta * A) differs per (channel, state) pair, the Mamba-2/SSD trick
(intra-chunk work as one masked matmul per head) would need a Q x Q decay mask per (d, n),
Q times the work of the scan itself. :func:`selective_scan` instead uses a two-level chunked
scan that does O(T * D * N) work with about 2Q + T/Q Python steps instead of T:

1. split the sequence into T/Q chunks of Q positions and run the recurrence inside every
   chunk at once (the chunks are a batch dimension; Q steps), from a zero state: the
   chunk-local end states;
2. carry the state across chunks: H_{c+1} = exp(A * sum_{t in c} delta_t) * H_c + end_c
   (T/Q steps on (B, D, N) tensors; the decay is a log-space sum, always <= 1);
3. rerun step 1 from the true entry states H_c, emitting y.

No (B, T, D, N) tensor is ever stored: the autograd function saves the inputs and the chunk
entry states only, and its hand-written backward runs the adjoint recurrence
(g_t = C_t gy_t + exp(delta_{t+1} A) g_{t+1}) with the same chunking, recomputing states
chunk group by chunk group within a fixed memory budget. All decays are exp of a
non-positive number, so nothing overflows for any delta >= 0 and A <= 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Default chunk length Q (positions per chunk); see docs/encoders.md for the timing sweep.
DEFAULT_CHUNK_SIZE = 64

#: Upper bound on the elements of the per-group state buffer in the backward pass.
_BACKWARD_BUFFER_ELEMENTS = 1 << 24


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, T, D), got shape {tuple(u.shape)}")
    batch, length, channels = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"A must be (D={channels}, N), got shape {tuple(A.shape)}")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, length, state):
            raise ValueError(
                f"{name} must be (batch, T, N) = {(batch, length, state)}, got {tuple(t.shape)}"
            )


def selective_scan_reference(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> Tensor:
    """The recurrence above, one position at a time (slow; the definition used by the tests).

    Args:
        u, delta: (batch, T, D) input and step sizes (delta >= 0).
        A: (D, N) state matrix diagonal (A <= 0).
        B, C: (batch, T, N) input and output projections of the state.
        D: optional (D,) skip connection, adds ``D * u``.

    Returns:
        y: (batch, T, D).
    """
    _check(u, delta, A, B, C)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * A)
        h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    return y if D is None else y + u * D


def _to_chunks(x: Tensor, q: int, num_chunks: int) -> Tensor:
    """(batch, T, F) -> (Q, batch * num_chunks, F), zero-padded to num_chunks * Q positions."""
    batch, length, features = x.shape
    out = x.new_empty(q, batch, num_chunks, features)
    view = out.permute(1, 2, 0, 3)  # (batch, num_chunks, Q, F) over out's storage
    full = length // q
    if full:
        view[:, :full].copy_(x[:, : full * q].reshape(batch, full, q, features))
    rest = length - full * q
    if rest:
        view[:, full, :rest].copy_(x[:, full * q :])
        view[:, full, rest:].zero_()
    return out.view(q, batch * num_chunks, features)


def _from_chunks(x: Tensor, batch: int, length: int) -> Tensor:
    """Inverse of :func:`_to_chunks`: (Q, batch * num_chunks, F) -> (batch, T, F)."""
    q, rows, features = x.shape
    num_chunks = rows // batch
    x = x.reshape(q, batch, num_chunks, features).permute(1, 2, 0, 3)
    return x.reshape(batch, num_chunks * q, features)[:, :length]


def _decay(dq_i: Tensor, A: Tensor, out: Tensor) -> Tensor:
    """exp(delta_i[..., None] * A) written into ``out`` (rows, D, N); in place to avoid
    allocating a fresh large tensor per step (allocation dominates on CPU)."""
    torch.mul(dq_i.unsqueeze(-1), A, out=out)
    return out.exp_()


def _local_end_states(dq: Tensor, xq: Tensor, bq: Tensor, A: Tensor) -> Tensor:
    """Each chunk's end state from a zero entry state: (rows, D, N)."""
    q, rows, channels = dq.shape
    h = dq.new_zeros(rows, channels, A.shape[1])
    decay = torch.empty_like(h)
    for i in range(q):
        h.mul_(_decay(dq[i], A, decay))
        h.addcmul_(xq[i].unsqueeze(-1), bq[i].unsqueeze(1))
    return h


def _chunk_decays(dq: Tensor, A: Tensor, batch: int) -> Tensor:
    """Whole-chunk decay exp(A * sum delta): (batch, num_chunks, D, N), entries in (0, 1]."""
    total = dq.sum(0)
    return torch.exp(total.reshape(batch, -1, total.shape[-1], 1) * A)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size):  # type: ignore[override]
        batch, length, channels = u.shape
        q = max(1, min(chunk_size, length))
        num_chunks = -(-length // q)
        dq = _to_chunks(delta, q, num_chunks)
        uq = _to_chunks(u, q, num_chunks)
        bq = _to_chunks(B, q, num_chunks)
        cq = _to_chunks(C, q, num_chunks)
        xq = dq * uq
        state = A.shape[1]

        ends = _local_end_states(dq, xq, bq, A).reshape(batch, num_chunks, channels, state)
        decays = _chunk_decays(dq, A, batch)
        entry = torch.zeros_like(ends)  # H_c: the true state entering chunk c
        for c in range(1, num_chunks):
            entry[:, c] = decays[:, c - 1] * entry[:, c - 1] + ends[:, c - 1]
        entry = entry.reshape(batch * num_chunks, channels, state)

        h = entry.clone()
        decay = torch.empty_like(h)
        yq = dq.new_empty(q, batch * num_chunks, channels, 1)
        for i in range(q):
            h.mul_(_decay(dq[i], A, decay))
            h.addcmul_(xq[i].unsqueeze(-1), bq[i].unsqueeze(1))
            torch.bmm(h, cq[i].unsqueeze(-1), out=yq[i])
        yq = yq.squeeze(-1)

        ctx.save_for_backward(uq, dq, A, bq, cq, entry)
        ctx.shape = (batch, length, q)
        return _from_chunks(yq, batch, length)

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        uq, dq, A, bq, cq, entry = ctx.saved_tensors
        batch, length, q = ctx.shape
        channels, state = A.shape
        num_chunks = -(-length // q)
        rows = batch * num_chunks
        gq = _to_chunks(grad_y, q, num_chunks)
        xq = dq * uq

        # Adjoint g_t = dL/dh_t. Chunk-local pass from a zero exit adjoint gives, per chunk,
        # exp(delta_0 A) * g_0 (what flows into the previous chunk's last position) ...
        back = dq.new_zeros(rows, channels, state)
        decay = torch.empty_like(back)
        for i in range(q - 1, -1, -1):
            back.addcmul_(gq[i].unsqueeze(-1), cq[i].unsqueeze(1))
            back.mul_(_decay(dq[i], A, decay))
        del decay
        back = back.reshape(batch, num_chunks, channels, state)
        # ... and the exit adjoints G_c = dL/dh at chunk c's last position from later chunks.
        decays = _chunk_decays(dq, A, batch)
        exit_adj = torch.zeros_like(back)
        for c in range(num_chunks - 1, 0, -1):
            exit_adj[:, c - 1] = decays[:, c] * exit_adj[:, c] + back[:, c]
        exit_adj = exit_adj.reshape(rows, channels, state)

        grad_x = dq.new_empty(q, rows, channels, 1)  # dL/d(delta * u)
        grad_delta = torch.empty_like(dq)
        grad_b = bq.new_empty(q, rows, 1, state)
        grad_c = cq.new_empty(q, rows, 1, state)
        grad_a = torch.zeros_like(A)
        group = min(rows, max(1, _BACKWARD_BUFFER_ELEMENTS // (2 * q * channels * state)))
        # allocated once: fresh large buffers per group would cost a page fault per page
        hs_buffer = dq.new_empty(q, group, channels, state)
        decay_buffer = torch.empty_like(hs_buffer)
        for lo in range(0, rows, group):
            hi = min(rows, lo + group)
            d_g, x_g, b_g, c_g, gy_g = (t[:, lo:hi] for t in (dq, xq, bq, cq, gq))
            # States and decays at every position of these chunks, from their entry states.
            hs = hs_buffer[:, : hi - lo]
            decays = decay_buffer[:, : hi - lo]
            prev = entry[lo:hi]
            for i in range(q):
                torch.mul(prev, _decay(d_g[i], A, decays[i]), out=hs[i])
                hs[i].addcmul_(x_g[i].unsqueeze(-1), b_g[i].unsqueeze(1))
                prev = hs[i]
            g = exit_adj[lo:hi].clone()
            s = torch.empty_like(g)
            acc_a = torch.zeros_like(g)
            for i in range(q - 1, -1, -1):
                g.addcmul_(gy_g[i].unsqueeze(-1), c_g[i].unsqueeze(1))  # g = g_i
                torch.bmm(g, b_g[i].unsqueeze(-1), out=grad_x[i, lo:hi])
                torch.bmm(x_g[i].unsqueeze(1), g, out=grad_b[i, lo:hi])
                torch.bmm(gy_g[i].unsqueeze(1), hs[i], out=grad_c[i, lo:hi])
                # s = dL/d(delta_i A) = g_i * exp(delta_i A) * h_{i-1}
                torch.mul(g, hs[i - 1] if i > 0 else entry[lo:hi], out=s)
                s.mul_(decays[i])
                acc_a.addcmul_(s, d_g[i].unsqueeze(-1))
                torch.sum(s.mul_(A), -1, out=grad_delta[i, lo:hi])
                g.mul_(decays[i])
            grad_a += acc_a.sum(0)

        grad_x = grad_x.squeeze(-1)
        grad_b = grad_b.squeeze(2)
        grad_c = grad_c.squeeze(2)
        grad_u = grad_x * dq
        grad_delta += grad_x * uq
        return (
            _from_chunks(grad_u, batch, length),
            _from_chunks(grad_delta, batch, length),
            grad_a,
            _from_chunks(grad_b, batch, length),
            _from_chunks(grad_c, batch, length),
            None,
        )


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """The selective scan (module docstring) by the two-level chunked algorithm.

    Args:
        u, delta: (batch, T, D) input and step sizes (delta >= 0, e.g. after softplus).
        A: (D, N) state matrix diagonal (A <= 0, e.g. ``-exp(A_log)``).
        B, C: (batch, T, N) input and output projections of the state.
        D: optional (D,) skip connection, adds ``D * u``.
        chunk_size: Q, positions per chunk (any Q >= 1 gives the same result).

    Returns:
        y: (batch, T, D), differentiable w.r.t. u, delta, A, B, C and D.
    """
    _check(u, delta, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if u.shape[1] == 0:
        y = u.new_zeros(u.shape)
    else:
        A = A.to(u.dtype)
        y = _SelectiveScan.apply(u, delta, A, B, C, chunk_size)
    return y if D is None else y + u * D
