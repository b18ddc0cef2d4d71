"""What the worker needs from a meter protocol, and nothing more.

`meters.transport.GatewayClient` speaks our Modbus register map (`meters.registers`) over
Modbus TCP. Another meter model (a CDAB word order, float registers) or protocol (DL/T 645-2007,
DLMS/COSEM) is one new module with a class of this shape, chosen by the worker's
`client_factory`; nothing in scheduling or storage changes.
"""

from __future__ import annotations

from typing import Protocol

from meters.codec import MeterSnapshot


class MeterBus(Protocol):
    """One gateway's bus. Every method raises `meters.transport.MeterError` on failure."""

    async def read_snapshot(self, unit_id: int) -> MeterSnapshot:
        """Energy (total and per period) and relay state, read in one transaction."""
        ...

    async def read_relay(self, unit_id: int) -> bool:
        """True when the relay is open (supply cut)."""
        ...

    async def write_relay(self, unit_id: int, open_relay: bool) -> None:
        """Send cut (True) or restore (False). Acknowledged is not moved: read it back."""
        ...

    async def close(self) -> None:
        ...
