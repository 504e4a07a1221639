"""One run, from its configuration to its summary (``jepagolf train`` and the generated ``train_gpt.py``
call :func:`train`): the set-up (:mod:`.setup`: dataset checks, run folder and lock, validation data),
the training loop (:mod:`.loop`: the ``Trainer``, with a resume from the run's newest usable checkpoint),
and the finish (:mod:`.finish`: final scoring, the artifact, summary.json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jepagolf.config import Config
from jepagolf.export.artifact import artifact_name
from jepagolf.jsonfile import read_json_object
from jepagolf.train.checkpoint import load_latest
from jepagolf.train.finish import finish_run
from jepagolf.train.loop import Trainer
from jepagolf.train.resume import check_restorable, max_checkpoint_bytes
from jepagolf.train.runtime import Runtime
from jepagolf.train.setup import prepare_run


def train(
    cfg: Config, rt: Runtime, out_dir: Path | None = None, resume: bool = False,
    dump_rank_state: Path | None = None,
) -> dict[str, Any]:
    """Train, evaluate and export one run; with ``resume``, continue the run in ``out_dir``.
    ``dump_rank_state``: a folder where every rank writes its final weights and EMAs
    (``Trainer.dump_rank_state``), to check that DDP ranks agree."""
    run = prepare_run(cfg, rt, out_dir, resume=resume)
    try:
        trainer = Trainer(cfg, rt, run.out_dir, run.paths, val=run.val)
    except BaseException:
        run.release()
        raise
    try:
        if resume:
            # The newest checkpoint whose every piece fits this trainer (checked before anything is
            # loaded into it), falling back to older ones; other data than the run's is refused.
            ckpt, warnings = load_latest(run.out_dir,
                                         warn=(lambda m: print(m, file=sys.stderr)) if rt.is_main else None,
                                         check=lambda c: check_restorable(trainer, c, run.out_dir),
                                         max_bytes=max_checkpoint_bytes(trainer))
            if ckpt.meta.get("training_done") is True and (run.out_dir / "summary.json").is_file() and (
                    run.out_dir / artifact_name(cfg)).is_file():
                # Finished: resuming would only evaluate again and rewrite its files; leave the run as it is.
                return {**read_json_object(run.out_dir / "summary.json"), "already_finished": True}
            trainer.restore(ckpt, warnings)
            del ckpt  # the state now lives in the trainer; free the host copy
        with trainer.stop.installed():  # a signal during the finish stops at once (StopRequest.on_unarmed)
            trained = trainer.run()
            summary = finish_run(cfg, rt, run, trainer.logger, trained, trainer.budget,
                                 advice=trainer.checkpoints.divergence_advice)
        if dump_rank_state is not None:
            trainer.dump_rank_state(dump_rank_state)
        return summary
    finally:
        trainer.logger.close()
        run.release()
