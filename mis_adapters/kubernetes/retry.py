"""Which failed Kubernetes API calls are tried again, how soon, and for how long.

API Priority and Fairness answers 429 with Retry-After when the server is busy; an API server
being upgraded answers 5xx or drops connections. Such a call is tried again with back-off
(a longer Retry-After honoured, capped) for as long as its caller's deadline allows: a
request's own timeout inside a request, `RetryPolicy.max_seconds` outside one (start-up sweep,
clean-up, warm-up). Every other answer is final. `backoff` is the one wait between tries, a
call's or a watch's reconnection. `ApiHealth` remembers since when the API has not answered, for
`/readyz` and for the message of a request that an outage ended.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import attrs

from mis_core.errors import BackendUnavailable

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
FIRST_DELAY = 0.1  # seconds before the second try; doubled after each failure
MAX_BACKOFF = 1.0  # between tries of an unanswered call: the end of an outage is seen within it
MAX_RETRY_AFTER = 10.0  # the longest Retry-After honoured as sent
DOUBLINGS = 32  # more than enough to reach MAX_BACKOFF; a watch may fail for an outage's length
ADVICE_DOWN = (
    "Check that the cluster's control plane is up and that MIS's kubeconfig or service account "
    "is valid."
)
ADVICE_THROTTLED = (  # 429: the server is up and refusing MIS's share (API Priority and Fairness)
    "The API server is throttling MIS: try again later, or give MIS's service account a "
    "priority level with a larger share (a FlowSchema)."
)


def _ignore(verb: str, reason: str) -> None:
    """No one counts the retries."""


@attrs.frozen
class RetryPolicy:
    max_seconds: float  # kubernetes.api_retry_max_seconds: when no deadline bounds a call
    on_retry: Callable[[str, str], None] = _ignore  # (verb, reason) of each retry


def backoff(failures: int, retry_after: float | None = None) -> float:
    """How long to wait after `failures` failed tries: FIRST_DELAY doubled per failure up to
    MAX_BACKOFF, jittered to spread the clients a restart disconnected, or the Retry-After
    asked for when longer: a server (or a proxy) that asks for no wait at all is not hammered."""
    delay = min(FIRST_DELAY * 2.0 ** min(failures, DOUBLINGS), MAX_BACKOFF)
    delay *= random.uniform(0.5, 1.0)
    return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))


class GaveUp(BackendUnavailable):
    """A call given up because its next try would come after its deadline. `retry_after`: the
    wait its server asked for, which whoever tries again later (a watch reconnecting) still owes.
    """

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@attrs.frozen
class Failure:
    """A try that may be repeated: why (a status, "connection", "timeout"), and the details.

    `cause` completes "The Kubernetes API server ...": "answered 503 ...", "cannot be reached".
    """

    reason: str
    cause: str
    retry_after: float | None = None
    ambiguous: bool = False  # the request may have been carried out before it failed


class ApiHealth:
    """Since when the API has not answered (None while it answers), and its last failure."""

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.last: Failure | None = None

    def answered(self) -> None:
        self.failing_since = None
        self.last = None

    def failed(self, failure: Failure) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last = failure

    def outage(self, at_least: float = 0) -> str:
        """What to tell a client while the API has not answered for `at_least` s; else ""."""
        if self.failing_since is None or self.last is None:
            return ""
        seconds = time.monotonic() - self.failing_since
        if seconds < at_least:
            return ""
        cause = self.last.cause
        what = f"The Kubernetes API server {cause}."
        if seconds >= 1:
            what = f"The Kubernetes API did not answer for {seconds:.0f} s (last: it {cause})."
        return f"{what} {ADVICE_THROTTLED if self.last.reason == '429' else ADVICE_DOWN}"


class Attempts:
    """The tries of one call: waits between them, and gives up when its time is spent."""

    def __init__(
        self, policy: RetryPolicy, health: ApiHealth, verb: str, budget: float | None = None
    ) -> None:
        self.policy = policy
        self.health = health
        self.verb = verb
        self.failures = 0
        self.ambiguous = False  # some earlier try may have been carried out
        self.pending = False  # the latest try has no answer yet that says it was not
        deadline = anyio.current_effective_deadline()
        if math.isinf(deadline):
            deadline = anyio.current_time() + (policy.max_seconds if budget is None else budget)
        elif budget is not None:
            deadline = min(deadline, anyio.current_time() + budget)
        self.deadline = deadline

    @property
    def unsure(self) -> bool:
        """Whether the call, given up or cut short, may still have been carried out."""
        return self.ambiguous or self.pending

    async def again(self, failure: Failure, error: Exception) -> None:
        """Wait for the next try; raise `GaveUp` when it would come too late."""
        self.health.failed(failure)
        self.ambiguous = self.ambiguous or failure.ambiguous
        delay = backoff(self.failures, failure.retry_after)
        if anyio.current_time() + delay >= self.deadline:
            raise GaveUp(self.health.outage(), failure.retry_after) from error
        self.failures += 1
        self.policy.on_retry(self.verb, failure.reason)
        await anyio.sleep(delay)


def transient(code: int) -> bool:
    """Whether the server may answer a status differently if asked again: throttled (429), or
    failing inside (5xx other than 501 and 505, which a retry would only repeat)."""
    return code in RETRYABLE_STATUSES


def retry_after(header: str | None) -> float | None:
    """The seconds a Retry-After header asks for, if it does: the API sends whole seconds, a
    proxy in front of it may send an HTTP date."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
