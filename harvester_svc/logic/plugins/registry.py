"""The plugins the configured queues name, each made once per instance. The HTCondor and
Kubernetes plugins need the `harvester` extra: imported only when a queue names them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harvester_svc.domain.queue_config import QueueConfig
from harvester_svc.logic.plugins.base import ResourcePlugin
from harvester_svc.settings import HarvesterSettings

__all__ = ["MissingPlugin", "check_queue_parameters", "plugins_for"]


class MissingPlugin(RuntimeError):
    """A queue names a plugin whose library is not installed."""


def plugins_for(queues: Iterable[QueueConfig], settings: HarvesterSettings) -> dict[str, ResourcePlugin]:
    names = {queue.submitter.plugin for queue in queues}
    plugins: dict[str, ResourcePlugin] = {}
    for name in sorted(names):
        plugins[name] = _make(name, settings)
    return plugins


def check_queue_parameters(queues: Iterable[QueueConfig], plugins: Mapping[str, ResourcePlugin]) -> list[str]:
    """What the plugins find wrong in their queues' parameters beyond the configuration's own
    rules, which needs reading files (a Slurm queue's batch script template that cannot be read or
    names an unknown placeholder): one problem per queue, for when the configuration is loaded."""
    problems: list[str] = []
    for queue in queues:
        check = getattr(plugins.get(queue.submitter.plugin), "check_parameters", None)
        if check is None:
            continue
        try:
            check(queue.submitter.parameters)
        except ValueError as error:
            problems.append(f'queue "{queue.name}": submitter: {error}')
    return problems


def _make(name: str, settings: HarvesterSettings) -> ResourcePlugin:
    instance = settings.harvester_id
    if name == "local":
        from harvester_svc.logic.plugins.local import LocalPlugin

        return LocalPlugin(kill_grace_seconds=settings.harvester_kill_grace_seconds)
    if name == "slurm":
        from harvester_svc.logic.plugins.slurm import SlurmPlugin

        # Slurm's own commands: the cluster is the one SLURM_CONF (or /etc/slurm) names.
        return SlurmPlugin()
    try:
        if name == "htcondor":
            from harvester_svc.logic.plugins.htcondor import HTCondorPlugin

            return HTCondorPlugin(instance=instance)
        if name == "kubernetes":
            from harvester_svc.logic.plugins.kubernetes import KubernetesPlugin

            return KubernetesPlugin(instance=instance)
    except ImportError as error:
        raise MissingPlugin(f"the {name} plugin needs the `harvester` extra: pip install 'panda-mesh[harvester]' "
                            f"({error})") from error
    raise MissingPlugin(f"no plugin named {name!r}")
