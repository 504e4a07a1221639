"""Every variable of the reference trainer's Hyperparameters (openai/parameter-golf train_gpt.py) is
honoured with its meaning or refused with a message naming what to use instead; none is ignored."""

from __future__ import annotations

import pytest

from jepagolf.cli import main
from jepagolf.config import ENV_ALIASES, REFUSED_ENV, ConfigError, build_config, field_index
from jepagolf.config import env as config_env

# The names the reference reads in its Hyperparameters class, each with a value to set it to here.
REFERENCE_VARIABLES = {
    "DATA_PATH": "/some/data", "TOKENIZER_PATH": "/some/tok.model", "RUN_ID": "abc", "SEED": "7",
    "VAL_BATCH_SIZE": "65536", "VAL_LOSS_EVERY": "100", "TRAIN_LOG_EVERY": "20", "ITERATIONS": "300",
    "WARMDOWN_ITERS": "30", "WARMUP_STEPS": "3", "TRAIN_BATCH_TOKENS": "1048576", "TRAIN_SEQ_LEN": "128",
    "MAX_WALLCLOCK_SECONDS": "60", "QK_GAIN_INIT": "2.5", "VOCAB_SIZE": "512", "NUM_LAYERS": "5",
    "NUM_KV_HEADS": "2", "MODEL_DIM": "256", "NUM_HEADS": "4", "MLP_MULT": "3", "TIE_EMBEDDINGS": "1",
    "ROPE_BASE": "5000", "LOGIT_SOFTCAP": "20", "EMBED_LR": "0.5", "HEAD_LR": "0.01", "TIED_EMBED_LR": "0.03",
    "TIED_EMBED_INIT_STD": "0.01", "MATRIX_LR": "0.02", "SCALAR_LR": "0.03", "MUON_MOMENTUM": "0.9",
    "MUON_BACKEND_STEPS": "4", "MUON_MOMENTUM_WARMUP_START": "0.8", "MUON_MOMENTUM_WARMUP_STEPS": "100",
    "BETA1": "0.8", "BETA2": "0.9", "ADAM_EPS": "1e-7", "GRAD_CLIP_NORM": "1.0",
}


@pytest.mark.parametrize("var", sorted(REFERENCE_VARIABLES))
def test_every_reference_variable_is_honoured_or_refused(var):
    raw = REFERENCE_VARIABLES[var]
    env = {var: raw}
    if var in REFUSED_ENV:
        with pytest.raises(ConfigError, match=rf"^{var} is not supported: .*; unset {var}$"):
            build_config("baseline", environ=env)
        return
    cfg = build_config("baseline", environ=env)
    base = build_config("baseline", environ={})
    if var == "TIE_EMBEDDINGS":  # always tied here: 1 is the only value with the reference's meaning
        assert cfg.to_dict() == base.to_dict()
        return
    name = ENV_ALIASES.get(var, var.lower())
    section, typ = field_index()[name]
    value = getattr(getattr(cfg, section), name)
    assert value == (typ(float(raw)) if typ is not str else raw) != getattr(getattr(base, section), name)


def test_untied_embeddings_are_refused():
    with pytest.raises(ConfigError, match="TIE_EMBEDDINGS=0 is not supported"):
        build_config("baseline", environ={"TIE_EMBEDDINGS": "0"})


def test_alias_and_key_must_agree():
    same = {"WARMUP_STEPS": "2", "COMPILE_WARMUP_STEPS": "2"}
    assert build_config("smoke", environ=same).train.compile_warmup_steps == 2
    with pytest.raises(ConfigError, match="WARMUP_STEPS=2 and COMPILE_WARMUP_STEPS=3 set the same key"):
        build_config("smoke", environ={"WARMUP_STEPS": "2", "COMPILE_WARMUP_STEPS": "3"})


def test_refusal_is_one_error_line_and_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EMBED_LR", "0.6")
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: EMBED_LR is not supported") and "TIED_EMBED_LR" in err and err.count("\n") == 1


COMMON_ENV = ("PATH", "HOME", "USER", "SHELL", "LANG", "PWD", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "NCCL_DEBUG", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
              "TORCHINDUCTOR_CACHE_DIR", "PYTHONHASHSEED", "TOKENIZERS_PARALLELISM", "OUT_DIR", "JEPAGOLF_CACHE")


def test_misspelled_key_variable_is_warned_with_the_closest_key(monkeypatch, capsys):
    monkeypatch.setattr(config_env, "_warned", set())
    cfg = build_config("smoke", environ={"JEPA_LAMBDAA": "0.5", "NUM_LAYER": "4", "PATH": "/bin"})
    assert cfg.jepa.jepa_lambda == build_config("smoke", environ={}).jepa.jepa_lambda  # still ignored
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "warning: environment variable JEPA_LAMBDAA is not a jepagolf key and is ignored; did you mean JEPA_LAMBDA?",
        "warning: environment variable NUM_LAYER is not a jepagolf key and is ignored; did you mean NUM_LAYERS?",
    ]
    build_config("smoke", environ={"JEPA_LAMBDAA": "0.5"})  # once per process, not once per build
    assert capsys.readouterr().err == ""


def test_exact_keys_aliases_and_unrelated_variables_are_not_warned(monkeypatch, capsys):
    monkeypatch.setattr(config_env, "_warned", set())
    env = {**dict.fromkeys(COMMON_ENV, "1"), "JEPA_LAMBDA": "0.5", "SEED": "3", "WARMUP_STEPS": "2",
           "TIE_EMBEDDINGS": "1", "jepa_lambdaa": "0.5"}
    assert build_config("smoke", environ=env).jepa.jepa_lambda == 0.5
    assert capsys.readouterr().err == ""
