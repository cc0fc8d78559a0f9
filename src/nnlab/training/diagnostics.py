"""What the network looks like inside: per-layer statistics of activations (on a fixed probe batch),
gradients, weights and updates, and histograms (the figures are drawn by figures.py).

Pure functions of a model and tensors, plus `Diagnostics`, which the training loop calls at its
cadence and which raises the alarms (alarms.py). Each function reads the device once (one host sync
for all layers).
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch
from torch import nn

from nnlab.metrics import LABELS, score
from nnlab.nn import eval_mode

Tensor = torch.Tensor

# Units that can die (output <= 0 for every input) and units that saturate (output at a bound).
RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU)
SATURATING = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0)}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv layers in forward order, named layer1..layerN (the last one is the output layer)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    return [(f"layer{i}", m) for i, m in enumerate(layers, 1)]


def hidden_activations(model: nn.Module, activation_type: type) -> list[tuple[str, nn.Module]]:
    """The activation module of every hidden layer, named like the weight layer it follows."""
    acts = [m for m in model.modules() if type(m) is activation_type]
    return [(f"layer{i}", m) for i, m in enumerate(acts, 1)]


def _read(values: dict[str, Tensor]) -> dict[str, float]:
    if not values:
        return {}
    return dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist()))


def grad_norms(layers: list[tuple[str, nn.Module]]) -> dict[str, float]:
    """L2 norm of each layer's weight gradient."""
    return _read({f"stats/grad_norm/{n}": m.weight.grad.norm() for n, m in layers if m.weight.grad is not None})


def weight_norms(layers: list[tuple[str, nn.Module]]) -> dict[str, float]:
    return _read({f"stats/weight_norm/{n}": m.weight.norm() for n, m in layers})


def update_ratios(layers: list[tuple[str, nn.Module]], before: list[Tensor]) -> dict[str, float]:
    """||W_after - W_before|| / ||W_before|| of one optimizer step, per layer (the notes want ~1e-3)."""
    ratios = {
        f"stats/update_ratio/{n}": (m.weight - w0).norm() / w0.norm()
        for (n, m), w0 in zip(layers, before)
        if m.weight.requires_grad  # a layer frozen for now (transfer.freeze) takes no step
    }
    return {k: v for k, v in _read(ratios).items() if math.isfinite(v)}  # undefined for all-zero weights


@torch.no_grad()
def probe_activations(
    model: nn.Module, acts: list[tuple[str, nn.Module]], x: Tensor, inputs: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Each hidden layer's activations on the probe batch, in eval mode (dropout off, batch norm on its
    running statistics), as (examples, units, ...) tensors; what went into each activation also lands in
    `inputs` where given (for its slope: slopes())."""
    out: dict[str, Tensor] = {}

    def keep(name: str, inp: tuple, o: Tensor) -> None:
        out[name] = o.detach()
        if inputs is not None:
            inputs[name] = inp[0].detach()

    hooks = [m.register_forward_hook(lambda _m, i, o, name=name: keep(name, i, o)) for name, m in acts]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


NO_SLOPE = 1e-6  # an activation this flat at a unit's input passes (next to) none of the gradient back


def slopes(z: Tensor, activation: nn.Module) -> Tensor:
    """The activation's derivative at each of its inputs z (it acts elementwise)."""
    with torch.enable_grad():
        z = z.detach().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(activation(z.clone()).sum(), z)  # (a copy: an in-place ReLU may act on it)
    return grad


def activation_stats(
    outputs: dict[str, Tensor],
    activation: nn.Module,
    saturation_eps: float = 0.02,
    inputs: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Mean and std per layer; the dead fraction for rectifiers (units <= 0 on every probe example and
    position); the saturated fraction for sigmoid/tanh (outputs within eps of a bound); where the
    activations' inputs are given, the fraction of units that pass no gradient back (the activation's slope
    below NO_SLOPE on every probe example and position: a ReLU unit that is dead, never a leaky one).
    The statistics of a stack's members come from the same arithmetic at once (members_activation_stats)."""
    given = {n: a for n, a in (inputs or {}).items() if n in outputs and a.shape == outputs[n].shape}
    flat = {n: slopes(z, activation).unsqueeze(0) for n, z in given.items()}  # elementwise (not maxout)
    return members_activation_stats(
        {n: a.unsqueeze(0) for n, a in outputs.items()}, type(activation), saturation_eps, flat, members=1
    )[0]


