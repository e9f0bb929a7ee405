"""``semicrf run``: argument parsing only; the work is done by :mod:`semicrf.pipeline`."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from semicrf.models import MODEL_NAMES
from semicrf.pipeline import CRF_BACKENDS, RunConfig, run_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf run`` (the spec's, plus --models, --seed, --resume)."""
    add = parser.add_argument
    add("--data-dir", required=True, help="Dataset written by `semicrf generate`.")
    add("--output-dir", required=True, help="Where metrics, plots and checkpoints go.")
    add("--encoder", default="mamba", choices=("mamba", "mamba_stub", "bilstm"),
        help="mamba needs mamba-ssm and CUDA; mamba_stub is the pure-PyTorch Mamba.")
    add("--features", default="onehot", choices=("onehot", "kmer"), help="Input features.")
    add("--max-duration", type=int, default=1000, help="Max segment duration K.")
    add("--hidden-dim", type=int, default=256, help="Encoder hidden dimension.")
    add("--num-layers", type=int, default=4, help="Encoder layers.")
    add("--batch-size", type=int, default=16, help="Sequences per batch.")
    add("--lr", type=float, default=1e-3, help="Peak learning rate (AdamW, warm-up + cosine).")
    add("--epochs", type=int, default=100, help="Training epochs.")
    add("--device", default=None, choices=("cuda", "cpu"),
        help="Default: cuda when available, else cpu.")
    add("--log-every", type=int, default=10, help="Update the progress line every N batches.")
    add("--backend", default="streaming", choices=CRF_BACKENDS,
        help="Semi-CRF backend: streaming (Triton on CUDA, else PyTorch), reference, triton.")
    add("--no-triton", action="store_true", help="Disable Triton (use the PyTorch path).")
    add("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
        help="Subset of models to train (default: all four).")
    add("--seed", type=int, default=0, help="Seed for initialisation and data order.")
    add("--resume", action="store_true",
        help="Continue from checkpoints/{model}_last.pt where a previous run stopped.")


def main(args: argparse.Namespace) -> int:
    cfg = RunConfig(
        data_dir=args.data_dir, output_dir=args.output_dir, encoder=args.encoder,
        features=args.features, max_duration=args.max_duration, hidden_dim=args.hidden_dim,
        num_layers=args.num_layers, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
        device=args.device, log_every=args.log_every, backend=args.backend,
        no_triton=args.no_triton, models=tuple(args.models), seed=args.seed, resume=args.resume,
    )
    payload = run_benchmark(cfg, progress=tqdm)
    summary = {m: {k: round(e["metrics"][k], 4) for k in ("boundary_f1", "segment_f1",
                                                         "position_f1_macro")}
               for m, e in payload["models"].items()}
    print(json.dumps(summary, indent=2))
    print(f"results in {args.output_dir} (metrics.json, duration_comparison.png, "
          "training_curves.png, checkpoints/)")
    return 0
