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


def reply_loss_trainer() -> Any:
    """``transformers.Trainer`` whose loss projects onto the vocabulary only
    at the positions that predict a reply token.

    The default loss computes logits at every position and then masks all but
    the replies, which are a few percent of a grounded prompt's tokens.  For a
    model whose output layer is most of its weights (Gemma 3: 168M of 268M
    parameters, a 262k vocabulary) that projection is most of the training
    time; ``logits_to_keep`` with the reply positions skips it.  The loss is
    the same token-mean cross-entropy (normalised over the whole accumulated
    batch when the Trainer counts it), so gradients are unchanged.
    """
    import inspect

    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class ReplyLossTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not _takes_logits_to_keep(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs["labels"]
            target = labels[:, 1:]  # position p predicts token p + 1
            keep = (target != -100).any(0).nonzero().flatten()
            if keep.numel() == 0:
                keep = torch.zeros(1, dtype=torch.long, device=labels.device)
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                            logits_to_keep=keep)
            logits = outputs.logits.float()  # (batch, kept, vocab)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target[:, keep].reshape(-1),
                                   ignore_index=-100, reduction="sum")
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                loss = loss / num_items_in_batch  # the Trainer then skips its own division
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss / (target != -100).sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    def _takes_logits_to_keep(model: Any) -> bool:
        inner = model
        while hasattr(inner, "get_base_model") or hasattr(inner, "module"):
            inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner.module
        return "logits_to_keep" in inspect.signature(inner.forward).parameters

    return ReplyLossTrainer
