"""Paired A/B of the CPU hot path of commit 7f57eff against the code before it, in one process.

Usage (from the repository root, on an otherwise idle machine):

    python docs/results/ladder-shapes/hot-path-ab.py [--out FILE]

"before" is the code of 2414a50 for the two things 7f57eff changed, rebuilt here: the chunked soft-capped loss
through tanh in 2^17-element chunks (as its own custom op, `abtest::softcap_ce_tanh`) and the embedding lookups
through `nn.Embedding` (whose compiled backward is inductor's atomic scatter). The pairing is ab_harness.py's.
"after" is the package as it is when the script is run: its loss has changed again since (loss-ab.py), so
hot-path-ab.json holds the figures of 7f57eff, and a rerun today measures both changes together.
"""

from __future__ import annotations

import torch
from ab_harness import main, rebuilt_loss
from torch import Tensor

OLD_CHUNK_ELEMENTS = 1 << 17


@torch.library.custom_op("abtest::softcap_ce_tanh", mutates_args=())
def softcap_ce_tanh(z: Tensor, w: Tensor, targets: Tensor, cap: float, grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The loss of 2414a50: tanh, 2^17-element chunks."""
    N, V = z.size(0), w.size(0)
    rows = max(1, min(N, OLD_CHUNK_ELEMENTS // V))
    w_cap = w * (1.0 / cap)
    t_buf, e_buf = z.new_empty(rows, V), z.new_empty(rows, V)
    total = z.new_zeros((), dtype=torch.float64)
    gz = z.new_empty(z.shape) if grads else z.new_empty(0)
    gw = w.new_zeros(w.shape) if grads else w.new_empty(0)
    at = torch.arange(rows, device=z.device)
    for s in range(0, N, rows):
        n = min(rows, N - s)
        zc, yc, t, e = z[s : s + n], targets[s : s + n], t_buf[:n], e_buf[:n]
        torch.mm(zc, w_cap.T, out=t).tanh_()
        torch.mul(t, cap, out=e).exp_()
        sumexp = e.sum(dim=1)
        picked = t.gather(1, yc[:, None]).squeeze(1)
        total += (sumexp.log() - cap * picked).sum(dtype=torch.float64)
        if grads:
            e.div_(sumexp[:, None])
            e[at[:n], yc] -= 1.0
            e.addcmul_(e, t.square_(), value=-1.0)
            torch.mm(e, w, out=gz[s : s + n])
            gw.addmm_(e.T, zc)
    return total.to(z.dtype), gz, gw


old_loss = rebuilt_loss(softcap_ce_tanh)


# before: 2414a50's loss and nn.Embedding's lookup; after: the package's own
BEFORE = {"softcap_cross_entropy": old_loss, "lookup": lambda table, idx: table(idx)}

if __name__ == "__main__":
    main(__doc__, BEFORE)
