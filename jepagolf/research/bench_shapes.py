"""`jepagolf bench --ladder-shapes`: per distinct shape of a ladder, each variant's training step on the fast
path (the whole step compiled, ``step_compile=on``) against the plain eager step, interleaved, with a profiler
breakdown of the step and plain CE's MFU ceiling at that shape (issue 20).

The training default on a CPU stays eager: at r1 the compiled step measured 0.96x eager for plain CE and
1.12-1.18x for the JEPA variants, after 12-53 s of compiling with a warm cache (minutes cold); see README.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepagolf.config import ConfigError
from jepagolf.data.dataset import resolve_dataset
from jepagolf.model.gpt import count_params
from jepagolf.outputs import read_marker
from jepagolf.recipes import RECIPES
from jepagolf.research.bench import (
    VARIANTS,
    AttentionProbe,
    MatmulProbe,
    _loadavg,
    _machine,
    _timed,
    build_variant_config,
    gemm_shapes,
    machine_busy,
    mfu_ceiling,
    model_dtype,
    variant_overrides,
)
from jepagolf.research.flops import train_flops_per_token
from jepagolf.sources import source_hash
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime, sdpa_context, versions
from jepagolf.train.validation import load_val_data

# The cheapest JEPA option that the default ladder runs (its "fast" arm).
CHEAPEST_OPTION = "online+frac25+batched"
LADDER_SHAPE_VARIANTS = ("ce", "v3", CHEAPEST_OPTION)
# The fast path (the whole step compiled) and the plain eager path, timed against each other.
FAST_OVERRIDES = {"step_compile": "on"}
EAGER_OVERRIDES = {"compile": "off", "step_compile": "off"}
# record_function labels of Trainer's step (train/loop.py) and Muon (optim/muon.py), read from the profiler.
BREAKDOWN_LABELS = ("forward", "backward", "optimizer.muon", "muon.newton_schulz", "optimizer.adam", "ema")


@dataclass
class PathTiming:
    trainer: Trainer
    compile_s: float = 0.0  # the trainer's own warm-up before its clock (compiling, when it compiles)
    step_s: list[float] = field(default_factory=list)


def ladder_shape_groups(rungs: Sequence[Any]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Distinct shapes of ``rungs`` (ladder.Rung): the first rung's name -> (every rung of that shape, its
    overrides). r0 and r1 of the default ladder share one shape."""
    groups: dict[str, tuple[list[str], dict[str, str]]] = {}
    seen: dict[tuple[tuple[str, str], ...], str] = {}
    for rung in rungs:
        key = tuple(sorted(rung.overrides.items()))
        if key in seen:
            groups[seen[key]][0].append(rung.name)
        else:
            seen[key] = rung.name
            groups[rung.name] = ([rung.name], dict(rung.overrides))
    return groups


