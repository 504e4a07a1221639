"""Hostile and careless use of the file system (issue 14, parts 1, 3, 6, 7).

No command deletes or overwrites what it did not create; a dying encoding worker stops `data build`
at once with the file's name; export publishes only scores it has checked against the artifact, from
files inside the run folder; a run folder is locked while a run writes to it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_corpus import synthetic_docs

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.data import build as build_mod
from jepagolf.data import documents as documents_mod
from jepagolf.data.check import check_dataset
from jepagolf.data.documents import DocumentReader, discover_inputs, split_document
from jepagolf.data.shards import load_shard, write_shard
from jepagolf.export.artifact import ARTIFACT_NAME
from jepagolf.outputs import LOCK_FILE, MARKER, OutputError, RunLock, check_output_dir, claim_dir, is_locked
from jepagolf.research.report import PNG_NAMES, ReportError, is_report_png, refuse_foreign_pngs
from jepagolf.train.entry import bundle_main
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime


def fails(args: list[str], message: str, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def user_folder(path: Path) -> Path:
    """A folder of someone's own files, which no command may touch."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("precious")
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("1,2,3")
    return path


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def fake_run(path: Path) -> Path:
    """A folder that looks like a finished training run (enough for the refusals, which come first)."""
    path.mkdir(parents=True)
    for name in ("config.json", "summary.json"):
        (path / name).write_text("{}")
    (path / "train.log").write_text("step:1\n")
    (path / ARTIFACT_NAME).write_bytes(b"weights")
    return path


# ----------------------------------------------------------------------------- part 1: outputs


def test_data_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys, monkeypatch):
    work = user_folder(tmp_path / "work")
    before = snapshot(work)
    fails(["data", "demo", "--out", str(work)], "not an earlier output of jepagolf data demo", capsys)
    # --overwrite does not extend to the working directory (the reported `--out "$(pwd)"`).
    monkeypatch.chdir(work)
    fails(["data", "demo", "--out", str(work), "--overwrite"], "is the working directory", capsys)
    fails(["data", "demo", "--out", ".", "--overwrite"], "is the working directory", capsys)
    fails(["data", "demo", "--out", str(tmp_path), "--overwrite"], "a folder above the working directory", capsys)
    assert snapshot(work) == before


def test_data_demo_replaces_only_its_own_corpus(tmp_path):
    """Ownership is a verified marker (outputs.owns), never a manifest: a hand-written demo manifest does
    not make a folder the command's, nor another command's marker, nor a marker copied from elsewhere."""
    own = tmp_path / "demo"
    own.mkdir()
    (own / "tokenizer.model").write_text("x")
    claim_dir(own, "jepagolf data demo")
    assert check_output_dir(own, command="jepagolf data demo", overwrite=False) is True
    built = tmp_path / "built"
    built.mkdir()
    (built / "manifest.json").write_text(json.dumps({"format": "jepagolf-corpus", "builder": None, "files": {}}))
    with pytest.raises(OutputError, match="pass --overwrite"):  # a manifest alone proves nothing
        check_output_dir(built, command="jepagolf data demo", overwrite=False)
    claim_dir(built, "jepagolf data build")
    with pytest.raises(OutputError, match="pass --overwrite"):  # a `data build` corpus is not demo's own
        check_output_dir(built, command="jepagolf data demo", overwrite=False)
    copy = tmp_path / "copy"
    shutil.copytree(own, copy)  # the marker came along, but it names another folder
    with pytest.raises(OutputError, match="pass --overwrite"):
        check_output_dir(copy, command="jepagolf data demo", overwrite=False)
    (own / "mine.txt").write_text("added by the user")  # the command's folder, with a file it did not write
    with pytest.raises(OutputError, match="pass --overwrite"):
        check_output_dir(own, command="jepagolf data demo", overwrite=False)


