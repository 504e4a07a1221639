"""Typed configuration: one dataclass per concern, presets, and overrides.

Every field has a flat name that is unique across sections, so one key addresses it
everywhere: ``--set num_layers=4``, ``--set model.num_layers=4`` and the environment
variable ``NUM_LAYERS=4`` (the parameter-golf spelling) all set the same field.
Precedence: preset < environment < ``--set``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from jepagolf.jepa.masking import SpanPlan, check_span_settings, span_plan


class ConfigError(ValueError):
    """A configuration value is unknown, malformed or inconsistent."""


@dataclass
class ModelConfig:
    vocab_size: int = 1024
    """Tokenizer vocabulary size; must match the tokenizer file."""
    num_layers: int = 11
    """Transformer blocks. The first floor(L/2) push U-Net skips, the rest pop them."""
    model_dim: int = 512
    """Residual stream width D."""
    num_heads: int = 8
    """Query heads; model_dim / num_heads is the head dim (must be even for RoPE)."""
    num_kv_heads: int = 4
    """Key/value heads (GQA); must divide num_heads."""
    mlp_mult: float = 3.0
    """MLP hidden width = mlp_mult * model_dim."""
    mlp_leaky_slope: float = 0.5
    """Negative slope of the LeakyReLU before squaring (0 gives relu^2, the baseline)."""
    rope_base: float = 10000.0
    """RoPE frequency base."""
    logit_softcap: float = 30.0
    """Logits are soft-capped as c*tanh(l/c); 0 disables."""
    qk_gain_init: float = 4.0
    """Initial value of the learnable per-head query gain (applied after QK RMSNorm)."""
    tied_embed_init_std: float = 0.005
    """Init std of the tied token embedding / output head."""
    bigram_buckets: int = 2048
    """Rows of the BigramHash embedding table; 0 disables it."""
    bigram_init_std: float = 0.01
    """Init std of the BigramHash table."""
    unet_skips: bool = True
    """U-Net skip connections from the first half of the blocks to the second."""

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult")
        if self.vocab_size > 65536:
            raise ConfigError(f"vocab_size={self.vocab_size}: shards store uint16 tokens, so at most 65536")
        if self.model_dim % self.num_heads:
            raise ConfigError(
                f"model_dim={self.model_dim} is not divisible by num_heads={self.num_heads}; "
                "pick num_heads that divides model_dim"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads} (GQA needs "
                "each KV head shared by the same number of query heads)"
            )
        if (self.model_dim // self.num_heads) % 2:
            raise ConfigError(
                f"head dim model_dim/num_heads={self.model_dim // self.num_heads} is odd; RoPE rotates pairs "
                "of channels, so it must be even"
            )
        if self.bigram_buckets < 0 or self.logit_softcap < 0:
            raise ConfigError("bigram_buckets and logit_softcap must be >= 0 (0 disables)")

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)


@dataclass
class JepaConfig:
    jepa: bool = True
    """Enable the span-masked JEPA auxiliary objective."""
    jepa_lambda: float = 0.12
    """Weight of the JEPA loss in ce + lambda*jepa (0 runs the plain-CE path)."""
    jepa_lambda_warmup_steps: int = 100
    """Lambda rises linearly from 0 to jepa_lambda over this many steps."""
    jepa_mask_frac: float = 1.0 / 16
    """Target fraction of each sequence masked, the same at every train_seq_len: m = frac * T tokens in
    round(m * jepa_span_p) spans (>= 1; or jepa_num_spans if set) of mean length m / count, which is 1/p
    at T = 1024 (v3: 4 spans of Geometric(1/16), 6.4% after the clamps) and shorter, with the lower clamp
    scaled alike, where a sequence is too short for one span of 1/p (T = 256: 1 span, mean 16; T = 64:
    1 span, mean 4, clamp 1). 0 = the fixed rule of runs before this key existed: jepa_num_spans spans of
    Geometric(p) clamped to [jepa_span_min, T // (2 * spans)] at every T (22% masked at T = 256, ~40% at 64)."""
    jepa_num_spans: int = 0
    """Masked spans per sequence (exactly this many, disjoint); 0 = derived from jepa_mask_frac."""
    jepa_span_p: float = 1.0 / 16
    """Span lengths ~ Geometric(p) on {1,2,...} (mean 1/p) where the sequence is long enough (see
    jepa_mask_frac), then clamped."""
    jepa_span_min: int = 4
    """Lower clamp of span lengths (scaled down with the mean on short sequences); the upper clamp is
    max(min, seq_len // (2*num_spans))."""
    jepa_span_per_sequence: bool = False
    """Sample a span set per sequence instead of one per micro-batch."""
    jepa_pred_hidden: int = 256
    """Hidden width of the residual predictor MLP."""
    jepa_var_weight: float = 0.15
    """VICReg variance (std hinge) weight, predictor side."""
    jepa_cov_weight: float = 0.02
    """VICReg covariance weight, predictor side."""
    jepa_ema_start: float = 0.9
    """Target-encoder EMA momentum at the start of training."""
    jepa_ema_end: float = 0.999
    """Target-encoder EMA momentum at the end (linear in training progress)."""
    # Efficiency options (see jepagolf/bench.py for their measured cost); the defaults are v3 as specified.
    jepa_batch_fraction: float = 1.0
    """JEPA passes (context and target) on the first ceil(f * rows) rows of each micro-batch only."""
    jepa_every: int = 1
    """JEPA term on every k-th optimizer step only, its weight multiplied by k (same expected gradient)."""
    jepa_target: str = "ema"
    """ema: targets from the EMA target encoder (v3) | online: the CE pass's own z, detached (no target pass)."""
    jepa_batched: bool = False
    """Run the CE rows and the masked context rows through the network as one concatenated batch."""

    def __post_init__(self) -> None:
        _positive(self, "jepa_span_min", "jepa_pred_hidden", "jepa_every")
        if not 0.0 <= self.jepa_mask_frac <= 0.5:
            raise ConfigError(f"jepa_mask_frac={self.jepa_mask_frac} must be in [0, 0.5] (0: fixed span count)")
        if self.jepa_num_spans < 0 or (self.jepa_num_spans == 0 and self.jepa_mask_frac == 0):
            raise ConfigError(f"jepa_num_spans={self.jepa_num_spans} must be > 0 (or 0 with jepa_mask_frac > 0)")
        if not 0.0 < self.jepa_batch_fraction <= 1.0:
            raise ConfigError(f"jepa_batch_fraction={self.jepa_batch_fraction} must be in (0, 1]")
        if self.jepa_target not in ("ema", "online"):
            raise ConfigError(f"jepa_target={self.jepa_target!r}: use ema or online")
        if not 0.0 < self.jepa_span_p < 1.0:
            raise ConfigError(f"jepa_span_p={self.jepa_span_p} must be in (0, 1) (the geometric's p)")
        if self.jepa_lambda < 0 or self.jepa_lambda_warmup_steps < 0:
            raise ConfigError("jepa_lambda and jepa_lambda_warmup_steps must be >= 0")
        for name in ("jepa_ema_start", "jepa_ema_end"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")

    @property
    def active(self) -> bool:
        """Whether the JEPA passes run at all (lambda 0 takes the plain-CE path)."""
        return self.jepa and self.jepa_lambda > 0

    def span_plan(self, seq_len: int) -> SpanPlan:
        """Span count, geometric p and lower clamp at ``seq_len`` (see jepa_mask_frac)."""
        return span_plan(seq_len, self.jepa_mask_frac, self.jepa_num_spans, self.jepa_span_p, self.jepa_span_min)


@dataclass
class OptimConfig:
    matrix_lr: float = 0.04
    """Muon learning rate for 2-D hidden matrices (predictor included)."""
    scalar_lr: float = 0.04
    """Adam learning rate for vectors, scalars and control tensors (mask_emb included)."""
    tied_embed_lr: float = 0.05
    """Adam learning rate for the tied embedding and the BigramHash table."""
    muon_momentum: float = 0.95
    """Muon momentum after warm-up."""
    muon_momentum_warmup_start: float = 0.85
    """Muon momentum at step 0."""
    muon_momentum_warmup_steps: int = 500
    """Steps over which Muon momentum rises to muon_momentum."""
    muon_backend_steps: int = 5
    """Newton-Schulz iterations."""
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    warmdown_iters: int = 1200
    """Linear LR warmdown length in steps (converted to wall-clock when a cap is set)."""
    warmdown_mode: str = "auto"
    """auto: wall-clock warmdown when max_wallclock_seconds > 0, else by steps | steps: always over the
    last warmdown_iters of `iterations`, even under a cap (the cap still stops the run; ablations use
    this with a calibrated step count) | wallclock: requires a cap."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm; 0 disables."""
    artifact_ema_decay: float = 0.9999
    """Decay of the exported weight EMA; warmed up as min(d, (1+t)/(10+t))."""

    def __post_init__(self) -> None:
        _positive(self, "matrix_lr", "scalar_lr", "tied_embed_lr", "muon_backend_steps")
        if self.warmdown_iters < 0 or self.muon_momentum_warmup_steps < 0:
            raise ConfigError("warmdown_iters and muon_momentum_warmup_steps must be >= 0")
        if not 0.0 <= self.artifact_ema_decay < 1.0:
            raise ConfigError(f"artifact_ema_decay={self.artifact_ema_decay} must be in [0, 1)")
        if self.warmdown_mode not in ("auto", "steps", "wallclock"):
            raise ConfigError(f"warmdown_mode={self.warmdown_mode!r}: use auto, steps or wallclock")


@dataclass
class TrainConfig:
    seed: int = 1337
    """Seeds init, data order offset-free, and the span generators."""
    iterations: int = 20000
    """Maximum optimizer steps."""
    train_batch_tokens: int = 524_288
    """Global batch in tokens per optimizer step (fixed whatever the world size)."""
    micro_batch_tokens: int = 65_536
    """Tokens per forward on one process; accumulation = batch / (world * micro)."""
    train_seq_len: int = 1024
    """Sequence length for training and evaluation."""
    max_wallclock_seconds: float = 600.0
    """Training time cap (clock stopped during validation); 0 = none, step-based schedule."""
    val_loss_every: int = 0
    """Validate every N steps (0: only at the end)."""
    val_max_tokens: int = 0
    """Cap on tokens for the periodic validations only (0 = whole split); the final is exact."""
    val_batch_tokens: int = 65_536
    """Tokens per evaluation forward on one process."""
    train_log_every: int = 50
    """Log train metrics every N steps (and at the first and last)."""
    diag_every: int = 0
    """JEPA collapse diagnostics (effective ranks, cosine, JEPA share of the gradient) every N steps, and
    at the first and last; 0 = at the train_log_every steps, -1 = off. Costs extra backward passes on
    those steps only."""
    device: str = "auto"
    """auto | cpu | cuda (auto picks cuda when available)."""
    compile: str = "auto"
    """torch.compile the model: auto (on for CUDA, off for CPU) | on | off."""
    checkpoint_every_steps: int = 0
    """Write a resumable checkpoint to RUN_DIR/checkpoints every N steps (0: off)."""
    checkpoint_every_seconds: float = 0.0
    """Also write one when this many wall-clock seconds have passed since the last (0: off)."""
    checkpoint_keep: int = 3
    """Keep only the newest K checkpoints (older ones are deleted after a successful write)."""
    skip_nonfinite_steps: int = 0
    """Skip up to this many steps with a non-finite loss or gradient (no update, no EMA) before
    stopping; 0 stops at the first one."""
    compile_warmup_steps: int = -1
    """Training steps run before the clock starts to compile and warm up kernels, after which the
    weights, optimizer states, EMAs and data position are restored; -1 = 20 when compiling, else 0."""

    def __post_init__(self) -> None:
        _positive(self, "iterations", "train_batch_tokens", "micro_batch_tokens", "train_seq_len",
                  "val_batch_tokens", "train_log_every")
        if self.micro_batch_tokens % self.train_seq_len:
            raise ConfigError(
                f"micro_batch_tokens={self.micro_batch_tokens} is not a multiple of "
                f"train_seq_len={self.train_seq_len}"
            )
        if self.train_batch_tokens % self.micro_batch_tokens:
            raise ConfigError(
                f"train_batch_tokens={self.train_batch_tokens} is not a multiple of "
                f"micro_batch_tokens={self.micro_batch_tokens}"
            )
        if self.val_batch_tokens < self.train_seq_len:
            raise ConfigError("val_batch_tokens must hold at least one sequence (>= train_seq_len)")
        if self.diag_every < -1:
            raise ConfigError(f"diag_every={self.diag_every}: use N > 0, 0 (= train_log_every) or -1 (off)")
        if self.max_wallclock_seconds < 0 or self.val_loss_every < 0 or self.val_max_tokens < 0:
            raise ConfigError("max_wallclock_seconds, val_loss_every and val_max_tokens must be >= 0")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r}: use auto, cpu or cuda")
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"compile={self.compile!r}: use auto, on or off")
        if self.checkpoint_every_steps < 0 or self.checkpoint_every_seconds < 0 or self.skip_nonfinite_steps < 0:
            raise ConfigError(
                "checkpoint_every_steps, checkpoint_every_seconds and skip_nonfinite_steps must be >= 0 (0: off)"
            )
        if self.checkpoint_keep < 1:
            raise ConfigError(f"checkpoint_keep={self.checkpoint_keep} must be >= 1")
        if self.compile_warmup_steps < -1:
            raise ConfigError(f"compile_warmup_steps={self.compile_warmup_steps}: use -1 (auto) or a count >= 0")


