"""Paired A/B of the chunked loss of this commit against bf92912's, in one process.

Usage (from the repository root, on an otherwise idle machine):

    python docs/results/ladder-shapes/loss-ab.py [--out FILE]

"before" is bf92912's loss, rebuilt here as its own custom op (`abtest::softcap_ce_exp`): chunks of 2^18 elements
and torch's exp. "after" is the package's: chunks of 2^20 elements (gpt.CE_CHUNK_ELEMENTS) and exp2. The pairing
is ab_harness.py's.
"""

from __future__ import annotations

import torch
from ab_harness import main, rebuilt_loss
from torch import Tensor

OLD_CHUNK_ELEMENTS = 1 << 18


@torch.library.custom_op("abtest::softcap_ce_exp", mutates_args=())
def softcap_ce_exp(z: Tensor, w: Tensor, targets: Tensor, cap: float, grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The loss of bf92912: sigmoid, exp, 2^18-element chunks."""
    N, V = z.size(0), w.size(0)
    rows = max(1, min(N, OLD_CHUNK_ELEMENTS // V))
    w_cap = w * (2.0 / cap)
    s_buf, e_buf = z.new_empty(rows, V), z.new_empty(rows, V)
    total = z.new_zeros((), dtype=torch.float64)
    gz = z.new_empty(z.shape) if grads else z.new_empty(0)
    gw = w.new_zeros(w.shape) if grads else w.new_empty(0)
    at = torch.arange(rows, device=z.device)
    for i in range(0, N, rows):
        n = min(rows, N - i)
        zc, yc, s, e = z[i : i + n], targets[i : i + n], s_buf[:n], e_buf[:n]
        torch.mm(zc, w_cap.T, out=s).sigmoid_()
        torch.mul(s, 2.0 * cap, out=e).sub_(cap).exp_()
        sumexp = e.sum(dim=1)
        picked = s.gather(1, yc[:, None]).squeeze(1)
        total += (sumexp.log() - (2.0 * cap) * picked + cap).sum(dtype=torch.float64)
        if grads:
            e.mul_((4.0 / sumexp)[:, None])
            e[at[:n], yc] -= 4.0
            e.mul_(s.addcmul_(s, s, value=-1.0))
            torch.mm(e, w, out=gz[i : i + n])
            gw.addmm_(e.T, zc)
    return total.to(z.dtype), gz, gw


old_loss = rebuilt_loss(softcap_ce_exp)


if __name__ == "__main__":
    main(__doc__, {"softcap_cross_entropy": old_loss})