def members_activation_stats(
    outputs: dict[str, Tensor], kind: type, saturation_eps: float, slopes_of: dict[str, Tensor], members: int
) -> list[dict[str, float]]:
    """activation_stats of D members at once (one host read): outputs[name] and slopes_of[name] (the
    activation's slope at each input, where it acts elementwise) as [D, examples, units, ...]; `kind`: the
    activation's class. One dict per member (empty ones for a model without hidden activations)."""
    stats: dict[str, Tensor] = {}
    bounds = SATURATING.get(kind)
    for name, a in outputs.items():
        a = a.float()
        values = a.reshape(a.shape[0], -1)
        mean = values.mean(1, keepdim=True)  # the std in two passes: torch.std's one pass is ~10x slower here
        stats[f"stats/act_mean/{name}"] = mean[:, 0]
        stats[f"stats/act_std/{name}"] = ((values - mean).square().sum(1) / (values.shape[1] - 1)).sqrt()
        if issubclass(kind, RECTIFIERS):  # dead: <= 0 for every example and position, i.e. its largest is
            stats[f"stats/dead_frac/{name}"] = (_unit_max(a) <= 0).float().mean(1)
        if bounds is not None:
            lo, hi = bounds
            margin = saturation_eps * (hi - lo)
            stats[f"stats/saturated_frac/{name}"] = ((values < lo + margin) | (values > hi - margin)).float().mean(1)
        if name in slopes_of:
            stats[f"stats/no_grad_frac/{name}"] = (_unit_max(slopes_of[name].abs()) < NO_SLOPE).float().mean(1)
    if not stats:
        return [{} for _ in range(members)]
    names, table = list(stats), torch.stack(list(stats.values()), 1).tolist()
    return [dict(zip(names, row)) for row in table]


def _unit_max(a: Tensor) -> Tensor:
    """[D, examples, units, ...] -> [D, units]: each unit's largest value over the examples and positions."""
    return a.amax(1).reshape(a.shape[0], a.shape[2], -1).amax(2)


def stack_measure(stack, diags: list[Diagnostics], running: list[bool]) -> dict[int, tuple[dict, dict]]:
    """Diagnostics.measure() of every member k of a stack (engine/stack.py) whose statistics are due after
    this step, at once: the norms from the stacked weights (read from the device once), every member's
    probe batch through the stacked forward; {} where the members measure their own (layers or probe
    batches that do not line up)."""
    due = [k for k, (d, r) in enumerate(zip(diags, running)) if r and d.snapshot is not None]
    weights = [stack.params[i] for i in stack.linear_weights]
    probes = [d.probe_x if k in due else None for k, d in enumerate(diags)]
    if (
        not due
        or any(len(diags[k].layers) != len(weights) for k in due)
        or len({p.shape for p in probes if p is not None}) > 1
    ):
        return {}
    before = [torch.stack([diags[k].snapshot[j] for k in due]) for j in range(len(weights))]
    with torch.no_grad(), ExitStack() as modes:
        for d in diags:
            modes.enter_context(eval_mode(d.model))
        stack.forward(probes, [p is not None for p in probes], capture=True)
    lined_up = all(len(diags[k].acts) == len(stack.activities) for k in due)
    hidden = (stack.inputs_of_activities, stack.activities) if lined_up else None
    return _stacked_stats(weights, before, hidden, diags, due)


