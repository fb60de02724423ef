"""Data stages: checksummed downloads, CIFAR-10 preparation, tiny-shakespeare dialogues, tokenizer.

This package ``__init__`` stays import-light (no torch, no nltk): the trainers
import ``attnlab.data.cifar10`` / ``attnlab.data.dialogues`` and must not pay
for, or depend on, what the vocabulary stage needs.

``DEFAULT_CONFIG`` is the ``data:`` section of config/config.yaml, where these
defaults live. Setting a ``path`` selects an offline source over the ``url``.
"""

from __future__ import annotations

from attnlab.config import defaults
from attnlab.errors import AttnlabError

DEFAULT_CONFIG: dict = defaults("data")
CIFAR10_URL = DEFAULT_CONFIG["cifar10"]["url"]
CIFAR10_MD5 = DEFAULT_CONFIG["cifar10"]["md5"]
SHAKESPEARE_URL = DEFAULT_CONFIG["shakespeare"]["url"]
SHAKESPEARE_SHA256 = DEFAULT_CONFIG["shakespeare"]["sha256"]


class DataError(AttnlabError, RuntimeError):
    """Bad data input (missing file, wrong layout, checksum mismatch, unreachable URL).

    The message names the file or config key involved and says what to do.
    """
