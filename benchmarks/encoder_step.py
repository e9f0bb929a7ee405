"""One training step's encoder and head time per encoder, side by side, at the cpu scale.

The validation's cpu scale: B = 4 sequences of T = 10 kb from the spec's generator, hidden 32,
1 layer, the semicrf head with K = 1000 on 3 labels, one thread. For every encoder and
feature set it times the encoder's forward + backward and the head's loss forward + backward
separately on the same batch; repeats go round-robin over the configurations, so a burst of
load on a shared machine hits all of them alike. Numbers are in docs/encoders.md::

    OMP_NUM_THREADS=1 python benchmarks/encoder_step.py --repeats 5

``--layouts`` instead times the CNN's six dilated blocks alone (forward + backward) with
``Conv1d`` on (B, H, T) against ``Conv2d`` with (1, k) kernels on the channels-last
(B, H, 1, T) view that ``CNNEncoder`` uses.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from semicrf.data import generate_dataset, load_split
from semicrf.encoders.cnn import DILATIONS, KERNEL_SIZE
from semicrf.pipeline import RunConfig
from semicrf.train import make_loader

ENCODERS = ("bilstm", "conv", "cnn", "cnn_bilstm")
FEATURES = ("onehot", "onehot+kmer")


def _timed_step(model: torch.nn.Module, batch: dict) -> tuple[float, float]:
    """(encoder forward + backward, head loss forward + backward) seconds of one step."""
    feats, labels, lengths = batch["features"], batch["labels"], batch["lengths"]
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    hidden = model.encoder(feats, lengths)
    mid = time.perf_counter()
    detached = hidden.detach().requires_grad_()
    model.head.loss(detached, lengths, labels).backward()
    after_head = time.perf_counter()
    hidden.backward(detached.grad)
    done = time.perf_counter()
    return (mid - started) + (done - after_head), after_head - mid


def _blocks_step(layout: str, x: torch.Tensor, weights: list[torch.Tensor]) -> float:
    """Seconds of forward + backward through the dilated blocks on x (B, H, T)."""
    started = time.perf_counter()
    if layout == "conv1d":
        h = x
        for w, d in zip(weights, DILATIONS, strict=True):
            h = h + F.conv1d(F.relu(h), w, padding=d * (KERNEL_SIZE // 2), dilation=d)
    else:
        h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        for w, d in zip(weights, DILATIONS, strict=True):
            kernel = w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            h = h + F.conv2d(F.relu(h), kernel, padding=(0, d * (KERNEL_SIZE // 2)),
                             dilation=(1, d))
    h.square().mean().backward()
    return time.perf_counter() - started


def compare_layouts(args: argparse.Namespace) -> None:
    """Print the blocks' forward + backward seconds per layout (round-robin repeats)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.hidden, args.length, generator=gen, requires_grad=True)
    weights = [(0.05 * torch.randn(args.hidden, args.hidden, KERNEL_SIZE, generator=gen))
               .requires_grad_() for _ in DILATIONS]
    times: dict[str, list[float]] = {"conv1d": [], "conv2d channels_last": []}
    for _ in range(args.repeats):
        for layout, spent in times.items():
            spent.append(_blocks_step(layout, x, weights))
    for layout, spent in times.items():
        print(f"{layout:22s} median {statistics.median(spent):.3f} s, min {min(spent):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    parser.add_argument("--features", nargs="+", default=list(FEATURES))
    parser.add_argument("--length", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--max-duration", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layouts", action="store_true",
                        help="compare convolution layouts of the CNN blocks instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.layouts:
        compare_layouts(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, num_train=args.batch, num_val=1, num_test=1,
                         seq_length=args.length, seed=0)
        records = load_split(tmp, "train")
    setups = {}
    for features in args.features:
        for encoder in args.encoders:
            torch.manual_seed(0)
            cfg = RunConfig(data_dir="", output_dir="", encoder=encoder, features=features,
                            max_duration=args.max_duration, hidden_dim=args.hidden,
                            num_layers=1, batch_size=args.batch, lr=1e-3,
                            epochs=1).train_config("semicrf", 3)
            model = cfg.build()
            batch = next(iter(make_loader(records, cfg, shuffle_epoch=0)))
            params = sum(p.numel() for p in model.encoder.parameters())
            setups[(encoder, features)] = (model, batch, params, [], [])
    for _ in range(args.repeats):
        for model, batch, _, encoder_s, head_s in setups.values():
            enc, head = _timed_step(model, batch)
            encoder_s.append(enc)
            head_s.append(head)
    print(f"B={args.batch} T={args.length} H={args.hidden} K={args.max_duration} "
          f"threads={args.threads} repeats={args.repeats} torch={torch.__version__}")
    print("| encoder | features | encoder params | encoder fwd+bwd (median, min) | head fwd+bwd "
          "(median) | step (median) |")
    print("|---|---|---|---|---|---|")
    for (encoder, features), (_, _, params, encoder_s, head_s) in setups.items():
        enc, head = statistics.median(encoder_s), statistics.median(head_s)
        print(f"| {encoder} | {features} | {params:,} | {enc:.2f} s ({min(encoder_s):.2f}) | "
              f"{head:.2f} s | {enc + head:.2f} s |")


if __name__ == "__main__":
    main()