@dataclass
class DataConfig:
    data_path: str = ""
    """Dataset folder with <prefix>_train_*.bin / <prefix>_val_*.bin; empty = offline demo corpus."""
    tokenizer_path: str = ""
    """SentencePiece model; empty = the dataset folder's tokenizer.model (or the demo one)."""


@dataclass
class ExportConfig:
    int6_min_numel: int = 16_384
    """2-D tensors with at least this many elements are stored as int6; smaller ones stay float."""
    int5_patterns: str = "mlp.,attn.,bigram"
    """Comma-separated name fragments of int6 matrices stored as int5 instead (levels -15..15, about
    1 bit less per weight); empty = all int6. The tied embedding (the output head) stays int6.
    Measured on cpu-demo with GPTQ: 0.58 bytes/param and a 0.0056 bpb gap, against 0.69 and 0.0126
    for int6 everywhere rounded to nearest; v3 does not fit the cap at int6 (~19 MB predicted)."""
    gptq: bool = True
    """Round the int5/int6 matrices by GPTQ (Hessian-aware, on train-split calibration sequences)
    instead of to nearest: same format and size, lower output error."""
    gptq_calib_tokens: int = 65_536
    """Training tokens whose activations give the GPTQ input statistics."""
    embed_quant: str = "int6"
    """Storage of the tied embedding / output head: int5 | int6 | int8. On cpu-demo (int5 elsewhere,
    GPTQ) int8 costs 0.03 bytes/param more and cuts the quantisation gap from 0.0056 to 0.0013 bpb."""

    def __post_init__(self) -> None:
        _positive(self, "int6_min_numel", "gptq_calib_tokens")
        if self.embed_quant not in ("int5", "int6", "int8"):
            raise ConfigError(f"embed_quant={self.embed_quant!r}: use int5, int6 or int8")


