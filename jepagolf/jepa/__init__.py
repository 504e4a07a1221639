"""The JEPA auxiliary objective: span masks, predictors, the EMA target, losses and diagnostics.

Above the model, below the trainer: it may import `jepagolf.model`, `jepagolf.config` and the ground.
"""
