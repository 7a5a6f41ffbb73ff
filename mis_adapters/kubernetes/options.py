"""What the Kubernetes backend takes from the configuration, built by the bootstrap from it.

No defaults here: the settings state them, once.
"""

from __future__ import annotations

import attrs

from mis_adapters.kubernetes.job import JobOptions


@attrs.frozen
class KubernetesOptions:
    job: JobOptions  # what every Job is made with, before its placement is resolved
    delete_wait_seconds: float  # kubernetes.delete_wait_seconds: for a stopped Job's pod
    resync_seconds: float  # kubernetes.resync_seconds: a watch silent this long is relisted
    warm_up_timeout_seconds: float  # kubernetes.warm_up_timeout_seconds: then ready anyway
    api_retry_max_seconds: float  # kubernetes.api_retry_max_seconds: outside a request
    map_log_bytes: int  # server.map_log_max_bytes: of each request's MAP output, in MIS's log
