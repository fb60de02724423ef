"""Hostile and careless inputs to the data stages and the n-gram stage (issue 22, items 3-5).

Every input is crafted here, in tmp_path (hostile.py, tinydata.py). Each case
checks the one-line refusal (what was wrong, the limit or key involved), that
nothing is left at the output path, and for the resource cases the peak memory
or the time taken, measured against a reference run.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import DataError
from attnlab.data import cifar10
from attnlab.data.__main__ import main as data_main
from attnlab.data.cifar10 import load_split, prepare
from hostile import (add_member, cut_then_whole, dripping, endless, http_server, jpeg_header, png_header,
                     sparse_member_tar, zero_member)
from tinydata import CIFAR_CLASSES, make_cifar_tarball, make_imagefolder, make_shakespeare_text

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def error_line(err: str) -> str:
    """The one ``error:`` line of a failed command; fails on a traceback or several error lines."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def prepare_fails(capsys, source: Path, out: Path, *extra: str) -> str:
    """``prepare-cifar10`` on ``source``: exit 2, one error line (returned), nothing in ``out``."""
    rc = data_main(["prepare-cifar10", "--source", str(source), "--out-dir", str(out), *extra])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("error: ")
    assert not out.exists() or not any(out.iterdir())
    return line


def official_files(tmp_path: Path, **kwargs) -> dict[str, bytes]:
    """The member bytes of a tiny official tarball, by file name."""
    src = tmp_path / "official.tar.gz"
    make_cifar_tarball(src, **kwargs)
    with tarfile.open(src) as tf:
        return {Path(m.name).name: tf.extractfile(m).read() for m in tf if m.isfile()}


def write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz", **kwargs) -> Path:
    with tarfile.open(path, mode, **kwargs) as tf:
        for name, blob in members:
            add_member(tf, name, blob)
    return path


def batch_pickle(data, labels) -> bytes:
    return pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []}, protocol=2)


# --------------------------------------------------------------------------- bounded memory (issue 22, item 4)


def peak_rss_mb(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Peak resident memory (MiB) of ``python args``, read with getrusage(RUSAGE_CHILDREN) in a wrapper process.

    The wrapper has that one child, so its RUSAGE_CHILDREN maximum is the child's
    own peak and nothing else this test session ran.
    """
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(p.stderr); print(p.returncode); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, *args], env=ENV, capture_output=True,
                          text=True, timeout=300)
    rc, kib = proc.stdout.split()
    return int(kib) / 1024, subprocess.CompletedProcess(args, int(rc), "", proc.stderr)


def _bomb_tar(path: Path, name: str, size: int, tiny_official: dict | None = None) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for n, blob in (tiny_official or {}).items():
            add_member(tf, f"cifar-10-batches-py/{n}", blob)
        zero_member(tf, name, size)
    return path


@pytest.mark.parametrize("case", ["batch-2GiB", "image-2GiB", "unnamed-1.5GiB", "sparse-64GiB", "huge-jpeg",
                                  "huge-png"])
def test_bombs_stay_small_and_are_named(case, tmp_path):
    """Each bomb is refused with one line naming the limit, with a peak below 500 MB in all: the stage reads
    and checks a source before it loads torch, so a refused one never costs torch's ~0.8 GiB either."""
    out = tmp_path / "out"
    if case == "batch-2GiB":  # the case: a 2 GiB zero member in a ~2 MB .tar.gz
        src = _bomb_tar(tmp_path / "c.tar.gz", "cifar-10-batches-py/data_batch_1", 2 << 30)
        expected = r"member cifar-10-batches-py/data_batch_1 is 2147483648 bytes, more than the 64 MiB limit"
    elif case == "image-2GiB":
        src = _bomb_tar(tmp_path / "c.tar.gz", "tiny/train/cat/0000.png", 2 << 30)
        expected = r"member tiny/train/cat/0000.png is 2147483648 bytes, more than the 64 KiB limit"
    elif case == "unnamed-1.5GiB":  # a member no layout reads, skipped: the decompressed total stops it
        src = _bomb_tar(tmp_path / "c.tar.gz", "cifar-10-batches-py/padding.bin", 3 << 29,
                        official_files(tmp_path, n_per_class_train=1))
        expected = r"holds more than 1024 MiB once decompressed, the limit for this data set's archive"
    elif case == "sparse-64GiB":
        src = tmp_path / "c.tar"
        sparse_member_tar(src, "cifar-10-batches-py/data_batch_1", 64 << 30)
        expected = r"member cifar-10-batches-py/data_batch_1 is a sparse file, not a regular file"
    else:
        tree = tmp_path / "tree"
        make_imagefolder(tree, 1, 1, top=None, fmt="jpg" if case == "huge-jpeg" else "png")
        if case == "huge-jpeg":
            (tree / "train" / "cat" / "0000.jpg").write_bytes(jpeg_header(65500, 65500))
            expected = r"train/cat/0000.jpg (declares a huge image|is 65500x65500)"
        else:
            (tree / "train" / "cat" / "0000.png").write_bytes(png_header(100000, 100000))
            expected = r"train/cat/0000.png (declares a huge image|is 100000x100000)"
        src = tree
    assert src.stat().st_size < 20 << 20  # small on disk (a folder's own entry for the image cases)
    start = time.perf_counter()
    mb, proc = peak_rss_mb(["-m", "attnlab.data", "prepare-cifar10", "--source", str(src),
                            "--out-dir", str(out)])
    seconds = time.perf_counter() - start
    line = error_line(proc.stderr)
    print(f"{case}: peak {mb:.0f} MiB, {seconds:.1f}s: {line}")
    assert proc.returncode == 2 and re.search(expected, line), line
    assert mb < 500, f"{case}: {mb:.0f} MiB peak"
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------- archive members (item 4 and beyond)


def _official_with(tmp_path: Path, extra: list[tuple[str, bytes, bytes, str]], drop: str | None = None,
                   mode: str = "w:gz") -> Path:
    """A tiny official tarball plus ``extra`` members (name, blob, tar type, link name)."""
    files = official_files(tmp_path)
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, mode) as tf:
        for n, blob in files.items():
            if n != drop:
                add_member(tf, f"cifar-10-batches-py/{n}", blob)
        for name, blob, kind, link in extra:
            add_member(tf, name, blob, kind, link)
    return path


