"""Data stages: checksummed downloads, CIFAR-10 preparation, tiny-shakespeare dialogues, tokenizer.

This package ``__init__`` stays import-light (no torch, no nltk): the trainers
import ``attnlab.data.cifar10`` / ``attnlab.data.dialogues`` and must not pay
for, or depend on, what the vocabulary stage needs.

``DEFAULT_CONFIG`` mirrors the ``data:`` section of ``config/config.yaml``.
Setting a ``path`` selects an offline source over the ``url``.
"""

from __future__ import annotations

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

DEFAULT_CONFIG: dict = {
    "cifar10": {"url": CIFAR10_URL, "md5": CIFAR10_MD5, "sha256": None, "path": None},
    "shakespeare": {
        "url": SHAKESPEARE_URL,
        "sha256": SHAKESPEARE_SHA256,
        "path": None,
        "val_fraction": 0.1,
        "seed": 1337,
    },
    # min_freq 2: words seen once in training become <unk>, so the model learns
    # to predict <unk> instead of meeting it for the first time on validation.
    "tokenizer": {"min_freq": 2, "max_size": None},
}


class DataError(RuntimeError):
    """Bad data input (missing file, wrong layout, checksum mismatch, unreachable URL).

    The message names the file or config key involved and says what to do.
    """
