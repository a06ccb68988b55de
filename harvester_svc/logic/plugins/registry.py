"""The plugins the configured queues name, each made once per instance. The HTCondor and
Kubernetes plugins need the `harvester` extra: imported only when a queue names them."""

from __future__ import annotations

from collections.abc import Iterable

from harvester_svc.domain.queue_config import QueueConfig
from harvester_svc.logic.plugins.base import ResourcePlugin
from harvester_svc.settings import HarvesterSettings

__all__ = ["MissingPlugin", "plugins_for"]


class MissingPlugin(RuntimeError):
    """A queue names a plugin whose library is not installed."""


def plugins_for(queues: Iterable[QueueConfig], settings: HarvesterSettings) -> dict[str, ResourcePlugin]:
    names = {queue.submitter.plugin for queue in queues}
    plugins: dict[str, ResourcePlugin] = {}
    for name in sorted(names):
        plugins[name] = _make(name, settings)
    return plugins


def _make(name: str, settings: HarvesterSettings) -> ResourcePlugin:
    instance = settings.harvester_id
    if name == "local":
        from harvester_svc.logic.plugins.local import LocalPlugin

        return LocalPlugin(kill_grace_seconds=settings.harvester_kill_grace_seconds)
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
