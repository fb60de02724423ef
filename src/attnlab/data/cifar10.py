"""CIFAR-10 from any of its usual forms into one fast tensor file per split.

Accepted sources (told apart by content, not by name):

- ``official-tarball``: ``cifar-10-python.tar.gz`` (pickled ``data_batch_1..5``,
  ``test_batch``, ``batches.meta``), read straight from the tar stream;
- ``official-folder``: its extracted ``cifar-10-batches-py/`` (or a folder holding it);
- ``imagefolder-dir`` / ``imagefolder-tar``: ``train/<class>/*`` and
  ``test/<class>/*`` image files (JPEG or PNG, 32x32), as a folder or a tarball,
  possibly under one top folder (``cifar10-jpeg/train/...``);
- ``prepared`` (``load_split`` only): a folder with ``{train,test}.pt`` or one such file.

Class order is the sorted class-folder names, which for CIFAR-10 is the
standard label order (airplane=0 ... truck=9). Nothing is extracted to disk.

A source is untrusted data, so the work it can cause is bounded: tar members
are streamed (:mod:`attnlab.data.archive`) and each file is read only up to
the size limit of its kind (``BATCH_LIMIT``, ``META_LIMIT``, ``IMAGE_LIMIT``,
named in the error); a tarball may hold at most ``ARCHIVE_LIMIT`` bytes
decompressed and ``MAX_ENTRIES`` entries, a split at most CIFAR-10's own
number of images; every image header must declare 32x32 before anything is
decoded (:mod:`attnlab.data.images`); pickled batches go through a restricted
unpickler and must hold uint8 pixels and integer labels.

The test split must not repeat training images: ``prepare`` hashes every
image's pixels and refuses a source whose test split shares more than
``OVERLAP_LIMIT`` (1%) of its images with the training split, exactly; at or
below that it warns on the log, naming how many and a few of them, and
records them in the manifest (``train_test_overlap``). Real CIFAR-10 has
near-duplicates across its splits but, of exact copies, at most a handful
(the shared JPEG copy has none); 1% of the official 10,000 test images is
100, far above that and far below a leaked split.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab.checkpoint import load_pt
from attnlab.data import CIFAR10_MD5, CIFAR10_URL, DataError
from attnlab.data.archive import is_tar, iter_tar, read_file
from attnlab.io import file_digest, torch_save, write_json

if TYPE_CHECKING:  # imported where tensors are made, so a source refused while read never loads it
    import torch

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
OFFICIAL_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
OFFICIAL_FILES = (*OFFICIAL_TRAIN, "test_batch", "batches.meta")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OFFLINE_KEY = "data.cifar10.path"

# Per-file limits. An official data_batch_* / test_batch is 29.6 MiB; a protocol-2 re-pickle written by
# Python 3 spells each byte >= 0x80 in two, so up to 59.2 MiB.
BATCH_LIMIT = 64 << 20
META_LIMIT = 64 << 10  # the official batches.meta: 158 bytes
IMAGE_LIMIT = 64 << 10  # a 32x32 JPEG/PNG: 1-4 KiB (the shared JPEG copy's largest: 1,124 B), room for metadata
ARCHIVE_LIMIT = 1 << 30  # decompressed bytes of a tarball (the official one: 178 MiB)
MAX_ENTRIES = 200_000  # tar entries (the ImageFolder copy: 52,023)
MAX_IMAGES = {"train": 50_000, "test": 10_000}  # CIFAR-10's own split sizes
OVERLAP_LIMIT = 0.01  # share of test images that may be exact copies of training images (with a warning)

_LAYOUTS = (
    "expected one of: the official cifar-10-python.tar.gz or its extracted cifar-10-batches-py/ folder "
    "(data_batch_1..5, test_batch, batches.meta); an ImageFolder tree train/<class>/*.jpg|png and "
    "test/<class>/*.jpg|png, as a folder or .tar.gz (optionally under one top folder)"
)
_HINT = f"re-download it or set {OFFLINE_KEY} to a good copy"


# --------------------------------------------------------------------------- public API


def download_cifar10(url: str = CIFAR10_URL, out: str | os.PathLike = "cifar-10-python.tar.gz",
                     md5: str | None = CIFAR10_MD5, max_mb: float | None = None, deadline_s: float | None = None,
                     **kwargs) -> dict:
    """Download the official tarball with md5 verification (see ``attnlab.data.download``).

    ``max_mb`` / ``deadline_s`` default to ``data.cifar10.download_max_mb`` / ``download_deadline_s``.
    """
    from attnlab.data.download import download_limited

    return download_limited(url, out, md5, "md5", "data.cifar10", max_mb, deadline_s, **kwargs)


def _classify(path: Path) -> str:
    """The source kind of ``path`` without reading a tarball through: tarballs come back as "tarball"."""
    if not path.exists():
        raise DataError(f"CIFAR-10 source {path} does not exist; set {OFFLINE_KEY} to an existing file or folder "
                        f"({_LAYOUTS})")
    if path.is_file():
        if path.suffix == ".pt":
            return "prepared"
        if not is_tar(path):
            raise DataError(f"CIFAR-10 source {path} is neither a tarball nor a .pt file; {_LAYOUTS}")
        return "tarball"
    if not path.is_dir():
        raise DataError(f"CIFAR-10 source {path} is neither a file nor a folder; {_LAYOUTS}")
    if all((path / f"{s}.pt").is_file() for s in SPLITS):
        return "prepared"
    if _official_dir(path) is not None:
        return "official-folder"
    if _imagefolder_root(path) is not None:
        return "imagefolder-dir"
    raise DataError(f"CIFAR-10 source folder {path} has an unknown layout; {_LAYOUTS}")


def load_split(source: str | os.PathLike, split: str) -> dict:
    """Load one split as {"images": uint8 (N,3,32,32), "labels": int64 (N,), "classes", "source"}.

    ``source`` may be a prepared folder or .pt file (a .pt file is taken as the
    requested split) or any raw source that ``prepare`` accepts.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(source)
    kind = _classify(path)
    if kind == "prepared":
        pt = path if path.is_file() else path / f"{split}.pt"
        data = load_pt(pt, "a prepared CIFAR-10 split written by `python -m attnlab.data prepare-cifar10`")
        check_prepared(data, pt)
        return {**data, "source": str(path)}
    out = _read(path, kind, splits=(split,))[1][split]
    return {**out, "source": str(path)}


