"""Atomic writes: nothing half-written at an output path, normal file modes, and a full disk is one line."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from attnlab.io import atomic_path, file_digest, write_json


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
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_file_digest_matches_known_values(tmp_path):
    p = tmp_path / "abc"
    p.write_bytes(b"abc")
    # FIPS 180-2 / RFC 1321 test vectors
    assert file_digest(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_digest(p, "md5") == "900150983cd24fb0d6963f7d28e17f72"


# A stage CLI (attnlab.errors.cli_main) saving 8 MB with torch.save and as text, in a subprocess
# whose file-size limit (RLIMIT_FSIZE) is 1 MB: every write past it fails with EFBIG, as on a full disk.
_SAVE_UNDER_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    import torch
    from attnlab.errors import cli_main
    from attnlab.io import torch_save, write_text

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process at the limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    @cli_main
    def main(argv):
        out = argv[0]
        if argv[1] == "torch":
            torch_save({"w": torch.zeros(2 << 20)}, out)
        else:
            write_text(out, "x" * (8 << 20))
        return 0

    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("how", ["torch", "text"])
def test_a_save_that_runs_out_of_space_is_one_line_and_leaves_nothing(tmp_path, how):
    out = tmp_path / "out" / "checkpoint.pt"
    proc = subprocess.run([sys.executable, "-c", _SAVE_UNDER_LIMIT, str(out), how], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: could not write {out}: File too large"), proc.stderr
    assert "Traceback" not in proc.stderr and "basic_ios" not in proc.stderr and "enforce fail" not in proc.stderr
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary file


def test_a_full_tmpfs_is_named_as_no_space(tmp_path):
    """The real thing: a 1 MiB tmpfs (mounting needs root; the file-size limit above covers everyone else)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        import torch

        from attnlab.io import WriteError, torch_save

        with pytest.raises(WriteError, match=r"could not write .*x\.pt: No space left on device; .* MiB free"):
            torch_save({"w": torch.zeros(1 << 20)}, mnt / "x.pt")
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
