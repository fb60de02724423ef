"""Dialogue dataset and the starter code's collate (Problem 4b): right padding plus a 0/1 mask.

Torch only (no nltk): the GPT trainer imports this with the prepared ids.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset


class DialogueDataset(Dataset):
    """One item per dialogue: its token ids (start id first) as a 1-D LongTensor.

    ``max_len`` truncates longer dialogues to their first ``max_len`` tokens
    (the start token stays), e.g. to the model's context length.
    """

    def __init__(self, token_ids: Sequence[Sequence[int]], pad_id: int, max_len: int | None = None) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1 or None, got {max_len}")
        self.token_ids = token_ids
        self.pad_id = int(pad_id)
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        ids = torch.as_tensor(self.token_ids[index], dtype=torch.long)
        return ids[: self.max_len] if self.max_len is not None else ids

    def collate(self, batch: Sequence[Sequence[int] | torch.Tensor]) -> dict[str, torch.Tensor]:
        return collate_batch(batch, self.pad_id)


def collate_batch(batch: Sequence[Sequence[int] | torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """{"input_ids": (B, T) right-padded with ``pad_id``, "input_mask": (B, T) 1 real / 0 pad}, T = longest."""
    seqs = [torch.as_tensor(ids, dtype=torch.long) for ids in batch]
    if not seqs:
        raise ValueError("cannot collate an empty batch")
    input_ids = pad_sequence(seqs, batch_first=True, padding_value=pad_id)  # (B, T)
    lengths = torch.tensor([len(s) for s in seqs])
    # From the lengths, not from ids != pad_id: a real token equal to pad_id stays real.
    input_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()  # (B, T)
    return {"input_ids": input_ids, "input_mask": input_mask}
