"""setup.py: the config becomes torch objects at one site; threads, seeds, the transfer node."""

from __future__ import annotations

import torch

from nnlab.cli.command_line import compose
from nnlab.nn import bare
from nnlab.training.setup import DEFAULT_THREADS, cpu_threads, setup

TOY = ["data.source.n_train=64", "data.source.n_test=32", "trainer.device=cpu"]


def test_cpu_threads_by_data_kind_and_launcher_share():
    assert cpu_threads(None, "images") == DEFAULT_THREADS  # torch's default
    assert cpu_threads(None, "points") == cpu_threads(None, "regression") == 1
    assert cpu_threads(None, "images", cpu_share=3) == 3 and cpu_threads(5, "images", cpu_share=3) == 5


def test_setup_builds_every_object_from_the_config():
    exp = setup(compose([*TOY, "optimizer=sgd", "optimizer.lr=0.05", "model.hidden=[8]", "schedule=step"]))
    assert isinstance(exp.optimizer, torch.optim.SGD) and exp.optimizer.param_groups[0]["lr"] == 0.05
    assert [p.shape for p in exp.params] == [(8, 2), (8,), (2, 8), (2,)]
    assert exp.steps_per_epoch == 2 and exp.trainer.batch_size == 32 and exp.config["optimizer"]["lr"] == 0.05
    assert bare(exp.model) is exp.model and exp.data.train.x.shape == (51, 2)


def test_the_same_seed_builds_the_same_weights_another_seed_others():
    a, b = (setup(compose([*TOY, "trainer.seed=3"])) for _ in range(2))
    c = setup(compose([*TOY, "trainer.seed=4"]))
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    assert not torch.equal(a.params[0], c.params[0])
