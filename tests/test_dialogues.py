"""DialogueDataset and collate: shapes, right padding, mask values, truncation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from attnlab import DialogueDataset
from attnlab.data.dialogues import collate_batch

PAD = 1


def test_collate_right_pads_and_masks():
    batch = [[0, 5, 6], [0, 7], [0, 8, 9, 10, 11]]
    out = collate_batch(batch, PAD)
    expected_ids = torch.tensor([[0, 5, 6, PAD, PAD],
                                 [0, 7, PAD, PAD, PAD],
                                 [0, 8, 9, 10, 11]])
    expected_mask = torch.tensor([[1, 1, 1, 0, 0],
                                  [1, 1, 0, 0, 0],
                                  [1, 1, 1, 1, 1]])
    assert out["input_ids"].dtype == torch.long and out["input_mask"].dtype == torch.long
    assert torch.equal(out["input_ids"], expected_ids)
    assert torch.equal(out["input_mask"], expected_mask)


def test_mask_comes_from_lengths_not_from_pad_values():
    out = collate_batch([torch.tensor([0, PAD, 4]), torch.tensor([0])], PAD)  # a real token equal to pad id
    assert out["input_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_dataset_truncates_and_works_with_dataloader():
    ids = [list(range(n)) for n in (3, 10, 1, 7)]
    ds = DialogueDataset(ids, pad_id=PAD, max_len=5)
    assert len(ds) == 4 and ds[1].tolist() == [0, 1, 2, 3, 4] and ds[2].tolist() == [0]
    loader = DataLoader(ds, batch_size=2, shuffle=False, collate_fn=ds.collate)
    batches = list(loader)
    assert [tuple(b["input_ids"].shape) for b in batches] == [(2, 5), (2, 5)]
    assert batches[1]["input_ids"].tolist() == [[0, PAD, PAD, PAD, PAD], [0, 1, 2, 3, 4]]
    assert batches[0]["input_mask"].sum(1).tolist() == [3, 5]
    # without max_len nothing is cut
    assert DialogueDataset(ids, PAD)[1].tolist() == list(range(10))


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_len"):
        DialogueDataset([[0]], PAD, max_len=0)
    with pytest.raises(ValueError, match="empty batch"):
        collate_batch([], PAD)
