"""Optimizers: Muon (`muon`) and the one routing of parameters to optimizer groups (`groups`).

Beside the model, below the trainer: it may import only `jepagolf.config`.
"""
