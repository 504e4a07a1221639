"""The trainer: a run's set-up, the training loop, reliability (checkpoints, divergence guard, preemption),
the final scoring and export, and the single-file entry point shipped as `train_gpt.py`.

A run, in order: `run` (`train()`) -> `setup` (dataset checks, run folder and lock, `validation` data) ->
`loop` (the `Trainer`: `batches`, `schedules`, the `budget`, and the `reliability` objects it holds, with
`checkpoint`, `resume`, `preempt`) -> `finish` (final scoring, artifact, summary). `entry`: `train_gpt.py`'s
entry point; `rescore`: the run's scoring again, for `jepagolf export`.

Above the artifact, the objective and the model: it may import `jepagolf.export`, `jepagolf.jepa`,
`jepagolf.model`, `jepagolf.optim`, `jepagolf.data`, `jepagolf.config` and the ground; never `jepagolf.research`
or `jepagolf.cli`.
"""
