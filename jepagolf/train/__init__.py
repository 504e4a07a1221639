"""The trainer: a run's set-up, the training loop, reliability (checkpoints, divergence guard, preemption),
the final scoring and export, and the single-file entry point shipped as `train_gpt.py`.

Above the artifact, the objective and the model: it may import `jepagolf.export`, `jepagolf.jepa`,
`jepagolf.model`, `jepagolf.optim`, `jepagolf.data`, `jepagolf.config` and the ground; never `jepagolf.research`
or `jepagolf.cli`.
"""
