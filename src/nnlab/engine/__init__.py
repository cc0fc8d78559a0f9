"""The engine: how K >= 1 members train as one, in plain PyTorch.

    stack.py       the members' models as one (Stack: MLPs in [K, ...] tensors; Solo: any model alone)
    update.py      the step after the backward pass: the engine's (StackedUpdate, a run alone being a
                   stack of one) or torch.optim's own (torch_update), a named mode
    optimizers.py  each optimizer's arithmetic as one function over stacked tensors; Yogi

A training step (nnlab/training/steps.py) calls an engine's zero_grad, forward, backward and step; schedules
(nnlab/engine/schedules.py) set the rates the update reads.
"""
