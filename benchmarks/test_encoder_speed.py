"""Encoder forward + backward timings on CPU at the benchmark's sequence length.

pytest-benchmark (``make bench`` runs it with the others)::

    pytest benchmarks/test_encoder_speed.py -m benchmark --benchmark-only

or a plain table, with a chunk-size sweep for mamba_stub (numbers in docs/encoders.md)::

    python benchmarks/test_encoder_speed.py --threads 1 --repeats 3
    python benchmarks/test_encoder_speed.py --threads 1 --encoders mamba_stub \
        --chunk-sizes 32 64 128 256
"""

from __future__ import annotations

import argparse
import resource
import time

import pytest
import torch

from semicrf.encoders import MambaStubEncoder, build_encoder

BATCH, LENGTH, INPUT_DIM, HIDDEN, LAYERS = 4, 20000, 5, 64, 1


def _inputs(batch: int = BATCH, length: int = LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (batch, length), generator=gen)
    features = torch.nn.functional.one_hot(tokens, INPUT_DIM).float()
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10  # mixed lengths, as in a real batch
    return features, lengths


def _step(encoder: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor) -> float:
    encoder.zero_grad(set_to_none=True)
    hidden = encoder(features, lengths)
    hidden.square().mean().backward()
    return float(hidden.detach().abs().mean())


@pytest.mark.benchmark(group="encoder-forward-backward")
@pytest.mark.parametrize("name", ["bilstm", "mamba_stub"])
def test_encoder_forward_backward(benchmark, name):
    torch.manual_seed(0)
    encoder = build_encoder(name, INPUT_DIM, HIDDEN, LAYERS)
    features, lengths = _inputs()
    value = benchmark.pedantic(lambda: _step(encoder, features, lengths), rounds=1,
                               warmup_rounds=0)
    assert value > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["bilstm", "mamba_stub"])
    parser.add_argument("--chunk-sizes", nargs="+", type=int, default=None,
                        help="mamba_stub chunk sizes to sweep (default: the library default)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=LENGTH)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--layers", type=int, default=LAYERS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features, lengths = _inputs(length=args.length)
    print(f"B={BATCH} T={args.length} D_in={INPUT_DIM} H={args.hidden} layers={args.layers} "
          f"threads={args.threads} torch={torch.__version__}")
    for name in args.encoders:
        chunks = args.chunk_sizes if name == "mamba_stub" and args.chunk_sizes else [None]
        for chunk in chunks:
            torch.manual_seed(0)
            if chunk is None:
                encoder = build_encoder(name, INPUT_DIM, args.hidden, args.layers)
            else:
                encoder = MambaStubEncoder(INPUT_DIM, args.hidden, args.layers, chunk_size=chunk)
            fwd, total = [], []
            for _ in range(args.repeats):
                encoder.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                hidden = encoder(features, lengths)
                t1 = time.perf_counter()
                hidden.square().mean().backward()
                t2 = time.perf_counter()
                fwd.append(t1 - t0)
                total.append(t2 - t0)
            label = name if chunk is None else f"{name} (chunk {chunk})"
            print(f"{label:24s} forward {min(fwd):6.2f} s   forward+backward {min(total):6.2f} s"
                  f"   (best of {args.repeats}; all: {', '.join(f'{t:.2f}' for t in total)})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
