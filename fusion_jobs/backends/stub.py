"""An in-memory backend for tests: records what would be published, and runs it here on ``drain()``."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import PublishError
from ..models import GATE_BROKER
from .base import Outgoing
from .inline import InlineOutcome, run_inline
from .queued import QueuingBackend


class StubBackend(QueuingBackend):
    """Queues runs like the broker backend, keeping their messages in a list instead.

    Install it with :func:`fusion_jobs.backends.use_backend`. Set ``failure`` to make every
    publish raise it, as a broker that is down would.
    """

    gate = GATE_BROKER

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.failure: PublishError | None = None

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if self.failure is not None:
            raise self.failure
        self.messages.extend(messages)

    def drain(self) -> list[InlineOutcome]:
        """Run every recorded message in this process, oldest first, through the recorded transitions."""
        taken, self.messages = self.messages, []
        return [run_inline(m.task, m.run_id, m.kwargs) for m in taken]
