# Rerun one finished run from its config.json through the library, for a commit that predates `train --config`
# (e.g. the frozen 47f5a1f): cd <its worktree> && PYTHONPATH=. python rerun_library.py RUN/config.json NEW_DIR
import sys
from pathlib import Path

from jepagolf.config import config_from_dict, read_config_json
from jepagolf.train.run import train
from jepagolf.train.runtime import setup_runtime, teardown_runtime

cfg = config_from_dict(read_config_json(sys.argv[1]))
rt = setup_runtime(cfg.train.device)
try:
    s = train(cfg, rt, Path(sys.argv[2]))
finally:
    teardown_runtime(rt)
print("val_loss", repr(s["val_loss"]), "prequant", repr(s["prequant_val_loss"]))
