"""Methods as task builders: `TASKS[config.task](config) -> jaxmr.train.task.Task`.

One package per method; the trainer (`jaxmr.train`) imports none of them: entry points call
`build_task(config)` and pass the task in.
"""

from jaxmr.tasks.ivae import build_ivae, build_ivae_recipe
from jaxmr.tasks.retrieval import build_retrieval
from jaxmr.train.host_memory import configure_host_allocator

TASKS = {
    "ivae": build_ivae,
    "ivae_recipe": build_ivae_recipe,
    "retrieval": build_retrieval,
}


def build_task(config):
    """The task named by `config.task`, built from `config`."""
    if config.task not in TASKS:
        raise ValueError(f"config.task must be one of {sorted(TASKS)}, got {config.task!r}")
    # The host allocator policy, before building the task starts JAX's CPU threads: a thread
    # that has allocated keeps its malloc arena (jaxmr.train.host_memory).
    configure_host_allocator(config.get("host_allocator", "system"))
    return TASKS[config.task](config)


__all__ = ["TASKS", "build_task", "build_ivae", "build_ivae_recipe", "build_retrieval"]
