"""The private parts of Hydra that nnlab uses, in one place. Each has no public equivalent in Hydra 1.3;
tests/test_hydra_private.py pins each (its name, its signature, what nnlab relies on it doing), so that a
Hydra release that moves one fails there, not in a user's sweep."""

from hydra._internal.config_loader_impl import get_overrides_dirname  # a job's folder name, as Hydra writes it
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf  # nnlab's grid sweeper's base

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"  # hydra/sweeper=basic's _target_

__all__ = ["BASIC_SWEEPER", "BasicSweeper", "BasicSweeperConf", "get_overrides_dirname"]
