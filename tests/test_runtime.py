"""attnlab.runtime: the AdamW both trainers use."""

import torch

from attnlab.runtime import make_adamw


def test_adamw_takes_the_fused_kernel_and_matches_the_reference_update():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = make_adamw([{"params": params, "weight_decay": 0.05}], 1e-2, betas=(0.9, 0.95))
    ref_opt = torch.optim.AdamW([{"params": ref, "weight_decay": 0.05}], lr=1e-2, betas=(0.9, 0.95),
                               foreach=False)
    for _ in range(3):
        for p, r in zip(params, ref):
            g = torch.randn_like(p)
            p.grad, r.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r)
    assert opt.defaults["fused"]  # torch >= 2.4 has a fused CPU kernel


def test_adamw_falls_back_to_foreach_without_a_fused_kernel(monkeypatch):
    real = torch.optim.AdamW

    def no_fused(*args, fused=None, **kw):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(*args, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    opt = make_adamw([{"params": [torch.nn.Parameter(torch.zeros(2))]}], 1e-3, betas=(0.9, 0.999))
    assert isinstance(opt, real) and opt.defaults["foreach"] and not opt.defaults["fused"]
