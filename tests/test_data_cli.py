"""`semicrf generate`: flags, equivalence with the library, clean errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from semicrf.cli import build_parser
from semicrf.cli import main as cli_main
from semicrf.data import generate_dataset

SMALL = {"num_train": 5, "num_val": 3, "num_test": 2, "seq_length": 3000}


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


def test_cli_generate_matches_the_library(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg_file = tmp_path / "gt.json"
    cfg_file.write_text(json.dumps({"durations": {"exon": {"median": 120}}, "signal": 0.9}))
    rc = cli_main(["generate", "--output-dir", str(tmp_path / "cli"), "--num-train", "5",
                   "--num-val", "3", "--num-test", "2", "--seq-length", "3000",
                   "--num-classes", "5", "--seed", "9", "--config", str(cfg_file),
                   "--signal", "0.2"])
    assert rc == 0
    assert "wrote 10 sequences" in capsys.readouterr().out
    lib = generate_dataset(tmp_path / "lib", **SMALL, num_classes=5, seed=9,
                           config={"durations": {"exon": {"median": 120}}, "signal": 0.2})
    assert digest(tmp_path / "cli") == digest(lib)


def test_cli_defaults_are_the_spec_defaults() -> None:
    args = build_parser().parse_args(["generate", "--output-dir", "x"])
    assert (args.num_train, args.num_val, args.num_test, args.seq_length, args.num_classes,
            args.seed, args.config, args.signal) == (1000, 200, 200, 20000, 3, 42, None, None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-train", "0"], "num_train must be an integer >= 1"),
        (["--seq-length", "500"], "too small to hold one gene"),
        (["--signal", "2"], "signal must be a number in [0, 1]"),
        (["--config", "MISSING"], "config file"),
        (["--config", "BADJSON"], "not valid JSON"),
        (["--config", "LIST"], "must hold a JSON object"),
        (["--config", "UNKNOWN"], "unknown config key 'exon_median'"),
    ],
)
def test_cli_errors_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str],
                              message: str) -> None:
    files = {"MISSING": tmp_path / "nope.json", "BADJSON": tmp_path / "bad.json",
             "LIST": tmp_path / "list.json", "UNKNOWN": tmp_path / "unknown.json"}
    files["BADJSON"].write_text("{durations:")
    files["LIST"].write_text("[1, 2]")
    files["UNKNOWN"].write_text('{"exon_median": 100}')
    extra = [str(files[x]) if x in files else x for x in extra]
    rc = cli_main(["generate", "--output-dir", str(tmp_path / "d"), "--num-train", "2",
                   "--num-val", "1", "--num-test", "1", "--seq-length", "2000", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("semicrf generate: error:") and message in err
    assert "Traceback" not in err


def test_cli_requires_output_dir_and_valid_num_classes(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["generate"])
    assert exc.value.code == 2
    assert "--output-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["generate", "--output-dir", "x", "--num-classes", "4"])
    assert "invalid choice" in capsys.readouterr().err
