"""Vision Transformer on CIFAR-10: model, trainer, evaluation, attention heatmaps.

Submodules: ``model`` (PatchEmbed, VisionTransformer, load_checkpoint),
``augment`` (batched on-device augmentation), ``train``, ``evaluate``,
``heatmaps``. Each stage runs as ``python -m attnlab.vit.<stage>``.
"""
