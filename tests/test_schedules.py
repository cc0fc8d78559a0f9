"""The learning-rate schedules follow their curves, in optimizer steps, and save with plain types."""

from __future__ import annotations

import pytest
import torch

from nnlab.engine import schedules
from nnlab.run_files import checkpoint


def lrs(factory, steps=100, per_epoch=10, lr=0.1, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    sched = factory(opt, total_steps=steps, steps_per_epoch=per_epoch, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(1.0) if schedules.per_epoch(sched) else sched.step()
    return out, sched


def test_constant_step_multistep_exponential():
    assert set(lrs(schedules.constant)[0]) == {0.1}
    s, _ = lrs(schedules.step, step_epochs=3, gamma=0.5)
    assert s[29] == pytest.approx(0.1) and s[30] == pytest.approx(0.05)
    m, _ = lrs(schedules.multistep, milestones=[2, 5], gamma=0.1)
    assert m[19] == pytest.approx(0.1) and m[20] == pytest.approx(0.01) and m[50] == pytest.approx(0.001)
    e, _ = lrs(schedules.exponential, gamma=0.5)
    assert e[10] == pytest.approx(0.05) and e[20] == pytest.approx(0.025)  # gamma per epoch, smooth per step


def test_cosine_and_warmup_cosine():
    c, _ = lrs(schedules.cosine, min_lr=0.001)
    assert c[0] == pytest.approx(0.1) and c[50] == pytest.approx(0.0505, rel=1e-2) and c[-1] < 0.002
    w, _ = lrs(schedules.warmup_cosine, warmup_epochs=1, min_lr=0.0)
    assert w[0] == pytest.approx(0.01) and w[9] == pytest.approx(0.1) and w[-1] < 0.001
    assert all(a <= b for a, b in zip(w[:10], w[1:10]))


def test_onecycle_and_cyclic():
    o, _ = lrs(schedules.onecycle, max_lr_factor=10, pct_start=0.3)
    assert max(o) == pytest.approx(1.0, rel=1e-3) and o.index(max(o)) in (29, 30) and o[-1] < 0.01
    c, _ = lrs(schedules.cyclic, base_lr_factor=0.1, max_lr_factor=1.0, half_cycle_epochs=1)
    assert c[0] == pytest.approx(0.01) and c[10] == pytest.approx(0.1) and c[20] == pytest.approx(0.01)


def test_plateau_steps_per_epoch_on_the_validation_loss():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = schedules.plateau(opt, total_steps=10, steps_per_epoch=1, factor=0.5, patience=1)
    assert schedules.per_epoch(sched)
    for loss in (1.0, 1.0, 1.0):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "name", ["constant", "step", "multistep", "exponential", "cosine", "warmup_cosine", "onecycle", "cyclic", "plateau"]
)
def test_every_schedule_round_trips_through_a_weights_only_checkpoint(tmp_path, name):
    _, sched = lrs(getattr(schedules, name), steps=5)
    path = checkpoint.save(tmp_path / "s.pt", {"scheduler": sched.state_dict()})
    assert checkpoint.load(path)["scheduler"].keys() == sched.state_dict().keys()


def test_yogi_step_is_the_papers_update_rule():
    """Two steps by hand (Zaheer et al. 2018, Algorithm 2): m, v and the parameter, against Yogi."""
    from nnlab.engine.optimizers import Yogi

    x0 = torch.tensor([1.0, -2.0, 0.5])
    grads = [torch.tensor([0.3, -0.1, 2.0]), torch.tensor([-0.2, 0.05, 0.01])]
    lr, b1, b2, eps, v0, wd = 0.01, 0.9, 0.999, 1e-3, 1e-6, 0.1
    p = torch.nn.Parameter(x0.clone())
    opt = Yogi([p], lr=lr, betas=(b1, b2), eps=eps, initial_accumulator=v0, weight_decay=wd)
    x, m, v = x0.double(), torch.zeros(3, dtype=torch.float64), torch.full((3,), v0, dtype=torch.float64)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        g = g.double() + wd * x  # L2 joins the gradient
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * torch.sign(v - g * g) * g * g
        x = x - lr * m / (v.sqrt() + eps)
        assert torch.allclose(p.detach().double(), x, rtol=1e-6, atol=1e-8)
        assert torch.allclose(opt.state[p]["exp_avg_sq"].double(), v, rtol=1e-6, atol=1e-12)


def test_yogi_refuses_bad_settings():
    from nnlab.engine.optimizers import Yogi

    with pytest.raises(ValueError, match="invalid Yogi settings"):
        Yogi([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 1.5))
