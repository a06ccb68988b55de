"""Who may call which RPC of JEDI. Owner checks (a user acts on its own tasks only) are made by
the task servicer on top of this table."""

from __future__ import annotations

from panda_runtime.service.principals import ADMIN, AUTHENTICATED, PRODUCTION, SERVICE, USER, AccessTable

__all__ = ["ACCESS"]

_TASK = "/panda.jedi.v1.TaskService/"
_DATASET = "/panda.jedi.v1.DatasetService/"

_PEOPLE = {USER, PRODUCTION, SERVICE, ADMIN}

ACCESS = AccessTable({
    **{_TASK + name: _PEOPLE for name in (
        "SubmitTask", "GetTask", "ListTasks", "CountTasks", "WatchTasks", "KillTask", "FinishTask", "RetryTask",
        "PauseTask", "ResumeTask", "ReassignTask", "SetTaskPriority",
    )},
    _DATASET + "RegisterDataset": _PEOPLE,
    # Dataset contents are no secret within the mesh (as in a data catalogue).
    _DATASET + "GetDataset": {AUTHENTICATED},
    _DATASET + "ListDatasets": {AUTHENTICATED},
    _DATASET + "ListDatasetFiles": {AUTHENTICATED},
})
