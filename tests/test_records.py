"""The challenge export: single-file train_gpt.py, records folder, exact byte accounting, size report."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.export.artifact import ARTIFACT_NAME
from jepagolf.export.records import ExportError, export_records
from jepagolf.export.size import GROUPS, artifact_size_report, predict_size, tensor_group
from jepagolf.model.gpt import GPT, count_params
from jepagolf.outputs import MARKER
from jepagolf.sources import (
    EXCLUDED_MODULES,
    _literal,
    build_script,
    bundle_modules,
    module_name,
    package_sources,
    script_variants,
)
from jepagolf.train.entry import config_from_run
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime

SEEDS = (1337, 7)
SCORING = {"eval_stride": 16}  # the smoke runs' one setting beyond the preset: scored by sliding windows
# What the exported script may import at module level, besides the standard library.
ALLOWED_THIRD_PARTY = {"torch", "numpy", "sentencepiece"}
# Run in the subprocess instead of `python train_gpt.py`: the same, except that these packages
# (installed here, absent on a bare challenge machine) cannot be imported, and that afterwards it
# prints where every jepagolf module came from.
RUNNER = """
import runpy, sys
for blocked in ("tqdm", "huggingface_hub", "scipy", "matplotlib", "hypothesis", "pytest"):
    sys.modules[blocked] = None  # import raises ImportError
sys.argv = ["train_gpt.py"]
try:
    runpy.run_path("train_gpt.py", run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
mods = {n: type(m.__spec__.loader).__name__ for n, m in sys.modules.items() if n.split(".")[0] == "jepagolf"}
print("JEPAGOLF_MODULES " + repr(mods))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, demo_data) -> list[Path]:
    """Two smoke runs that differ only in the seed (the smoke preset, scored by sliding windows so that the
    records carry a score other than the plain round trip)."""
    outs = []
    threads = torch.get_num_threads()
    # One thread, like the reproduction subprocess (OMP_NUM_THREADS=1), so that both sum floats in
    # the same order; it is also much faster than two threads per process on a shared 2-core box.
    torch.set_num_threads(1)
    try:
        for seed in SEEDS:
            out = tmp_path_factory.mktemp(f"smoke_seed{seed}")
            train(build_config("smoke", {"seed": seed, **SCORING}, environ={}),
                  Runtime(device=torch.device("cpu")), out)
            outs.append(out)
    finally:
        torch.set_num_threads(threads)
    return outs


