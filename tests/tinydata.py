"""Tiny data sets in the real formats, made by the tests themselves, and the shared-data locator.

Import from any test (pytest puts tests/ on sys.path): ``from tinydata import ...``.
Each maker returns the pixels/labels/text it wrote, so a test can compare what
the code under test reads against what was written (an independent reference).
"""

from __future__ import annotations

import io
import pickle
import random
import tarfile
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
CIFAR_JPEG_SHA256 = "416a8ebbd67df31767d886dcd825c7a6f5ba86cedeab0b4f3a7249ca46a202f4"


def shared_data(name: str | None = None) -> Path:
    """``../shared/data`` (or a file in it); skips the calling test when it is absent."""
    import pytest

    path = SHARED_DATA / name if name else SHARED_DATA
    if not path.exists():
        pytest.skip(f"offline data copy {path} not present")
    return path


def _images(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)


def make_cifar_tarball(path: str | Path, n_per_class_train: int = 2, n_per_class_test: int = 1, seed: int = 0,
                       as_folder: bool = False, test_copies: int = 0) -> dict:
    """Write a tiny CIFAR-10 in the official ``cifar-10-python.tar.gz`` layout (or its extracted folder).

    Pickled dicts with the real keys: batches ``{b'batch_label', b'labels',
    b'data' (N, 3072) uint8, b'filenames'}``, ``batches.meta`` ``{b'label_names',
    b'num_cases_per_batch', b'num_vis'}``. Training images are spread over
    ``data_batch_1..5`` in order. Returns {"train": (images (N,3,32,32), labels),
    "test": (...), "classes"} in the order the files hold them. ``test_copies``: the first that
    many test images are exact copies of training images (train index i for test index i).
    """
    rng = np.random.default_rng(seed)
    out = {"classes": list(CIFAR_CLASSES)}
    files: dict[str, bytes] = {}
    for split, per_class in (("train", n_per_class_train), ("test", n_per_class_test)):
        labels = np.array([c for c in range(10) for _ in range(per_class)], dtype=np.int64)
        rng.shuffle(labels)
        images = _images(len(labels), rng)
        if split == "test" and test_copies:
            images[:test_copies] = out["train"][0][:test_copies]
        out[split] = (images, labels)
        chunks = np.array_split(np.arange(len(labels)), 5) if split == "train" else [np.arange(len(labels))]
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        for name, idx in zip(names, chunks):
            batch = {
                b"batch_label": f"{name} of 5".encode(),
                b"labels": [int(v) for v in labels[idx]],  # a list, as in the real files
                b"data": images[idx].reshape(len(idx), 3072),  # R plane, G plane, B plane per row
                b"filenames": [f"img_{split}_{i}.png".encode() for i in idx],
            }
            files[name] = pickle.dumps(batch, protocol=2)
    files["batches.meta"] = pickle.dumps({
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_cases_per_batch": max(1, len(out["train"][1]) // 5),
        b"num_vis": 3072,
    }, protocol=2)
    files["readme.html"] = b"<html>tiny CIFAR-10 for tests</html>"
    path = Path(path)
    if as_folder:
        folder = path / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for name, blob in files.items():
            (folder / name).write_bytes(blob)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tf:
            _add_dir(tf, "cifar-10-batches-py")
            for name, blob in files.items():
                _add_bytes(tf, f"cifar-10-batches-py/{name}", blob)
    return out


def make_imagefolder(path: str | Path, n_per_class_train: int = 2, n_per_class_test: int = 1, seed: int = 0,
                     classes: tuple[str, ...] = CIFAR_CLASSES, as_tar: bool = False, top: str | None = "tiny",
                     fmt: str = "png") -> dict:
    """Write ``[top/]{train,test}/<class>/NNNN.<fmt>`` images (a folder, or a .tar.gz at ``path``).

    PNG is lossless, so the returned pixels are exactly what a reader must get;
    for JPEG compare against PIL's decoding of the same bytes. Returns
    {"train": (images, labels), "test": ..., "classes": sorted classes,
    "files": {split: [(class, name, bytes)]}} in (class, file name) order.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes_sorted = sorted(classes)
    out: dict = {"classes": classes_sorted, "files": {}}
    entries: list[tuple[str, bytes]] = []
    for split, per_class in (("train", n_per_class_train), ("test", n_per_class_test)):
        images, labels, files = [], [], []
        for ci, cls in enumerate(classes_sorted):
            for k in range(per_class):
                img = _images(1, rng)[0]
                buf = io.BytesIO()
                Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="PNG" if fmt == "png" else "JPEG")
                name = f"{k:04d}.{fmt}"
                rel = "/".join(p for p in (top, split, cls, name) if p)
                entries.append((rel, buf.getvalue()))
                images.append(img)
                labels.append(ci)
                files.append((cls, name, buf.getvalue()))
        out[split] = (np.stack(images), np.array(labels, dtype=np.int64))
        out["files"][split] = files
    path = Path(path)
    if as_tar:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng_order = random.Random(seed)
        rng_order.shuffle(entries)  # tar member order must not matter
        with tarfile.open(path, "w:gz") as tf:
            for rel, blob in entries:
                _add_bytes(tf, rel, blob)
    else:
        for rel, blob in entries:
            f = path / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(blob)
    return out


_SPEAKERS = ("First Citizen", "MENENIUS", "ROMEO", "JULIET", "KING RICHARD III", "Nurse", "GLOUCESTER", "All")
_WORDS = ("the", "and", "I", "to", "of", "you", "my", "a", "that", "in", "is", "not", "me", "it", "with", "be",
          "your", "his", "this", "but", "for", "have", "thou", "so", "him", "will", "what", "thy", "all", "her",
          "no", "do", "shall", "by", "we", "are", "if", "lord", "king", "good", "now", "love", "sir", "come",
          "let", "more", "how", "our", "well", "speak", "hear", "know't", "o'er", "Rome", "citizens", "death")


def make_shakespeare_text(path: str | Path | None, n_dialogues: int = 20, seed: int = 0) -> str:
    """tiny-shakespeare-format text: "NAME:" line, speech lines, dialogues separated by blank lines."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n_dialogues):
        lines = [f"{rng.choice(_SPEAKERS)}:"]
        for _ in range(rng.randint(1, 4)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 9))]
            words[0] = words[0][0].upper() + words[0][1:]
            line = " ".join(words)
            if rng.random() < 0.3:
                line += ","
                line += " " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
            lines.append(line + rng.choice(".!?;,"))
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks) + "\n"
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return text


def _add_bytes(tf: tarfile.TarFile, name: str, blob: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    info.mtime = 1577836800
    tf.addfile(info, io.BytesIO(blob))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tf.addfile(info)
