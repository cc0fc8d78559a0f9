"""Stacked optimizers (nnlab/engine/optimizers.py): every optimizer of conf/optimizer/ as one update over [K, ...]
parameters with per-member settings, against K separate torch.optim runs fed the same gradients: 200
steps with a schedule halving the rates, a member stopped half-way, and a member's state resumed alone."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.engine.optimizers import StackedOptimizer, Yogi, stacked_form

optim = torch.optim
CASES = {  # each member with settings of its own
    "sgd": (optim.SGD, [dict(lr=0.1), dict(lr=0.05, weight_decay=0.01), dict(lr=0.2)]),
    "momentum": (
        optim.SGD,
        [
            dict(lr=0.05, momentum=0.9),
            dict(lr=0.01, momentum=0.5, dampening=0.1, weight_decay=1e-3),
            dict(lr=0.1, momentum=0.99),
        ],
    ),
    "nesterov": (
        optim.SGD,
        [
            dict(lr=0.05, momentum=0.9, nesterov=True),
            dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.01),
            dict(lr=0.1, momentum=0.7, nesterov=True),
        ],
    ),
    "adagrad": (
        optim.Adagrad,
        [
            dict(lr=0.05),
            dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-8, weight_decay=1e-3),
            dict(lr=0.02, eps=1e-6),
        ],
    ),
    "rmsprop": (
        optim.RMSprop,
        [dict(lr=1e-3), dict(lr=1e-2, alpha=0.9, eps=1e-6, weight_decay=1e-3), dict(lr=3e-3, alpha=0.5)],
    ),
    "rmsprop_momentum_centered": (
        optim.RMSprop,
        [
            dict(lr=1e-3, momentum=0.9, centered=True),
            dict(lr=1e-2, momentum=0.5, centered=True, alpha=0.95, weight_decay=1e-3),
            dict(lr=3e-3, momentum=0.1, centered=True),
        ],
    ),
    "adadelta": (
        optim.Adadelta,
        [dict(lr=1.0), dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=1e-3), dict(lr=2.0, rho=0.5)],
    ),
    "adam": (
        optim.Adam,
        [dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3), dict(lr=3e-3, betas=(0.5, 0.9))],
    ),
    "adamw": (
        optim.AdamW,
        [dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1), dict(lr=3e-3, weight_decay=0.0)],
    ),
    "nadam": (
        optim.NAdam,
        [
            dict(lr=2e-3),
            dict(lr=1e-2, betas=(0.85, 0.995), momentum_decay=0.01, weight_decay=1e-3),
            dict(lr=5e-3, momentum_decay=0.0),
        ],
    ),
    "yogi": (
        Yogi,
        [
            dict(lr=1e-2),
            dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-4, initial_accumulator=1e-3, weight_decay=1e-3),
            dict(lr=2e-2, betas=(0.5, 0.9)),
        ],
    ),
}
SHAPES = [(5, 3), (5,), (2, 5)]


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Within 1e-5 relative of the larger magnitude (1e-7 absolute for values near zero)."""
    err = (a - b).abs().max().item()
    scale = max(a.abs().max().item(), b.abs().max().item())
    assert err <= 1e-5 * scale + 1e-7, f"{what}: max difference {err:.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("name", list(CASES))
def test_a_stacked_optimizer_follows_torch_optim_member_by_member(name):
    cls, settings = CASES[name]
    K, steps, stop_member, stop_at = len(settings), 200, 1, 120
    g = torch.Generator().manual_seed(0)
    start = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(K)]
    grads = [[[torch.randn(s, generator=g) for s in SHAPES] for _ in range(K)] for _ in range(steps)]
    # the reference: K torch.optim runs, each on its own tensors
    ref = [[p.clone().requires_grad_() for p in start[k]] for k in range(K)]
    ref_opt = [cls(ref[k], **settings[k]) for k in range(K)]
    # the stack: [K, ...] tensors; each member's optimizer over its views (for its settings, rates and state)
    stacked = [torch.stack([start[k][i] for k in range(K)]).requires_grad_() for i in range(len(SHAPES))]
    views = [[stacked[i].detach()[k] for i in range(len(SHAPES))] for k in range(K)]
    members = [cls([torch.nn.Parameter(v) for v in views[k]], **settings[k]) for k in range(K)]
    member_params = [m.param_groups[0]["params"] for m in members]
    for k in range(K):
        for p, v in zip(member_params[k], views[k]):
            p.data = v
    assert stacked_form(members) is None
    opt = StackedOptimizer(members, stacked, member_params)
    active = torch.ones(K, dtype=torch.bool)
    for t in range(steps):
        if t and t % 50 == 0:  # a schedule: every member's rate halves
            for o in (*ref_opt, *members):
                o.param_groups[0]["lr"] *= 0.5
        if t == stop_at:
            active[stop_member] = False
        for k in range(K):
            if active[k]:
                for p, gr in zip(ref[k], grads[t][k]):
                    p.grad = gr.clone()
                ref_opt[k].step()
        for i, p in enumerate(stacked):
            p.grad = torch.stack([grads[t][k][i] for k in range(K)])
        opt.step(active=active)
    for k in range(K):
        for i in range(len(SHAPES)):
            _close(stacked[i].detach()[k], ref[k][i].detach(), f"{name} member {k} parameter {i}")
        theirs, ours = ref_opt[k].state_dict()["state"], members[k].state_dict()["state"]
        assert theirs.keys() == ours.keys()
        for i in theirs:
            assert theirs[i].keys() == ours[i].keys(), (name, theirs[i].keys(), ours[i].keys())
            for key in theirs[i]:
                _close(
                    torch.as_tensor(ours[i][key]).float(),
                    torch.as_tensor(theirs[i][key]).float(),
                    f"{name} state {key}",
                )
    # a member's state is a torch.optim state: it resumes alone, in torch's own optimizer
    k = 0
    alone = [stacked[i].detach()[k].clone().requires_grad_() for i in range(len(SHAPES))]
    resumed = cls(alone, **settings[k])
    resumed.load_state_dict(members[k].state_dict())
    for _ in range(10):
        gr = [torch.randn(s, generator=g) for s in SHAPES]
        for p, q, x in zip(alone, ref[k], gr):
            p.grad, q.grad = x.clone(), x.clone()
        resumed.step()
        ref_opt[k].step()
    for p, q in zip(alone, ref[k]):
        _close(p.detach(), q.detach(), f"{name} resumed alone")


def test_what_has_no_stacked_form_says_why():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert "has no stacked form" in stacked_form([optim.LBFGS(p)])
    assert "amsgrad" in stacked_form([optim.Adam(p, amsgrad=True)])
    assert "nesterov differs" in stacked_form(
        [optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), optim.SGD(p, lr=0.1, momentum=0.9)]
    )


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 70),
    shape=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    threads=st.sampled_from([1, 2]),
)
def test_a_stacks_gradient_norms_in_one_reduction_equal_each_members_own(k, shape, threads):
    """update.StackedUpdate measures the [K] norms of a stacked gradient in one reduction over its rows:
    bit for bit each member's slice's own norm (what a stack of one computes), whatever K, shape and threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.randn(k, *shape, generator=torch.Generator().manual_seed(k * 1000 + sum(shape)))
        rows = torch.linalg.vector_norm(g.reshape(k, -1), dim=1)
        for i in range(k):
            assert rows[i].item() == torch.linalg.vector_norm(g[i : i + 1].reshape(1, -1), dim=1)[0].item()
            assert rows[i].item() == torch.linalg.vector_norm(g[i]).item()
    finally:
        torch.set_num_threads(before)