@dataclass
class Config:
    preset: str = "v3"
    model: ModelConfig = field(default_factory=ModelConfig)
    jepa: JepaConfig = field(default_factory=JepaConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        t, j = self.train, self.jepa
        if self.optim.warmdown_mode == "wallclock" and t.max_wallclock_seconds <= 0:
            raise ConfigError("warmdown_mode=wallclock needs max_wallclock_seconds > 0; use auto or steps")
        if j.active:
            try:
                plan = j.span_plan(t.train_seq_len)
                check_span_settings(t.train_seq_len, plan.num_spans, plan.span_min)
            except ValueError as e:
                raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short hash of everything that changes the trained model (not the device or data paths)."""
        return config_dict_hash(self.to_dict())


def config_dict_hash(config: dict[str, Any]) -> str:
    """``Config.hash()`` of a config dict (``Config.to_dict()``, or a config.json exactly as stored,
    which lacks the fields added since it was written): the preset name, the data paths and the
    operational train keys are left out."""
    d = {k: v for k, v in config.items() if k not in ("preset", "data")}
    d["train"] = {k: v for k, v in config.get("train", {}).items() if k not in OPERATIONAL_TRAIN_KEYS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


SECTIONS = ("model", "jepa", "optim", "train", "data", "export")

CAP_BYTES = 16_000_000  # the challenge's size cap, decimal: code bytes + compressed model bytes (DESIGN section 2)
# Train fields that change how a run is executed or kept, not the model it trains: left out of
# Config.hash(), and free to change when a run is resumed.
OPERATIONAL_TRAIN_KEYS = ("device", "compile", "checkpoint_every_steps", "checkpoint_every_seconds",
                          "checkpoint_keep", "skip_nonfinite_steps")


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def field_index() -> dict[str, tuple[str, type]]:
    """Flat field name -> (section, python type)."""
    index: dict[str, tuple[str, type]] = {}
    for section, cls in _section_classes().items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            assert f.name not in index, f"duplicate config key {f.name}"
            index[f.name] = (section, hints[f.name])
    return index


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{name}={value} must be > 0")


def _parse(key: str, raw: Any, typ: type) -> Any:
    if not isinstance(raw, str):
        return typ(raw)
    text = raw.strip()
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typ is int:
            return int(float(text)) if "e" in text.lower() else int(text.replace("_", ""))
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected a value of type {typ.__name__}") from None


def resolve_key(key: str) -> tuple[str, str]:
    """Map 'num_layers', 'model.num_layers' or 'NUM_LAYERS' to (section, field); suggest on typos."""
    index = field_index()
    name = key.strip().lower()
    if "." in name:
        section, _, name = name.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in {key!r}; sections: {', '.join(SECTIONS)}")
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; see `jepagolf train --list-keys`"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return index[name][0], name


def build_config(
    preset: str = "v3",
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Preset values, then matching environment variables, then explicit overrides; validated."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {preset!r}{hint}; presets: {', '.join(PRESETS)}")
    index = field_index()
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in PRESETS[preset].items():
        section, name = resolve_key(key)
        values[section][name] = value
    _apply_settings(values, index, overrides, environ)
    classes = _section_classes()
    return Config(preset=preset, **{s: classes[s](**values[s]) for s in SECTIONS})


def config_from_dict(d: Mapping[str, Any]) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's config.json)."""
    classes = _section_classes()
    unknown = set(d) - set(SECTIONS) - {"preset"}
    if unknown:
        raise ConfigError(f"config has unknown sections {sorted(unknown)}")
    sections = {}
    for s in SECTIONS:
        cls = classes[s]
        known = {f.name for f in fields(cls)}
        extra = set(d.get(s, {})) - known
        if extra:
            raise ConfigError(f"config section {s!r} has unknown keys {sorted(extra)}")
        values = dict(d.get(s, {}))
        if s == "jepa" and values and "jepa_mask_frac" not in values:
            values["jepa_mask_frac"] = 0.0  # written before the key existed: the fixed span rule
        sections[s] = cls(**values)
    return Config(preset=d.get("preset", "custom"), **sections)


def override_config(
    cfg: Config, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """``cfg`` with matching environment variables, then explicit overrides applied; validated."""
    d = cfg.to_dict()
    _apply_settings(d, field_index(), overrides, environ)
    return config_from_dict(d)


def _apply_settings(
    values: dict[str, dict[str, Any]], index: dict[str, tuple[str, type]],
    overrides: Mapping[str, Any] | None, environ: Mapping[str, str] | None,
) -> None:
    """Set ``values[section][name]`` from matching environment variables (NUM_LAYERS=...), then from
    explicit overrides, which win; every value is parsed to its field's type."""
    env = os.environ if environ is None else environ
    for name, (section, typ) in index.items():
        if name.upper() in env:
            values[section][name] = _parse(name.upper(), env[name.upper()], typ)
    for key, raw in (overrides or {}).items():
        section, name = resolve_key(key)
        values[section][name] = _parse(key, raw, index[name][1])


def parse_set_args(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key] = value
    return out


# Presets (DESIGN section 7). Only the differences from the dataclass defaults (= v3) are listed.
PRESETS: dict[str, dict[str, Any]] = {
    "v3": {},
    "baseline": {
        # The challenge's naive baseline: 9 blocks, width 512, relu^2 MLP x2, no JEPA, no bigram.
        "num_layers": 9,
        "mlp_mult": 2.0,
        "mlp_leaky_slope": 0.0,
        "qk_gain_init": 1.5,
        "bigram_buckets": 0,
        "jepa": False,
    },
    "cpu-demo": {
        # Small enough for ~4 minutes of training on 2 CPU cores with JEPA on; step-based schedule
        # so that runs with the same seed are comparable across machines.
        "num_layers": 4,
        "model_dim": 192,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 3.0,
        "train_seq_len": 256,
        "train_batch_tokens": 4096,
        "micro_batch_tokens": 4096,
        "iterations": 250,
        "warmdown_iters": 80,
        "muon_momentum_warmup_steps": 50,
        "jepa_lambda_warmup_steps": 25,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 50,
        "val_max_tokens": 65_536,
        "val_batch_tokens": 16_384,
        "train_log_every": 25,
        "artifact_ema_decay": 0.99,
        "int6_min_numel": 4096,
        "device": "cpu",
    },
    "smoke": {
        # Tiny: exercises every code path (U-Net skips, GQA, bigram, JEPA, accumulation, export).
        "num_layers": 3,
        "model_dim": 64,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 2.0,
        "bigram_buckets": 256,
        "jepa_pred_hidden": 32,
        "jepa_lambda_warmup_steps": 4,
        "train_seq_len": 64,
        "train_batch_tokens": 1024,
        "micro_batch_tokens": 512,
        "iterations": 12,
        "warmdown_iters": 4,
        "muon_momentum_warmup_steps": 4,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 6,
        "val_max_tokens": 8192,
        "val_batch_tokens": 4096,
        "train_log_every": 3,
        "artifact_ema_decay": 0.9,
        "int6_min_numel": 1024,
        "gptq_calib_tokens": 8192,
        "device": "cpu",
    },
}
