"""nnlab's grid sweeper, `hydra/sweeper=grid` (the default of `nnlab train -m`): Hydra's basic sweeper
(the same jobs, in the same order, in the same folders, with the same `hydra.sweeper.params`), less one
cost. Before launching a batch, Hydra's sweeper composes every job's config once just to check that it
composes (~0.3 s a job: 5 s of a 16-seed sweep); nnlab's pre-flight has already checked every value of
every swept key, and the batched launcher composes every job before it runs any, so with that launcher
the second composition is skipped. With any other launcher (`hydra/launcher=basic`, joblib, ...) it is
Hydra's sweeper unchanged. `hydra/sweeper=basic` is Hydra's own.

`hydra.sweeper.settings` (a list of override lists) sweeps settings that are not a grid: every setting
with every combination of the swept keys, a setting's overrides replacing the command line's for the same
key (`nnlab doctor` sweeps the config as it is and each candidate fix over its seeds this way).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from nnlab.jobs.hydra_private import BasicSweeper, BasicSweeperConf


@dataclass
class GridSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.nnlab_launcher.grid_sweeper.GridSweeper"
    settings: list[list[str]] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="nnlab")


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params=None, settings=None) -> None:
        super().__init__(max_batch_size, params)
        self.settings = [list(s) for s in settings] if settings else None

    def split_arguments(self, overrides, max_batch_size):
        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        if not self.settings:
            return batches
        from nnlab.config.overrides import override_key

        jobs = [job for batch in batches for job in batch]
        return [
            [
                [*(o for o in job if override_key(o) not in {override_key(s) for s in setting}), *setting]
                for setting in self.settings
                for job in jobs
            ]
        ]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from hydra_plugins.nnlab_launcher.batched_launcher import BatchedLauncher

        if not isinstance(self.launcher, BatchedLauncher):
            super().validate_batch_is_legal(batch)
