"""`nnlab check`: the babysitting steps of the notes, on the composed config, as one command.

1. the initial loss, regularization off, is near its expected value (ln C for cross-entropy);
2. the loss rises when regularization is cranked up;
3. the model overfits a tiny subset to ~100% training accuracy;
4. gradients reach every layer.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict


@dataclass
class CheckResult:
    step: int
    name: str
    passed: bool
    measured: str
    expected: str
    hint: str = ""


def without_regularization(cfg: DictConfig) -> DictConfig:
    """The config with every regularizer off (L1, L2, dropout, input noise, augmentation)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.regularization.l1 = 0.0
        cfg.regularization.input_noise = 0.0
        cfg.data.augment = False
        if "weight_decay" in cfg.optimizer:
            cfg.optimizer.weight_decay = 0.0
        if "dropout" in cfg.model:
            cfg.model.dropout = 0.0
    return cfg


def run_checks(cfg: DictConfig, cpu_share: int | None = None) -> list[CheckResult]:
    from nnlab.metrics import score
    from nnlab.nn import eval_mode
    from nnlab.training.diagnostics import weight_layers
    from nnlab.training.setup import setup
    from nnlab.training.steps import evaluate, train_step

    c = cfg.check
    checked = without_regularization(cfg)
    with open_dict(checked):  # the steps at optimizer.lr itself: a schedule sized to trainer.epochs would run out
        checked.schedule = {
            "_target_": "nnlab.engine.schedules.constant",
            "_partial_": True,
        }  # (onecycle's total steps) or warm up from 0
    exp = setup(checked, cpu_share)
    model, loss_fn, data = exp.model, exp.loss_fn, exp.data
    n = min(len(data.train), cfg.diagnostics.probe_size)
    x, y = data.train.x[:n], data.train.y[:n]
    layers = weight_layers(model)
    results = []

    # 1. initial loss
    with torch.no_grad(), eval_mode(model):
        initial = loss_fn(model(x), y).item()
    tol = cfg.alarms.initial_loss_tolerance
    if data.kind == "regression":  # no chance level: it depends on the targets' scale
        results.append(
            CheckResult(
                1,
                "initial loss, regularization off",
                math.isfinite(initial),
                f"{initial:.4f}",
                "finite (regression has no chance level)",
                "the outputs are not finite at init",
            )
        )
    else:
        expected = loss_fn.expected_initial(data.num_classes)
        results.append(
            CheckResult(
                1,
                "initial loss, regularization off",
                math.isfinite(initial) and abs(initial - expected) <= tol * expected,
                f"{initial:.4f}",
                f"{expected:.4f} ± {tol:.0%}",
                "weights too large or biased at init: try init=he_normal / xavier_normal",
            )
        )

    # 2. cranked-up regularization raises the loss
    with torch.no_grad():
        penalty = 0.5 * c.l2 * sum(m.weight.pow(2).sum() for _, m in layers).item()
    results.append(
        CheckResult(
            2,
            f"loss rises with L2 = {c.l2:g}",
            penalty > 0 and math.isfinite(penalty),
            f"{initial:.4f} -> {initial + penalty:.4f}",
            "higher",
            "all weights are zero: regularization has nothing to act on (init=zeros?)",
        )
    )

    # 4. (before any step) gradients reach every layer
    model.train()
    exp.optimizer.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = {name: (m.weight.grad.norm().item() if m.weight.grad is not None else 0.0) for name, m in layers}
    silent = [name for name, v in norms.items() if not (v > 0 and math.isfinite(v))]
    weakest = min(norms, key=norms.get)
    grad_result = CheckResult(
        4,
        "gradients reach every layer",
        not silent,
        f"smallest: {weakest} {norms[weakest]:.2e}",
        "all > 0",
        f"no gradient in {', '.join(silent)}: dead or identical units (init=zeros? negative bias?)",
    )
    exp.optimizer.zero_grad(set_to_none=True)

    # 3. overfit a tiny subset, full batch
    k = min(c.tiny_subset, len(data.train))
    xs, ys = data.train.x[:k], data.train.y[:k]
    scaler = torch.amp.GradScaler(exp.device.type, enabled=False)
    name = score(data.kind)  # accuracy, or R^2 for regression
    goal = c.overfit_r2 if name == "r2" else c.overfit_acc
    value, steps = -math.inf, 0
    tiny = type(data.train)(xs, ys)
    for steps in range(1, c.overfit_steps + 1):
        train_step(exp, xs, ys, scaler)
        if steps % 10 == 0 or steps == c.overfit_steps:
            value = evaluate(exp, tiny)[name]
            if value >= goal:
                break
    results.append(
        CheckResult(
            3,
            f"overfit {k} examples",
            value >= goal,
            f"train {name} {value:.3f} after {steps} steps",
            f">= {goal:g}",
            "the model cannot fit even a tiny set: more capacity (model.hidden) or a better optimizer.lr",
        )
    )
    results.append(grad_result)
    return results


def report(results: list[CheckResult], run_dir) -> bool:
    """Print the table, write check.json; True when every step passed."""

    from rich.table import Table

    from nnlab.views.console import console

    table = Table(title="nnlab check: babysitting the network", header_style="bold")
    for col in ("#", "check", "result", "measured", "expected"):
        table.add_column(col)
    for r in results:
        result = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(str(r.step), r.name, result, r.measured, r.expected)
    console.print(table)
    for r in results:
        if not r.passed:
            console.print(f"[bold red]step {r.step} failed:[/] {r.hint}", soft_wrap=True)
    ok = all(r.passed for r in results)
    from nnlab.run_files.folder import write_file

    write_file(
        Path(run_dir) / "check.json", json.dumps({"passed": ok, "steps": [asdict(r) for r in results]}, indent=2)
    )
    console.print(
        ("all checks passed" if ok else "some checks failed") + f"; details in {run_dir}/check.json", soft_wrap=True
    )
    return ok


def check(cfg: DictConfig, run_dir, cpu_share: int | None = None) -> bool:
    """The `nnlab check` job."""
    return report(run_checks(cfg, cpu_share), run_dir)
