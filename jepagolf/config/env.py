"""Environment variables: the reference trainer's other spellings (``ENV_ALIASES``), the variables
refused (``REFUSED_ENV``), and a warning for names that look like a misspelled key."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping

from jepagolf.config.bounds import ConfigError, _parse

# Variables of the reference trainer's Hyperparameters (openai/parameter-golf train_gpt.py) whose
# name is not a jepagolf key. Every other one of them is a key of the same name and meaning.
ENV_ALIASES = {"WARMUP_STEPS": "compile_warmup_steps"}
"""Same meaning, another name: steps run before the clock starts, then weights and optimizer
states (and data position) put back."""
REFUSED_ENV = {
    "RUN_ID": "jepagolf names runs by folder: use --out DIR (OUT_DIR=DIR for train_gpt.py)",
    "VAL_BATCH_SIZE": "it is the reference's global evaluation batch; use VAL_BATCH_TOKENS, the tokens per "
                      "evaluation forward on one process (the reference's VAL_BATCH_SIZE / 8)",
    "EMBED_LR": "it is the learning rate of an untied embedding and jepagolf always ties it to the output head; "
                "use TIED_EMBED_LR",
    "HEAD_LR": "it is the learning rate of an untied output head and jepagolf always ties it to the embedding; "
               "use TIED_EMBED_LR",
    "CONTROL_TENSOR_NAME_PATTERNS": "jepagolf routes tensors to optimizers and export formats by shape and name "
                                    "itself; use INT6_MIN_NUMEL / INT5_PATTERNS for the export",
    "INT8_KEEP_FLOAT_FP32_NAME_PATTERNS": "jepagolf routes tensors to export formats itself; use INT6_MIN_NUMEL / "
                                          "INT5_PATTERNS",
}
"""Reference variables with no jepagolf equivalent of the same meaning: refused, never ignored."""


def _reference_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{field: (variable, raw value)} for the reference's variables that are spelled differently here;
    ConfigError for those jepagolf cannot honour."""
    for var, why in REFUSED_ENV.items():
        if var in env:
            raise ConfigError(f"{var} is not supported: {why}; unset {var}")
    if "TIE_EMBEDDINGS" in env and not _parse("TIE_EMBEDDINGS", env["TIE_EMBEDDINGS"], bool):
        raise ConfigError("TIE_EMBEDDINGS=0 is not supported: jepagolf always ties the embedding and the output "
                          "head (no key unties them); unset TIE_EMBEDDINGS")
    out = {}
    for var, name in ENV_ALIASES.items():
        if var in env:
            if name.upper() in env and env[name.upper()] != env[var]:
                raise ConfigError(f"{var}={env[var]} and {name.upper()}={env[name.upper()]} set the same key "
                                  f"{name}; set only one")
            out[name] = (var, env[var])
    return out


# Variables the tool reads besides the keys (torchrun's, the generated script's output folder, the data
# cache): never taken for a misspelled key.
OTHER_ENV = frozenset({"TIE_EMBEDDINGS", "OUT_DIR", "WORLD_SIZE", "RANK", "LOCAL_RANK", "JEPAGOLF_CACHE",
                       "JEPAGOLF_RENDEZVOUS_TIMEOUT"})
TYPO_CUTOFF = 0.85
"""difflib ratio from which an unknown upper-case variable is taken for a misspelled key's variable."""
_warned: set[str] = set()  # variables already warned about in this process: one line each


def misspelled_keys(env: Iterable[str], keys: Iterable[str]) -> dict[str, str]:
    """{variable: the variable it is probably a misspelling of} for the upper-case names in ``env`` that
    are no key's variable (``keys`` upper-cased), alias or other known variable, but close to one."""
    known = sorted({k.upper() for k in keys} | set(ENV_ALIASES))
    skip = set(known) | set(REFUSED_ENV) | OTHER_ENV
    out = {}
    for var in env:
        if var.isupper() and var not in skip:
            close = difflib.get_close_matches(var, known, n=1, cutoff=TYPO_CUTOFF)
            if close:
                out[var] = close[0]
    return out


def warn_misspelled_keys(env: Mapping[str, str], keys: Iterable[str]) -> None:
    """One line on stderr for each environment variable that looks like a misspelled key (once per process):
    such a variable is ignored, where a misspelled ``--set`` key is refused."""
    for var, close in sorted(misspelled_keys(env, keys).items()):
        if var not in _warned:
            _warned.add(var)
            print(f"warning: environment variable {var} is not a jepagolf key and is ignored; did you mean {close}?",
                  file=sys.stderr)