def test_output_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_dir(tmp_path / "new", command="c", overwrite=False) is False
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", command="c", overwrite=False) is False
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(tmp_path / "file", command="c", overwrite=True)
    inp = user_folder(tmp_path / "in")
    for out in (inp, tmp_path / "in" / "sub", tmp_path / "in" / "sub" / ".."):
        with pytest.raises(OutputError, match="overlaps the input"):
            check_output_dir(out, command="c", overwrite=True, inputs=[inp])
    outer = user_folder(tmp_path / "outer")
    with pytest.raises(OutputError, match="overlaps the input"):  # the input lies inside --out
        check_output_dir(outer, command="c", overwrite=True, inputs=[outer / "sub" / "data.csv"])
    run = fake_run(tmp_path / "run")
    claim_dir(run, "c")  # even the command's own marker does not make a run folder replaceable
    with pytest.raises(OutputError, match="is a training run folder"):
        check_output_dir(run, command="c", overwrite=True)
    holder = tmp_path / "runs"
    fake_run(holder / "a" / "seed1")
    with pytest.raises(OutputError, match="holds a training run folder"):
        check_output_dir(holder, command="c", overwrite=True)
    assert check_output_dir(outer, command="c", overwrite=True) is True
    # A folder holding only a stale run lock (a run that stopped at once) counts as empty.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / LOCK_FILE).write_text("")
    assert check_output_dir(tmp_path / "locked", command="c", overwrite=False) is False


