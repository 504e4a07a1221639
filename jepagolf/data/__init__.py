"""Data tools: token shards, tokenizers, corpora (demo, research, FineWeb), building and checking them.

At the ground: it may import only the ground modules (`outputs`, `jsonfile`) and the standard library, numpy,
sentencepiece, huggingface_hub.
"""