@pytest.mark.parametrize("kind, link, expected", [
    (tarfile.SYMTYPE, "/etc/passwd", "is a symbolic link, not a regular file"),
    (tarfile.LNKTYPE, "cifar-10-batches-py/readme.html", "is a hard link, not a regular file"),
    (tarfile.CHRTYPE, "", "is a character device, not a regular file"),
    (tarfile.FIFOTYPE, "", "is a FIFO, not a regular file"),
    (tarfile.DIRTYPE, "", "is a directory, not a regular file"),
])
def test_a_batch_that_is_not_a_regular_member_is_refused(kind, link, expected, tmp_path, capsys):
    src = _official_with(tmp_path, [("cifar-10-batches-py/test_batch", b"", kind, link)], drop="test_batch")
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert f"member cifar-10-batches-py/test_batch {expected}" in line


def test_links_and_devices_no_layout_reads_are_ignored(tmp_path):
    """An official tarball with a symlink, a device and a FIFO beside it (as some tar tools keep) prepares."""
    src = _official_with(tmp_path, [("cifar-10-batches-py/link", b"", tarfile.SYMTYPE, "/etc/passwd"),
                                    ("cifar-10-batches-py/dev", b"", tarfile.CHRTYPE, ""),
                                    ("cifar-10-batches-py/fifo", b"", tarfile.FIFOTYPE, "")])
    assert prepare(src, tmp_path / "out")["n_train"] == 20


@pytest.mark.parametrize("case", ["same-path", "other-folder", "image-twice"])
def test_a_member_given_twice_is_refused(case, tmp_path, capsys):
    if case == "image-twice":
        src = tmp_path / "t.tar.gz"
        ref = make_imagefolder(src, 1, 1, as_tar=True, top="tiny")
        with tarfile.open(src, "r:gz") as tf:
            members = [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]
        write_tar(src, members + [("tiny/train/cat/0000.png", ref["files"]["train"][3][2])])
        expected = "member tiny/train/cat/0000.png appears twice"
    else:
        other = official_files(tmp_path, seed=9)["test_batch"]
        name = "cifar-10-batches-py/test_batch" if case == "same-path" else "other/test_batch"
        src = _official_with(tmp_path, [(name, other, tarfile.REGTYPE, "")])
        expected = ("member cifar-10-batches-py/test_batch appears twice" if case == "same-path"
                    else "holds test_batch twice")
    assert expected in prepare_fails(capsys, src, tmp_path / "out")


@pytest.mark.parametrize("case", ["dotdot", "absolute"])
def test_unsafe_member_names_are_refused(case, tmp_path, capsys):
    name = "x/../cifar-10-batches-py/test_batch" if case == "dotdot" else "/cifar-10-batches-py/test_batch"
    src = _official_with(tmp_path, [(name, official_files(tmp_path)["test_batch"], tarfile.REGTYPE, "")],
                         drop="test_batch")
    assert "has an unsafe name (absolute or with ..)" in prepare_fails(capsys, src, tmp_path / "out")


def test_a_negative_member_size_is_refused(tmp_path, capsys):
    info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 12  # size, base-256: -1
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    src = tmp_path / "c.tar"
    src.write_bytes(bytes(header) + b"\0" * 1024)
    assert "member cifar-10-batches-py/test_batch declares a negative size" in prepare_fails(capsys, src,
                                                                                            tmp_path / "out")


@pytest.mark.parametrize("case", ["pax-record", "gnu-long-name"])
def test_a_header_declaring_megabytes_is_refused_before_it_is_read(case, tmp_path, capsys):
    files = official_files(tmp_path)
    src = tmp_path / "c.tar.gz"
    fmt = tarfile.PAX_FORMAT if case == "pax-record" else tarfile.GNU_FORMAT
    with tarfile.open(src, "w:gz", format=fmt) as tf:
        for n, blob in files.items():
            add_member(tf, f"cifar-10-batches-py/{n}", blob)
        info = tarfile.TarInfo("x" * (3 << 20) if case == "gnu-long-name" else "notes.txt")
        if case == "pax-record":
            info.pax_headers = {"comment": "y" * (3 << 20)}
        tf.addfile(info, io.BytesIO(b""))
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert "a tar header declares a record of" in line and "more than the 1 MiB" in line


@pytest.mark.parametrize("case", ["cut-at-header", "damaged-header", "truncated-gzip", "not-gzip-inside"])
def test_cut_or_damaged_archives_are_named(case, tmp_path, capsys):
    files = official_files(tmp_path)
    plain = write_tar(tmp_path / "c.tar", [(f"cifar-10-batches-py/{n}", b) for n, b in files.items()], mode="w")
    blob = plain.read_bytes()
    # offsets of each member's header in the plain tar
    with tarfile.open(plain) as tf:
        offsets = [m.offset for m in tf]
    if case == "cut-at-header":  # tarfile alone would stop there quietly, with a member missing
        plain.write_bytes(blob[:offsets[-1]])
        src = plain
    elif case == "damaged-header":
        damaged = bytearray(blob)
        damaged[offsets[-1] + 100:offsets[-1] + 108] = b"garbage!"
        plain.write_bytes(bytes(damaged))
        src = plain
    elif case == "truncated-gzip":
        src = tmp_path / "c.tar.gz"
        src.write_bytes(gzip.compress(blob)[:-5000])
    else:
        src = tmp_path / "c.tar.gz"
        src.write_bytes(b"\x1f\x8b" + os.urandom(4000))
        line = prepare_fails(capsys, src, tmp_path / "out")
        assert "neither a tarball nor a .pt file" in line
        return
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert "It may be truncated or corrupt" in line or "looks like the official CIFAR-10 data but lacks" in line