def test_data_build_never_replaces_its_input(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, doc in enumerate(synthetic_docs(30, seed=1)):
        (corpus / f"{i}.txt").write_text(doc)
    before = snapshot(corpus)
    fails(["data", "build", "--input", str(corpus), "--out", str(corpus), "--overwrite", "--quiet"],
          "overlaps the input", capsys)
    fails(["data", "build", "--input", str(corpus / "0.txt"), "--out", str(corpus), "--overwrite", "--quiet"],
          "overlaps the input", capsys)
    run = fake_run(tmp_path / "run")
    fails(["data", "build", "--input", str(corpus), "--out", str(run), "--overwrite", "--quiet"],
          "is a training run folder", capsys)
    other = user_folder(tmp_path / "other")
    fails(["data", "build", "--input", str(corpus), "--out", str(other), "--quiet"], "pass --overwrite", capsys)
    assert snapshot(corpus) == before and (run / "train.log").is_file() and (other / "notes.txt").is_file()


def test_export_never_replaces_a_run_or_its_input(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    before = snapshot(run)
    fails(["export", str(run), "--out", str(run), "--overwrite"], "overlaps the input", capsys)
    fails(["export", str(run), "--out", str(tmp_path), "--overwrite"], "overlaps the input", capsys)
    other = fake_run(tmp_path / "other_run")
    fails(["export", str(run), "--out", str(other), "--overwrite"], "is a training run folder", capsys)
    mine = user_folder(tmp_path / "mine")
    fails(["export", str(run), "--out", str(mine)], "pass --overwrite", capsys)
    assert snapshot(run) == before and (other / "train.log").is_file() and (mine / "notes.txt").is_file()


def test_ablate_writes_only_into_its_own_folder(tmp_path, capsys):
    mine = user_folder(tmp_path / "mine")
    fails(["ablate", "--preset", "smoke", "--arm", "a:", "--seeds", "1", "--out", str(mine)],
          "is not an ablation folder", capsys)
    assert (mine / "notes.txt").is_file()


def test_ablate_does_not_take_a_hand_written_ablation_json_for_its_own(tmp_path, capsys):
    """Ownership is the marker, not an ablation.json anyone can write: a user's runs.csv stays as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ablation.json").write_text("{}\n")
    (mine / "runs.csv").write_text("my,own,table\n")
    fails(["ablate", "--preset", "smoke", "--arm", "a:", "--seeds", "1", "--out", str(mine)],
          "is not an ablation folder created by jepagolf ablate", capsys)
    assert (mine / "runs.csv").read_text() == "my,own,table\n" and sorted(p.name for p in mine.iterdir()) == [
        "ablation.json", "runs.csv"]


def test_ablate_does_not_delete_a_run_that_is_training(tmp_path):
    from jepagolf.research.ablate import AblationError, parse_arm, plan_ablation, run_ablation

    plan = plan_ablation("smoke", [parse_arm("a:"), parse_arm("b:jepa=false")], [1], "steps", {})
    run_dir = tmp_path / "abl" / "runs" / "a-seed1"
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("running\n")
    with RunLock(run_dir), pytest.raises(AblationError, match="another running process"):
        run_ablation(plan, tmp_path / "abl", Runtime(device=torch.device("cpu")),
                     train_fn=lambda *a: pytest.fail("must not train"), log=lambda _m: None)
    assert (run_dir / "train.log").is_file()


# ----------------------------------------------------------------------------- issue 22: one ownership rule


def test_data_research_out_follows_the_output_rule(tmp_path, capsys, monkeypatch):
    """Refused before anything is downloaded: a foreign non-empty --out, a file, the package cache."""
    from jepagolf.data import research

    monkeypatch.setattr(research, "ensure_package", lambda *a: pytest.fail("must not download"))
    mine = user_folder(tmp_path / "mine")
    pkgs = tmp_path / "pkgs"
    fails(["data", "research", "--out", str(mine), "--packages", str(pkgs)], "pass --overwrite", capsys)
    assert snapshot(mine) == {"notes.txt": b"precious", "sub/data.csv": b"1,2,3"}
    file = tmp_path / "file.txt"
    file.write_text("precious")
    fails(["data", "research", "--out", str(file), "--packages", str(pkgs)], "is not a folder", capsys)
    assert file.read_text() == "precious" and not list(tmp_path.glob(".file.txt*"))
    cache = user_folder(tmp_path / "cache")  # --out holding the package cache, or inside it: never
    for out, packages in ((cache, cache / "sub"), (cache / "sub" / "corpus", cache / "sub"), (cache / "new", cache)):
        fails(["data", "research", "--out", str(out), "--packages", str(packages), "--overwrite"],
              "overlaps the input", capsys)
    assert snapshot(cache) == {"notes.txt": b"precious", "sub/data.csv": b"1,2,3"}


def test_a_read_only_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, demo_data):
    """Every command that writes an --out checks it can write there before its long work (issue 22: a
    read-only --out used to fail only after the whole corpus was built). Tests run as root, whom the
    permission bits do not stop, so the kernel's answer for the "read-only" folder is simulated."""
    from jepagolf import outputs
    from jepagolf.data import research

    ro = tmp_path / "ro"
    ro.mkdir()
    real = outputs._writable
    monkeypatch.setattr(outputs, "_writable", lambda p: not Path(p).absolute().is_relative_to(ro) and real(p))
    monkeypatch.setattr(research, "ensure_package", lambda *a: pytest.fail("must not download"))
    monkeypatch.setattr(build_mod, "DocumentReader", lambda *a, **k: pytest.fail("must not read the corpus"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "0.txt").write_text(synthetic_docs(1, seed=1)[0])
    run = fake_run(tmp_path / "run")
    for where in (ro / "new" / "deeper", ro):  # a folder to be made inside it, and the folder itself
        for args in (["data", "research", "--packages", str(tmp_path / "pkgs")],
                     ["data", "demo"],
                     ["data", "build", "--input", str(corpus), "--quiet"],
                     ["export", str(run)],
                     ["ablate", "--preset", "smoke", "--arm", "a:", "--seeds", "1"],
                     ["ladder", "--smoke", "--plan-only"],
                     ["train", "--preset", "smoke", "--data", str(demo_data)]):
            fails([*args, "--out", str(where)], "cannot be written", capsys)
        for args in (["bench", "--preset", "smoke"], ["bench", "--ladder-shapes", "--shapes", "r1"]):
            fails([*args, "--out", str(where / "bench.json")], "cannot be written", capsys)
    assert list(ro.iterdir()) == [] and not list(tmp_path.glob("pkgs"))


def test_ladder_out_must_be_new_or_its_own(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "plan.md").write_text("my plan")
    fails(["ladder", "--smoke", "--plan-only", "--out", str(mine)], "was not created by jepagolf ladder", capsys)
    assert (mine / "plan.md").read_text() == "my plan" and sorted(p.name for p in mine.iterdir()) == ["plan.md"]
    from jepagolf.research.ladder import LADDER_COMMAND, check_ladder_out, claim_ladder_out

    ours = tmp_path / "ours"
    claim_ladder_out(ours)
    (ours / "plan.md").write_text("the ladder's plan")
    check_ladder_out(ours)  # its own folder: resumed, with no --overwrite needed
    copy = tmp_path / "copy"
    shutil.copytree(ours, copy)
    fails(["ladder", "--smoke", "--plan-only", "--out", str(copy)], "was not created by jepagolf ladder", capsys)
    assert json.loads((ours / MARKER).read_text())["command"] == LADDER_COMMAND


def test_data_demo_does_not_take_a_hand_written_manifest_for_its_own(tmp_path, capsys):
    fake = user_folder(tmp_path / "fake")
    (fake / "manifest.json").write_text(json.dumps({"format": "jepagolf-corpus", "builder": None, "files": {}}))
    before = snapshot(fake)
    fails(["data", "demo", "--out", str(fake)], "not an earlier output of jepagolf data demo", capsys)
    assert snapshot(fake) == before


def test_the_demo_cache_keeps_a_user_file(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "demo-v2_sp1024").mkdir(parents=True)
    (cache / "demo-v2_sp1024" / "mine.txt").write_text("precious")
    monkeypatch.setenv("JEPAGOLF_CACHE", str(cache))
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # after the "using the offline demo corpus" note
    assert err[-1].startswith("error: cache folder") and "holds files that are not a demo corpus" in err[-1]
    assert "Traceback" not in "".join(err)
    fails(["data", "demo"], "pass --overwrite", capsys)
    assert (cache / "demo-v2_sp1024" / "mine.txt").read_text() == "precious"


def test_an_ablation_rerun_keeps_a_user_file_in_an_unfinished_run(tmp_path):
    """A rerun deletes an unfinished run folder only when the ablation marked it and it holds only what a
    run writes; the check covers every run before the first one trains."""
    from jepagolf.research.ablate import AblationError, parse_arm, plan_ablation, run_ablation
    from jepagolf.research.ablate_run import ABLATE_COMMAND

    class Stopped(Exception):
        pass

    plan = plan_ablation("smoke", [parse_arm("a:"), parse_arm("b:jepa=false")], [1], "steps", {})
    trained: list[str] = []

    def fake_train(cfg, _rt, run_dir):
        trained.append(run_dir.name)
        (run_dir / "train.log").write_text("step:1\n")
        raise Stopped  # stopped before its summary: an unfinished run

    rt = Runtime(device=torch.device("cpu"))
    with pytest.raises(Stopped):
        run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    first, second = tmp_path / "abl" / "runs" / "a-seed1", tmp_path / "abl" / "runs" / "b-seed1"
    assert trained == ["a-seed1"] and json.loads((first / MARKER).read_text())["command"] == ABLATE_COMMAND
    second.mkdir()
    claim_dir(second, ABLATE_COMMAND, complete=False)
    (second / "train.log").write_text("step:1\n")
    (second / "notes.txt").write_text("precious")
    trained.clear()
    with pytest.raises(AblationError, match="holds files a training run does not write"):
        run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    assert (second / "notes.txt").read_text() == "precious" and trained == [] and (first / "train.log").is_file()
    (second / "notes.txt").unlink()
    (second / MARKER).unlink()  # a run folder the ablation did not mark (made by hand, or by an older jepagolf)
    with pytest.raises(AblationError, match="carries no marker"):
        run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    assert (second / "train.log").is_file() and trained == []


def test_an_out_inside_an_input_is_refused_before_it_exists(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    fails(["export", str(run), "--out", str(run / "rec")], "overlaps the input", capsys)
    assert not (run / "rec").exists()
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.txt").write_text("a document long enough to count. " * 20)
    fails(["data", "build", "--input", str(inp), "--out", str(inp / "o"), "--quiet"], "overlaps the input", capsys)
    assert sorted(p.name for p in inp.iterdir()) == ["a.txt"]


def test_report_replaces_only_its_own_pngs(tmp_path):
    out = tmp_path / "plots"
    out.mkdir()
    ours = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x1btEXtSoftware\0jepagolf report" + b"rest"
    (out / "val_bpb.png").write_bytes(ours)
    assert is_report_png(out / "val_bpb.png")
    refuse_foreign_pngs(out)  # its own earlier PNG: replaced
    (out / PNG_NAMES[1]).write_bytes(b"\x89PNG\r\n\x1a\nsomeone else's figure")
    with pytest.raises(ReportError, match="not written by jepagolf report"):
        refuse_foreign_pngs(out)


def test_bench_replaces_only_its_own_json(tmp_path, capsys):
    mine = tmp_path / "results.json"
    mine.write_text('{"mine": 1}')
    fails(["bench", "--preset", "smoke", "--out", str(mine)], "was not written by jepagolf bench", capsys)
    fails(["bench", "--preset", "smoke", "--out", str(tmp_path)], "is a folder", capsys)
    assert mine.read_text() == '{"mine": 1}'


def test_fineweb_does_not_delete_a_file_it_did_not_download(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "manifest.json").write_text('{"format": "jepagolf-corpus"}')  # someone's, not the Hub's
    fails(["data", "fineweb", "--dir", str(root), "--quiet", "--endpoint", "http://127.0.0.1:9"],
          "was not downloaded by jepagolf data fineweb", capsys)
    assert (root / "manifest.json").read_text() == '{"format": "jepagolf-corpus"}'


# ----------------------------------------------------------------------------- part 3: workers


def _poisoned_encode(self, texts, is_val):
    if any("POISON" in t for t in texts):
        os._exit(3)  # what an abort (bad_alloc) or the OOM killer looks like from the parent
    return _real_encode(self, texts, is_val)


_real_encode = build_mod._Encoder.encode


def test_a_dying_worker_stops_the_build_naming_the_file(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = synthetic_docs(40, seed=2)
    for i, doc in enumerate(docs):
        (corpus / f"{i:02d}.txt").write_text(doc)
    (corpus / "30.txt").write_text(docs[30] + " POISON")
    # The workers are forked: they run this patched encoder.
    monkeypatch.setattr(build_mod._Encoder, "encode", _poisoned_encode)
    monkeypatch.setattr(build_mod, "BATCH_DOCS", 4)
    t0 = time.monotonic()
    err = fails(["data", "build", "--input", str(corpus), "--out", str(tmp_path / "ds"), "--workers", "2",
                 "--vocab-size", "300", "--val-docs", "2", "--quiet"], "encoding worker process died", capsys)
    assert time.monotonic() - t0 < 60
    assert str(corpus / "30.txt") in err
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab \n", max_size=200), st.integers(1, 30))
def test_split_document_cuts_at_boundaries_and_loses_nothing(text, limit):
    pieces = split_document(text, limit)
    assert "".join(pieces) == text
    assert all(len(p) <= limit for p in pieces)
    for p in pieces[:-1]:  # a cut inside a word only when the piece has no boundary at all
        assert p[-1] in " \n" or (" " not in p and "\n" not in p)


def test_oversized_documents_are_split(tmp_path, monkeypatch):
    monkeypatch.setattr(documents_mod, "MAX_DOC_CHARS", 50)
    line = "word " * 30 + "\n"
    (tmp_path / "big.txt").write_text(line * 4)
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": line * 2}) + "\n")
    reader = DocumentReader(discover_inputs([tmp_path / "big.txt", tmp_path / "big.jsonl"]))
    docs = list(reader)
    assert all(len(d) <= 50 for d in docs)
    # Nothing but whitespace-only pieces (skipped like any blank document) is lost.
    assert "".join(docs).split() == (line * 6).split() and reader.split_documents == 2


# ----------------------------------------------------------------------------- part 6: export checks


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, demo_data) -> Path:
    """A finished smoke run on a slice of the demo corpus (a short validation split: export evaluates it)."""
    data = tmp_path_factory.mktemp("tiny") / "ds"
    data.mkdir()
    for split, n in (("train", 20_000), ("val", 2049)):
        tokens = np.asarray(load_shard(demo_data.data_dir / f"demo_{split}_000000.bin")[:n])
        write_shard(data / f"t_{split}_000000.bin", tokens)
    shutil.copy(demo_data.tokenizer, data / "tokenizer.model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("run") / "seed1"
        cfg = {"seed": 1, "iterations": 2, "val_loss_every": 0, "data_path": str(data)}
        train(build_config("smoke", cfg, environ={}), Runtime(device=torch.device("cpu")), out)
    finally:
        torch.set_num_threads(threads)
    return out


def edited_copy(run: Path, dest: Path, **changes) -> Path:
    shutil.copytree(run, dest)
    s = json.loads((dest / "summary.json").read_text())
    s.update(changes)
    (dest / "summary.json").write_text(json.dumps(s))  # json.dumps writes NaN as the bare word NaN
    return dest


def test_export_publishes_a_checked_score(finished_run, tmp_path, capsys):
    out = tmp_path / "records"
    assert main(["export", str(finished_run), "--out", str(out), "--device", "cpu"]) == 0
    sub = json.loads((out / "submission.json").read_text())
    summary = json.loads((finished_run / "summary.json").read_text())
    assert sub["score_verified"] is True
    assert sub["val_bpb"] == summary.get("score_val_bpb", summary["roundtrip_val_bpb"])
    # Its own earlier output: replaced with --overwrite, and kept when the new export fails.
    assert main(["export", str(finished_run), "--out", str(out), "--device", "cpu"]) == 2
    capsys.readouterr()
    bad = edited_copy(finished_run, tmp_path / "bad", roundtrip_val_bpb=0.5)
    assert main(["export", str(bad), "--out", str(out), "--overwrite", "--device", "cpu"]) == 2
    assert json.loads((out / "submission.json").read_text()) == sub
    capsys.readouterr()
    assert main(["export", str(finished_run), "--out", str(out), "--overwrite", "--no-verify-score"]) == 0
    assert "without re-evaluating the artifact" in capsys.readouterr().err
    assert json.loads((out / "submission.json").read_text())["score_verified"] is False


@pytest.mark.parametrize(("changes", "message"), [
    ({"roundtrip_val_bpb": 0.5}, "but evaluating the artifact gives"),
    ({"val_bpb": 0.5}, "differ from the run's metrics.jsonl|but evaluating the artifact gives"),  # v1 | v2
    ({"PREQUANT": 0.5}, "differ from the run's metrics.jsonl"),
    ({"roundtrip_val_bpb": math.nan}, "not a finite number"),
    ({"val_loss": math.inf}, "not a finite number"),
    ({"roundtrip_val_bpb": "2.0"}, "not a finite number"),
])
def test_export_refuses_an_edited_summary(finished_run, tmp_path, capsys, changes, message):
    # The pre-quant score is val_bpb in a version-1 summary, prequant_val_bpb in a version-2 one.
    v2 = "summary_version" in json.loads((finished_run / "summary.json").read_text())
    changes = {("prequant_val_bpb" if v2 else "val_bpb") if k == "PREQUANT" else k: v for k, v in changes.items()}
    bad = edited_copy(finished_run, tmp_path / "bad", **changes)
    assert main(["export", str(bad), "--out", str(tmp_path / "rec"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert any(m in err for m in message.split("|")) and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "rec").exists()


def test_export_takes_files_only_from_the_run_folder(finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(finished_run / ARTIFACT_NAME, other / "x.lzma")
    bad = edited_copy(finished_run, tmp_path / "runs" / "bad", artifact="../../other/x.lzma")
    fails(["export", str(bad), "--out", str(tmp_path / "rec"), "--no-verify-score"], "points outside the run folder",
          capsys)
    link = edited_copy(finished_run, tmp_path / "runs" / "link")
    (link / ARTIFACT_NAME).unlink()
    (link / ARTIFACT_NAME).symlink_to(other / "x.lzma")
    fails(["export", str(link), "--out", str(tmp_path / "rec"), "--no-verify-score"], "points outside the run folder",
          capsys)


# ----------------------------------------------------------------------------- part 7: run folder lock


def test_a_second_writer_of_a_run_folder_is_refused(demo_data, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert is_locked(out)
        fails(["train", "--preset", "smoke", "--data", str(demo_data.data_dir), "--out", str(out), "--set",
               "iterations=1"], "in use by another", capsys)
    assert not is_locked(out)  # released with the holder (the OS drops it when a process dies)
    assert not (out / "train.log").exists()


def test_records_script_refuses_a_folder_that_holds_results(finished_run, capsys):
    before = snapshot(finished_run)
    config = json.loads((finished_run / "config.json").read_text())
    assert bundle_main(config, environ={"OUT_DIR": str(finished_run)}) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "Traceback" not in err
    assert snapshot(finished_run) == before


# ----------------------------------------------------------------------------- data check


def test_check_reports_an_empty_train_split(demo_data, tmp_path, capsys):
    d = tmp_path / "ds"
    d.mkdir()
    write_shard(d / "x_train_000000.bin", np.zeros(0, dtype=np.uint16))
    write_shard(d / "x_val_000000.bin", np.asarray(load_shard(demo_data.data_dir / "demo_val_000000.bin")[:500]))
    shutil.copy(demo_data.tokenizer, d / "tokenizer.model")
    report = check_dataset(d)
    assert not report.ok and any("train split holds 0 token(s)" in p for p in report.problems), report.problems
    assert main(["data", "check", str(d), "--quiet"]) == 1


@pytest.mark.parametrize("metrics", [None, b"\x00\xff garbage\n", b'{"kind": "final_pre_quant", "val_bpb": [}\n'])
def test_export_refuses_when_the_metrics_it_checks_are_unreadable(finished_run, tmp_path, capsys, metrics):
    """Deleted or garbled metrics.jsonl plus an edited pre-quant figure: refused, not published unchecked."""
    v2 = "summary_version" in json.loads((finished_run / "summary.json").read_text())
    bad = edited_copy(finished_run, tmp_path / "bad", **{"prequant_val_bpb" if v2 else "val_bpb": 0.5})
    if metrics is None:
        (bad / "metrics.jsonl").unlink()
    else:
        (bad / "metrics.jsonl").write_bytes(metrics)
    fails(["export", str(bad), "--out", str(tmp_path / "rec"), "--device", "cpu"],
          "holds no readable final_pre_quant record", capsys)
    assert not (tmp_path / "rec").exists()


def test_export_score_tolerance_is_1e_4(finished_run, tmp_path, capsys):
    """A round-trip score moved by 5e-4 is refused: the tolerance on the same device is 1e-4 (a 10x or 100x
    looser one would let it through)."""
    s = json.loads((finished_run / "summary.json").read_text())
    bad = edited_copy(finished_run, tmp_path / "bad", roundtrip_val_bpb=s["roundtrip_val_bpb"] + 5e-4)
    fails(["export", str(bad), "--out", str(tmp_path / "rec"), "--device", "cpu"],
          "but evaluating the artifact gives", capsys)


def test_export_refuses_another_tokenizer(finished_run, tmp_path, capsys):
    from helpers import other_tokenizer

    config = json.loads((finished_run / "config.json").read_text())
    data = Path(config["data"]["data_path"])
    tok = other_tokenizer(data / "tokenizer.model", tmp_path / "other.model")
    fails(["export", str(finished_run), "--out", str(tmp_path / "rec"), "--device", "cpu", "--tokenizer", str(tok)],
          "is not the tokenizer the run was trained with", capsys)
