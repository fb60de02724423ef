"""tiny-shakespeare: checksums, dialogues, split, downloads, and the build-vocab stage end to end."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch
import yaml

from attnlab.config import ConfigError
from attnlab.data import DataError
from attnlab.data.__main__ import main
from attnlab.data.download import download
from attnlab.data.shakespeare import download_shakespeare, split_dialogues, train_val_split, verify_text
from attnlab.data.tokenizer import MyTokenizer
from attnlab.data.vocab import build_vocab, resolve_vocab_config
from tinydata import SHAKESPEARE_SHA256, make_shakespeare_text, shared_data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- dialogues and split


def test_split_dialogues_matches_blank_line_blocks():
    text = "A:\nHello there.\n\n\nB:\nGood day.\nSir.\n\nC:\nBye.\n"
    # by hand: three blocks; the triple newline must not produce an empty or "\nB:" block
    assert split_dialogues(text) == ["A:\nHello there.", "B:\nGood day.\nSir.", "C:\nBye."]
    assert split_dialogues("\n\n  \n\n") == []


def test_train_val_split_is_deterministic_disjoint_and_ordered():
    dialogues = [f"D{i}:\nline {i}." for i in range(50)]
    train, val = train_val_split(dialogues, 0.2, seed=7)
    assert (len(train), len(val)) == (40, 10)
    assert sorted(train + val) == sorted(dialogues) and not set(train) & set(val)
    assert train == sorted(train, key=dialogues.index) and val == sorted(val, key=dialogues.index)
    assert train_val_split(dialogues, 0.2, seed=7) == (train, val)
    assert train_val_split(dialogues, 0.2, seed=8)[1] != val
    assert train_val_split(dialogues[:3], 0.01, seed=0)[1]  # a tiny set still gets one val dialogue
    with pytest.raises(DataError, match="val_fraction"):
        train_val_split(dialogues, 1.0, seed=0)


def test_verify_text_checksums(tmp_path):
    path = tmp_path / "input.txt"
    text = make_shakespeare_text(path, 5, seed=1)
    digest = _sha256(text.encode())
    assert verify_text(path, digest) == {"path": str(path), "sha256": digest, "expected": digest, "verified": True}
    unverified = verify_text(path, None)
    assert unverified["verified"] is False and unverified["sha256"] == digest
    with pytest.raises(DataError, match="sha256 mismatch for .*input.txt.*data.shakespeare.sha256"):
        verify_text(path, "0" * 64)
    with pytest.raises(DataError, match="does not exist; set data.shakespeare.path"):
        verify_text(tmp_path / "missing.txt", None)


@pytest.mark.shared_data
def test_shared_tinyshakespeare_checksum_and_dialogues():
    path = shared_data("tinyshakespeare.txt")
    assert verify_text(path, SHAKESPEARE_SHA256)["verified"] is True
    text = path.read_text(encoding="utf-8")
    dialogues = split_dialogues(text)
    starter = [d.strip() for d in text.split("\n\n") if d.strip()]  # the starter code's all_dialogues, stripped
    assert dialogues == starter and len(dialogues) == 7222
    assert dialogues[0] == "First Citizen:\nBefore we proceed any further, hear me speak."
    assert dialogues[-1].endswith("Whiles thou art waking.")


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def http_dir(tmp_path):
    """A loopback HTTP server over tmp_path/www; yields (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_over_http_verifies_and_moves_into_place(tmp_path, http_dir):
    www, base = http_dir
    text = make_shakespeare_text(www / "input.txt", 30, seed=2)
    out = tmp_path / "out" / "input.txt"
    info = download_shakespeare(f"{base}/input.txt", out, _sha256(text.encode()))
    assert out.read_text(encoding="utf-8") == text
    assert info["verified"] and info["bytes"] == len(text.encode())
    assert [p.name for p in out.parent.iterdir()] == ["input.txt"]  # no temp file left


def test_download_checksum_mismatch_leaves_nothing(tmp_path, http_dir):
    www, base = http_dir
    make_shakespeare_text(www / "input.txt", 3)
    out = tmp_path / "out" / "input.txt"
    with pytest.raises(DataError, match="sha256 mismatch.*update data.shakespeare.sha256.*data.shakespeare.path"):
        download_shakespeare(f"{base}/input.txt", out, "0" * 64)
    assert not out.exists() and not list(out.parent.iterdir())


def test_download_404_names_the_offline_key(tmp_path, http_dir):
    _, base = http_dir
    with pytest.raises(DataError, match=r"could not download .*missing.txt.*set data.shakespeare.path"):
        download_shakespeare(f"{base}/missing.txt", tmp_path / "x.txt", None, backoff=0.0)


def test_unreachable_url_retries_then_names_the_offline_key(tmp_path, capsys):
    # port 9 (discard) is closed on loopback: connection refused at once
    with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/.*set data.cifar10.path"):
        download("http://127.0.0.1:9/cifar-10-python.tar.gz", tmp_path / "c.tar.gz", None, "md5",
                 offline_key="data.cifar10.path", retries=3, backoff=0.01, timeout=5)
    assert capsys.readouterr().err.count("retrying") == 2
    assert not (tmp_path / "c.tar.gz").exists()


def test_download_retries_a_failing_transfer(tmp_path):
    """Two answers that announce the file and close halfway, then a whole one: retried, verified, in place."""
    from hostile import cut_then_whole, http_server

    blob = make_shakespeare_text(None, 40, seed=5).encode()
    out = tmp_path / "o.txt"
    with http_server(cut_then_whole(blob, n_cut=2)) as url:
        info = download(url, out, _sha256(blob), retries=3, backoff=0.0)
    assert info["verified"] and info["bytes"] == len(blob) and out.read_bytes() == blob
    assert [p.name for p in tmp_path.iterdir()] == ["o.txt"]
    with http_server(cut_then_whole(blob, n_cut=5)) as url:  # never whole: given up after 3 tries
        with pytest.raises(DataError, match=r"could not download .*connection closed after \d+ of \d+ bytes"):
            download(url, tmp_path / "p.txt", None, retries=3, backoff=0.0)
    assert not (tmp_path / "p.txt").exists()


# ----------------------------------------------------------------------------- build-vocab stage


def test_resolve_vocab_config_shapes_and_errors():
    assert resolve_vocab_config({}) == {"val_fraction": 0.1, "seed": 1337, "min_freq": 2, "max_size": None}
    flat = resolve_vocab_config({"val_fraction": 0.2, "seed": 1, "min_freq": 1, "max_size": 100})
    nested = resolve_vocab_config({"shakespeare": {"val_fraction": 0.2, "seed": 1, "path": "x"},
                                   "tokenizer": {"min_freq": 1, "max_size": 100}})
    assert flat == nested == {"val_fraction": 0.2, "seed": 1, "min_freq": 1, "max_size": 100}
    with pytest.raises(ConfigError, match="build_vocab.min_frq"):
        resolve_vocab_config({"min_frq": 2})
    with pytest.raises(ConfigError, match="data.tokenizer.max_size"):
        resolve_vocab_config({"max_size": 2})


def test_build_vocab_outputs(tmp_path):
    text_path = tmp_path / "input.txt"
    text = make_shakespeare_text(text_path, 60, seed=3)
    digest = _sha256(text.encode())
    cfg = tmp_path / "vocab.yaml"
    cfg.write_text(yaml.safe_dump({"val_fraction": 0.2, "seed": 5, "min_freq": 2, "max_size": None}))
    out = tmp_path / "out"
    assert main(["build-vocab", "--text", str(text_path), "--sha256", digest, "--config", str(cfg),
                 "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dialogues.pt", "lengths.png", "val.txt", "vocab.json",
                                                    "vocab_report.json"]
    report = json.loads((out / "vocab_report.json").read_text())
    data = torch.load(out / "dialogues.pt", weights_only=True)
    tok = MyTokenizer.load(out / "vocab.json")

    dialogues = split_dialogues(text)
    train, val = train_val_split(dialogues, 0.2, 5)
    assert (report["n_train_dialogues"], report["n_val_dialogues"]) == (48, 12)
    assert (out / "val.txt").read_text() == "\n\n".join(val) + "\n"
    assert split_dialogues((out / "val.txt").read_text()) == val
    assert data["train_chars"] == sum(map(len, train)) and data["val_chars"] == sum(map(len, val))
    assert (data["start_id"], data["pad_id"], data["unk_id"], data["vocab_size"]) == (
        tok.start_id, tok.pad_id, tok.unk_id, len(tok))
    assert report["vocab_size"] == len(tok)
    assert [t.tolist() for t in data["train"]] == [tok.encode(d) for d in train]
    assert [t.tolist() for t in data["val"]] == [tok.encode(d) for d in val]
    assert all(t[0].item() == tok.start_id and t.dtype == torch.long for t in data["train"] + data["val"])

    # vocabulary: exactly the training tokens seen at least twice (counted independently here)
    from collections import Counter

    counts = Counter(t for d in train for t in tok.tokenize(d))
    assert set(tok.itos[3:]) == {t for t, c in counts.items() if c >= 2}
    val_words = [t for d in val for t in tok.tokenize(d)]
    assert report["val_tokens"] == len(val_words)
    assert report["val_unk_rate"] == pytest.approx(sum(counts[t] < 2 for t in val_words) / len(val_words))
    assert report["source"] == {"path": str(text_path), "sha256": digest, "expected": digest, "verified": True}
    ex = report["example"]
    assert ex["text"] == train[0] and ex["ids"] == tok.encode(train[0]) and ex["decoded"] == tok.decode(ex["ids"])
    assert (out / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_vocab_without_checksum_records_digest_and_bad_checksum_writes_nothing(tmp_path):
    text_path = tmp_path / "input.txt"
    text = make_shakespeare_text(text_path, 10, seed=4)
    report = build_vocab(text_path, None, {"max_size": 8}, tmp_path / "a")
    assert report["source"]["verified"] is False and report["source"]["sha256"] == _sha256(text.encode())
    assert report["vocab_size"] == 8
    assert main(["build-vocab", "--text", str(text_path), "--sha256", "1" * 64, "--out-dir", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_build_vocab_on_shared_tinyshakespeare(tmp_path):
    report = build_vocab(shared_data("tinyshakespeare.txt"), SHAKESPEARE_SHA256, {}, tmp_path)
    assert report["source"]["verified"] is True
    assert report["n_train_dialogues"] + report["n_val_dialogues"] == 7222
    assert report["n_val_dialogues"] == 722
    vocab = set(MyTokenizer.load(tmp_path / "vocab.json").itos)
    ex = report["example"]
    assert ex["decoded"] == " ".join(["<start>"] + [t if t in vocab else "<unk>" for t in ex["tokens"]])
    data = torch.load(tmp_path / "dialogues.pt", weights_only=True)
    assert (len(data["train"]), len(data["val"])) == (7222 - 722, 722)
    assert 0 < report["val_unk_rate"] < 0.1  # min_freq 2 on Shakespeare: a few percent of rare words
