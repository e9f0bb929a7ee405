"""Wall time of one training epoch per model at a CPU scale, split into encoder and head.

Default scale: 64 sequences x 20 kb (the spec's generator), K = 1000, hidden 64, 1 layer,
batch 16, bilstm encoder. For every model and batch it times the encoder's forward +
backward and the head's (loss forward + backward) separately, and writes one JSON::

    python benchmarks/epoch_profile.py --out epoch_profile.json [--encoder mamba_stub]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from semicrf.data import generate_dataset, load_split
from semicrf.environment import machine_info
from semicrf.models import MODEL_NAMES
from semicrf.pipeline import RunConfig
from semicrf.train import make_loader


def profile(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, num_train=args.sequences, num_val=1, num_test=1,
                         seq_length=args.length, seed=0)
        records = load_split(tmp, "train")
    result = {"scale": vars(args), "machine": machine_info(), "models": {}}
    for name in args.models:
        cfg = RunConfig(data_dir="", output_dir="", encoder=args.encoder, features="onehot",
                        max_duration=args.max_duration, hidden_dim=args.hidden, num_layers=1,
                        batch_size=args.batch, lr=1e-3, epochs=1).train_config(name, 3)
        model = cfg.build()
        encoder_s = head_s = 0.0
        for batch in make_loader(records, cfg, shuffle_epoch=0):
            feats, labels, lengths = batch["features"], batch["labels"], batch["lengths"]
            started = time.perf_counter()
            hidden = model.encoder(feats, lengths)
            mid = time.perf_counter()
            detached = hidden.detach().requires_grad_()
            model.head.loss(detached, lengths, labels).backward()
            after_head = time.perf_counter()
            hidden.backward(detached.grad)
            done = time.perf_counter()
            encoder_s += (mid - started) + (done - after_head)
            head_s += after_head - mid
        result["models"][name] = {"encoder_s": encoder_s, "head_s": head_s,
                                  "epoch_s": encoder_s + head_s}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--length", type=int, default=20000)
    parser.add_argument("--max-duration", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--encoder", default="bilstm")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = json.dumps(profile(args), indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
