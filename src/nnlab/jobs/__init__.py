"""Hydra's jobs, and what nnlab makes of them: the seam between Hydra's sweepers and launchers (nnlab's own
plugins in src/hydra_plugins/nnlab_launcher) and nnlab's commands.

    task.py           what a job is: Task (Hydra's task function), Job, Outcome, Session; a stack's run_group
    stacking.py       which jobs of a sweep may train as one stack, their folder names (torch-free)
    hydra_private.py  the private parts of Hydra nnlab uses, in one place (each pinned by a test)

Nothing here imports the command line (nnlab/cli/): the command hands Hydra a Task, and the plugins
call this package.
"""
