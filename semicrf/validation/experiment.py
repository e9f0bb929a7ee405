"""The validation experiment: scales, ground truths, and the cached, resumable training.

One experiment per scale and ground truth:

1. generate a data set from the (scaled) ground truth,
2. train the four models with :func:`semicrf.pipeline.run_benchmark` and evaluate them on
   the test split,
3. generate a second data set whose exon lengths are doubled and train only ``semicrf`` on
   it (does the learned duration model follow the ground truth?),
4. probe each trained ``semicrf`` on its test split (:func:`probe_semicrf`): its posterior
   run lengths (the tilt-free view of its length model on data) and its Viterbi labels
   with the duration model replaced by the uniform one (the causal ablation),
5. decode the test split with the Bayes oracle (the generator's own model, true and
   geometric durations: :mod:`semicrf.validation.oracle`), the ceiling the claims read.

Steps 2-5 are units of one model each (:class:`Task`), run by :func:`run_experiments` in
``workers`` processes side by side (one torch thread each at the cpu scale: 2 on these 2
cores); the units of several experiments (the signal sweep's) share the processes. They are
cached on disk under ``<results_root>/<scale>-<hash>/``, the hash covering everything that
defines them (:meth:`Experiment.key`); a ``complete.json`` marker says an experiment
finished, and an interrupted run is resumed from its checkpoints, never trusted. The claims
(:mod:`semicrf.validation.claims`) and the report (:mod:`semicrf.validation.report`) are
recomputed on every run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semicrf.atomic_io import save_npz, write_json
from semicrf.crf.head import DECODERS, SemiCRFHead
from semicrf.data import GeneratorConfig, generate_dataset, load_split
from semicrf.environment import git_state, machine_info
from semicrf.models import MODEL_NAMES, SegmentationModel
from semicrf.pipeline import RunConfig, load_predictions, run_benchmark, save_predictions, torch_threads
from semicrf.report import load_results, to_jsonable
from semicrf.train import ProgressFactory, TrainConfig, load_checkpoint, make_loader, no_progress
from semicrf.validation.oracle import ceiling_metrics, ceiling_paths

log = logging.getLogger(__name__)

#: Bump when the experiment protocol changes, so that old caches are not reused.
#: 5: --structure gene is the default (docs/model.md, pilot); 6: selection on the validation
#: NLL, the Bayes oracle's units, 16 epochs (run 6, docs/validation.md)
EXPERIMENT_VERSION = 6
NUM_CLASSES = 3
#: Name of the semicrf model trained on the shifted ground truth, in claims and reports.
SHIFTED_MODEL = "semicrf@shifted"
#: The changed ground truth multiplies the exon median, min and max by this.
SHIFT_EXON_FACTOR = 2.0
#: The semicrf decoded with its duration model replaced by the uniform one (the ablation).
ABLATED_MODEL = "semicrf_ablated"
PROBE_FILENAME = "probe.json"  # written last: the probe finished
PROBE_DURATIONS = "probe_durations.npz"
#: Processes that train models side by side (each with the scale's torch threads).
DEFAULT_WORKERS = 2
#: The Bayes ceiling's units (:mod:`semicrf.validation.oracle`): the generator's model decoded
#: exactly on the test split, with its true and with geometric durations.
ORACLE_UNITS: dict[str, str] = {"oracle_true": "true", "oracle_geometric": "geometric"}
#: The units' order of start: the longest first, so the processes end together.
TASK_ORDER: tuple[str, ...] = ("linear", "semicrf", SHIFTED_MODEL, "semicrf_uniform",
                               "oracle_true", "oracle_geometric", "softmax")


@dataclass(frozen=True)
class Scale:
    """One validation experiment's size: the data (counts, lengths) plus the ``semicrf run``
    settings it trains with (a :class:`RunConfig` whose data and output dirs are filled in
    per run; its ``max_duration`` is K at this scale)."""

    name: str
    length_factor: int  # every generator length and T are the spec's divided by this
    num_train: int
    num_val: int
    num_test: int
    run: RunConfig
    data_seed: int = 42
    run_shifted: bool = True
    spec_seq_length: int = 20000

    @property
    def seq_length(self) -> int:
        return round(self.spec_seq_length / self.length_factor)

    @property
    def max_duration(self) -> int:
        return self.run.max_duration


def scale_run(**settings: Any) -> RunConfig:
    """The run settings of a scale (``data_dir`` and ``output_dir`` are set per run)."""
    return RunConfig(data_dir="", output_dir="", **settings)


#: ``cpu`` (default): the spec's generating distributions unscaled, K = 1000, T = 10 kb (the
#: spec's "fast" length), sized to finish in under an hour on 2 cores (docs/validation.md);
#: ``smoke``: the earlier CPU scale, every length divided by 10 (T = 2000, K = 100);
#: ``full``: the spec's defaults, for a GPU.
SCALES: dict[str, Scale] = {
    "cpu": Scale(
        name="cpu", length_factor=1, num_train=96, num_val=32, num_test=100,
        spec_seq_length=10000,
        run=scale_run(encoder="bilstm", features="onehot+kmer", max_duration=1000, hidden_dim=32,
                      num_layers=1, batch_size=4, lr=2e-2, epochs=16, duration_form="smooth",
                      device="cpu", threads="1"),
    ),
    "smoke": Scale(
        name="smoke", length_factor=10, num_train=256, num_val=48, num_test=200,
        run=scale_run(encoder="bilstm", max_duration=100, hidden_dim=32, num_layers=1,
                      batch_size=16, lr=1e-2, epochs=40, device="cpu", threads="1"),
    ),
    "full": Scale(
        name="full", length_factor=1, num_train=1000, num_val=200, num_test=200,
        run=scale_run(batch_size=16, device=None),
    ),
}


def scale_ground_truth(config: GeneratorConfig, factor: float) -> GeneratorConfig:
    """``config`` with every duration length (median, min, max of every class) divided by
    ``factor``; sigmas (log-scale shapes) are unchanged. Integer bounds are rounded, min >= 1
    (>= 4 for introns while splice motifs are on), max >= min."""
    if factor == 1:
        return config
    data = config.to_dict()
    for name, spec in data["durations"].items():
        low = max(1, round(spec["min"] / factor))
        if name == "intron" and data["splice_motifs"]:
            low = max(low, 4)
        spec["median"] = spec["median"] / factor
        spec["min"] = low
        spec["max"] = max(low, round(spec["max"] / factor))
    return GeneratorConfig.from_dict(data)


def shift_exon_lengths(config: GeneratorConfig, factor: float = SHIFT_EXON_FACTOR) -> GeneratorConfig:
    """``config`` with the exon median, min and max multiplied by ``factor``."""
    data = config.to_dict()
    exon = data["durations"]["exon"]
    exon["median"] *= factor
    exon["min"] = max(1, round(exon["min"] * factor))
    exon["max"] = max(exon["min"], round(exon["max"] * factor))
    return GeneratorConfig.from_dict(data)


@dataclass(frozen=True)
class Experiment:
    """A scale plus the ground truths it runs on (both as complete generator configs)."""

    scale: Scale
    generator: dict[str, Any]
    shifted_generator: dict[str, Any] | None
    overrides: dict[str, Any] | None = None  # what --generator-config asked for (report only)
    models: tuple[str, ...] = MODEL_NAMES  # trained on the main ground truth

    def describe(self) -> dict[str, Any]:
        """Everything that defines the cached part (data, training): what the key hashes."""
        return {
            "experiment_version": EXPERIMENT_VERSION,
            "num_classes": NUM_CLASSES,
            "models": list(self.models),
            "scale": asdict(self.scale),
            "seq_length": self.scale.seq_length,
            "max_duration": self.scale.max_duration,
            "generator": self.generator,
            "shifted_generator": self.shifted_generator,
        }

    def key(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`describe` (canonical JSON)."""
        text = json.dumps(to_jsonable(self.describe()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def directory(self, results_root: str | os.PathLike) -> Path:
        return Path(results_root) / f"{self.scale.name}-{self.key()}"


def build_experiment(scale: Scale | str, overrides: Mapping[str, Any] | None = None, *,
                     models: tuple[str, ...] = MODEL_NAMES) -> Experiment:
    """The experiment of ``scale`` on the defaults with ``overrides`` (a ``--generator-config``
    object) applied, all lengths then divided by the scale's factor."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown validation scale {scale!r}; choose from {sorted(SCALES)}")
        scale = SCALES[scale]
    base = GeneratorConfig.from_overrides(dict(overrides) if overrides else None)
    effective = scale_ground_truth(base, scale.length_factor)
    shifted = shift_exon_lengths(effective) if scale.run_shifted else None
    return Experiment(
        scale=scale, generator=effective.to_dict(),
        shifted_generator=shifted.to_dict() if shifted is not None else None,
        overrides=dict(overrides) if overrides else None, models=tuple(models),
    )


# ---- running (cached) -------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """The trained experiment as read back from disk."""

    experiment: Experiment
    root: Path
    payload: dict[str, Any]  # metrics.json of the four-model run
    #: decoder -> model -> decoded test labels per sequence; "viterbi" also holds
    #: :data:`ABLATED_MODEL` and the keys of :data:`ORACLE_UNITS` (the Bayes ceiling)
    decoded: dict[str, dict[str, list[np.ndarray]]]
    true_labels: list[np.ndarray]
    shifted_payload: dict[str, Any] | None
    timing: dict[str, Any]
    probe: dict[str, Any]  # probe.json of the main run (:func:`probe_semicrf`)
    shifted_probe: dict[str, Any] | None
    from_cache: bool = False

    @property
    def predictions(self) -> dict[str, list[np.ndarray]]:
        """The Viterbi labels (the pre-registered decoder) of every model."""
        return self.decoded["viterbi"]

    @property
    def run_dir(self) -> Path:
        return self.root / "run"


def ensure_data(path: Path, generator: dict[str, Any], scale: Scale) -> Path:
    """Generate the data set unless a complete one (``meta.json`` written last) is there."""
    if (path / "meta.json").is_file():
        return path
    generate_dataset(
        path, num_train=scale.num_train, num_val=scale.num_val, num_test=scale.num_test,
        seq_length=scale.seq_length, num_classes=NUM_CLASSES, seed=scale.data_seed,
        config=generator,
    )
    return path


def ablate_durations(model: SegmentationModel) -> SegmentationModel:
    """The trained ``model`` with its duration scores and tail replaced by zeros: the same
    encoder, emission projection, transitions and start (and a gene head's sensors), scored by
    the uniform model's (geometric) length model (:meth:`SemiCRFHead.without_durations`)."""
    head = model.head
    if not isinstance(head, SemiCRFHead) or not head.learned:
        raise ValueError(f"model {model.name!r} has no learned duration model to ablate")
    return SegmentationModel(ABLATED_MODEL, model.encoder, head.without_durations()).eval()


@torch.no_grad()
def probe_semicrf(run_dir: Path, data_dir: Path, num_threads: int = 1,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """Probe the best ``semicrf`` checkpoint of ``run_dir`` on the test split of ``data_dir``.

    Writes ``predictions/semicrf_ablated.npz`` (Viterbi labels of :func:`ablate_durations`),
    ``probe_durations.npz`` (``posterior_durations`` (S, K, C): per test sequence the expected
    number of complete runs of each length 1..K and label,
    :meth:`SemiCRFHead.posterior_durations`, the model's own length distribution on data) and
    ``probe.json`` (checkpoint epoch, time) last. Returns :func:`load_probe`'s dict.
    """
    if (run_dir / PROBE_FILENAME).is_file():
        return load_probe(run_dir)
    records = load_split(data_dir, "test")
    checkpoint = run_dir / "checkpoints" / "semicrf_best.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    started = time.perf_counter()
    with torch_threads(num_threads):
        model = load_checkpoint(checkpoint, device).eval()
        ablated = ablate_durations(model)
        per_sequence: list[np.ndarray] = []
        preds: list[np.ndarray] = []
        for batch in make_loader(records, cfg, shuffle_epoch=None):
            feats, lengths = batch["features"].to(device), batch["lengths"].to(device)
            hidden = model.encoder(feats, lengths)
            per_sequence.append(model.head.posterior_durations(hidden, lengths).double().cpu().numpy())
            labels, _ = ablated.head.decode(hidden, lengths)
            preds.extend(labels[b, : int(n)].cpu().numpy() for b, n in enumerate(lengths.tolist()))
    save_predictions(run_dir / "predictions" / f"{ABLATED_MODEL}.npz", preds)
    save_npz(run_dir / PROBE_DURATIONS, posterior_durations=np.concatenate(per_sequence))
    write_json(run_dir / PROBE_FILENAME, {"checkpoint_epoch": state.get("best_epoch"),
                                          "time_s": time.perf_counter() - started})
    return load_probe(run_dir)


def load_probe(run_dir: Path) -> dict[str, Any]:
    """``probe.json`` of ``run_dir`` plus ``posterior_durations`` (S, K, C) float64."""
    probe = json.loads((run_dir / PROBE_FILENAME).read_text(encoding="utf-8"))
    with np.load(run_dir / PROBE_DURATIONS) as data:
        probe["posterior_durations"] = data["posterior_durations"].astype(np.float64)
    return probe


def run_config(scale: Scale, data_dir: Path, output_dir: Path,
               models: tuple[str, ...] = MODEL_NAMES) -> RunConfig:
    """The ``semicrf run`` settings of one experiment (resuming from checkpoints)."""
    return replace(scale.run, data_dir=str(data_dir), output_dir=str(output_dir), models=models,
                   resume=True)


def _add_time(root: Path, phase: str, seconds: float) -> dict[str, Any]:
    """Accumulate the wall time of ``phase`` in ``timing.json`` (over resumed sessions)."""
    path = root / "timing.json"
    timing = json.loads(path.read_text()) if path.is_file() else {"phases": {}, "sessions": 0}
    timing["phases"][phase] = timing["phases"].get(phase, 0.0) + seconds
    timing["total_s"] = sum(timing["phases"].values())
    write_json(path, timing)
    return timing


@dataclass(frozen=True)
class Task:
    """One unit of an experiment: train and evaluate one model (``run.models`` holds it) into
    ``run.output_dir``, then probe it if it is a semicrf (:func:`probe_semicrf`); or, when
    ``oracle`` names a duration model, decode ``run.data_dir``'s test split with the Bayes
    oracle (:func:`semicrf.validation.oracle.ceiling_metrics`)."""

    name: str  # a model name, SHIFTED_MODEL or a key of ORACLE_UNITS
    run: RunConfig
    probe: bool
    oracle: str | None = None

    @property
    def rank(self) -> int:
        return TASK_ORDER.index(self.name)


def run_task(task: Task, progress: ProgressFactory = no_progress) -> float:
    """Run one :class:`Task` (resuming from its checkpoints); returns its wall time in s."""
    started = time.perf_counter()
    if task.oracle is not None:
        with torch_threads(task.run.num_threads()):
            ceiling_metrics(task.run.data_dir, task.oracle, task.run.max_duration)
        return time.perf_counter() - started
    run_benchmark(task.run, progress=progress)
    if task.probe:
        probe_semicrf(Path(task.run.output_dir), Path(task.run.data_dir), task.run.num_threads(),
                      task.run.resolve_device())
    return time.perf_counter() - started


def experiment_tasks(experiment: Experiment, root: Path) -> list[Task]:
    """The units of ``experiment`` whose data is under ``root`` (generated beforehand)."""
    scale = experiment.scale
    tasks = [Task(m, run_config(scale, root / "data", root / "run", (m,)), m == "semicrf")
             for m in experiment.models]
    if experiment.shifted_generator is not None:
        shifted = root / "shifted"
        tasks.append(Task(SHIFTED_MODEL, run_config(scale, shifted / "data", shifted / "run",
                                                    ("semicrf",)), True))
    tasks += [Task(name, run_config(scale, root / "data", root / "run"), False, durations)
              for name, durations in ORACLE_UNITS.items()]
    return tasks


def execute_tasks(tasks: Sequence[Task], workers: int, progress: ProgressFactory) -> list[float]:
    """Run ``tasks`` in ``workers`` fresh (spawned) processes, or in this one if ``workers``
    is 1; returns the wall time of each. A failure cancels the units not yet started (the
    running ones finish and keep their results for a resumed run) and is raised."""
    if workers <= 1 or len(tasks) <= 1:
        return [run_task(t, progress) for t in tasks]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_task, t): t for t in tasks}
        try:
            for future in progress(as_completed(futures), total=len(futures),
                                   desc=f"models ({workers} processes)"):
                task = futures[future]
                log.info("%s in %s finished (%.0f s)", task.name, task.run.output_dir,
                         future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [f.result() for f in futures]


def run_experiments(
    experiments: Sequence[Experiment],
    results_root: str | os.PathLike,
    *,
    rebuild: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressFactory = no_progress,
) -> list[ExperimentResult]:
    """Generate, train and evaluate ``experiments`` (or load the cached, completed ones); the
    models of all of them run as :class:`Task` units in ``workers`` processes (CPU scales;
    one process on a GPU)."""
    todo: list[tuple[Experiment, Path, dict[str, Any]]] = []
    for experiment in experiments:
        root = experiment.directory(results_root)
        if rebuild and root.exists():
            log.info("--validation-rebuild: removing %s", root)
            shutil.rmtree(root)
        if (root / "complete.json").is_file():
            log.info("validation experiment %s: cached, loading", root)
            continue
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "experiment.json", to_jsonable(experiment.describe()))
        if (root / "timing.json").is_file():
            log.info("validation experiment %s: resuming an interrupted run", root)
        started = time.perf_counter()
        ensure_data(root / "data", experiment.generator, experiment.scale)
        if experiment.shifted_generator is not None:
            ensure_data(root / "shifted" / "data", experiment.shifted_generator, experiment.scale)
        _add_time(root, "generate", time.perf_counter() - started)
        # the source the training runs with (HEAD may move while it runs)
        todo.append((experiment, root, git_state()))
    tasks = sorted(((i, t) for i, (e, root, _) in enumerate(todo) for t in experiment_tasks(e, root)),
                   key=lambda it: (it[1].rank, it[0]))
    if any(e.scale.run.resolve_device().type != "cpu" for e, _, _ in todo):
        workers = 1  # one accelerator: one process
    started = time.perf_counter()
    seconds = execute_tasks([t for _, t in tasks], workers, progress)
    elapsed = time.perf_counter() - started
    for i, (experiment, root, code) in enumerate(todo):
        own = {t.name: s for (j, t), s in zip(tasks, seconds) if j == i}
        # the processes' wall time, shared out by the experiments' share of the work
        timing = _add_time(root, "train_evaluate_probe",
                           elapsed * sum(own.values()) / max(sum(seconds), 1e-9))
        timing["tasks_s"] = {**timing.get("tasks_s", {}), **own}
        timing["workers"] = workers
        write_json(root / "timing.json", timing)
        write_json(root / "complete.json", to_jsonable({
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "key": experiment.key(), "timing": timing, "machine": machine_info(),
            "code_at_start": code,
        }))
    trained = {id(e) for e, _, _ in todo}
    return [load_experiment(e, e.directory(results_root), from_cache=id(e) not in trained)
            for e in experiments]


def run_experiment(
    experiment: Experiment,
    results_root: str | os.PathLike,
    *,
    rebuild: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressFactory = no_progress,
) -> ExperimentResult:
    """Generate, train and evaluate one experiment (or load the cached, completed result)."""
    return run_experiments([experiment], results_root, rebuild=rebuild, workers=workers,
                           progress=progress)[0]


def load_experiment(experiment: Experiment, root: Path, *, from_cache: bool) -> ExperimentResult:
    """Read a completed experiment directory."""
    payload = load_results(root / "run")
    missing = [m for m in experiment.models if m not in payload["models"]]
    if missing:
        raise ValueError(f"{root / 'run'} lacks models {missing}: the run did not complete")
    primary = experiment.scale.run.decoder
    folder = root / "run" / "predictions"
    decoded = {d: {m: load_predictions(folder / (f"{m}.npz" if d == primary else f"{m}.{d}.npz"))
                   for m in experiment.models} for d in DECODERS}
    probe: dict[str, Any] = {}
    for name, durations in ORACLE_UNITS.items():  # the Bayes ceiling's labels (absent before run 6)
        labels = ceiling_paths(root / "data", durations)[1]
        if labels.is_file():
            decoded["viterbi"][name] = load_predictions(labels)
    if "semicrf" in experiment.models:
        decoded["viterbi"][ABLATED_MODEL] = load_predictions(folder / f"{ABLATED_MODEL}.npz")
        probe = load_probe(root / "run")
    true_labels = [r.labels for r in load_split(root / "data", "test")]
    shifted = shifted_probe = None
    if experiment.shifted_generator is not None:
        shifted = load_results(root / "shifted" / "run")
        shifted_probe = load_probe(root / "shifted" / "run")
    marker = root / "complete.json"
    timing = json.loads(marker.read_text())["timing"] if marker.is_file() else {}
    return ExperimentResult(experiment, root, payload, decoded, true_labels, shifted, timing,
                            probe, shifted_probe, from_cache)


def with_overrides(scale: Scale, **changes: Any) -> Scale:
    """A copy of ``scale`` with fields of the scale or of its run settings replaced (for tests
    and sweeps), e.g. ``with_overrides(scale, num_train=8, epochs=2)``."""
    own = {f.name for f in fields(Scale)}
    run = {k: v for k, v in changes.items() if k not in own}
    base = {k: v for k, v in changes.items() if k in own}
    return replace(scale, **base, run=replace(base.get("run", scale.run), **run))

