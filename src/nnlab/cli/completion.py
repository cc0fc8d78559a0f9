"""Tab completion in bash (and zsh, through bashcompinit): `nnlab <TAB>` gives the commands, `nnlab train
<TAB>` the config groups, their options and the config's keys (Hydra's own completion, asked about
nnlab's config), `nnlab report <TAB>` file names. Install for the current shell with

    eval "$(nnlab completion bash)"

(or put that line in ~/.bashrc). The shell calls `nnlab __complete` with COMP_LINE set, as bash gives it.
"""

from __future__ import annotations

import os

COMMANDS = (
    "train",
    "check",
    "lr-find",
    "batch-size-find",
    "doctor",
    "report",
    "ensemble",
    "prune",
    "completion",
)  # nnlab's subcommands

CONFIG_COMMANDS = ("train", "check", "lr-find", "batch-size-find", "doctor")  # Hydra commands: nnlab's config

SCRIPT = r"""# nnlab tab completion (bash; zsh: autoload -U bashcompinit && bashcompinit first)
_nnlab_complete()
{
    local word="${COMP_WORDS[COMP_CWORD]}"
    local IFS=$'\n'
    COMPREPLY=($(COMP_LINE="${COMP_LINE:0:$COMP_POINT}" nnlab __complete 2>/dev/null))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
COMP_WORDBREAKS=${COMP_WORDBREAKS//:}
complete -o nospace -o default -F _nnlab_complete nnlab
"""


def script(shell: str) -> str:
    if shell not in ("bash", "zsh"):
        raise ValueError(f"no completion for {shell!r}: bash and zsh (through bashcompinit) are supported")
    return SCRIPT


def candidates(line: str) -> list[str]:
    """What completes the last word of `line` (the command line up to the cursor, `nnlab ...`)."""
    words = line.split()
    new_word = not line or line[-1].isspace()
    args = words[1:]  # without `nnlab`
    if not args or (len(args) == 1 and not new_word):  # the command itself
        start = "" if not args else args[0]
        return [c + " " for c in COMMANDS if c.startswith(start)]
    command = args[0]
    if command == "completion":
        start = "" if new_word else args[-1]
        return [s + " " for s in ("bash", "zsh") if s.startswith(start)]
    if command not in CONFIG_COMMANDS:
        return []  # report, ensemble: the shell completes file names (-o default)
    return _config_candidates(" ".join(args[1:]) + (" " if new_word else ""))


def _config_candidates(rest: str) -> list[str]:
    """Hydra's completion of the overrides typed so far, against nnlab's config (groups, options, keys)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.plugins.completion_plugin import DefaultCompletionPlugin

    from nnlab.config.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="nnlab.conf", version_base="1.3"):
        plugin = DefaultCompletionPlugin(GlobalHydra.instance().config_loader())
        found = plugin._query(config_name="train", line=rest)
    flags = ["-m", "--multirun", "--cfg", "--help", "--version"]
    word = "" if not rest or rest[-1].isspace() else rest.split()[-1]
    if word.startswith("-"):
        return [f + " " for f in flags if f.startswith(word)]
    found = [c for c in found if c.strip() != "hydra" and not c.rsplit(".", 1)[-1].startswith("_")]  # not internals
    return [c if c.endswith(("=", ".", "/")) else c + " " for c in found]


def main(argv: list[str]) -> int:
    """`nnlab completion bash` prints the script; `nnlab __complete` answers the shell (COMP_LINE)."""
    if argv and argv[0] == "__complete":
        print("\n".join(candidates(os.environ.get("COMP_LINE", ""))))
        return 0
    shell = argv[1] if len(argv) > 1 else "bash"
    try:
        print(script(shell), end="")
    except ValueError as e:
        from nnlab.views.console import exit_with

        exit_with(str(e))
    return 0
