"""A gateway's client, picked by its protocol: the one place that knows every protocol's client
(`meters.protocol` is the interface they share)."""

from __future__ import annotations

from meters.dlt645.client import Dlt645Client
from meters.modbus.client import GatewayClient
from meters.protocol import (DLT645_TCP, MODBUS_RTU_OVER_TCP, MODBUS_TCP, PROTOCOLS, MeterBus)


def open_bus(protocol: str, host: str, port: int, *, timeout: float) -> MeterBus:
    """The client for one gateway of `protocol` (no connection is opened yet)."""
    if protocol == MODBUS_TCP:
        return GatewayClient(host, port, timeout=timeout)
    if protocol == MODBUS_RTU_OVER_TCP:
        return GatewayClient(host, port, timeout=timeout, rtu=True)
    if protocol == DLT645_TCP:
        return Dlt645Client(host, port, timeout=timeout)
    raise ValueError(f"unknown meter protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
