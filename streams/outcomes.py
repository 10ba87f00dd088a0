"""Values of the outcomes topic: every state change (from the orders agent) and every send attempt (from the
sender), discriminated by ``type``. Integrations and audit read these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from statemachine.events import SendResultKind, StateChanged
from statemachine.types import IsoDateTime


class SendAttempt(BaseModel):
    """What the sender did for one command and what Amazon answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    type: Literal["send_attempt"] = "send_attempt"
    order_key: str
    seller_id: str
    order_id: str
    marketplace_id: str
    lease_id: int
    result: SendResultKind
    reason: str = ""
    request_id: str | None = None
    dry_run: bool = False
    duration_ms: int = 0
    at: IsoDateTime


OutcomeEvent = Annotated[StateChanged | SendAttempt, Field(discriminator="type")]
OUTCOME_EVENT: TypeAdapter[StateChanged | SendAttempt] = TypeAdapter(OutcomeEvent)
