"""Atomic writes (semicrf.atomic_io) and environment info (semicrf.environment)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from semicrf import atomic_io
from semicrf.environment import machine_info


def test_every_writer_round_trips(tmp_path):
    atomic_io.write_text(tmp_path / "a" / "t.txt", "héllo")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_io.write_json(tmp_path / "x.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"k": [1, 2]}
    atomic_io.save_torch({"w": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.arange(3))
    atomic_io.save_npz(tmp_path / "p.npz", labels=np.arange(4))
    with np.load(tmp_path / "p.npz") as data:
        assert data["labels"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.pt", "p.npz", "x.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = atomic_io.write_text(tmp_path / "f.txt", "old")

    def half_then_fail(handle):
        handle.write(b"new but incompl")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_io.atomic_write(path, half_then_fail)
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError("no rename")))
    with pytest.raises(OSError, match="no rename"):
        atomic_io.write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_io.write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_machine_info_fields():
    info = machine_info()
    assert info["cpu_count"] == os.cpu_count() and info["torch_threads"] == torch.get_num_threads()
    assert info["versions"]["numpy"] == np.__version__
    assert info["git"] is None or len(info["git"]["commit"]) == 40


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_io.write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