def test_too_many_entries_and_images_are_refused(tmp_path, monkeypatch, capsys):
    """Limits on tar entries and on images per split (CIFAR-10's own split sizes), lowered for a tiny tree."""
    src = tmp_path / "t.tar.gz"
    make_imagefolder(src, 3, 1, as_tar=True)  # 30 train, 10 test images
    monkeypatch.setattr(cifar10, "MAX_ENTRIES", 25)
    assert "holds more than 25 entries" in prepare_fails(capsys, src, tmp_path / "o1")
    monkeypatch.setattr(cifar10, "MAX_ENTRIES", 1000)
    monkeypatch.setitem(cifar10.MAX_IMAGES, "train", 29)
    assert "holds more than 29 train images, CIFAR-10's train split size" in prepare_fails(capsys, src,
                                                                                           tmp_path / "o2")
    monkeypatch.setitem(cifar10.MAX_IMAGES, "train", 30)
    assert prepare(src, tmp_path / "o3")["n_train"] == 30


def test_official_batches_and_images_together_are_ambiguous(tmp_path, capsys):
    png = make_imagefolder(tmp_path / "tree", 1, 1)["files"]["train"][0][2]
    src = _official_with(tmp_path, [("tiny/train/cat/0000.png", png, tarfile.REGTYPE, "")])
    assert "holds both the official batch files and ImageFolder images" in prepare_fails(capsys, src,
                                                                                         tmp_path / "out")


# --------------------------------------------------------------------------- folder sources


@pytest.mark.parametrize("case", ["dev-zero-link", "fifo-image", "dir-named-image", "huge-sparse-file",
                                  "broken-link", "zero-byte-image", "zero-byte-batch"])
def test_folder_sources_read_only_plain_files_of_bounded_size(case, tmp_path, capsys):
    if case in ("dev-zero-link", "huge-sparse-file", "zero-byte-batch"):
        make_cifar_tarball(tmp_path / "raw", 1, 1, as_folder=True)
        target = tmp_path / "raw" / "cifar-10-batches-py" / "data_batch_2"
        target.unlink()
        if case == "dev-zero-link":
            target.symlink_to("/dev/zero")
            expected = "data_batch_2 is not a regular file (a character device)"
        elif case == "huge-sparse-file":
            with open(target, "wb") as fh:
                fh.truncate(64 << 30)  # 64 GiB declared, no block written
            expected = "data_batch_2 is 68719476736 bytes, more than the 64 MiB limit for data_batch_2"
        else:
            target.write_bytes(b"")
            expected = "cannot unpickle data_batch_2"
        src = tmp_path / "raw"
    else:
        src = tmp_path / "tree"
        make_imagefolder(src, 1, 1, top=None)
        image = src / "train" / "cat" / "0000.png"
        image.unlink()
        if case == "fifo-image":
            os.mkfifo(image)
            expected = "0000.png is not a regular file (a FIFO)"
        elif case == "dir-named-image":
            image.mkdir()
            expected = "0000.png is not a regular file (a directory)"
        elif case == "broken-link":
            image.symlink_to(tmp_path / "nowhere.png")
            expected = "cannot read"
        else:
            image.write_bytes(b"")
            expected = "cannot decode train/cat/0000.png"
    assert expected in prepare_fails(capsys, src, tmp_path / "out")


@pytest.mark.parametrize("link", ["class", "split", "top"])
def test_a_linked_folder_inside_a_folder_source_is_refused(link, tmp_path, capsys):
    """tree_digest (data.cifar10.sha256 of a folder) does not follow links, so the reader must not either."""
    real = tmp_path / "elsewhere"
    make_imagefolder(real, 1, 1, top="tiny")
    src = tmp_path / "src"
    if link == "top":
        src.mkdir()
        (src / "tiny").symlink_to(real / "tiny")
        linked = src / "tiny"
    else:
        import shutil

        shutil.copytree(real, src)
        linked = src / "tiny" / "train" / ("cat" if link == "class" else "")
        moved = tmp_path / "moved"
        shutil.move(str(linked), moved)
        linked.symlink_to(moved)
        linked = Path(str(linked).rstrip("/"))
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert f"{linked} is a symbolic link to a folder" in line, line


def test_non_utf8_file_names_are_fine_and_a_non_utf8_class_is_named(tmp_path, capsys):
    src = tmp_path / "tree"
    make_imagefolder(src, 1, 1, top=None)
    os.rename(src / "train" / "cat" / "0000.png", os.fsencode(src / "train" / "cat") + b"/caf\xe9.png")
    assert prepare(src, tmp_path / "ok")["counts"]["train"]["cat"] == 1
    os.rename(src / "test" / "dog", os.fsencode(src / "test") + b"/d\xf6g")
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert "class folders differ between splits" in line or "does not have CIFAR-10's ten classes" in line


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("where", ["folder", "tar"])
@pytest.mark.parametrize("case", ["jpeg-65500", "jpeg-two-frames", "jpeg-two-frames-huge-last", "png-100000",
                                  "png-64x48", "gif", "text-as-png"])
def test_image_headers_are_checked_before_decoding(case, where, tmp_path, capsys):
    fmt = "jpg" if case.startswith("jpeg") else "png"
    name = f"0000.{fmt}"
    if case == "jpeg-65500":
        blob, expected = jpeg_header(65500, 65500), r"train/cat/0000.jpg (declares a huge image|is 65500x65500)"
    elif case == "jpeg-two-frames":  # a huge frame, then a 32x32 one: libjpeg stops at the second
        blob, expected = jpeg_header(65500, 65500, then=(32, 32)), r"cannot decode train/cat/0000.jpg"
    elif case == "jpeg-two-frames-huge-last":
        blob, expected = jpeg_header(32, 32, then=(65500, 65500)), r"0000.jpg (declares a huge image|is 65500x)"
    elif case == "png-100000":
        blob, expected = png_header(100000, 100000), r"train/cat/0000.png (declares a huge image|is 100000x100000)"
    elif case == "png-64x48":
        blob, expected = png_header(64, 48), r"train/cat/0000.png is 64x48; the images must be 32x32"
    elif case == "gif":
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buf, format="GIF")
        blob, expected = buf.getvalue(), r"cannot decode train/cat/0000.png .*not a JPEG or PNG image"
    else:
        blob, expected = b"hello, I am not a picture", r"cannot decode train/cat/0000.png"
    if where == "folder":
        src = tmp_path / "tree"
        make_imagefolder(src, 1, 1, top=None, fmt=fmt)
        (src / "train" / "cat" / name).write_bytes(blob)
    else:
        src = tmp_path / "t.tar.gz"
        ref = make_imagefolder(tmp_path / "tree", 1, 1, top=None, fmt=fmt)
        members = [(f"{s}/{c}/{n}", b) for s in ("train", "test") for c, n, b in ref["files"][s]]
        write_tar(src, [(n, blob if n == f"train/cat/{name}" else b) for n, b in members])
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert re.search(expected, line), line


