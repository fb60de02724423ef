"""Atomic writes: nothing half-written at an output path, and normal file modes."""

import os
import stat

import pytest

from attnlab.io import atomic_path, file_digest, write_json, read_json


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temporary file is gone too


def test_successful_write_has_umask_mode_and_content(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert read_json(tmp_path / "r.json") == {"a": 1}
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_file_digest_matches_known_values(tmp_path):
    p = tmp_path / "abc"
    p.write_bytes(b"abc")
    # FIPS 180-2 / RFC 1321 test vectors
    assert file_digest(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_digest(p, "md5") == "900150983cd24fb0d6963f7d28e17f72"
