"""The model section (``ModelConfig``) and the RoPE-table bound that depends on its shape."""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config.bounds import (
    CAP_BYTES,
    MAX_LAYERS,
    MAX_MLP_MULT,
    MAX_PARAMS,
    MAX_ROPE_BYTES,
    ConfigError,
    _check_types,
    _positive,
)


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
        _check_types(self)
        _positive(self, "vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "rope_base")
        if self.num_layers > MAX_LAYERS:
            raise ConfigError(f"num_layers={self.num_layers} is more than {MAX_LAYERS}")
        if self.mlp_mult > MAX_MLP_MULT:
            raise ConfigError(f"mlp_mult={self.mlp_mult} is more than {MAX_MLP_MULT}")
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
        if self.tied_embed_init_std < 0 or self.bigram_init_std < 0:
            raise ConfigError("tied_embed_init_std and bigram_init_std must be >= 0")
        params = self.param_count()
        if params > MAX_PARAMS:
            raise ConfigError(
                f"the model has {params:,} parameters: more than {MAX_PARAMS:,}, it cannot fit the "
                f"{CAP_BYTES:,}-byte cap even at 1 bit per weight; lower num_layers, model_dim, mlp_mult, "
                "vocab_size or bigram_buckets"
            )

    def param_count(self) -> int:
        """Parameters of the GPT this config builds (``jepagolf.model.gpt.GPT``), in Python ints, so
        that a hostile or careless shape is refused before anything is allocated."""
        D, L, kv = self.model_dim, self.num_layers, self.num_kv_heads * self.head_dim
        attn = D * D + 2 * D * kv + D * D + self.num_heads  # q, k, v, out projections, q_gain
        mlp = 2 * D * self.mlp_hidden
        block = attn + mlp + 4 * D  # attn_scale, mlp_scale, resid_mix (2, D)
        encoder = L // 2 if self.unet_skips else 0
        skips = min(encoder, L - encoder) * D
        return (self.vocab_size + self.bigram_buckets) * D + L * block + skips

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)


def check_rope_tables(model: ModelConfig, seq_len: int) -> None:
    """Refuse a shape whose RoPE tables (built per block for the longest sequence) would be too large."""
    nbytes = model.num_layers * seq_len * model.head_dim * 4
    if nbytes > MAX_ROPE_BYTES:
        raise ConfigError(
            f"num_layers={model.num_layers} x train_seq_len={seq_len} x head dim {model.head_dim} needs "
            f"{nbytes:,} bytes of RoPE tables, more than {MAX_ROPE_BYTES:,}; lower train_seq_len"
        )