def test_an_image_member_over_its_size_limit_is_refused(tmp_path, capsys):
    """A PNG padded past 64 KiB with an ancillary chunk (real metadata is far smaller)."""
    import struct
    import zlib

    ref = make_imagefolder(tmp_path / "tree", 1, 1, top=None)
    png = ref["files"]["train"][0][2]
    pad = b"x" * (70 << 10)
    chunk = struct.pack(">I", len(pad)) + b"tEXt" + pad + struct.pack(">I", zlib.crc32(b"tEXt" + pad))
    (tmp_path / "tree" / "train" / "airplane" / "0000.png").write_bytes(png[:33] + chunk + png[33:])
    line = prepare_fails(capsys, tmp_path / "tree", tmp_path / "out")
    assert "more than the 64 KiB limit for a CIFAR-10 image" in line


# --------------------------------------------------------------------------- official batches


@pytest.mark.parametrize("case, expected", [
    ("object-dtype", "data is a object array of shape (10, 3072); the official format is a uint8 array"),
    ("int64-pixels", "data is a int64 array of shape (10, 3072)"),
    ("wrong-width", "data is a uint8 array of shape (10, 1024)"),
    ("not-an-array", "data is list; the official format is a uint8 array"),
    ("string-labels", "labels are not a list of integers"),
    ("label-count", "10 images but 9 labels"),
    ("label-99", "labels outside 0..9 (min 0, max 99)"),
    ("label-minus-1", "labels outside 0..9 (min -1, max 9)"),
    ("not-a-dict", "holds a list, not a dict"),
    ("meta-not-names", "has no b'label_names' list of names"),
])
def test_malformed_official_batches_are_one_line(case, expected, tmp_path, capsys):
    files = official_files(tmp_path)
    rng = np.random.default_rng(0)
    data, labels = rng.integers(0, 256, (10, 3072), dtype=np.uint8), list(range(10))
    name = "test_batch"
    if case == "object-dtype":
        data = data.astype(object)
    elif case == "int64-pixels":
        data = data.astype(np.int64)
    elif case == "wrong-width":
        data = data[:, :1024]
    elif case == "not-an-array":
        data = data.tolist()
    elif case == "string-labels":
        labels = [str(v) for v in labels]
    elif case == "label-count":
        labels = labels[:9]
    elif case == "label-99":
        labels[-1] = 99
    elif case == "label-minus-1":
        labels[0] = -1
    if case == "not-a-dict":
        files[name] = pickle.dumps([1, 2, 3], protocol=2)
    elif case == "meta-not-names":
        name = "batches.meta"
        files[name] = pickle.dumps({b"label_names": b"airplane"}, protocol=2)
    else:
        files[name] = batch_pickle(data, labels)
    src = write_tar(tmp_path / "c.tar.gz", [(f"cifar-10-batches-py/{n}", b) for n, b in files.items()])
    assert expected in prepare_fails(capsys, src, tmp_path / "out")


@pytest.mark.parametrize("case, expected", [
    ("label-99", r"labels outside 0..9 \(min 0, max 99\)"),
    ("label-minus-1", r"labels outside 0..9 \(min -1"),
    ("length-mismatch", r"labels must be an int64 tensor of 10 labels \(one per image\), got \(9,\)"),
    ("float-images", r"images must be a uint8 tensor \(N, 3, 32, 32\)"),
    ("not-a-dict", r"holds a list, not a prepared CIFAR-10 split"),
])
def test_malformed_prepared_splits_are_refused(case, expected, tmp_path):
    images, labels = torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10)
    obj = {"images": images, "labels": labels, "classes": list(CIFAR_CLASSES)}
    if case == "label-99":
        labels[1] = 99
    elif case == "label-minus-1":
        labels[0] = -1
    elif case == "length-mismatch":
        obj["labels"] = labels[:9]
    elif case == "float-images":
        obj["images"] = images.float()
    elif case == "not-a-dict":
        obj = [images]
    torch.save(obj, tmp_path / "test.pt")
    with pytest.raises(DataError, match=expected):
        load_split(tmp_path / "test.pt", "test")


# --------------------------------------------------------------------------- test split vs training split (item 3)


def test_a_test_split_copied_from_training_is_refused(tmp_path, capsys):
    src = tmp_path / "c.tar.gz"
    make_cifar_tarball(src, 2, 1, test_copies=10)  # every test image is a training image
    line = prepare_fails(capsys, src, tmp_path / "out")
    assert "10 of the 10 test images" in line and "(100.0%) are exact pixel copies of training images" in line
    assert "more than the 1% allowed" in line


def test_a_few_shared_images_are_warned_about_and_recorded(tmp_path, capsys):
    """1 of 100 test images (1%, the limit) warns and is recorded; 2 of 100 are refused."""
    src = tmp_path / "c.tar.gz"
    ref = make_cifar_tarball(src, 2, 10, test_copies=1)
    manifest = prepare(src, tmp_path / "out")
    err = capsys.readouterr().err
    assert "[cifar10] warning: 1 of the 100 test images" in err and "test indices [0]" in err
    assert manifest["train_test_overlap"] == {"n_test_in_train": 1, "test_indices": [0], "limit_fraction": 0.01}
    assert np.array_equal(ref["test"][0][0], ref["train"][0][0])  # the independent reference: what was written
    make_cifar_tarball(src, 2, 10, test_copies=2)
    assert "2 of the 100 test images" in prepare_fails(capsys, src, tmp_path / "out2")


