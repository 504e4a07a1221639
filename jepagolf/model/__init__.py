"""The model: the GPT (`gpt`) and its scoring on validation tokens in bits per byte (`eval`).

Below the trainer and the artifact: it may import only `jepagolf.config` and the standard library, torch, numpy.
"""