def stack_boundaries(engine, exps: list, running: list[bool], epoch: int) -> dict:
    """The decision-boundary images TensorBoard shows during training (2-D points, every
    trainer.boundary_every epochs and the last), of every running member k of a stack (or a run alone: a
    Solo; engine/stack.py) at once: their planes through the engine's forward in one pass."""
    from nnlab.views.figures import boundary_plane, paint_boundary

    due = [
        r
        and e.data.kind == "points"
        and e.data.in_shape[0] <= 2
        and (epoch % e.trainer.boundary_every == 0 or epoch == e.trainer.epochs)
        for e, r in zip(exps, running)
    ]
    if not any(due):
        return {}
    planes = [boundary_plane(e.data.train.x, every=2) if d else None for e, d in zip(exps, due)]
    with torch.no_grad(), ExitStack() as modes:
        for e in exps:
            modes.enter_context(eval_mode(e.model))
        out = engine.forward(planes, due)
    return {
        k: paint_boundary(e.loss_fn.predict(out[k]), e.data.train.x, e.data.train.y, every=2)
        for k, (e, d) in enumerate(zip(exps, due))
        if d
    }


def _stacked_stats(
    weights: list[Tensor], before: list[Tensor], hidden: tuple | None, diags: list, due: list[int]
) -> dict[int, tuple[dict, dict]]:
    """weights[j]: the stack's [K, ...] weights of layer j (with their .grad); before[j]: the due members'
    weights before the step; hidden: (what went into each hidden activation j, what came out), every
    member's on its probe batch [K, P, ...] (None: each member runs its own probe)."""
    idx = torch.tensor(due, device=weights[0].device)
    rows = []
    for w, b in zip(weights, before):
        now, was = w.detach()[idx].flatten(1), b.flatten(1)
        grad = (
            w.grad[idx].flatten(1).norm(dim=1)
            if w.grad is not None
            else torch.full((len(due),), math.nan, device=now.device)
        )
        rows += [grad.float(), now.norm(dim=1).float(), ((now - was).norm(dim=1) / was.norm(dim=1)).float()]
    table = torch.stack(rows).tolist()  # the one host sync of the norms
    acts = _stacked_activation_stats(hidden, diags, due) if hidden is not None else None
    out = {}
    for i, k in enumerate(due):
        d = diags[k]
        names = [n for n, _ in d.layers]
        norms = {f"stats/grad_norm/{n}": table[3 * j][i] for j, n in enumerate(names) if weights[j].grad is not None}
        norms.update({f"stats/weight_norm/{n}": table[3 * j + 1][i] for j, n in enumerate(names)})
        norms.update(
            {
                f"stats/update_ratio/{n}": table[3 * j + 2][i]
                for j, n in enumerate(names)
                if math.isfinite(table[3 * j + 2][i])
            }
        )
        if acts is not None:
            out[k] = (norms, acts[i])
        else:
            outputs, inputs = d.probe()
            out[k] = (norms, activation_stats(outputs, d.activation, d.cfg.saturation_eps, inputs))
    return out


def _stacked_activation_stats(hidden: tuple, diags: list, due: list[int]) -> list[dict[str, float]]:
    """The activation statistics of a stack's due members from what its forward captured on their probe
    batches (hidden: each hidden activation's inputs and outputs, [K, P, ...]), all at once: the slopes of
    an activation without parameters over the stack in one pass (elementwise, the same function for every
    member), PReLU's with each member's own slopes."""
    d = diags[due[0]]
    if not d.acts:  # no hidden activations (model.hidden=[]): nothing to measure
        return [{} for _ in due]
    idx = torch.tensor(due, device=hidden[1][0].device)
    outputs = {name: hidden[1][j][idx] for j, (name, _) in enumerate(d.acts)}
    shared = not any(True for _ in d.activation.parameters())
    slopes_of = {}
    for j, (name, _) in enumerate(d.acts):
        z = hidden[0][j]
        if z.shape != hidden[1][j].shape:  # maxout: not elementwise
            continue
        slopes_of[name] = (
            slopes(z[idx], d.activation) if shared else torch.stack([slopes(z[k], diags[k].activation) for k in due])
        )
    return members_activation_stats(outputs, type(d.activation), d.cfg.saturation_eps, slopes_of, len(due))


def first_to_last_ratio(norms: dict[str, float]) -> float | None:
    """grad_norm of the first layer over that of the last: << 1 vanishing, >> 1 exploding."""
    values = [v for k, v in norms.items() if k.startswith("stats/grad_norm/layer")]
    if len(values) < 2 or values[-1] <= 0:
        return None
    return values[0] / values[-1]


