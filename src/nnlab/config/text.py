"""A composed config as a run folder and a sweep handle it: as YAML text (the `.hydra/` records, config.yaml,
TensorBoard's text) and as a deep copy to set a value on (a sweep's jobs, the pre-flight's values)."""

import functools
import pickle


def config_yaml(cfg, resolve: bool = False) -> str:
    """A config as YAML, as OmegaConf.to_yaml writes it (the same values, order and quoting of strings that
    read as numbers or booleans; a long string may fold at another place), emitted by libyaml where PyYAML
    has it: ~1 ms against ~13 ms for a run's config, which every job writes three times (.hydra/config.yaml,
    config.yaml, TensorBoard's text)."""
    import yaml
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True)
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=_dumper())


@functools.cache
def _dumper():
    """libyaml's emitter with OmegaConf's quoting of strings (those that read as numbers or booleans)."""
    import yaml
    from omegaconf._utils import OmegaConfDumper

    dumper = type("ConfigDumper", (getattr(yaml, "CDumper", yaml.Dumper),), {})
    dumper.add_representer(str, OmegaConfDumper.str_representer)
    return dumper


def copied(cfg):
    """A deep copy of a composed config (its flags, its schema's type), through pickle: ~1.4 ms for a
    job's config with Hydra's node against ~7.5 ms for copy.deepcopy, which a sweep pays for every value
    it checks and every job it derives (jobs.stacking.sweep_config). The configs copied from are
    remembered pickled (a sweep derives its jobs from a few): the copy is one unpickling. A config copied
    from must not change afterwards (the sweep's bases do not)."""
    for kept, frozen in _FROZEN:
        if kept is cfg:
            return pickle.loads(frozen)
    frozen = pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)
    _FROZEN[:] = [(cfg, frozen), *_FROZEN[:7]]
    return pickle.loads(frozen)


_FROZEN: list[tuple[object, bytes]] = []  # (a config copied from, its pickle), the newest first