def profile_breakdown(step: Callable[[], None], n_steps: int) -> dict[str, float]:
    """Milliseconds per step by part of the step, from torch.profiler's ranges over ``n_steps`` steps:
    forward (EMA target pass included), backward, Muon's Newton-Schulz and the rest of its step, Adam, the
    EMA updates, and the rest (the guard, zero_grad, schedules, Python) as the profiled wall time less
    those. The profiler adds its own overhead per op, so ``profiled_step_ms`` exceeds the timed step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        wall_ms = 1000 * (time.perf_counter() - t0) / n_steps
    totals = dict.fromkeys(BREAKDOWN_LABELS, 0.0)
    for evt in prof.key_averages():
        if evt.key in totals:
            totals[evt.key] += evt.cpu_time_total / 1000 / n_steps  # microseconds in all -> ms per step
    out = {
        "forward_ms": totals["forward"],
        "backward_ms": totals["backward"],
        "muon_newton_schulz_ms": totals["muon.newton_schulz"],
        "muon_other_ms": totals["optimizer.muon"] - totals["muon.newton_schulz"],
        "adam_ms": totals["optimizer.adam"],
        "ema_ms": totals["ema"],
    }
    out["rest_ms"] = wall_ms - sum(out.values())
    out["profiled_step_ms"] = wall_ms
    return out


def run_ladder_shapes(
    rungs: Sequence[Any],
    variants: Sequence[str] = LADDER_SHAPE_VARIANTS,
    preset: str = "cpu-demo",
    user_overrides: dict[str, str] | None = None,
    repeats: int = 7,
    steps_per_repeat: int = 2,
    profile_steps: int = 3,
    rt: Runtime | None = None,
    log: Callable[[str], None] = print,
    fast: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Per distinct shape of ``rungs``: each variant's step on the fast path (``step_compile=on``) and on the plain
    eager path, interleaved (the two paths alternate which runs first, every repeat), its MFU against the GEMM probe
    at that shape, a profiler breakdown of the default path's step, and plain CE's MFU ceiling.

    A step here is the training loop's: ``forward_backward``, the guard's gradient norm, ``apply_update``."""
    user = dict(user_overrides or {})
    rt = rt or Runtime(device=torch.device("cpu"))
    if repeats < 1 or steps_per_repeat < 1 or profile_steps < 1:
        raise ConfigError("bench: need repeats, steps per repeat and profiled steps >= 1")
    names = list(variants)
    unknown = [n for n in names if n not in VARIANTS and n not in RECIPES]
    if unknown:
        raise ConfigError(f"bench: unknown variants {unknown}; known: {', '.join(VARIANTS)}, or a JEPA recipe")
    if "ce" not in names:
        names.insert(0, "ce")  # the ceiling is plain CE's
    loadavg_start = _loadavg()
    tmp = tempfile.TemporaryDirectory(prefix="jepagolf-bench-shapes-")
    shapes: dict[str, Any] = {}
    for label, (members, shape) in ladder_shape_groups(rungs).items():
        base = build_variant_config(preset, {**user, **shape}, variant_overrides("ce"))
        paths = resolve_dataset(base.data.data_path or None, base.data.tokenizer_path or None, announce=False)
        val = load_val_data(base, paths, rt.device)
        chunk: np.ndarray | None = None
        rows: dict[str, dict[str, PathTiming]] = {}
        for n in names:
            rows[n] = {}
            for path, extra in (("fast", FAST_OVERRIDES if fast is None else fast), ("eager", EAGER_OVERRIDES)):
                cfg = build_variant_config(preset, {**user, **shape, **extra}, variant_overrides(n))
                trainer = Trainer(cfg, rt, Path(tmp.name) / label / n / path, paths, val=val)
                trainer.logger.close()
                if chunk is None:
                    chunk = trainer.stream.take(cfg.train.micro_batch_tokens + 1)  # every step trains on it
                t0 = time.perf_counter()
                trainer.warmup(trainer.warmup_steps)
                rows[n][path] = PathTiming(trainer, compile_s=time.perf_counter() - t0)
        assert chunk is not None

        def stepper(trainer: Trainer, data: np.ndarray = chunk) -> Callable[[], None]:
            def step() -> None:
                with sdpa_context(rt.device):
                    stats = trainer.forward_backward(data)
                trainer.skip_bad_step(stats)  # the guard and its gradient norm, as in the loop
                trainer.apply_update()
                trainer.step += 1
            return step

        steps = {(n, p): stepper(t.trainer) for n, r in rows.items() for p, t in r.items()}
        for fn in steps.values():  # kernels and caches warm on every path before any clock
            fn()
            fn()
        probe = MatmulProbe(gemm_shapes(base), model_dtype(rt), rt.device)
        probe.measure()
        attention = AttentionProbe(base, model_dtype(rt), rt.device)
        log(f"bench --ladder-shapes {label} ({', '.join(members)}): " + ", ".join(
            f"{n} compile {rows[n]['fast'].compile_s:.1f} s" for n in names))
        for r in range(repeats):
            probe.measure()
            attention.measure()
            for n in names:
                order = ("fast", "eager") if r % 2 == 0 else ("eager", "fast")
                for p in order:
                    seconds, _ = _timed(rt.device, lambda fn=steps[(n, p)]: [fn() for _ in range(steps_per_repeat)])
                    rows[n][p].step_s.append(seconds / steps_per_repeat)
            log(f"  {label} repeat {r + 1}/{repeats}: " + " ".join(
                f"{n}={1000 * rows[n]['fast'].step_s[-1]:.0f}/{1000 * rows[n]['eager'].step_s[-1]:.0f}ms"
                for n in names))
        rate = probe.rate()
        out: dict[str, Any] = {}
        for n in names:
            d, e = rows[n]["fast"], rows[n]["eager"]
            cfg = d.trainer.cfg
            micro = cfg.train.micro_batch_tokens
            flops = train_flops_per_token(cfg) * micro
            med_d, med_e = statistics.median(d.step_s), statistics.median(e.step_s)
            speedups = [ei / di for di, ei in zip(d.step_s, e.step_s, strict=True)]
            out[n] = {
                "step_ms": 1000 * med_d,
                "eager_step_ms": 1000 * med_e,
                "step_ms_all": [1000 * s for s in d.step_s],
                "eager_step_ms_all": [1000 * s for s in e.step_s],
                "speedup_vs_eager": statistics.median(speedups),
                "speedup_min": min(speedups),
                "speedup_max": max(speedups),
                "mfu": flops / med_d / rate,
                "eager_mfu": flops / med_e / rate,
                "flops_per_step": flops,
                "compile_s": d.compile_s,
                "step_compiled": d.trainer.step_compiled,
                "breakdown": profile_breakdown(steps[(n, "fast")], profile_steps),
            }
        ce = out["ce"]
        bd = ce["breakdown"]
        update_s = (bd["muon_newton_schulz_ms"] + bd["muon_other_ms"] + bd["adam_ms"] + bd["ema_ms"]) / 1000
        ceiling = mfu_ceiling(base, rate, attention.seconds(), update_s)
        # The most any path could gain over the eager step: everything but the GEMMs, the attention kernels and
        # the optimizer update removed. Below 2, a 2x speed-up is out of reach by construction.
        ceiling["speedup_ceiling_vs_eager"] = ce["eager_step_ms"] / ceiling["floor_step_ms"]
        m = base.model
        shapes[label] = {
            "rungs": members,
            "shape": {"num_layers": m.num_layers, "model_dim": m.model_dim, "seq_len": base.train.train_seq_len,
                      "micro_batch_tokens": base.train.micro_batch_tokens,
                      "params": count_params(rows["ce"]["fast"].trainer.model.gpt)},
            # plain CE's figures at the top, as the issue names them; every variant's under "variants"
            "step_ms": ce["step_ms"], "eager_step_ms": ce["eager_step_ms"],
            "speedup_vs_eager": ce["speedup_vs_eager"], "mfu": ce["mfu"], "ceiling": ceiling,
            "breakdown": ce["breakdown"], "matmul_flops_per_s": rate, "variants": out,
        }
        for n in names:
            for p in ("fast", "eager"):
                rows[n][p].trainer.logger.close()
        del rows, steps
    tmp.cleanup()
    machine = {**_machine(rt), "loadavg_start": loadavg_start, "loadavg_end": _loadavg()}
    busy = machine_busy(loadavg_start, machine["loadavg_end"], machine["cpu_count"], machine["torch_threads"])
    return {"preset": preset, "overrides": user, "variants": names, "repeats": repeats,
            "steps_per_repeat": steps_per_repeat, "ladder_shapes": shapes, "machine": machine, "busy": busy,
            "versions": versions(), "source_hash": source_hash(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def format_ladder_shapes(res: dict[str, Any]) -> str:
    """The readable summary of ``run_ladder_shapes``."""
    lines = [f"{'shape':12s} {'variant':24s} {'step ms':>8s} {'eager ms':>9s} {'speedup':>8s} {'MFU':>6s} "
             f"{'compile s':>9s}  breakdown (ms/step, profiled): fwd bwd NS muon adam ema rest"]
    for label, s in res["ladder_shapes"].items():
        for n, v in s["variants"].items():
            b = v["breakdown"]
            lines.append(
                f"{label:12s} {n:24s} {v['step_ms']:8.1f} {v['eager_step_ms']:9.1f} {v['speedup_vs_eager']:8.2f} "
                f"{100 * v['mfu']:5.1f}% {v['compile_s']:9.1f}  " + " ".join(
                    f"{b[k]:.1f}" for k in ("forward_ms", "backward_ms", "muon_newton_schulz_ms", "muon_other_ms",
                                            "adam_ms", "ema_ms", "rest_ms")))
        c = s["ceiling"]
        lines.append(f"{'':12s} ceiling: CE cannot beat {c['floor_step_ms']:.1f} ms (GEMMs {c['gemm_ms']:.1f} + "
                     f"attention {c['attention_ms']:.1f} + update {c['update_ms']:.1f}): MFU <= "
                     f"{c['mfu_ceiling']:.2f}, speed-up over eager <= {c['speedup_ceiling_vs_eager']:.2f}")
    m = res["machine"]
    busy = "; machine busy: rerun on an idle one" if res["busy"] else ""
    lines.append(f"load average {m['loadavg_start']} -> {m['loadavg_end']} on {m['cpu_count']} CPUs, "
                 f"{m['torch_threads']} torch threads{busy}")
    return "\n".join(lines)


def is_ladder_shapes_json(path: Path) -> bool:
    data = read_marker(path)
    return data is not None and {"ladder_shapes", "machine"} <= data.keys()
