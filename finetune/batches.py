"""Encoded examples as ``transformers.Trainer`` takes them: a list-backed
dataset of ``{input_ids, labels}`` and a collator that right-pads a batch
(labels with -100, so padding carries no loss) and builds the attention mask.
"""

from __future__ import annotations

from typing import Any, Sequence

from .data import Encoded


class ListDataset:
    """Encoded examples as the dicts ``Trainer`` feeds to the collator."""

    def __init__(self, items: Sequence[Encoded]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        e = self.items[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


def make_collator(pad_id: int) -> Any:
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)  # (batch, seq)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate
