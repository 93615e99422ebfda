"""Atomic writes: all or nothing, with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gradinvert.io import atomic as atomic_module
from gradinvert.io.atomic import atomic_path, write_text_atomic


def test_written_file_gets_the_umask_mode_not_mkstemps_private_one(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "out.json", "{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "out.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_failed_write_leaves_neither_target_nor_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_replaced_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_a_write_is_flushed_before_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        atomic_module.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))
    )
    monkeypatch.setattr(
        atomic_module.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))
    )
    write_text_atomic(tmp_path / "x.json", "{}")
    assert events == ["fsync", "rename", "fsync"]  # the file, the rename, then its folder
    assert (tmp_path / "x.json").read_text() == "{}"


def test_a_private_output_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "private.txt", "x", private=True)
        atomic_module.set_public_outputs(True)
        write_text_atomic(tmp_path / "public.txt", "x", private=True)
    finally:
        atomic_module.set_public_outputs(False)
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public.txt").stat().st_mode) == 0o644
