"""Training of the engine's own models: ``decoding train MODEL`` (:mod:`decoding.cli.train`).

One skeleton (:mod:`~decoding.train.loop`: AdamW, schedules, EMA, bf16, time budget, validation,
resumable checkpoints in :mod:`~decoding.train.checkpoint`) runs every model; a model contributes a
:class:`~decoding.train.task.Task` (:mod:`~decoding.train.image`, :mod:`~decoding.train.radd`,
:mod:`~decoding.train.as_arm`, :mod:`~decoding.train.classifier`), listed in :mod:`~decoding.train.recipes`.
"""