class Diagnostics:
    """The training loop's window into the network, called at a few explicit points:

    start() before the first step; before_step()/after_step() around every optimizer step;
    end_epoch() after each epoch; finish() at the end. It logs to the tracker and raises alarms
    (console, TensorBoard text, summary.json). after_step() returns True when the run diverged.
    """

    def __init__(
        self,
        model,
        loss_fn,
        activation_type,
        probe: tuple[Tensor, Tensor],
        num_classes: int,
        cfg,
        alarm_cfg,
        tracker,
        log_every: int,
        optimizer,
        kind: str = "points",
    ):
        from nnlab.training import alarms

        self.alarms_fn, self.cfg, self.alarm_cfg, self.tracker = alarms, cfg, alarm_cfg, tracker
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.layers = [(n, m) for n, m in weight_layers(model) if m.weight.requires_grad]  # frozen ones do not change
        self.acts = hidden_activations(model, activation_type)
        self.norms = batch_norms(model)  # their learned scale and shift, logged each epoch
        self.activation = self.acts[0][1] if self.acts else nn.Identity()
        self.probe_x, self.probe_y = probe
        self.kind = kind
        # the chance-level loss of a classifier; a regression loss has none (it depends on the targets' scale)
        self.expected_initial = None if kind == "regression" else loss_fn.expected_initial(num_classes)
        self.log_every = log_every
        self.trail, self.row = None, 0  # loop_state.Trail: the stack's per-step losses and norms; this run's row
        self.raised: list = []
        self.initial: float = math.nan
        self.pretrain: list[dict] = []  # the pretraining stages, if any (see pretrain.greedy)
        self.snapshot: list[Tensor] | None = None
        self.recent_loss = math.nan  # mean training loss of the last log window
        self.flushed = 0  # the last step whose loss and gradient norm are written
        self.quiet = False  # True in a stack: its alarms are said grouped by setting at its end, not one by one
        self.start_form = ""  # how the weights started (start_form): what a flat loss or dead units blame first
        self.curve: list[float] = []  # each epoch's mean training loss: the loss curve's shape (alarms.curve_shape)

    # -- alarms
    def raise_alarm(self, alarm) -> None:
        if alarm is None or not self.alarm_cfg.enabled or any(a.name == alarm.name for a in self.raised):
            return
        from nnlab.views.console import warning

        self.raised.append(alarm)
        if not self.quiet:
            warning(f"[{alarm.name}] step {alarm.step}: {alarm.message}")
        self.tracker.log(f"warning: [{alarm.name}] step {alarm.step}: {alarm.message}")
        self.tracker.text("alarms", f"**{alarm.name}** (step {alarm.step}): {alarm.message}", alarm.step)

    # -- the loop's calls
    def start(self) -> None:
        """Initial loss on the probe batch (data loss only, eval mode) and the activations at init."""
        with torch.no_grad(), eval_mode(self.model):
            self.initial = self.loss_fn(self.model(self.probe_x), self.probe_y).float().item()
        expected = {} if self.expected_initial is None else {"start/loss_expected": self.expected_initial}
        self.tracker.scalars(0, {"start/loss": self.initial, **expected})
        if self.expected_initial is not None and not self.pretrain:
            self.raise_alarm(
                self.alarms_fn.initial_loss(self.initial, self.expected_initial, self.alarm_cfg.initial_loss_tolerance)
            )
        outputs, inputs = self.probe()
        self.start_form = start_form(self.layers, outputs)
        if outputs:
            self.tracker.scalars(0, activation_stats(outputs, self.activation, self.cfg.saturation_eps, inputs))
            self._figure(outputs, 0, "at initialization", "activations_init.png")

    def stats_due(self, step: int) -> bool:
        return self.cfg.every > 0 and step % self.cfg.every == 0

    def before_step(self, step: int) -> None:
        """`step` is the number of the step about to run (1-based)."""
        if self.stats_due(step):
            self.snapshot = [m.weight.detach().clone() for _, m in self.layers]

    def after_step(self, step: int, epoch: int, measured: tuple | None = None) -> bool:
        """(The step's loss and gradient norm are in the stack's trail.) `measured`: this step's per-layer
        statistics where the stack measured them for all its members (stack_measure); else, when due, this
        member measures its own."""
        diverged = False
        if step % self.log_every == 0:
            diverged = self.flush(step, epoch)
        if self.snapshot is not None:
            self._layer_stats(step, epoch, measured)
        return diverged

    def end_epoch(self, epoch: int, step: int, last_epoch: bool) -> None:
        if self.norms:  # batch norm's scale (gamma) and shift (beta): the means per layer, one read of the device
            parts = [
                t for _, m in self.norms for t in (m.weight.detach().float().mean(), m.bias.detach().float().mean())
            ]
            values = torch.stack(parts).tolist()
            names = [f"stats/bn_{part}/{name}" for name, _ in self.norms for part in ("scale", "shift")]
            self.tracker.scalars(step, dict(zip(names, values)), epoch)
        every = self.cfg.histograms_every
        if every and (epoch % every == 0 or last_epoch):
            for name, m in self.norms:
                self.tracker.histogram(f"stats.bn_scale/{name}", m.weight, step)
                self.tracker.histogram(f"stats.bn_shift/{name}", m.bias, step)
            outputs = probe_activations(self.model, self.acts, self.probe_x) if self.acts else {}
            for name, m in self.layers:
                self.tracker.histogram(f"stats.weights/{name}", m.weight, step)
                if m.weight.grad is not None:
                    self.tracker.histogram(f"stats.grads/{name}", m.weight.grad, step)
            for name, a in outputs.items():
                self.tracker.histogram(f"stats.activations/{name}", a, step)
            if last_epoch and outputs:
                self._figure(outputs, step, f"after {epoch} epoch{'s' if epoch != 1 else ''}", "activations_final.png")

    def shape(self, diverged: bool) -> str | None:
        """The training loss curve's shape (alarms.CURVES), from the start and each epoch's loss; None after
        pretraining (the end-to-end curve starts where the stages left it: not the notes' curves)."""
        return None if self.pretrain else self.alarms_fn.curve_shape(self.initial, self.curve, diverged)

    def finish(self, metrics: dict[str, float], step: int) -> list[dict]:
        """The closing alarms of a run that ended well: the loss curve's shape, the fit gap."""
        if not self.pretrain:
            self.raise_alarm(self.alarms_fn.loss_curve(self.shape(False), step))
        name = score(self.kind)
        if f"{name}/val" in metrics:
            a, what = self.alarm_cfg, LABELS[name]
            self.raise_alarm(
                self.alarms_fn.fit_gap(
                    metrics[f"{name}/train"], metrics[f"{name}/val"], a.overfit_gap, a.underfit_acc, step, what
                )
            )
        return [a.as_dict() for a in self.raised]

    def state_dict(self) -> dict:
        return {
            "initial": self.initial,
            "flushed": self.flushed,
            "alarms": [a.as_dict() for a in self.raised],
            "pretrain": list(self.pretrain),
            "start_form": self.start_form,
            "curve": list(self.curve),  # (a copy: a state kept for later must not grow with the run)
        }

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.flushed, self.pretrain = state["initial"], state["flushed"], state.get("pretrain", [])
        self.start_form = state.get("start_form", "")
        self.curve = [float(x) for x in state.get("curve", [])]
        self.raised = [self.alarms_fn.Alarm(**a) for a in state["alarms"]]

    def flush(self, step: int, epoch: int) -> bool:
        """Write the per-step loss and gradient norm buffered since the last flush (one host sync), then
        check them for divergence and a flat loss. True when the run diverged."""
        n = step - self.flushed
        if n <= 0:
            return False
        window = self.trail.rows(self.row, step - n + 1, step)  # (one host sync for the whole stack)
        self.flushed = step
        self.tracker.rows(
            [(step - n + 1 + i, {"step/loss": loss, "step/grad_norm": norm}) for i, (loss, norm) in enumerate(window)],
            epoch,
        )
        if step % self.log_every == 0:
            self.tracker.scalars(step, {"step/lr": self.optimizer.param_groups[0]["lr"]}, epoch)
        losses = [loss for loss, _ in window]
        recent = self.recent_loss = sum(losses) / n
        a = self.alarm_cfg
        if self.alarm_cfg.enabled:
            # after pretraining the initial loss is already low: diverging means rising above chance level
            reference = self.initial if not self.pretrain else max(self.initial, self.expected_initial or self.initial)
            alarm = self.alarms_fn.divergence(
                recent if all(map(math.isfinite, losses)) else math.nan, reference, a.divergence_factor, step
            )
            if alarm is not None:
                self.raise_alarm(alarm)
                return True
        if step - n < a.flat_after_steps <= step and not self.pretrain:
            self.raise_alarm(self.alarms_fn.flat_loss(self.initial, recent, a.flat_min_drop, step, self.start_form))
        return False

    def measure(self) -> tuple[dict[str, float], dict[str, float]]:
        """This step's per-layer statistics of this model alone: (gradient and weight norms and update
        ratios, activation statistics on the probe batch)."""
        norms = {**grad_norms(self.layers), **weight_norms(self.layers), **update_ratios(self.layers, self.snapshot)}
        acts, inputs = self.probe()
        return norms, activation_stats(acts, self.activation, self.cfg.saturation_eps, inputs)

    def probe(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The probe batch through this model: each hidden activation's output, and what went into it."""
        inputs: dict[str, Tensor] = {}
        outputs = probe_activations(self.model, self.acts, self.probe_x, inputs) if self.acts else {}
        return outputs, inputs

    def _layer_stats(self, step: int, epoch: int, measured: tuple | None = None) -> None:
        al = self.alarm_cfg
        norms, acts = measured if measured is not None else self.measure()
        stats, self.snapshot = dict(norms), None
        ratio = first_to_last_ratio(stats)
        if ratio is not None:
            stats["stats/grad_ratio/first_to_last"] = ratio
        stats.update(acts)
        self.tracker.scalars(step, stats, epoch)
        f = self.alarms_fn
        self.raise_alarm(f.gradient_flow(ratio, al.grad_ratio_low, al.grad_ratio_high, step))
        self.raise_alarm(f.dead_units(stats, al.dead_fraction, step, self.start_form))
        self.raise_alarm(f.saturation(stats, al.saturated_fraction, step))
        group = self.optimizer.param_groups[0]
        lr_scale = group["lr"] / group["initial_lr"] if group.get("initial_lr") else 1.0  # where the schedule is
        self.raise_alarm(f.update_ratio(stats, al.update_ratio_low, al.update_ratio_high, step, lr_scale))

    def _figure(self, outputs: dict[str, Tensor], step: int, when: str, filename: str) -> None:
        activations_figure(self.tracker, outputs, step, when, filename)


def batch_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's batch norm layers with a learned scale and shift, named bn1, bn2, ... in forward order."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    return [(f"bn{i}", m) for i, m in enumerate(norms, 1)]


def start_form(layers: list[tuple[str, nn.Module]], outputs: dict[str, Tensor]) -> str:
    """How the weights started, where that alone explains a flat loss or dead units: "symmetric" (a layer of
    several units whose units all have the same weights: no gradient can tell them apart), "silent" (the
    last hidden layer's activations on the probe batch vary by under 1e-3: the signal fades through the
    layers), else ""."""
    with torch.no_grad():
        for _, m in layers[:-1] or layers:
            w = m.weight.flatten(1)
            if len(w) > 1 and bool((w == w[:1]).all()):
                return "symmetric"
        if outputs and float(list(outputs.values())[-1].float().std()) < 1e-3:
            return "silent"
    return ""


def activations_figure(tracker, outputs: dict[str, Tensor], step: int, when: str, filename: str) -> None:
    """The hidden layers' activations on the probe batch as one figure (RUN/FILENAME and TensorBoard)."""
    from nnlab.views import figures

    arrays = {name: a.detach().float().cpu().numpy() for name, a in outputs.items()}
    tracker.figure(
        "activations_per_layer",
        figures.activations_figure,
        (arrays, f"hidden-layer activations {when}"),
        step,
        filename,
    )