def test_copies_are_found_by_pixels_across_formats_and_names(tmp_path, capsys):
    """An ImageFolder whose test/ holds training PNGs under other names and classes is still caught."""
    src = tmp_path / "tree"
    ref = make_imagefolder(src, 1, 1, top=None)
    for (cls, name, blob), (tcls, tname, _) in zip(ref["files"]["train"], ref["files"]["test"]):
        (src / "test" / tcls / tname).write_bytes(blob)
    assert "10 of the 10 test images" in prepare_fails(capsys, src, tmp_path / "out")


def test_disjoint_splits_record_no_overlap(tmp_path):
    src = tmp_path / "c.tar.gz"
    make_cifar_tarball(src, 2, 1)
    assert prepare(src, tmp_path / "out")["train_test_overlap"]["n_test_in_train"] == 0


# --------------------------------------------------------------------------- downloads (item 4)


@pytest.mark.parametrize("body", ["plain", "chunked", "bogus-length", "negative-length"])
def test_an_endless_body_stops_at_the_size_cap(body, tmp_path, capsys):
    out = tmp_path / "dl" / "input.txt"
    answer = endless(chunked=body == "chunked",
                     length={"bogus-length": b"lots", "negative-length": b"-5"}.get(body))
    with http_server(answer) as url:
        start = time.perf_counter()
        rc = data_main(["download-shakespeare", "--url", url, "--sha256", "null", "--out", str(out),
                        "--max-mb", "3", "--deadline-s", "30"])
        seconds = time.perf_counter() - start
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and "the server sent over 3" in line and "more than the 3 MiB limit" in line
    assert "data.shakespeare.download_max_mb" in line and "data.shakespeare.path" in line
    assert seconds < 10 and not out.exists() and not list(out.parent.iterdir())


