"""The weight and activity regularizers beyond L1/L2: the max-norm constraint and the activity L1 penalty;
AlphaDropout for SELU nets."""

from __future__ import annotations

import torch
from torch import nn

from conftest import TINY, metrics, summary, train
from nnlab.cli.command_line import compose
from nnlab.config.validate import validate
from nnlab.nn.dropout import Dropout
from nnlab.nn.mlp import MLP
from nnlab.training.setup import setup
from nnlab.training.steps import train_step


def row_norms(w: torch.Tensor) -> torch.Tensor:
    return w.detach().flatten(1).norm(dim=1)


def test_max_norm_holds_after_every_step():
    def run(*extra):
        cfg = compose(["optimizer=sgd", "optimizer.lr=2.0", "data.source.n_train=200", *extra])
        validate(cfg)
        exp = setup(cfg)
        weights = [m.weight for m in exp.model.modules() if isinstance(m, nn.Linear)]
        assert all(a is b for a, b in zip(weights, exp.weights)) and len(weights) == len(exp.weights)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        worst = 0.0
        for start in range(0, 160, 16):
            train_step(exp, exp.data.train.x[start : start + 16], exp.data.train.y[start : start + 16], scaler)
            worst = max(worst, max(row_norms(w).max().item() for w in weights))
            yield worst

    assert max(run()) > 1.0  # unconstrained, some unit's weights grow past the bound used below
    for worst in run("regularization.max_norm=1.0"):
        assert worst <= 1.0 + 1e-5


def test_max_norm_from_the_command_line(tmp_path):
    run, _ = train(tmp_path, *TINY, "regularization.max_norm=0.5", "optimizer.lr=0.1")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    weights = [v for k, v in state.items() if k.endswith("weight")]
    assert weights and all(row_norms(w).max() <= 0.5 + 1e-5 for w in weights)


def test_activity_l1_makes_hidden_activations_sparser(tmp_path):
    def final_activity(run):
        rows = [r for r in metrics(run) if "stats/act_mean/layer1" in r]
        last = rows[-1]
        return sum(v for k, v in last.items() if k.startswith("stats/act_mean/")), last["step"]

    common = [*TINY, "trainer.epochs=30", "diagnostics.every=20"]
    plain, _ = train(tmp_path, *common, run_dir="plain")
    sparse, _ = train(tmp_path, *common, "regularization.activity_l1=0.05", run_dir="sparse")
    (a, step_a), (b, step_b) = final_activity(plain), final_activity(sparse)
    assert step_a == step_b == 120 and b < 0.6 * a  # measured: 0.43 vs 1.03
    assert summary(sparse)["metrics"]["acc/test"] >= summary(plain)["metrics"]["acc/test"] - 0.1  # still learns


def test_alpha_dropout_goes_with_selu():
    def drops(act, kind="auto"):  # alpha (AlphaDropout) or standard, per Dropout layer
        return {
            m.alpha
            for m in MLP((2,), 2, activation=act, hidden=[8, 8], dropout=0.1, dropout_kind=kind).modules()
            if isinstance(m, Dropout)
        }

    assert drops(nn.SELU) == {True} and drops(nn.ReLU) == {False}
    assert drops(nn.ReLU, "alpha") == {True} and drops(nn.SELU, "standard") == {False}


def test_dropout_draws_as_torch_does():
    """nnlab's Dropout (own generator) computes torch's dropout and alpha dropout from the same draws."""
    x = torch.randn(64, 32)
    for alpha, ref in ((False, nn.Dropout(0.3)), (True, nn.AlphaDropout(0.3))):
        torch.manual_seed(5)
        expected = ref(x)
        mine = Dropout(0.3, alpha=alpha)
        mine.generator = torch.Generator().manual_seed(5)
        assert torch.allclose(mine(x), expected, atol=1e-6)
        assert torch.equal(mine.eval()(x), x)
