"""CIFAR-10 preparation from every accepted source, checked against the pixels the test wrote."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from attnlab.data import DataError
from attnlab.data.__main__ import main
from attnlab.data.cifar10 import download_cifar10, load_split, prepare
from tinydata import CIFAR_CLASSES, CIFAR_JPEG_SHA256, make_cifar_tarball, make_imagefolder, shared_data


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _assert_split(data: dict, ref: tuple[np.ndarray, np.ndarray], classes) -> None:
    images, labels = ref
    assert data["images"].dtype == torch.uint8 and data["labels"].dtype == torch.int64
    assert tuple(data["images"].shape) == (len(labels), 3, 32, 32)
    assert torch.equal(data["images"], torch.from_numpy(images))
    assert torch.equal(data["labels"], torch.from_numpy(labels))
    assert list(data["classes"]) == list(classes)


def test_official_tarball_prepares_to_the_written_pixels(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    ref = make_cifar_tarball(src, n_per_class_train=3, n_per_class_test=2, seed=1)
    manifest = prepare(src, tmp_path / "out", md5=_md5(src))

    assert manifest["source_kind"] == "official-tarball"
    assert manifest["checksum"] == {"algorithm": "md5", "value": _md5(src), "expected": _md5(src), "verified": True}
    assert manifest["classes"] == list(CIFAR_CLASSES)
    assert (manifest["n_train"], manifest["n_test"]) == (30, 20)
    assert manifest["counts"]["train"] == {c: 3 for c in CIFAR_CLASSES}
    assert manifest["counts"]["test"] == {c: 2 for c in CIFAR_CLASSES}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    for split in ("train", "test"):
        saved = torch.load(tmp_path / "out" / f"{split}.pt", weights_only=True)
        _assert_split(saved, ref[split], CIFAR_CLASSES)
        # the prepared folder, one prepared file and the raw tarball all load the same split
        _assert_split(load_split(tmp_path / "out", split), ref[split], CIFAR_CLASSES)
        _assert_split(load_split(tmp_path / "out" / f"{split}.pt", split), ref[split], CIFAR_CLASSES)
        _assert_split(load_split(src, split), ref[split], CIFAR_CLASSES)


def test_official_pixel_layout_is_channel_planes():
    # One row of the official format is 1024 R values, then 1024 G, then 1024 B (row-major 32x32);
    # check that against a hand-built row through the same reader.
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    from attnlab.data.cifar10 import _batch_arrays

    images, labels = _batch_arrays({b"data": row[None], b"labels": [7]}, "test_batch", "x")
    assert labels.tolist() == [7]
    img = images[0]
    assert np.unique(img[0]).tolist() == [10] and np.unique(img[1]).tolist() == [20]
    assert img[2, 0, 5].item() == 5 and img[2, 1, 0].item() == 32  # B plane, row 1 starts at 32


def test_official_folder_and_its_parent(tmp_path):
    ref = make_cifar_tarball(tmp_path / "raw", n_per_class_train=1, n_per_class_test=1, seed=2, as_folder=True)
    for i, source in enumerate((tmp_path / "raw", tmp_path / "raw" / "cifar-10-batches-py")):
        _assert_split(load_split(source, "train"), ref["train"], CIFAR_CLASSES)
        assert prepare(source, tmp_path / f"out{i}")["source_kind"] == "official-folder"
    manifest = prepare(tmp_path / "raw", tmp_path / "out")
    assert manifest["source_kind"] == "official-folder"
    assert manifest["checksum"]["algorithm"] == "sha256" and manifest["checksum"]["verified"] is False


def test_imagefolder_dir_png_exact(tmp_path):
    classes = tuple(reversed(CIFAR_CLASSES))  # written unsorted; class order must be the sorted names
    ref = make_imagefolder(tmp_path / "tree", 3, 2, seed=3, classes=classes, top=None)
    manifest = prepare(tmp_path / "tree", tmp_path / "out")
    assert manifest["source_kind"] == "imagefolder-dir"
    assert manifest["classes"] == sorted(CIFAR_CLASSES)
    assert manifest["counts"]["train"] == {c: 3 for c in CIFAR_CLASSES}
    for split in ("train", "test"):
        _assert_split(load_split(tmp_path / "out", split), ref[split], sorted(CIFAR_CLASSES))


def test_imagefolder_tar_under_top_folder_jpeg_matches_pil(tmp_path):
    src = tmp_path / "tiny-jpeg.tar.gz"
    ref = make_imagefolder(src, 2, 2, seed=4, as_tar=True, top="tiny-jpeg", fmt="jpg")
    manifest = prepare(src, tmp_path / "out", sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    assert manifest["source_kind"] == "imagefolder-tar"
    assert manifest["checksum"]["verified"] is True and manifest["checksum"]["algorithm"] == "sha256"
    for split in ("train", "test"):
        data = load_split(tmp_path / "out", split)
        pil = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).transpose(2, 0, 1)
                        for _, _, b in ref["files"][split]])
        assert torch.equal(data["labels"], torch.from_numpy(ref[split][1]))
        # libjpeg builds may round the inverse DCT differently; allow an off-by-a-few per pixel
        diff = (data["images"].int() - torch.from_numpy(pil).int()).abs()
        assert diff.max().item() <= 3 and diff.float().mean().item() < 0.5


def test_md5_mismatch_is_a_clear_error_and_writes_nothing(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(src, 1, 1)
    with pytest.raises(DataError, match=r"md5 mismatch for .*cifar-10-python.tar.gz.*data.cifar10.md5"):
        prepare(src, tmp_path / "out", md5="0" * 32)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_md5_of_official_tarball_is_refused_for_other_sources(tmp_path):
    make_imagefolder(tmp_path / "tree", 1, 1, top=None)
    with pytest.raises(DataError, match=r"md5 applies to the official cifar-10-python.tar.gz only.*sha256"):
        prepare(tmp_path / "tree", tmp_path / "out", md5="c58f30108f718f92721af3b95e74349a")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["empty-dir", "only-train", "not-a-tar", "missing", "incomplete-official",
                                  "class-mismatch", "wrong-size", "corrupt-jpeg"])
def test_wrong_layouts_raise_clear_errors(tmp_path, case):
    from PIL import Image as PILImage

    src = tmp_path / "src"
    if case == "empty-dir":
        src.mkdir()
        (src / "notes.txt").write_text("hi")
        expected = "expected one of"
    elif case == "only-train":
        make_imagefolder(src, 1, 1, top=None)
        import shutil

        shutil.rmtree(src / "test")
        expected = "no test/ folder"
    elif case == "not-a-tar":
        src = tmp_path / "data.bin"
        src.write_bytes(b"\x00" * 100)
        expected = "neither a tarball"
    elif case == "missing":
        src = tmp_path / "nope.tar.gz"
        expected = "does not exist; set data.cifar10.path"
    elif case == "incomplete-official":
        make_cifar_tarball(src, 1, 1, as_folder=True)
        (src / "cifar-10-batches-py" / "test_batch").unlink()
        expected = r"lacks \['test_batch'\]"
    elif case == "class-mismatch":
        make_imagefolder(src, 1, 1, top=None)
        (src / "test" / "bird").rename(src / "test" / "zebra")
        expected = "class folders differ"
    elif case == "corrupt-jpeg":
        make_imagefolder(src, 2, 1, top=None, fmt="jpg")
        (src / "train" / "bird" / "0001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        expected = "cannot decode train/bird/0001.jpg"
    else:
        make_imagefolder(src, 1, 1, top=None)
        PILImage.new("RGB", (64, 48)).save(src / "train" / "bird" / "big.png")
        expected = r"train/bird/big.png is 64x48; the images must be 32x32 \(refused before decoding\)"
    with pytest.raises(DataError, match=expected):
        prepare(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_truncated_tarball_is_reported(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(src, 4, 2)
    blob = src.read_bytes()
    src.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        prepare(src, tmp_path / "out")


def test_cli_prepare_and_error_exit(tmp_path, capsys):
    src = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(src, 1, 1)
    assert main(["prepare-cifar10", "--source", str(src), "--md5", _md5(src), "--out-dir", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["checksum"]["verified"] is True
    assert main(["prepare-cifar10", "--source", str(tmp_path / "none"), "--out-dir", str(tmp_path / "p")]) == 2
    assert "data.cifar10.path" in capsys.readouterr().err


def test_download_from_file_url_verifies_md5(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(src, 1, 1)
    out = tmp_path / "dl" / "cifar-10-python.tar.gz"
    info = download_cifar10(src.as_uri(), out, _md5(src))
    assert out.read_bytes() == src.read_bytes() and info["verified"] and info["value"] == _md5(src)
    with pytest.raises(DataError, match="md5 mismatch.*data.cifar10.md5"):
        download_cifar10(src.as_uri(), tmp_path / "dl2" / "x.tar.gz", "f" * 32)
    assert not any((tmp_path / "dl2").iterdir())  # no file, no temp left behind


@pytest.mark.slow
@pytest.mark.shared_data
def test_shared_jpeg_copy_prepares_to_full_cifar10(tmp_path):
    src = shared_data("cifar10-jpeg.tar.gz")
    torch.set_num_threads(2)
    manifest = prepare(src, tmp_path / "out", sha256=CIFAR_JPEG_SHA256)
    assert manifest["source_kind"] == "imagefolder-tar" and manifest["checksum"]["verified"] is True
    assert (manifest["n_train"], manifest["n_test"]) == (50_000, 2_000)
    assert manifest["counts"]["train"] == {c: 5000 for c in CIFAR_CLASSES}
    assert manifest["counts"]["test"] == {c: 200 for c in CIFAR_CLASSES}
    test = load_split(tmp_path / "out", "test")
    assert tuple(test["images"].shape) == (2000, 3, 32, 32) and test["classes"] == list(CIFAR_CLASSES)
    # spot-check a few images against PIL decoding the same tar members (sorted path order)
    with tarfile.open(src, "r:gz") as tf:
        names = sorted(m.name for m in tf.getmembers() if m.isfile() and "/test/" in m.name)
        for i in (0, 777, 1999):
            pil = np.asarray(Image.open(tf.extractfile(names[i])).convert("RGB")).transpose(2, 0, 1)
            diff = (test["images"][i].int() - torch.from_numpy(pil.copy()).int()).abs()
            assert diff.max().item() <= 3
            assert test["labels"][i].item() == CIFAR_CLASSES.index(names[i].split("/")[2])
