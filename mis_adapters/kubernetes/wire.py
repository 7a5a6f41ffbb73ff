"""One try of a Kubernetes API call over HTTP, and what its answer means.

A success is the raw response (its body the API's own JSON, read by the caller). A status the
server may answer differently if asked again (429, 5xx), or no answer at all, is `Retryable`:
what `retry.Attempts` waits on before the next try. Any other status is the typed error its
Status object stands for, as is a watch's ERROR event; a connection lost while a body streams
is `unreachable`, like one refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from mis_adapters.kubernetes.errors import KubeApiError, api_error, unreachable
from mis_adapters.kubernetes.retry import ApiHealth, Failure, retry_after, transient

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
# Failures before an answer; all but a refused connection may come after the server acted.
UNANSWERED = (TimeoutError, aiohttp.ClientError, OSError)


class Retryable(Exception):
    """A try worth repeating: the `failure` to wait on, the `error` once no time is left."""

    def __init__(self, failure: Failure, error: Exception) -> None:
        super().__init__(failure.cause)
        self.failure = failure
        self.error = error


async def try_once(
    health: ApiHealth,
    method: Any,
    *args: Any,
    request_timeout: aiohttp.ClientTimeout = STREAM_TIMEOUT,
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """One try: the response when its status says success; else what went wrong. `health`
    hears of every answer (a failure is `Attempts`' to tell it)."""
    try:
        response: aiohttp.ClientResponse = await method(
            *args, _preload_content=False, _request_timeout=request_timeout, **kwargs
        )
    except aiohttp.ClientSSLError as exc:  # a certificate trusted at no later try either
        raise unreachable(exc) from exc
    except UNANSWERED as exc:
        sent = not isinstance(exc, aiohttp.ClientConnectorError)
        cause = f"cannot be reached ({type(exc).__name__}: {exc})"
        raise Retryable(Failure(reason_of(exc), cause, ambiguous=sent), unreachable(exc)) from exc
    if 200 <= response.status < 300:
        health.answered()
        return response
    error = await _error_of(response)
    if transient(response.status):
        wait = retry_after(response.headers.get("Retry-After"))
        cause = f"answered {error}"
        failure = Failure(str(response.status), cause, wait, response.status >= 500)
        raise Retryable(failure, error)
    health.answered()
    raise error


def event_error(event: dict[str, Any]) -> KubeApiError:
    """The API error a watch's ERROR event carries (its object is a Status)."""
    status = event.get("object") or {}
    return api_error(
        int(status.get("code", 500)), status.get("reason", ""), status.get("message", "")
    )


def reason_of(exc: BaseException) -> str:
    """A call unanswered, as the retry metric names why: "timeout" or "connection"."""
    return "timeout" if isinstance(exc, TimeoutError) else "connection"


@contextmanager
def streaming(response: aiohttp.ClientResponse) -> Iterator[None]:
    """While a body streams: a connection lost midway is `unreachable`, like one refused."""
    try:
        yield
    except UNANSWERED as exc:
        raise unreachable(exc) from exc
    finally:
        response.release()


async def _error_of(response: aiohttp.ClientResponse) -> KubeApiError:
    """The API's Status object as a typed error (the response is released)."""
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = {}
    finally:
        response.release()
    if not isinstance(body, dict):
        body = {}
    return api_error(
        response.status, str(body.get("reason") or response.reason), str(body.get("message", ""))
    )
