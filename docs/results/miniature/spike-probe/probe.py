# Spike probe (miniature challenge, stage 2's m1 fast seed 1004), run at the frozen commit 47f5a1f's worktree:
#   PYTHONPATH=<worktree> python probe.py CONFIG.json OUT_DIR [--from DIR --ckpt NAME] [--stop-at N]
#       [SECTION.KEY=JSON ...]
# Trains the run of CONFIG with the overrides. --from DIR --ckpt NAME copies that checkpoint of DIR into OUT_DIR
# and resumes from it, with the configuration check switched off: a probe may change keys from the checkpoint on.
# --stop-at ends the process once step N is done. Not part of jepagolf: a probe's own harness.
import argparse
import json
import shutil
from pathlib import Path

import jepagolf.train.resume as resume_mod
from jepagolf.config import config_from_dict, read_config_json
from jepagolf.train import loop
from jepagolf.train.run import train
from jepagolf.train.runtime import setup_runtime, teardown_runtime

ap = argparse.ArgumentParser()
ap.add_argument("config")
ap.add_argument("out", type=Path)
ap.add_argument("--from", dest="src", type=Path)
ap.add_argument("--ckpt")
ap.add_argument("--stop-at", type=int, default=0)
ap.add_argument("over", nargs="*")
a = ap.parse_intermixed_args()
doc = read_config_json(a.config)
for kv in a.over:
    key, value = kv.split("=", 1)
    section, name = key.split(".")
    assert name in doc[section], key
    doc[section][name] = json.loads(value)
cfg = config_from_dict(doc)
if a.src:
    (a.out / "checkpoints").mkdir(parents=True)
    shutil.copy(a.src / "checkpoints" / a.ckpt, a.out / "checkpoints" / a.ckpt)
    resume_mod.check_fits = lambda *args, **kw: None  # check_restorable looks it up in this module at call time
if a.stop_at:
    orig = loop.Trainer.train_step

    def step(self):
        if self.step >= a.stop_at:
            raise KeyboardInterrupt(f"probe stops at step {self.step}")
        return orig(self)
    loop.Trainer.train_step = step
rt = setup_runtime(cfg.train.device)
try:
    s = train(cfg, rt, a.out, resume=bool(a.src))
    print("val_loss", repr(s["val_loss"]))
except KeyboardInterrupt as e:
    print(e)
finally:
    teardown_runtime(rt)
