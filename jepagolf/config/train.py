"""The training section (``TrainConfig``) and the train keys that are operational, not part of the model."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import MAX_BATCH_TOKENS, MAX_SEQ_LEN, ConfigError, _check_types, _positive, check_seq_len


@dataclass
class TrainConfig:
    seed: int = 1337
    """Seeds the model's init and the JEPA noise (span masks, SIGReg directions); the training tokens
    are the same stream for every seed (see data_offset)."""
    init_seed: int = -1
    """Seed of the model's initial weights alone; -1 = follow seed. Left out of the config hash when it
    equals what it follows, so configs that do not set it keep their hash."""
    mask_seed: int = -1
    """Seed of the JEPA span masks and SIGReg's random directions alone; -1 = follow seed (hashed as
    init_seed is)."""
    data_offset: int = 0
    """Training tokens skipped at the start of the stream (wrapping after the last shard), so that runs can
    read different data; 0 = from the first token. Left out of the config hash when 0. GPTQ calibration
    still reads the first training tokens."""
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
    guard_seconds: float = 0.0
    """A stop that is not the challenge's cap: training ends once its seconds reach this, with no
    calibration reserve and no schedule tied to it (ablate and ladder set it against a stalled machine);
    0 = none. Operational: not in the config hash."""
    val_loss_every: int = 0
    """Validate every N steps (0: only at the end)."""
    val_max_tokens: int = 0
    """Cap on tokens for the periodic validations only (0 = whole split); the final is exact."""
    val_batch_tokens: int = 65_536
    """Tokens per evaluation forward on one process."""
    eval_seq_len: int = 0
    """Window length of the final scoring and of `jepagolf eval` (0 = train_seq_len); any length works."""
    eval_stride: int = 0
    """Sliding-window scoring: windows of eval_seq_len advanced by this many tokens, each scoring only the
    targets the previous one did not reach (its last eval_stride), every target once; 0 = non-overlapping.
    The records' habit is 64 at 1024 (v3); costs about eval_seq_len / eval_stride plain evaluations."""
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
    step_compile: str = "off"
    """torch.compile the whole training forward of a single-process run (network, JEPA paths and loss; the
    backward with it): off (the default: at r1 it measured 0.96x eager for plain CE, 1.12-1.18x for the JEPA
    variants, after a compile of minutes cold) | on | auto (on for a single-process CPU run).
    Compiled graphs are cached on disk (TORCHINDUCTOR_CACHE_DIR,
    default <cache>/inductor/<source hash>) and compiled before the clock starts."""
    threads: int = 0
    """CPU threads for torch (intra-op; inter-op 1): 0 = torch's own choice. Recorded in the summary."""
    checkpoint_every_steps: int = 0
    """Write a resumable checkpoint to RUN_DIR/checkpoints every N steps (0: off)."""
    checkpoint_every_seconds: float = 0.0
    """Also write one when this many wall-clock seconds have passed since the last (0: off)."""
    checkpoint_keep: int = 3
    """Keep only the newest K checkpoints (older ones are deleted after a successful write)."""
    skip_nonfinite_steps: int = 0
    """Skip up to this many steps with a non-finite loss or gradient (no update, no EMA) before
    stopping; 0 stops at the first one."""
    batch_slicing: str = "shared"
    """How a step's micro-batches are cut from the token stream: shared (consecutive micro-batches share
    their boundary token; a step reads train_batch_tokens + 1) | reference (each reads its own
    micro_batch_tokens + 1 tokens, as the reference trainer's loader does)."""
    compile_warmup_steps: int = -1
    """Training steps run before the clock starts to compile and warm up kernels, after which the
    weights, optimizer states, EMAs and data position are restored; -1 = 20 when compiling, max(4, jepa_every + 2)
    when only the step is compiled (step_compile), else 0."""
    tensorboard: bool = False
    """Also write the metrics.jsonl scalars as TensorBoard event files in the run folder, for live curves
    (`tensorboard --logdir RUN_OR_ABLATION_DIR`); needs the optional extra: pip install 'jepagolf[tensorboard]'."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "iterations", "train_batch_tokens", "micro_batch_tokens", "train_seq_len",
                  "val_batch_tokens", "train_log_every")
        check_seq_len(self.train_seq_len)
        if self.eval_seq_len > MAX_SEQ_LEN:
            raise ConfigError(f"eval_seq_len={self.eval_seq_len} must be at most {MAX_SEQ_LEN}")
        for name in ("train_batch_tokens", "micro_batch_tokens", "val_batch_tokens"):
            if getattr(self, name) > MAX_BATCH_TOKENS:
                raise ConfigError(f"{name}={getattr(self, name)} is more than {MAX_BATCH_TOKENS} tokens")
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
        if self.eval_seq_len < 0 or self.eval_stride < 0:
            raise ConfigError(f"eval_seq_len={self.eval_seq_len} and eval_stride={self.eval_stride} must be >= 0 "
                              "(0: train_seq_len, and non-overlapping windows)")
        if self.eval_stride > self.scoring_seq_len:
            raise ConfigError(f"eval_stride={self.eval_stride} is longer than the evaluation window eval_seq_len="
                              f"{self.scoring_seq_len}: use 1..{self.scoring_seq_len} (0: non-overlapping)")
        if self.diag_every < -1:
            raise ConfigError(f"diag_every={self.diag_every}: use N > 0, 0 (= train_log_every) or -1 (off)")
        if self.max_wallclock_seconds < 0 or self.val_loss_every < 0 or self.val_max_tokens < 0:
            raise ConfigError("max_wallclock_seconds, val_loss_every and val_max_tokens must be >= 0")
        if not self.guard_seconds >= 0:
            raise ConfigError(f"guard_seconds={self.guard_seconds} must be >= 0 (0: no guard)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r}: use auto, cpu or cuda")
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"compile={self.compile!r}: use auto, on or off")
        if self.step_compile not in ("auto", "on", "off"):
            raise ConfigError(f"step_compile={self.step_compile!r}: use auto, on or off")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}: use 0 (torch's own choice) or a count >= 1")
        if self.checkpoint_every_steps < 0 or self.checkpoint_every_seconds < 0 or self.skip_nonfinite_steps < 0:
            raise ConfigError(
                "checkpoint_every_steps, checkpoint_every_seconds and skip_nonfinite_steps must be >= 0 (0: off)"
            )
        if self.checkpoint_keep < 1:
            raise ConfigError(f"checkpoint_keep={self.checkpoint_keep} must be >= 1")
        if self.batch_slicing not in ("shared", "reference"):
            raise ConfigError(f"batch_slicing={self.batch_slicing!r}: use shared or reference")
        if self.init_seed < -1 or self.mask_seed < -1:
            raise ConfigError(f"init_seed={self.init_seed}, mask_seed={self.mask_seed}: use a seed >= 0, or -1 to "
                              "follow seed")
        if not 0 <= self.data_offset <= MAX_DATA_OFFSET:
            raise ConfigError(f"data_offset={self.data_offset}: use 0..{MAX_DATA_OFFSET} training tokens")
        if self.compile_warmup_steps < -1:
            raise ConfigError(f"compile_warmup_steps={self.compile_warmup_steps}: use -1 (auto) or a count >= 0")

    @property
    def resolved_init_seed(self) -> int:
        """The seed of the initial weights (init_seed, or seed when it is -1)."""
        return self.seed if self.init_seed < 0 else self.init_seed

    @property
    def resolved_mask_seed(self) -> int:
        """The seed of the span masks and SIGReg directions (mask_seed, or seed when it is -1)."""
        return self.seed if self.mask_seed < 0 else self.mask_seed

    @property
    def scoring_seq_len(self) -> int:
        """The window length the final score uses (eval_seq_len, or train_seq_len when 0)."""
        return self.eval_seq_len or self.train_seq_len


MAX_DATA_OFFSET = 1 << 48  # training tokens; far beyond any corpus (the stream wraps)

# Train fields that change how a run is executed or kept, not the model it trains: left out of
# Config.hash(), and free to change when a run is resumed.
OPERATIONAL_TRAIN_KEYS = ("device", "compile", "step_compile", "threads", "checkpoint_every_steps",
                          "checkpoint_every_seconds", "checkpoint_keep", "skip_nonfinite_steps", "eval_seq_len",
                          "eval_stride", "guard_seconds", "tensorboard")
