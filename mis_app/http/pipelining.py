"""A bound on pipelined requests.

asyncio hands over up to 256 KiB per read and httptools parses all of it in one call, running
uvicorn's callbacks for every request in it: one read of 10,000 `GET /healthz` requests kept
the event loop busy for a tenth of a second per connection, and 200 such connections kept
`/healthz` silent for over a minute. A connection may have `MAX_PIPELINED` requests waiting
behind the one being answered; the next one stops the parser (a callback that raises ends its
run) and the connection is closed.
"""

from __future__ import annotations

from loguru import logger

from mis_app.http.head import HeadBoundProtocol

MAX_PIPELINED = 16  # requests a connection may have waiting behind the one being answered


class PipelineBoundProtocol(HeadBoundProtocol):
    _flooded = False  # a request came with MAX_PIPELINED already waiting

    def on_message_begin(self) -> None:
        if not self._refused and len(self.pipeline) >= MAX_PIPELINED:
            self._flooded = True
            raise _PipelineFull  # ends the parser's run over this read: nothing more is parsed
        super().on_message_begin()

    def send_400_response(self, msg: str) -> None:
        if self._flooded:  # the parser stopped on our own callback's exception
            self._close_flooded()
            return
        super().send_400_response(msg)

    def _close_flooded(self) -> None:
        """Close a connection that pipelined too many requests: the answers owed cannot be
        sent out of order, and parsing more of what it sent is the attack."""
        if self._refused:
            return
        self._refused = True
        logger.warning("closed a connection with over {} pipelined requests waiting", MAX_PIPELINED)
        self.transport.close()


class _PipelineFull(Exception):
    """Raised from a parser callback to stop httptools parsing the rest of a read."""
