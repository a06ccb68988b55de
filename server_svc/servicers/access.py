"""Who may call which RPC of the server. Owner checks (a user acts on its own jobs only) are
made by the servicers on top of this table."""

from __future__ import annotations

from panda_runtime.service.principals import (
    ADMIN,
    AUTHENTICATED,
    HARVESTER,
    PILOT,
    PRODUCTION,
    SERVICE,
    USER,
    AccessTable,
)

__all__ = ["ACCESS"]

_JOB = "/panda.server.v1.JobService/"
_QUEUE = "/panda.server.v1.QueueService/"
_STORAGE = "/panda.server.v1.StorageService/"
_DISPATCH = "/panda.server.v1.DispatchService/"
_HARVESTER = "/panda.harvester.v1.HarvesterService/"
_INSTANCE = "/panda.harvester.v1.InstanceService/"

# People and the services acting for them.
_WORKERS_OF_JOBS = {USER, PRODUCTION, SERVICE, ADMIN}

ACCESS = AccessTable({
    _JOB + "SubmitJobs": _WORKERS_OF_JOBS,
    _JOB + "GetJob": _WORKERS_OF_JOBS,
    _JOB + "ListJobs": _WORKERS_OF_JOBS,
    _JOB + "CountJobs": _WORKERS_OF_JOBS,
    _JOB + "ListErrorCodes": {AUTHENTICATED},
    _JOB + "KillJobs": _WORKERS_OF_JOBS,
    _JOB + "ReassignJobs": _WORKERS_OF_JOBS,
    _JOB + "WatchJobs": _WORKERS_OF_JOBS,
    _JOB + "SetJobsPriority": _WORKERS_OF_JOBS,
    _QUEUE + "CreateQueue": {ADMIN},
    _QUEUE + "UpdateQueue": {ADMIN},
    _QUEUE + "GetQueue": {AUTHENTICATED},
    _QUEUE + "ListQueues": {AUTHENTICATED},
    _STORAGE + "CreateStorageElement": {ADMIN},
    _STORAGE + "UpdateStorageElement": {ADMIN},
    _STORAGE + "GetStorageElement": {AUTHENTICATED},
    _STORAGE + "ListStorageElements": {AUTHENTICATED},
    # Pilots, for the queues their token names; harvester relays for pilots without a route.
    _DISPATCH + "Connect": {PILOT, HARVESTER},
    # The registry of harvester: anyone signed in reads it; operators steer workers and queues.
    _HARVESTER + "ListWorkers": {AUTHENTICATED},
    _HARVESTER + "GetWorker": {AUTHENTICATED},
    _HARVESTER + "KillWorker": {ADMIN},
    _HARVESTER + "ListHarvesters": {AUTHENTICATED},
    _HARVESTER + "GetHarvester": {AUTHENTICATED},
    _HARVESTER + "ListQueueConfigs": {AUTHENTICATED},
    _HARVESTER + "GetQueueConfig": {AUTHENTICATED},
    _HARVESTER + "SetQueueLimits": {ADMIN},
    _HARVESTER + "ListHarvesterCommands": {AUTHENTICATED},
    # Harvester instances, each for itself (the owner check is the store's, in its transaction).
    _INSTANCE + "RegisterInstance": {HARVESTER, ADMIN},
    _INSTANCE + "Heartbeat": {HARVESTER, ADMIN},
    _INSTANCE + "ReportWorkers": {HARVESTER, ADMIN},
    _INSTANCE + "CompleteCommands": {HARVESTER, ADMIN},
    _INSTANCE + "GetQueueLoads": {HARVESTER, ADMIN},
})