def test_an_announced_oversize_stops_before_the_body(tmp_path):
    from attnlab.data.cifar10 import download_cifar10

    def huge(conn, number, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 68719476736\r\n\r\n")
        stop.wait(5)

    with http_server(huge) as url:
        start = time.perf_counter()
        with pytest.raises(DataError, match=r"announces 68719476736 bytes, more than the 180 MiB limit "
                                            r"\(data.cifar10.download_max_mb\)"):
            download_cifar10(url, tmp_path / "c.tar.gz", None)
        assert time.perf_counter() - start < 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_server_stops_at_the_deadline(in_headers, tmp_path, capsys):
    """One byte every 0.2 s keeps every socket timeout happy; the 2 s deadline still ends it."""
    out = tmp_path / "c.tar.gz"
    with http_server(dripping(0.2, in_headers=in_headers)) as url:
        start = time.perf_counter()
        rc = data_main(["download-cifar10", "--url", url, "--md5", "null", "--out", str(out),
                        "--deadline-s", "2"])
        seconds = time.perf_counter() - start
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and "not complete after the 2 s deadline (data.cifar10.download_deadline_s" in line, line
    assert 1.9 < seconds < 4, seconds
    assert list(tmp_path.iterdir()) == []


def test_retries_and_their_waits_count_against_the_deadline(tmp_path):
    from attnlab.data.download import download

    blob = b"x" * 1000
    with http_server(cut_then_whole(blob, n_cut=100)) as url:
        start = time.perf_counter()
        with pytest.raises(DataError, match=r"within the 1.5 s deadline \(deadline\)"):
            download(url, tmp_path / "f", None, retries=50, backoff=0.4, deadline=1.5)
        assert time.perf_counter() - start < 2.5
    assert list(tmp_path.iterdir()) == []


def test_download_limits_are_config_keys_with_the_documented_defaults():
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["data"]
    docs = (ROOT / "config" / "README.md").read_text()
    for name, size, expected_mb in (("cifar10", 170_498_071, 180), ("shakespeare", 1_115_394, 2)):
        assert cfg[name]["download_max_mb"] == expected_mb
        assert size < expected_mb * 2**20 < 2 * size  # the expected size plus a margin, not unbounded
        for key in ("download_max_mb", "download_deadline_s"):
            assert f"`{name}.{key}`" in docs


# --------------------------------------------------------------------------- text files (item 5)


def test_read_text_names_the_byte_offset_strips_a_bom_and_refuses_blanks(tmp_path):
    from attnlab.data.text import read_text

    f = tmp_path / "t.txt"
    f.write_bytes("ROMEO:\nhi.\n\nJULIET:\nh".encode() + "é".encode("latin-1") + b"!\n")
    with pytest.raises(DataError, match=r"t.txt is not UTF-8 text: byte 0xe9 at offset 21 \(line 5\)"):
        read_text(f)
    f.write_bytes(b"\xef\xbb\xbfROMEO:\r\nhi.\r\n")
    assert read_text(f) == "ROMEO:\nhi.\n"
    f.write_bytes(b"\xef\xbb\xbf" + b"\xff")
    with pytest.raises(DataError, match=r"byte 0xff at offset 3 \(line 1\)"):
        read_text(f)
    for blob, what in ((b"", "is empty; expected"), (b" \n\n\t\n", r"is empty \(only blanks\)")):
        f.write_bytes(blob)
        with pytest.raises(DataError, match=what):
            read_text(f)
    with pytest.raises(DataError, match="is not a regular file"):
        read_text(tmp_path)
    f.write_bytes(b"a" * 101)
    with pytest.raises(DataError, match="larger than the 0 MiB limit"):
        read_text(f, max_bytes=100)


def test_a_bom_does_not_glue_to_the_first_word(tmp_path):
    from attnlab.data.tokenizer import MyTokenizer
    from attnlab.data.vocab import build_vocab

    text = make_shakespeare_text(None, 20, seed=3)
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text(text, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    cfg = {"val_fraction": 0.2, "seed": 1, "min_freq": 1, "max_size": None}
    build_vocab(plain, None, cfg, tmp_path / "a", stream=io.StringIO())
    build_vocab(bom, None, cfg, tmp_path / "b", stream=io.StringIO())
    first = text.split(":")[0].split()[0]
    a, b = MyTokenizer.load(tmp_path / "a" / "vocab.json"), MyTokenizer.load(tmp_path / "b" / "vocab.json")
    assert first in b and not any(t.startswith("\ufeff") for t in b.itos)
    assert a.itos == b.itos  # the BOM changes nothing else either
    assert (tmp_path / "a" / "val.txt").read_bytes() == (tmp_path / "b" / "val.txt").read_bytes()


@pytest.mark.parametrize("case", ["latin-1", "empty", "blank", "directory"])
def test_build_vocab_on_bad_text_is_one_line(case, tmp_path, capsys):
    text = tmp_path / "input.txt"
    if case == "latin-1":
        text.write_bytes("ROMEO:\nhé.\n\nJULIET:\nhi.\n".encode("latin-1"))
        expected = "is not UTF-8 text: byte 0xe9 at offset 8 (line 2)"
    elif case == "empty":
        text.write_bytes(b"")
        expected = "is empty; expected tiny-shakespeare text"
    elif case == "blank":
        text.write_bytes(b"\n\n  \n")
        expected = "is empty (only blanks)"
    else:
        text.mkdir()
        expected = "is not a regular file"
    rc = data_main(["build-vocab", "--text", str(text), "--sha256", "null", "--out-dir", str(tmp_path / "out")])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- vocab.json (item 5)


VOCAB = {"format": "attnlab-word-tokenizer", "version": 1, "special_tokens": {"start": "<start>", "pad": "<pad>",
         "unk": "<unk>"}, "special_ids": {"start": 0, "pad": 1, "unk": 2}, "vocab_size": 5,
         "itos": ["<start>", "<pad>", "<unk>", "the", "love"]}

MALFORMED_VOCABS = {
    # not JSON
    "not-json": ('{"format": "attnlab-word-tokenizer", "itos": [', r"is not valid JSON \(Expecting value at line 1"),
    "not-utf8": (b'{"itos": ["caf\xe9"]}', r"is not UTF-8 text: byte 0xe9 at offset 14"),
    "nested-deep": ("[" * 100000, "nests JSON too deeply"),
    "empty": ("", "is empty"),
    # wrong top-level type
    "list": (json.dumps([VOCAB]), "holds a JSON list, not an object"),
    "string": (json.dumps("vocab"), "holds a JSON str, not an object"),
    # missing keys
    "no-itos": ({k: v for k, v in VOCAB.items() if k != "itos"}, r"it lacks \['itos'\]"),
    "no-specials": ({k: v for k, v in VOCAB.items() if k != "special_tokens"}, r"it lacks \['special_tokens'\]"),
    "no-format": ({k: v for k, v in VOCAB.items() if k != "format"}, "its format is None"),
    # wrong types and duplicates
    "itos-dict": ({**VOCAB, "itos": {"0": "<start>"}}, "itos must be a list of strings"),
    "itos-ints": ({**VOCAB, "itos": ["<start>", "<pad>", "<unk>", 7]}, "itos must be a list of strings"),
    "specials-list": ({**VOCAB, "special_tokens": ["<start>", "<pad>", "<unk>"]},
                      "special_tokens must map exactly start, pad and unk to strings"),
    "specials-int": ({**VOCAB, "special_tokens": {"start": 0, "pad": "<pad>", "unk": "<unk>"}},
                     "special_tokens must map exactly start, pad and unk to strings"),
    "specials-order": ({**VOCAB, "itos": ["<pad>", "<start>", "<unk>", "the", "love"]},
                       "the first three tokens must be the special tokens"),
    "token-twice": ({**VOCAB, "itos": [*VOCAB["itos"], "the"], "vocab_size": 6},
                    r"the token 'the' appears twice \(again at id 5\)"),
    "special-twice": ({**VOCAB, "itos": [*VOCAB["itos"], "<pad>"], "vocab_size": 6}, "'<pad>' appears twice"),
    "key-twice": ('{"format": "attnlab-word-tokenizer", "itos": [], "itos": []}', "gives the key 'itos' twice"),
    "size-lies": ({**VOCAB, "vocab_size": 7}, "vocab_size says 7 but itos holds 5 tokens"),
    "ids-moved": ({**VOCAB, "special_ids": {"start": 2, "pad": 1, "unk": 0}}, "special_ids must be start 0"),
}


def _write_vocab(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(MALFORMED_VOCABS))
def test_malformed_vocab_json_is_named(case, tmp_path):
    from attnlab.data.tokenizer import MyTokenizer

    content, expected = MALFORMED_VOCABS[case]
    path = _write_vocab(tmp_path / "vocab.json", content)
    with pytest.raises(DataError, match=expected) as info:
        MyTokenizer.load(path)
    assert isinstance(info.value, ValueError)  # what callers that predate DataError catch
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert len(MyTokenizer.load(_write_vocab(tmp_path / "ok.json", VOCAB))) == 5  # the reference loads


# --------------------------------------------------------------------------- the n-gram stage (item 5)


@pytest.fixture(scope="module")
def ngram_inputs(tmp_path_factory):
    """build_vocab's outputs for a tiny text, and the argv of gpt.ngram on them."""
    from attnlab.data.vocab import build_vocab

    d = tmp_path_factory.mktemp("ngram_inputs")
    make_shakespeare_text(d / "input.txt", 40, seed=4)
    build_vocab(d / "input.txt", None, {"val_fraction": 0.2, "seed": 1, "min_freq": 2, "max_size": None},
                d / "vocab", stream=io.StringIO())
    (d / "baseline.yaml").write_text("orders: [1, 2, 3]\ndiscount: modified\nchar_order: 3\n")
    return d


def ngram_argv(d: Path, out: Path, **swap: Path) -> list[str]:
    files = {"data": d / "vocab" / "dialogues.pt", "vocab": d / "vocab" / "vocab.json",
             "vocab-report": d / "vocab" / "vocab_report.json", "source": d / "input.txt",
             "val-text": d / "vocab" / "val.txt", "config": d / "baseline.yaml", **swap}
    return [a for k, v in files.items() for a in (f"--{k}", str(v))] + ["--out", str(out)]


def test_ngram_reference_run_succeeds(ngram_inputs, tmp_path):
    from attnlab.gpt.ngram import main

    assert main(ngram_argv(ngram_inputs, tmp_path / "ngram.json")) == 0
    result = json.loads((tmp_path / "ngram.json").read_text())
    assert result["best_order"] in (1, 2, 3) and set(result["orders"]) == {"1", "2", "3"}


def _hostile_ngram_file(case: str, d: Path, tmp: Path) -> tuple[str, Path, str]:
    """(which argument, the crafted file, the expected message) for one hostile gpt.ngram input."""
    good = torch.load(d / "vocab" / "dialogues.pt", weights_only=True)
    pt = tmp / "dialogues.pt"
    if case == "pt-tensor":
        torch.save(torch.zeros(3), pt)
        return "data", pt, "holds a Tensor, not the dialogues dict"
    if case == "pt-missing-keys":
        torch.save({"train": good["train"]}, pt)
        return "data", pt, "lacks ['val', 'val_chars'"
    if case == "pt-ids-out-of-range":
        torch.save({**good, "val": [torch.tensor([0, 3, 10 ** 6])]}, pt)
        return "data", pt, "'val' holds ids 0..1000000, outside its vocabulary"
    if case == "pt-float-ids":
        torch.save({**good, "train": [torch.tensor([0.0, 1.5])]}, pt)
        return "data", pt, "'train' must be a non-empty list of non-empty 1-D integer id tensors"
    if case == "pt-empty-split":
        torch.save({**good, "val": []}, pt)
        return "data", pt, "'val' must be a non-empty list"
    if case == "pt-vocab-size-str":
        torch.save({**good, "vocab_size": "many"}, pt)
        return "data", pt, "must be integers below its vocab_size 'many'"
    if case == "pt-crafted-pickle":
        torch.save({**good, "x": Crafted()}, pt)
        return "data", pt, "holds the Python object posix.system, not only tensors"
    if case == "pt-truncated":
        pt.write_bytes((d / "vocab" / "dialogues.pt").read_bytes()[:200])
        return "data", pt, "truncated, corrupt or not a file written by torch.save"
    if case == "pt-random-bytes":
        pt.write_bytes(os.urandom(5000))
        return "data", pt, "truncated, corrupt or not a file written by torch.save"
    if case == "vocab-other-size":
        vocab = json.loads((d / "vocab" / "vocab.json").read_text())
        vocab["itos"] = vocab["itos"][:-1]
        vocab["vocab_size"] -= 1
        return "vocab", _write_vocab(tmp / "vocab.json", vocab), "tokens but"
    if case.startswith("vocab-"):
        content, expected = MALFORMED_VOCABS[case[len("vocab-"):]]
        return "vocab", _write_vocab(tmp / "vocab.json", content), expected.replace("\\", "")
    report = json.loads((d / "vocab" / "vocab_report.json").read_text())
    if case == "report-list":
        return "vocab-report", _write_vocab(tmp / "r.json", [report]), "holds a JSON list, not an object"
    if case == "report-not-json":
        return "vocab-report", _write_vocab(tmp / "r.json", "{"), "is not valid JSON"
    if case == "report-seed-list":
        return "vocab-report", _write_vocab(tmp / "r.json", {**report, "seed": [1]}), "'seed' must be an integer"
    if case == "report-fraction-str":
        return ("vocab-report", _write_vocab(tmp / "r.json", {**report, "val_fraction": "0.2"}),
                "'val_fraction' must be a number in [0, 1)")
    if case == "report-no-chars":
        del report["train_chars"]
        return "vocab-report", _write_vocab(tmp / "r.json", report), "'train_chars' must be an integer >= 0"
    if case == "source-latin-1":
        f = tmp / "input.txt"
        f.write_bytes((d / "input.txt").read_text().replace("love", "lové").encode("latin-1"))
        return "source", f, "is not UTF-8 text: byte 0xe9"
    if case == "source-other-text":
        f = tmp / "input.txt"
        f.write_text((d / "input.txt").read_text().replace("love", "lov"))
        return "source", f, "it is not the text the vocabulary was built from"
    if case == "source-missing":
        return "source", tmp / "none.txt", "none.txt does not exist"
    if case == "val-empty":
        (tmp / "val.txt").write_bytes(b"")
        return "val-text", tmp / "val.txt", "val.txt is empty"
    if case == "val-other-text":
        (tmp / "val.txt").write_text("ROMEO:\nzyzzyva quux.\n")
        return "val-text", tmp / "val.txt", "out-of-vocabulary words but dialogues.pt's validation split has"
    if case == "config-order-1000":
        (tmp / "b.yaml").write_text("orders: [1000]\n")
        return "config", tmp / "b.yaml", "config key 'gpt.baseline.orders.0' = 1000: 1000 is greater than the maximum of 10"
    if case == "config-char-order-bool":
        (tmp / "b.yaml").write_text("char_order: true\n")
        return "config", tmp / "b.yaml", "config key 'gpt.baseline.char_order' = True: True is not of type 'integer'"
    if case == "config-orders-string":
        (tmp / "b.yaml").write_text("orders: '123'\n")
        return "config", tmp / "b.yaml", "config key 'gpt.baseline.orders' = '123': '123' is not of type 'array'"
    raise AssertionError(case)


class Crafted:
    def __reduce__(self):
        return os.system, ("echo crafted",)


NGRAM_CASES = ["pt-tensor", "pt-missing-keys", "pt-ids-out-of-range", "pt-float-ids", "pt-empty-split",
               "pt-vocab-size-str", "pt-crafted-pickle", "pt-truncated", "pt-random-bytes", "vocab-other-size",
               "vocab-not-json", "vocab-list", "vocab-no-itos", "vocab-token-twice", "vocab-key-twice",
               "report-list", "report-not-json", "report-seed-list", "report-fraction-str", "report-no-chars",
               "source-latin-1", "source-other-text", "source-missing", "val-empty", "val-other-text",
               "config-order-1000", "config-char-order-bool", "config-orders-string"]


@pytest.mark.parametrize("case", NGRAM_CASES)
def test_hostile_ngram_inputs_are_one_line(case, ngram_inputs, tmp_path, capsys):
    from attnlab.gpt.ngram import main

    arg, path, expected = _hostile_ngram_file(case, ngram_inputs, tmp_path)
    out = tmp_path / "ngram.json"
    rc = main(ngram_argv(ngram_inputs, out, **{arg: path}))
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("error: ") and expected in line, line
    assert not out.exists()


def test_ngram_cli_prints_no_traceback_in_a_fresh_process(ngram_inputs, tmp_path):
    arg, path, expected = _hostile_ngram_file("pt-crafted-pickle", ngram_inputs, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "attnlab.gpt.ngram",
                           *ngram_argv(ngram_inputs, tmp_path / "n.json", **{arg: path})],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and expected in error_line(proc.stderr)
    assert "crafted" not in proc.stdout  # the payload never ran


# --------------------------------------------------------------------------- gpt.evaluate on bad text (item 5)


@pytest.fixture(scope="module")
def gpt_checkpoint(ngram_inputs):
    from attnlab.data.tokenizer import MyTokenizer
    from attnlab.gpt.model import DialogueGPT

    tok = MyTokenizer.load(ngram_inputs / "vocab" / "vocab.json")
    cfg = dict(vocab_size=len(tok), d_model=16, n_heads=2, n_layers=1, max_len=32, pad_id=tok.pad_id)
    torch.manual_seed(0)
    path = ngram_inputs / "gpt.pt"
    torch.save({"family": "gpt", "model_config": cfg, "state_dict": DialogueGPT(**cfg).state_dict(), "config": {},
                "epoch": 1, "start_id": tok.start_id, "pad_id": tok.pad_id, "unk_id": tok.unk_id}, path)
    return path


@pytest.mark.parametrize("case", ["latin-1", "empty", "blank", "bom"])
def test_gpt_evaluate_on_bad_text_is_one_line(case, ngram_inputs, gpt_checkpoint, tmp_path, capsys):
    from attnlab.gpt.evaluate import main

    text = tmp_path / "text.txt"
    val = (ngram_inputs / "vocab" / "val.txt").read_bytes()
    argv = ["--checkpoint", str(gpt_checkpoint), "--vocab", str(ngram_inputs / "vocab" / "vocab.json"),
            "--text", str(text), "--out", str(tmp_path / "eval.json"), "--device", "cpu"]
    if case == "bom":  # not an error: scored exactly as the text without the mark
        text.write_bytes(b"\xef\xbb\xbf" + val)
        assert main(argv) == 0
        with_bom = json.loads((tmp_path / "eval.json").read_text())
        text.write_bytes(val)
        assert main(argv) == 0
        without = json.loads((tmp_path / "eval.json").read_text())
        assert with_bom["val_loss"] == without["val_loss"] and with_bom["n_tokens"] == without["n_tokens"]
        assert with_bom["unk_rate"] == without["unk_rate"]
        return
    text.write_bytes({"latin-1": "ROMEO:\nmon cœur.\n".encode("latin-1", "replace").replace(b"?", b"\xe9"),
                      "empty": b"", "blank": b"\n \n\n"}[case])
    rc = main(argv)
    line = error_line(capsys.readouterr().err)
    expected = {"latin-1": "is not UTF-8 text: byte 0xe9 at offset", "empty": "is empty",
                "blank": "is empty (only blanks)"}[case]
    assert rc != 0 and line.startswith("error: ") and str(text) in line and expected in line, line
    assert not (tmp_path / "eval.json").exists()


# --------------------------------------------------------------------------- pickles refused, named as such


@pytest.mark.parametrize("payload, named", [((os.system, ("echo x",)), "posix.system"),
                                            ((exec, ("print(1)",)), "exec")])
def test_a_forbidden_global_is_named_not_called_corrupt(payload, named, tmp_path):
    from attnlab.checkpoint import CheckpointError, load_pt

    class Evil:
        def __reduce__(self):
            return payload

    torch.save({"w": torch.zeros(2), "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_pt(tmp_path / "evil.pt", "a checkpoint")
    msg = str(info.value)
    assert f"it holds the Python object {named}," in msg and "can run arbitrary code" in msg
    assert "truncated" not in msg
    (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a file written by torch.save"):
        load_pt(tmp_path / "cut.pt", "a checkpoint")


# --------------------------------------------------------------------------- every data subcommand, one line


@pytest.mark.parametrize("argv, expected", [
    (["download-cifar10", "--url", "http://127.0.0.1:9/x", "--out", "{t}/c.tar.gz", "--retries", "1"],
     "could not download http://127.0.0.1:9/x"),
    (["download-shakespeare", "--url", "file:///nonexistent/input.txt", "--out", "{t}/i.txt", "--retries", "1"],
     "could not download file:///nonexistent/input.txt"),
    (["download-shakespeare", "--url", "file:///dev/zero", "--sha256", "null", "--out", "{t}/i.txt",
      "--max-mb", "1"], "the server sent over 1048576 bytes, more than the 1 MiB limit"),
    (["prepare-cifar10", "--source", "{t}", "--out-dir", "{t}/out"], "has an unknown layout"),
    (["prepare-cifar10", "--source", "/dev/null", "--out-dir", "{t}/out"], "is neither a file nor a folder"),
    (["build-vocab", "--text", "/dev/zero", "--sha256", "null", "--out-dir", "{t}/out"], "is not a regular file"),
    (["build-vocab", "--text", "{t}/none.txt", "--out-dir", "{t}/out"], "does not exist"),
])
def test_every_data_subcommand_fails_with_one_line(argv, expected, tmp_path, capsys):
    rc = data_main([a.replace("{t}", str(tmp_path)) for a in argv])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "c.tar.gz").exists()
    assert not (tmp_path / "i.txt").exists()
