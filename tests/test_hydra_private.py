"""The private parts of Hydra nnlab uses (nnlab/jobs/hydra_private.py), pinned: a Hydra release that moves or
changes one fails here, in one named test, not in a user's sweep."""

from __future__ import annotations

import inspect

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from nnlab.jobs import hydra_private


def test_the_basic_sweeper_is_where_its_target_says_and_splits_a_grid_as_nnlab_expects():
    cls = hydra_private.BasicSweeper  # (Hydra's plugin discovery may import its module twice: compared by name)
    assert f"{cls.__module__}.{cls.__qualname__}" == hydra_private.BASIC_SWEEPER
    assert issubclass(hydra_private.BasicSweeper, Sweeper)
    assert list(inspect.signature(hydra_private.BasicSweeper.__init__).parameters) == [
        "self",
        "max_batch_size",
        "params",
    ]
    assert {"max_batch_size", "params"} <= set(hydra_private.BasicSweeperConf.__dataclass_fields__)
    overrides = OverridesParser.create().parse_overrides(["a=1,2", "b=x,y"])
    batches = hydra_private.BasicSweeper.split_arguments(overrides, None)  # one batch of every combination
    assert [sorted(job) for job in batches[0]] == [["a=1", "b=x"], ["a=1", "b=y"], ["a=2", "b=x"], ["a=2", "b=y"]]
    assert callable(hydra_private.BasicSweeper.validate_batch_is_legal)


def test_a_jobs_folder_name_is_hydras_own():
    parsed = OverridesParser.create().parse_overrides(["optimizer.lr=0.1", "trainer.seed=3", "data=moons"])
    name = hydra_private.get_overrides_dirname(
        overrides=parsed, kv_sep="=", item_sep=",", exclude_keys=["trainer.seed"]
    )
    assert name == "data=moons,optimizer.lr=0.1"


def test_nnlabs_plugins_are_found_beside_hydras():
    names = {p.__name__ for p in Plugins.instance().discover(Sweeper)}
    assert {"GridSweeper", "BasicSweeper"} <= names
