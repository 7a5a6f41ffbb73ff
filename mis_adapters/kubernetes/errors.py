"""What the Kubernetes API answered when it did not answer with success, as types.

Callers catch the case they handle (`NotFound`, `Gone`, `Refused`) instead of comparing
status numbers; `api_error` picks the type from the status the API sent.
"""

from __future__ import annotations

from typing import ClassVar

from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome


class KubeApiError(Exception):
    """The API answered, but not with success."""

    status: ClassVar[int | None] = None

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class Refused(KubeApiError):
    """401 or 403: MIS's credentials, or the Role bound to them, do not allow the call."""


class NotFound(KubeApiError):
    status = 404


class Conflict(KubeApiError):
    status = 409


class Gone(KubeApiError):
    """410: a watch asked for a version the server has compacted away; list again."""

    status = 410


class Invalid(KubeApiError):
    """422: the API refused the object itself."""

    status = 422


_BY_STATUS: dict[int, type[KubeApiError]] = {
    401: Refused,
    403: Refused,
    **{kind.status: kind for kind in (NotFound, Conflict, Gone, Invalid) if kind.status},
}


def api_error(code: int, reason: str, message: str) -> KubeApiError:
    return _BY_STATUS.get(code, KubeApiError)(code, reason, message)


def unreachable(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        f"The Kubernetes API server cannot be reached ({type(exc).__name__}: {exc}). Check "
        "that the cluster is up and that MIS's kubeconfig or service account is valid."
    )


def not_created(namespace: str, exc: KubeApiError) -> JobOutcome:
    """The outcome of a Job the API refused; refused credentials or RBAC are MIS's fault."""
    if isinstance(exc, Refused):
        raise BackendUnavailable(_refusal(namespace, exc)) from exc
    return JobOutcome(False, f"could not be started: the API refused its Job ({exc})")


def _refusal(namespace: str, exc: Refused) -> str:
    if exc.code == 401:
        return (
            f"The Kubernetes API refused MIS's credentials ({exc}), read again once. Check "
            "that MIS's service account token or kubeconfig is valid."
        )
    return (
        f"MIS may not create Jobs in namespace {namespace} ({exc}). Check the Role bound to "
        "its service account."
    )
