"""Finetuning: dialogue data formats and validation, LoRA / QLoRA training,
evaluation and adapter merging.  Knows nothing about the UI.

Public entry points: ``finetune.data.load_dialogues``, ``finetune.sgd.convert``,
``finetune.train.train`` with ``finetune.config.TrainConfig``, ``finetune.evaluate.evaluate``,
``finetune.merge.merge_adapter``.  Heavy libraries (torch, transformers, peft)
are imported inside the functions that need them.
"""