@pytest.fixture(scope="module")
def records(smoke_runs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("records") / "submission"
    sub, _ = export_records(smoke_runs, out, name="smoke test", author="Ada", github_id="ada", blurb="b.",
                            date="2026-01-01T00:00:00Z")
    return out, sub


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# ----------------------------------------------------------------------------- the single file


def test_exported_script_reproduces_the_run_in_an_empty_folder(smoke_runs, records, tmp_path):
    out, sub = records
    ref = smoke_runs[0]
    work = tmp_path / "empty"
    work.mkdir()
    shutil.copyfile(out / "train_gpt.py", work / "train_gpt.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}  # as the reference runs (fixture)
    proc = subprocess.run([sys.executable, "-c", RUNNER], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    mods = ast.literal_eval(proc.stdout.split("JEPAGOLF_MODULES ", 1)[1].strip())
    assert mods and set(mods.values()) == {"_EmbeddedPackage"}, mods  # never the installed package
    got, want = summary(work), summary(ref)
    assert got["seed"] == SEEDS[0] and got["steps"] == want["steps"]
    for key in ("val_loss", "val_bpb", "score_val_bpb", "roundtrip_val_bpb", "roundtrip_val_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert (work / ARTIFACT_NAME).read_bytes() == (ref / ARTIFACT_NAME).read_bytes()
    # Exact accounting: the script counts its own size, and the trainer predicted that same size.
    shipped = (work / "train_gpt.py").stat().st_size
    assert got["code_bytes"] == shipped == want["code_bytes"] == sub["bytes_code"]
    assert got["total_bytes"] == shipped + got["artifact_bytes"]


def test_script_bytes_are_deterministic_and_both_encodings_hold_the_same_program(smoke_runs):
    config = json.loads((smoke_runs[0] / "config.json").read_text())
    v = script_variants(config)
    assert v == script_variants(config)
    assert len(v["compressed"]) < len(v["plain"]) / 2
    assert build_script(config) == v["compressed"]  # default: the smaller one
    assert build_script(config, compress=False) == v["plain"]
    # `--source` prints exactly the plain script.
    ns: dict = {}
    src = v["compressed"].decode()
    stub_payload = src.split('b85decode(b"', 1)[1].split('"', 1)[0]
    import base64
    import lzma

    assert lzma.decompress(base64.b85decode(stub_payload)) == v["plain"]
    compile(v["plain"], "train_gpt.py", "exec")
    exec(compile(v["plain"].decode().split("\nclass _EmbeddedPackage")[0], "x", "exec"), ns)
    assert ns["CONFIG"] == config
    shipped = set(ns["SOURCES"])
    assert shipped == set(bundle_modules())
    assert all(ns["SOURCES"][p] == package_sources()[p] for p in shipped)  # verbatim package code


def test_bundle_ships_the_training_closure_and_nothing_for_the_cli():
    names = {module_name(p) for p in bundle_modules()}
    for needed in ("jepagolf.train.loop", "jepagolf.export.artifact", "jepagolf.jepa.objective", "jepagolf.optim.muon",
                   "jepagolf.data.tokenizer", "jepagolf.model.eval", "jepagolf.train", "jepagolf"):
        assert needed in names
    assert not names & EXCLUDED_MODULES
    assert "jepagolf.export.records" not in names and "jepagolf.export.size" not in names
    # The research commands (their statistics need scipy, a dependency the challenge machine lacks) stay out.
    assert not {n for n in names if n.startswith("jepagolf.research")}


def _module_level_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(top-level package, guarded by `except ImportError`) for imports that run at import time."""
    out: list[tuple[str, bool]] = []

    def visit(stmts, guarded):
        for node in stmts:
            if isinstance(node, ast.Import):
                out.extend((a.name.split(".")[0], guarded) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                out.append(((node.module or "").split(".")[0], guarded))
            elif isinstance(node, ast.Try):
                catches = any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                              for h in node.handlers)
                visit(node.body, guarded or catches)
            elif isinstance(node, ast.If):
                visit(node.body, guarded)
                visit(node.orelse, guarded)

    visit(tree.body, False)
    return out


def test_shipped_modules_need_only_torch_numpy_sentencepiece():
    allowed = ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names) | {"jepagolf", "__future__"}
    for path, text in bundle_modules().items():
        for pkg, guarded in _module_level_imports(ast.parse(text)):
            assert guarded or pkg in allowed, f"{path} imports {pkg} at module level; the script cannot ship it"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab'\"\\\n\r\t{}#u") + ["'''", '"""', "\\'", "é"])).map("".join))
def test_embedded_literals_reproduce_any_source_text(text):
    assert ast.literal_eval(_literal(text)) == text


def test_environment_overrides_the_baked_config(smoke_runs):
    config = json.loads((smoke_runs[0] / "config.json").read_text())
    cfg = config_from_run(config, {"SEED": "5", "NUM_LAYERS": "2", "JEPA_LAMBDA": "0"})
    assert (cfg.train.seed, cfg.model.num_layers, cfg.jepa.jepa_lambda) == (5, 2, 0.0)
    assert cfg.model.model_dim == config["model"]["model_dim"] and cfg.preset == "smoke"
    assert config_from_run(config, {}).to_dict() == config


# ----------------------------------------------------------------------------- records folder


def test_records_folder_has_the_files_and_sizes_of_what_ships(records, smoke_runs):
    out, sub = records
    names = {p.name for p in out.iterdir()}
    assert names == {MARKER, "train_gpt.py", "submission.json", "README.md", "requirements.txt", "train_seed1337.log",
                     "train_seed7.log", "final_model_seed1337.int6.lzma", "final_model_seed7.int6.lzma"}
    assert json.loads((out / "submission.json").read_text()) == sub
    assert sub["bytes_code"] == (out / "train_gpt.py").stat().st_size
    assert sub["bytes_model"] == max((out / f"final_model_seed{s}.int6.lzma").stat().st_size for s in SEEDS)
    assert sub["bytes_total"] == sub["bytes_code"] + sub["bytes_model"] <= 16_000_000
    assert sub["bytes_code"] == sub["bytes_code_compressed"] < sub["bytes_code_plain"]
    for seed, run in zip(SEEDS, smoke_runs, strict=True):
        assert (out / f"train_seed{seed}.log").read_bytes() == (run / "train.log").read_bytes()
        assert (out / f"final_model_seed{seed}.int6.lzma").read_bytes() == (run / ARTIFACT_NAME).read_bytes()
    req = (out / "requirements.txt").read_text().split()
    assert [r.split("==")[0] for r in req] == ["torch", "numpy", "sentencepiece"]
    assert req[0] == "torch==" + torch.__version__.split("+")[0]


def test_submission_fields_match_the_run_summaries(records, smoke_runs):
    _, sub = records
    for key in ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb", "pre_quant_val_bpb",
                "bytes_total", "bytes_code", "bytes_model", "seeds", "seed_results", "hardware", "pytorch_version",
                "technique_summary"):
        assert key in sub, key
    assert (sub["author"], sub["github_id"], sub["name"], sub["date"]) == ("Ada", "ada", "smoke test",
                                                                           "2026-01-01T00:00:00Z")
    assert sub["track"] == "non_record_16mb"  # no wall-clock cap: not a record-track run
    assert sub["seeds"] == list(SEEDS)
    sums = [summary(r) for r in smoke_runs]
    for s in sums:
        r = sub["seed_results"][str(s["seed"])]
        # The submission's val_bpb is the scored number: the round trip by sliding windows here.
        assert s["score_kind"] == "roundtrip_sliding" and s["score_stride"] == 16 and s["score_seq_len"] == 64
        assert r["val_bpb"] == s["score_val_bpb"] and r["val_loss"] == s["score_val_loss"]
        assert r["val_bpb"] != s["roundtrip_val_bpb"] and r["roundtrip_val_bpb"] == s["roundtrip_val_bpb"]
        assert r["pre_quant_val_bpb"] == s["prequant_val_bpb"] and r["steps"] == s["steps"]
        assert r["quant_gap_bpb"] == s["roundtrip_val_bpb"] - s["prequant_val_bpb"]
        assert r["bytes_model"] == s["artifact_bytes"]
    bpb = [s["score_val_bpb"] for s in sums]
    assert sub["val_bpb"] == pytest.approx(sum(bpb) / 2, abs=1e-12)
    assert sub["val_bpb_std"] == pytest.approx(abs(bpb[0] - bpb[1]) / 2**0.5, abs=1e-12)  # sample std, n=2
    assert sub["pre_quant_val_bpb"] == pytest.approx(sum(s["prequant_val_bpb"] for s in sums) / 2, abs=1e-12)
    assert sub["score_kind"] == "round-trip artifact, sliding windows, stride 16 at seq 64"
    assert sub["pytorch_version"] == torch.__version__ and sub["hardware"] == sums[0]["device"]
    assert "JEPA" in sub["technique_summary"] and "int6" in sub["technique_summary"]
    assert "int5 for mlp., attn., bigram" in sub["technique_summary"] and "GPTQ" in sub["technique_summary"]


def test_readme_is_generated_from_the_results(records):
    out, sub = records
    text = (out / "README.md").read_text()
    for seed in SEEDS:
        assert f"| {seed} | {sub['seed_results'][str(seed)]['val_bpb']:.6f} |" in text
    assert "(the score: round-trip artifact, sliding windows, stride 16 at seq 64;" in text
    assert f"{sub['bytes_total']:,}" in text and f"{sub['bytes_code_plain']:,}" in text
    assert "`NUM_LAYERS=3`" in text and "SEED=$SEED" in text
    assert "## Time budget" in text and "GPTQ calibration" in text  # how the training-data seconds were spent
    for seed in SEEDS:
        x = sub["seed_results"][str(seed)]
        assert x["budget_seconds"] == pytest.approx(x["train_seconds"] + x["calibration_seconds"])
        assert (f"| {seed} | {x['train_seconds']:.1f} | {x['calibration_seconds']:.1f} | {x['budget_seconds']:.1f} "
                "| none |") in text
    for group in ("embeddings", "attention", "mlp", "control"):
        assert group in text


def test_export_refuses_runs_of_different_configs_naming_the_keys(smoke_runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(smoke_runs[1], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model"]["num_layers"] = 2
    cfg["optim"]["matrix_lr"] = 0.01
    cfg["train"]["seed"] = 99  # the seed may differ; the rest may not
    (other / "config.json").write_text(json.dumps(cfg))
    s = summary(other)
    s["seed"] = 99
    (other / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ExportError, match=r"model\.num_layers: 3 vs 2; optim\.matrix_lr"):
        export_records([smoke_runs[0], other], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="seed 1337"):
        export_records([smoke_runs[0], smoke_runs[0]], tmp_path / "out")


def test_over_cap_export_is_refused_with_a_breakdown(smoke_runs, tmp_path, capsys):
    cap = 100_000
    rc = main(["export", str(smoke_runs[0]), "--out", str(tmp_path / "out"), "--cap-bytes", str(cap)])
    err = capsys.readouterr().err
    assert rc == 2
    s = summary(smoke_runs[0])
    over = s["artifact_bytes"] + s["code_bytes"] - cap
    assert f"{over:,} bytes over the {cap:,}-byte cap" in err
    for group in ("embeddings", "bigram", "attention", "mlp", "skip weights", "control", "overhead"):
        assert group in err
    assert not (tmp_path / "out").exists()


def test_flipped_byte_is_rejected_by_eval(smoke_runs, tmp_path, demo_data, capsys):
    bad = tmp_path / ARTIFACT_NAME
    data = bytearray((smoke_runs[0] / ARTIFACT_NAME).read_bytes())
    data[len(data) // 2] ^= 0x10
    bad.write_bytes(bytes(data))
    rc = main(["eval", str(bad), "--data", str(demo_data.data_dir), "--device", "cpu"])
    assert rc == 2
    assert "checksum mismatch" in capsys.readouterr().err
    # ...and by export, before anything is written.
    run = tmp_path / "run"
    shutil.copytree(smoke_runs[0], run)
    shutil.copyfile(bad, run / ARTIFACT_NAME)
    with pytest.raises(Exception, match="checksum mismatch"):
        export_records([run], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- sizes


def test_groups_cover_every_parameter():
    cfg = build_config("v3", {}, environ={})
    with torch.device("meta"):
        gpt = GPT(cfg.model, 64)
    sd = gpt.state_dict()
    assert {tensor_group(n) for n in sd} <= set(GROUPS) - {"other"}
    report = predict_size(cfg, code_bytes=0)
    assert report.params == sum(t.numel() for t in sd.values()) == count_params(gpt)
    assert sum(g.params for g in report.groups if g.group in ("attention", "mlp")) > 0.9 * report.params


def test_size_prediction_is_close_to_the_measured_artifact(smoke_runs):
    cfg = build_config("smoke", SCORING, environ={})
    s = summary(smoke_runs[0])
    pred = predict_size(cfg)
    assert pred.code_bytes == s["code_bytes"]  # exact
    assert pred.params == s["params"]
    assert pred.model_bytes == pytest.approx(s["artifact_bytes"], rel=0.10)
    measured = artifact_size_report(smoke_runs[0] / ARTIFACT_NAME, code_bytes=s["code_bytes"])
    assert measured.model_bytes == s["artifact_bytes"] and measured.params == s["params"]
    assert 0 < measured.overhead_bytes < 0.05 * measured.model_bytes
    for g_pred, g_meas in zip(pred.groups, measured.groups, strict=True):
        assert g_pred.params == g_meas.params and g_pred.kinds == g_meas.kinds


# The baseline preset at a shape that exports in a moment, its matrices still past the reference's 65,536-element
# float limit (width 384: attention 384 x 384 and 192 x 384, MLP 768 x 384, embedding 1024 x 384), so that
# every storage kind of its int8 + zlib scheme is priced.
BASELINE_SMALL = {"num_layers": 2, "model_dim": 384, "train_seq_len": 64, "micro_batch_tokens": 512,
                  "train_batch_tokens": 512, "val_batch_tokens": 512}


def _baseline_like_weights(cfg, std: float | None) -> dict[str, torch.Tensor]:
    """The GPT's own state dict, its int8 matrices redrawn as Gaussian rows of ``std`` (None: as initialised).
    A full run's rows pass the reference's scale floor (largest |w| over 1); init rows do not, and the
    zero-initialised output projections would compress to nothing."""
    from jepagolf.export.quant import reference_storage_kind

    torch.manual_seed(0)
    sd = GPT(cfg.model, cfg.train.train_seq_len).state_dict()
    if std is None:
        return sd
    g = torch.Generator().manual_seed(1)
    return {k: torch.randn(v.shape, generator=g) * std if reference_storage_kind(k, tuple(v.shape)) == "int8" else v
            for k, v in sd.items()}


def test_size_prediction_prices_the_baseline_in_its_own_int8_zlib_scheme(tmp_path):
    from jepagolf.export.artifact import ARTIFACT_NAMES, artifact_name, write_artifact

    cfg = build_config("baseline", BASELINE_SMALL, environ={})
    assert cfg.export.export_scheme == "int8-zlib" and artifact_name(cfg) == ARTIFACT_NAMES["int8-zlib"]
    pred = predict_size(cfg, code_bytes=0)
    path = tmp_path / artifact_name(cfg)
    written = write_artifact(_baseline_like_weights(cfg, std=0.5), path, cfg)
    # Within 2% of an artifact of the same shape written by the exporter (int6 + LZMA prices are ~40% low).
    assert pred.model_bytes == pytest.approx(written, rel=0.02)
    measured = artifact_size_report(path)
    assert measured.model_bytes == written and "zlib-compressed alone" in measured.notes[0]
    for g_pred, g_meas in zip(pred.groups, measured.groups, strict=True):
        assert g_pred.params == g_meas.params and g_pred.kinds == g_meas.kinds, g_pred.group  # routed alike
    assert set(pred.groups[GROUPS.index("attention")].kinds) == {"int8"}
    assert "int8-zlib" in pred.notes[0]
    # Rows short of the floor (weights as initialised, as after a short run) use fewer codes: an upper bound.
    small = write_artifact(_baseline_like_weights(cfg, std=None), tmp_path / "init.zlib", cfg)
    assert small < 0.5 * pred.model_bytes  # about a third


def test_size_prediction_of_the_full_baseline_matches_its_published_artifact():
    # The reference baseline's published int8 + zlib artifact (600 s on 8xH100, 13,780 steps): 15,815,847 bytes
    # for 17,059,912 parameters. Its container is torch.save's, not jepagolf's: the framing differs by < 0.1%.
    pred = predict_size(build_config("baseline", {}, environ={}), code_bytes=0)
    assert pred.params == 17_059_912
    assert pred.model_bytes == pytest.approx(15_815_847, rel=0.01)


def test_records_name_an_artifact_for_the_scheme_its_file_holds(tmp_path):
    from jepagolf.export.container import save_artifact
    from jepagolf.export.quant import QuantizedModel
    from jepagolf.export.records import RunRecord

    # A run folder from before the names told the schemes apart: int8 + zlib under the int6 + LZMA name.
    old = tmp_path / ARTIFACT_NAME
    save_artifact(old, QuantizedModel(floats={"w": torch.ones(3)}), compression="zlib")
    run = RunRecord(tmp_path, {"train": {"seed": 7}}, {"artifact": ARTIFACT_NAME}, old, tmp_path / "train.log")
    assert run.shipped_artifact == "final_model_seed7.int8.zlib"
    save_artifact(old, QuantizedModel(floats={"w": torch.ones(3)}))
    assert run.shipped_artifact == "final_model_seed7.int6.lzma"
    # Every artifact name marks a run folder for the output rules (outputs.py spells them out).
    from jepagolf.export.artifact import ARTIFACT_NAMES
    from jepagolf.outputs import RUN_FOLDER_FILES

    assert set(ARTIFACT_NAMES.values()) <= set(RUN_FOLDER_FILES)


def test_size_command(capsys, smoke_runs):
    assert main(["size", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "predicted bytes" in out and "headroom" in out
    assert main(["size", "--preset", "smoke", "--cap-bytes", "1000"]) == 1
    assert "OVER THE CAP BY" in capsys.readouterr().out
    assert main(["size", "--artifact", str(smoke_runs[0] / ARTIFACT_NAME), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["model_bytes"] == summary(smoke_runs[0])["artifact_bytes"]
    assert {"lzma", "xz", "zlib"} <= set(rep["codecs"]) and rep["codecs"]["lzma"] < rep["codecs"]["zlib"]


def test_stored_config_hash_is_the_trainer_hash_for_every_preset():
    from jepagolf.config import PRESETS, config_dict_hash

    for preset in PRESETS:
        cfg = build_config(preset, {}, environ={})
        assert config_dict_hash(json.loads(cfg.to_json())) == cfg.hash()


def test_export_names_what_is_missing(tmp_path, smoke_runs):
    with pytest.raises(ExportError, match="does not exist"):
        export_records([tmp_path / "nope"], tmp_path / "out")
    run = tmp_path / "unfinished"
    shutil.copytree(smoke_runs[0], run)
    (run / "summary.json").unlink()
    with pytest.raises(ExportError, match=r"lacks summary\.json \(did the run finish\?\)"):
        export_records([run], tmp_path / "out")
