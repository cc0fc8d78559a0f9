"""nnlab's grid sweeper, `hydra/sweeper=grid` (the default of `nnlab train -m`): Hydra's basic sweeper
(the same jobs, in the same order, in the same folders, with the same `hydra.sweeper.params`), less one
cost. Before launching a batch, Hydra's sweeper composes every job's config once just to check that it
composes (~0.3 s a job: 5 s of a 16-seed sweep); nnlab's pre-flight has already checked every value of
every swept key, and the batched launcher composes every job before it runs any, so with that launcher
the second composition is skipped. With any other launcher (`hydra/launcher=basic`, joblib, ...) it is
Hydra's sweeper unchanged. `hydra/sweeper=basic` is Hydra's own.
"""


from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class GridSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.nnlab_launcher.grid_sweeper.GridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="nnlab")


class GridSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from hydra_plugins.nnlab_launcher.batched_launcher import BatchedLauncher

        if not isinstance(self.launcher, BatchedLauncher):
            super().validate_batch_is_legal(batch)
