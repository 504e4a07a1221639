"""Named JEPA recipes: public objectives as config presets, ``--set jepa_recipe=NAME``.

A recipe is a set of JEPA config values, each written from the public description named in its
``source`` (no code was copied; where the description is thin the closest faithful reading is taken
and said in ``notes``). ``build_config`` applies a recipe's values on top of the preset, and any key
the user sets explicitly (``--set``, an environment variable, an ablation arm) wins over the recipe:
``jepagolf ablate --arm chunk:jepa_recipe=chunk-latent,jepa_lambda=0.01``.

Pure data: no imports from the package, so that ``config`` (at the bottom of the layering) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str  # one line: what is predicted from what
    source: str  # the public description it follows
    values: dict[str, Any] = field(default_factory=dict)
    notes: str = ""  # readings taken where the description is thin


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        "v3", "JEPA v3 as specified: masked spans' final states predicted from the masked context pass (EMA targets)",
        "DESIGN section 3; openai/parameter-golf PR #1581", {"jepa": True},
    ),
    Recipe(
        "v3-fix",
        "JEPA v3 with its predictor kept alive: leaky relu^2 (slope 0.5) instead of relu^2 in the predictor, so "
        "units negative on the whole batch still learn; everything else v3",
        "issue 19 (v3's predictor dies into the identity in long runs); the short run in README 'JEPA variants'",
        {"jepa": True, "jepa_pred_leaky_slope": 0.5},
        "The hinge is not the cause (the predictor dies as fast with it off or relative to the targets' std) and is "
        "left as specified; a lower predictor lr (jepa_pred_lr) or Adam (jepa_pred_optimizer) slows the death "
        "without stopping it. Slope 0.5 is the GPT's own MLP slope in the v3 preset.",
    ),
    Recipe(
        "v2-nextk",
        "no masking: from position t of the CE pass, predict the EMA target's final states at t+1..t+4, "
        "one MLP predictor per offset, plain MSE",
        "openai/parameter-golf PR #1330 (JEPA v2, same-sequence next-k)",
        {"jepa": True, "jepa_mode": "nextk", "jepa_horizons": 4, "jepa_nextk_rollout": False,
         "jepa_var_mode": "off", "jepa_cov_weight": 0.0},
        "k is not stated in the description; 4 is taken. v2 had no VICReg (v3 added it), so both terms are off. "
        "v2's frozen-predictor bug (a predictor outside every optimizer group) is not reproduced.",
    ),
    Recipe(
        "chunk-latent",
        "no masking: the CE pass's final states mean-pooled over chunks of 8 tokens; chunk c's pooled latent "
        "is predicted from chunk c-1's (a learned start vector for c = 0), SIGReg on the latents, lambda 0.001",
        "openai/parameter-golf PR #832 (byte-level transformer + chunk-level JEPA, inspired by LeWorldModel)",
        {"jepa": True, "jepa_mode": "chunk", "jepa_chunk_size": 8, "jepa_lambda": 0.001, "jepa_target": "online",
         "jepa_target_stopgrad": False, "jepa_reg": "sigreg", "jepa_reg_side": "both", "jepa_sigreg_weight": 0.02,
         "jepa_sigreg_projections": 256, "jepa_sigreg_knots": 17, "jepa_lambda_schedule": "warmdown"},
        "The PR projects hidden states to 256-d latents with a learned projector and adds the predicted latents "
        "back into the residual stream; here the latents are the pooled final states themselves (no projector) "
        "and nothing is injected, since the exported network must stay the plain GPT. Its phased schedule "
        "(30% pure CE, ramp, 20% pure CE) is read as the lambda warm-up ramp plus annealing to 0 in the warmdown. "
        "Targets come from the online network without stop-gradient (LeWorldModel style; SIGReg prevents collapse).",
    ),
    Recipe(
        "multi-horizon",
        "no masking: from the last U-Net encoder block's state at t, one shared predictor applied recursively "
        "predicts that block's states at t+1, t+2, t+3 (weights 1, 0.5, 0.25), smooth L1 on layer-normed targets",
        "openai/parameter-golf PR #1312 (JEPA-LM, hierarchical multi-horizon latent prediction)",
        {"jepa": True, "jepa_mode": "nextk", "jepa_horizons": 3, "jepa_nextk_rollout": True,
         "jepa_horizon_decay": 0.5, "jepa_target": "online", "jepa_target_source": "encoder",
         "jepa_target_norm": "layernorm", "jepa_loss_fn": "smooth_l1", "jepa_var_mode": "off",
         "jepa_cov_weight": 0.0, "jepa_lambda": 0.5, "jepa_pred_hidden": 128},
        "One anchor (the encoder/decoder boundary, the PR's default); its optional imagination co-training is "
        "left out. "
        "The PR layer-normalises the prediction too; here only the target is, and the predictor learns the scale.",
    ),
    Recipe(
        "attn-predictor",
        "no masking: a 1-layer causal attention predictor (4 heads) over the CE pass's final states predicts the "
        "EMA target's state at t+1; cosine loss, weight 0.3 against CE 0.7, annealed to 0 in the warmdown",
        "openai/parameter-golf PR #1277 (EMA teacher + attention predictor)",
        {"jepa": True, "jepa_mode": "nextk", "jepa_horizons": 1, "jepa_predictor": "attn", "jepa_pred_layers": 1,
         "jepa_pred_heads": 4, "jepa_pred_infill": False, "jepa_loss_fn": "cosine", "jepa_var_mode": "off",
         "jepa_cov_weight": 0.0, "jepa_lambda": 0.3 / 0.7, "jepa_lambda_schedule": "warmdown"},
        "The description does not say which positions are predicted; a causal predictor over an unmasked pass "
        "is read as next-position prediction. Loss 0.3*jepa + 0.7*CE is lambda = 0.3/0.7 on ce + lambda*jepa; "
        "'anneals over the final 20%' is read as annealing with the LR warmdown.",
    ),
    Recipe(
        "sigreg",
        "no masking: LeWorldModel style, the online network's own next states (t+1..t+3, one shared predictor "
        "rolled out) predicted with MSE, no EMA and no stop-gradient, SIGReg on the embeddings, weights 1 and 1",
        "openai/parameter-golf PR #903 (LeWorldModel-style JEPA + SIGReg); LeWorldModel (Maes et al., 2026)",
        {"jepa": True, "jepa_mode": "nextk", "jepa_horizons": 3, "jepa_nextk_rollout": True, "jepa_target": "online",
         "jepa_target_stopgrad": False, "jepa_reg": "sigreg", "jepa_reg_side": "both", "jepa_sigreg_weight": 1.0,
         "jepa_lambda": 1.0},
        "JEPA_STEPS=3 is read as three rollout steps of one predictor. The PR's Mamba-2 backbone, projector and "
        "separate embedding width are not part of this recipe: the GPT's final states are the embeddings.",
    ),
    Recipe(
        "nextlat",
        "no masking: a residual MLP on the CE pass's final state at t and the embedding of token t+1 predicts the "
        "state at t+1 (token-conditioned latent dynamics); detached targets from the same pass, smooth L1",
        "NextLat: Teoh et al., 'Next-Latent Prediction Transformers Learn Compact World Models', Microsoft "
        "Research, arXiv 2511.05963",
        {"jepa": True, "jepa_mode": "nextlat", "jepa_horizons": 1, "jepa_target": "online",
         "jepa_loss_fn": "smooth_l1", "jepa_var_mode": "off", "jepa_cov_weight": 0.0, "jepa_lambda": 1.0},
        "The paper's transition is an MLP on the normalised concatenation [state; next token's embedding] with a "
        "residual path; here the first layer is kept as two blocks (state, token) on RMS-normalised inputs, the "
        "activation is relu^2 as in v3's predictor, the width is jepa_pred_hidden and the output projection starts "
        "at zero (an untrained transition is the identity). The token embedding is the GPT's own table, so "
        "nothing new ships. No anti-collapse term: the targets are detached and CE keeps the states informative. "
        "Lambda 1 for the latent term is a reading (the description gives no value for this regime); the rollout "
        "(jepa_horizons > 1) and the KL term (jepa_nextlat_kl_weight, recipe nextlat-kl) are off here.",
    ),
    Recipe(
        "nextlat-kl",
        "nextlat plus its distribution term: KL between the output head's next-token distributions at the true "
        "and at the predicted state (true side and head detached), weight 1",
        "NextLat: Teoh et al., arXiv 2511.05963 (the optional KL term)",
        {"jepa": True, "jepa_mode": "nextlat", "jepa_horizons": 1, "jepa_target": "online",
         "jepa_loss_fn": "smooth_l1", "jepa_var_mode": "off", "jepa_cov_weight": 0.0, "jepa_lambda": 1.0,
         "jepa_nextlat_kl_weight": 1.0},
        "KL(p_true || p_pred), the direction that asks the predicted state to cover the true distribution; the "
        "stop-gradients on the true side and the head are a reading of the description's 'stop-gradient choices' "
        "(the head stays CE's alone).",
    ),
    Recipe(
        "grid-l0.001",
        "JEPA v3 objective at lambda 0.001 with the variance hinge off (the grid's tie with CE)",
        "openai/parameter-golf PR #2142 (14-run JEPA grid, jepa-var-zero)",
        {"jepa": True, "jepa_lambda": 0.001, "jepa_var_mode": "off"},
        "The grid's own masking and predictor (D->64->D) are not described in detail; v3's are kept.",
    ),
    Recipe(
        "grid-l0.2",
        "JEPA v3 objective at lambda 0.2 (the grid's +0.018 bpb anchor)",
        "openai/parameter-golf PR #2142 (14-run JEPA grid)",
        {"jepa": True, "jepa_lambda": 0.2},
    ),
)}


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe ``name`` ('' = none); KeyError names the known recipes."""
    if not name:
        return {}
    if name not in RECIPES:
        raise KeyError(f"unknown jepa_recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return dict(RECIPES[name].values)
