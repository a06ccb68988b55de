"""What a caller of PanDA mesh services needs: a client per service (`service`) configured by
small dataclasses (`config`), on channels carrying its bearer token (`channels`), whose token
comes from `credentials`; failed calls said for people as `ServiceError` (`errors`). Nothing
here touches a database, so the pilot and the command line import only this half of the runtime.

    config = ConnectConfig.from_settings("127.0.0.1:25080", settings)
    with ServerClient(config) as client:
        job = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=42)).job
"""

from panda_runtime.client.config import DEFAULT_DEADLINE_SECONDS, ConnectConfig, RetryPolicy, TlsConfig
from panda_runtime.client.errors import ServiceError
from panda_runtime.client.service import (
    AsyncServerClient,
    AsyncServiceClient,
    IamClient,
    JediClient,
    ServerClient,
    ServiceClient,
)

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "AsyncServerClient",
    "AsyncServiceClient",
    "ConnectConfig",
    "IamClient",
    "JediClient",
    "RetryPolicy",
    "ServerClient",
    "ServiceClient",
    "ServiceError",
    "TlsConfig",
]