def prepare(source: str | os.PathLike, out_dir: str | os.PathLike, md5: str | None = None,
            sha256: str | None = None, stream=None) -> dict:
    """Turn ``source`` into ``out_dir/{train,test}.pt`` and ``out_dir/manifest.json``; return the manifest.

    ``md5`` is the official tarball's checksum: verified (mismatch -> DataError)
    when the source is that tarball, refused (DataError) for any other source.
    ``sha256``, if given, is verified for any source: a file's (or tarball's)
    bytes, or for a folder its ``tree_digest``. The manifest records a digest
    either way. A test split repeating training images is refused or warned
    about (module docstring).
    """
    stream = stream or sys.stderr
    start = time.perf_counter()
    path = Path(source)
    kind = _classify(path)
    if kind == "prepared":
        raise DataError(f"{path} already holds prepared CIFAR-10 tensors; point {OFFLINE_KEY} at the raw data "
                        f"or use the folder directly")
    print(f"[cifar10] reading {path}", file=stream, flush=True)
    kind, splits = _read(path, kind, splits=SPLITS, stream=stream)
    checksum = _checksum(path, kind, md5, sha256, stream)
    overlap = check_overlap(splits["train"]["images"], splits["test"]["images"], path, stream)
    out_dir = Path(out_dir)
    for split in SPLITS:
        torch_save({k: splits[split][k] for k in ("images", "labels", "classes")}, out_dir / f"{split}.pt")
    classes = splits["train"]["classes"]
    counts = {s: {c: int((splits[s]["labels"] == i).sum()) for i, c in enumerate(classes)} for s in SPLITS}
    manifest = {
        "source": str(path),
        "source_kind": kind,
        "checksum": checksum,
        "classes": list(classes),
        "n_train": len(splits["train"]["labels"]),
        "n_test": len(splits["test"]["labels"]),
        "counts": counts,
        "image_shape": [3, 32, 32],
        "train_test_overlap": overlap,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(out_dir / "manifest.json", manifest)  # last: its presence means the split files are complete
    print(f"[cifar10] wrote {manifest['n_train']} train / {manifest['n_test']} test images to {out_dir} "
          f"in {manifest['seconds']:.1f}s", file=stream, flush=True)
    return manifest


def tree_digest(folder: str | os.PathLike) -> str:
    """sha256 over a folder's files: relative POSIX path, NUL, the file's sha256, newline; sorted by path."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        # surrogateescape: a file name that is not UTF-8 counts with its own bytes
        h.update(f"{f.relative_to(folder).as_posix()}\0{file_digest(f, 'sha256')}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def check_classes(classes, path: Path) -> None:
    """Refuse a class set other than CIFAR-10's ten names (a 9- or 11-class tree is not CIFAR-10)."""
    missing = [c for c in CLASSES if c not in classes]
    extra = sorted(set(classes) - set(CLASSES))
    if missing or extra or len(classes) != len(CLASSES):
        raise DataError(f"{path} does not have CIFAR-10's ten classes: missing {missing}, extra {extra}; "
                        f"the classes must be exactly {', '.join(CLASSES)}")


def check_prepared(data, pt: Path) -> None:
    """Refuse a prepared split that is not {"images": uint8 (N,3,32,32), "labels": int64 (N,) in 0..9, classes}."""
    import torch

    rerun = "rerun `python -m attnlab.data prepare-cifar10`"
    if not isinstance(data, dict):
        raise DataError(f"{pt} holds a {type(data).__name__}, not a prepared CIFAR-10 split; {rerun}")
    missing = {"images", "labels", "classes"} - set(data)
    if missing:
        raise DataError(f"{pt} is not a prepared CIFAR-10 split (missing {sorted(missing)}); {rerun}")
    classes = data["classes"]
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{pt}: classes must be a list of class names; {rerun}")
    check_classes(list(classes), pt)
    images, labels = data["images"], data["labels"]
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or tuple(
            images.shape[1:]) != (3, 32, 32):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise DataError(f"{pt}: images must be a uint8 tensor (N, 3, 32, 32), got {shape}; {rerun}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise DataError(f"{pt}: labels must be an int64 tensor of {len(images)} labels (one per image), got "
                        f"{shape}; {rerun}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(CLASSES)):
        raise DataError(f"{pt}: labels outside 0..{len(CLASSES) - 1} (min {int(labels.min())}, max "
                        f"{int(labels.max())}); {rerun}")


def check_overlap(train: "torch.Tensor", test: "torch.Tensor", path: Path, stream) -> dict:
    """Test images that are exact pixel copies of training images: refused above ``OVERLAP_LIMIT``, else warned."""
    seen = {hashlib.sha256(img.numpy().tobytes()).digest() for img in train}
    shared = [i for i, img in enumerate(test) if hashlib.sha256(img.numpy().tobytes()).digest() in seen]
    record = {"n_test_in_train": len(shared), "test_indices": shared[:20], "limit_fraction": OVERLAP_LIMIT}
    if not shared:
        return record
    share = len(shared) / len(test)
    what = (f"{len(shared)} of the {len(test)} test images in {path} ({share:.1%}) are exact pixel copies of "
            f"training images (test indices {shared[:5]}{' ...' if len(shared) > 5 else ''})")
    if share > OVERLAP_LIMIT:
        raise DataError(f"{what}, more than the {OVERLAP_LIMIT:.0%} allowed: a test split that repeats the "
                        f"training split measures memory, not accuracy. Use a source whose test split is "
                        f"disjoint from its training split")
    print(f"[cifar10] warning: {what}; at most {OVERLAP_LIMIT:.0%} is allowed. Test accuracy is slightly "
          f"inflated; the indices are in manifest.json (train_test_overlap)", file=stream, flush=True)
    return record


# --------------------------------------------------------------------------- checksums


def _checksum(path: Path, kind: str, md5: str | None, sha256: str | None, stream) -> dict:
    """Verify every checksum given; return the record of the one the manifest keeps.

    md5 is the official tarball's published checksum and means nothing for any
    other file, so it is refused there rather than skipped. sha256 verifies
    whatever ``path`` is: a file's bytes, or for a folder its ``tree_digest``.
    """
    if md5 and kind != "official-tarball":
        raise DataError(f"an md5 ({md5}) was given for {path}, which is an {kind} source; md5 applies to the "
                        f"official cifar-10-python.tar.gz only. Verify this source with its sha256 instead "
                        f"(--sha256, config key data.cifar10.sha256) and drop the md5 (data.cifar10.md5: null)")
    checks = [("md5", md5, "data.cifar10.md5")] if kind == "official-tarball" else []
    checks.append(("sha256", sha256, "data.cifar10.sha256"))
    record = {}
    for algorithm, expected, key in checks:
        if record and not expected:
            continue  # nothing to verify and a digest is already recorded
        if path.is_dir():
            value = tree_digest(path)  # sha256 only: a folder never reaches the md5 check
        else:
            value = file_digest(path, algorithm)
        if expected and value != expected.lower():
            what = "the folder's tree digest (see tree_digest)" if path.is_dir() else "the file"
            raise DataError(f"{algorithm} mismatch for {path}: expected {expected}, got {value} for {what}. "
                            f"It is corrupt or a different version; re-download it, or fix {key}")
        record = {"algorithm": algorithm, "value": value, "expected": expected, "verified": bool(expected)}
    return record


# --------------------------------------------------------------------------- reading a source


def _read(path: Path, kind: str, splits: tuple[str, ...], stream=None) -> tuple[str, dict]:
    """(source kind, {split: {"images", "labels", "classes"}}) of ``path``, every file bounded and checked."""
    reader = _Reader(path, splits)
    if kind == "tarball":
        def progress(done: int, entries: int) -> None:
            print(f"[cifar10] read {done / 2**20:.1f}/{path.stat().st_size / 2**20:.1f} MiB, {entries} entries",
                  file=stream, flush=True)

        for parts, blob in iter_tar(path, reader.limit, max_total=ARCHIVE_LIMIT, max_members=MAX_ENTRIES,
                                    hint=_HINT, progress=progress if stream is not None else None):
            reader.add(parts, blob)
    elif kind == "official-folder":
        folder = _official_dir(path)
        for name in OFFICIAL_FILES:
            reader.add((name,), read_file(folder / name, reader.limit((name,)), name))
    else:
        root = _imagefolder_root(path)
        for split in splits:
            for cls in sorted(_real_dir(p) for p in (root / split).iterdir() if p.is_dir()):
                for f in sorted(cls.iterdir()):
                    parts = (split, cls.name, f.name)
                    limit = reader.limit(parts)
                    if limit is not None:
                        reader.add(parts, read_file(f, limit, "a CIFAR-10 image"))
    return reader.finish(kind)


class _Reader:
    """Sorts a source's files into official batches or per-split images, decoding each as it arrives.

    Official batches are unpickled and checked on arrival and image headers
    checked on arrival, so no more than one batch file, or one decoding chunk
    of image files, is held undecoded.
    """

    def __init__(self, path: Path, splits: tuple[str, ...]) -> None:
        from attnlab.data.images import ImageDecoder

        self.path, self.splits = path, splits
        # name -> numpy (images (N, 3, 32, 32) uint8, labels (N,) int64); torch comes in at finish(), so a
        # source refused while it is read costs no more memory than reading it
        self.batches: dict[str, tuple] = {}
        self.classes: list[str] | None = None
        self.roots: set[tuple[str, ...]] = set()
        self.n_images = {s: 0 for s in SPLITS}
        self.images = ImageDecoder(str(path))

    def limit(self, parts: tuple[str, ...]) -> int | None:
        """The size limit of the file at ``parts`` if the layout uses it (None: skipped, unread)."""
        name = parts[-1]
        if name.startswith("."):  # macOS AppleDouble files and the like
            return None
        if name in OFFICIAL_FILES:
            return META_LIMIT if name == "batches.meta" else BATCH_LIMIT
        if len(parts) >= 3 and parts[-3] in SPLITS and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
            split = parts[-3]
            self.roots.add(parts[:-3])
            self.n_images[split] += 1
            if self.n_images[split] > MAX_IMAGES[split]:
                raise DataError(f"{self.path} holds more than {MAX_IMAGES[split]} {split} images, CIFAR-10's "
                                f"{split} split size; it is not CIFAR-10")
            return IMAGE_LIMIT if split in self.splits else None
        return None

    def add(self, parts: tuple[str, ...], blob: bytes) -> None:
        name = parts[-1]
        if name in OFFICIAL_FILES:
            if name in self.batches or (name == "batches.meta" and self.classes is not None):
                raise DataError(f"{self.path} holds {name} twice; keep one copy of the official batches")
            if name == "batches.meta":
                self.classes = _meta_classes(_unpickle(blob, name, self.path), self.path)
            elif name in OFFICIAL_TRAIN and "train" in self.splits or name == "test_batch" and "test" in self.splits:
                self.batches[name] = _batch_arrays(_unpickle(blob, name, self.path), name, self.path)
            else:
                self.batches[name] = (None, None)  # present; not asked for
        else:
            split, cls = parts[-3], parts[-2]
            self.images.add((split, cls, name), f"{split}/{cls}/{name}", blob)

    def finish(self, kind: str) -> tuple[str, dict]:
        n_images = sum(self.n_images.values())
        if self.batches or self.classes is not None:
            if n_images:
                raise DataError(f"{self.path} holds both the official batch files and ImageFolder images; keep "
                                f"one of the two")
            missing = [n for n in OFFICIAL_FILES if n not in self.batches and n != "batches.meta"]
            missing += ["batches.meta"] if self.classes is None else []
            if missing:
                raise DataError(f"{self.path} looks like the official CIFAR-10 data but lacks {missing}; "
                                f"re-download it")
            kind = "official-tarball" if kind == "tarball" else kind
            return kind, {s: self._official_split(s) for s in self.splits}
        if not n_images:
            raise DataError(f"no CIFAR-10 data found in {self.path}; {_LAYOUTS}")
        if len(self.roots) > 1:
            shown = ", ".join("/".join(r) + "/" if r else "(top level)" for r in sorted(self.roots))
            raise DataError(f"{self.path} holds several ImageFolder trees ({shown}); keep exactly one")
        kind = "imagefolder-tar" if kind == "tarball" else kind
        return kind, self._imagefolder_splits()

    def _official_split(self, split: str) -> dict:
        import numpy as np
        import torch

        names = OFFICIAL_TRAIN if split == "train" else ("test_batch",)
        images = torch.from_numpy(np.concatenate([self.batches[n][0] for n in names]))
        labels = torch.from_numpy(np.concatenate([self.batches[n][1] for n in names]))
        if len(labels) > MAX_IMAGES[split]:
            raise DataError(f"{self.path} holds {len(labels)} {split} images, more than CIFAR-10's "
                            f"{MAX_IMAGES[split]}; it is not CIFAR-10")
        return {"images": images.contiguous(), "labels": labels, "classes": self.classes}

    def _imagefolder_splits(self) -> dict:
        import torch

        decoded = self.images.finish()
        keys = {s: sorted(k for k in decoded if k[0] == s) for s in self.splits}  # (split, class, file name)
        class_sets = {s: sorted({c for _, c, _ in keys[s]}) for s in self.splits}
        classes = class_sets[self.splits[0]]
        check_classes(classes, self.path)
        for s in self.splits:
            if not keys[s]:
                raise DataError(f"{self.path}: no images under {s}/<class>/; {_LAYOUTS}")
            if class_sets[s] != classes:
                raise DataError(f"{self.path}: class folders differ between splits ({self.splits[0]}: {classes}, "
                                f"{s}: {class_sets[s]}); every split needs the same class folders")
        index = {c: i for i, c in enumerate(classes)}
        return {s: {"images": torch.stack([decoded.pop(k) for k in keys[s]]),  # (N, 3, 32, 32) uint8
                    "labels": torch.tensor([index[c] for _, c, _ in keys[s]], dtype=torch.int64),
                    "classes": classes}
                for s in self.splits}


def _real_dir(folder: Path) -> Path:
    """``folder``, refused if it is a symbolic link: tree_digest (so data.cifar10.sha256) does not follow those."""
    if folder.is_symlink():
        raise DataError(f"{folder} is a symbolic link to a folder; the sha256 of a folder source does not cover "
                        f"what such links point to. Copy the folder there, or point {OFFLINE_KEY} at it")
    return folder


def _official_dir(path: Path) -> Path | None:
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").exists():
            if folder != path:
                _real_dir(folder)
            missing = [n for n in OFFICIAL_FILES if not (folder / n).exists()]
            if missing:
                raise DataError(f"{folder} looks like an extracted official CIFAR-10 folder but lacks {missing}")
            return folder
    return None


def _imagefolder_root(path: Path) -> Path | None:
    candidates = [path]
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1:
        candidates.append(_real_dir(subdirs[0]))
    for root in candidates:
        present = [s for s in SPLITS if (root / s).is_dir() and _real_dir(root / s)]
        if len(present) == len(SPLITS):
            return root
        if present:
            raise DataError(f"ImageFolder tree {root} has {present[0]}/ but no "
                            f"{[s for s in SPLITS if s not in present][0]}/ folder; both train/<class>/ and "
                            f"test/<class>/ are needed")
    return None


# --------------------------------------------------------------------------- official batches


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what the official batch files hold: dicts, lists, bytes, str, numbers and numpy arrays.

    A pickle can call any importable function while it loads, and a CIFAR-10
    copy may come from anywhere; any other global is refused before it is
    looked up, so a crafted batch file cannot run code (checksum or not).
    """

    # (module, name) -> what the official files (and numpy >= 2 re-pickles of them) need
    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 spell bytes this way
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load the Python object {module}.{name}; the official "
                                         f"CIFAR-10 batches hold only numpy arrays, lists, bytes and str")
        if name == "_reconstruct":
            import numpy as np

            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own reconstructor, wherever it lives
        return super().find_class(module, name)


def _unpickle(blob: bytes, name: str, path: Path) -> dict:
    try:
        # The official format is Python pickles written by Python 2: latin1 bytes keys.
        out = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"cannot unpickle {name} in {path}: {err}; the CIFAR-10 source is corrupt or "
                        f"not the official one") from err
    if not isinstance(out, dict):
        raise DataError(f"{name} in {path} holds a {type(out).__name__}, not a dict; not the official "
                        f"CIFAR-10 format")
    return out


def _meta_classes(meta: dict, path: Path) -> list[str]:
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"batches.meta in {path} has no b'label_names' list of names; not the official CIFAR-10 "
                        f"format")
    try:
        classes = [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as err:
        raise DataError(f"batches.meta in {path}: a label name is not UTF-8 ({err})") from err
    check_classes(classes, path)
    return classes


def _batch_arrays(batch: dict, name: str, path: Path) -> tuple:
    """numpy (images uint8 (N,3,32,32), labels int64 (N,)) of one official batch, its types and values checked."""
    import numpy as np

    if b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{name} in {path} lacks b'data' or b'labels'; not the official CIFAR-10 format")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{name} in {path}: data is {what}; the official format is a uint8 array (N, 3072)")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist() if labels.ndim == 1 and labels.dtype.kind in "iu" else None
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise DataError(f"{name} in {path}: labels are not a list of integers; not the official CIFAR-10 format")
    if len(labels) != len(data):
        raise DataError(f"{name} in {path}: {len(data)} images but {len(labels)} labels")
    if labels and (min(labels) < 0 or max(labels) >= len(CLASSES)):
        raise DataError(f"{name} in {path}: labels outside 0..{len(CLASSES) - 1} (min {min(labels)}, "
                        f"max {max(labels)})")
    images = np.ascontiguousarray(data).reshape(-1, 3, 32, 32)  # R, G, B planes, row-major
    return images, np.asarray(labels, dtype=np.int64)
