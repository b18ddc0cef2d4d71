"""DL/T 645-2007 (多功能电能表通信协议), the national protocol of China's electricity meters.

- `codec`: frames, data identifiers and their values, status words; pure, no I/O.
- `client`: `Dlt645Client`, the `meters.protocol.MeterBus` of a gateway whose protocol is
  `dlt645_tcp` (a transparent serial server passing RS-485 frames over TCP).
- `server`: `Dlt645GatewayServer`, the simulator's gateway speaking this protocol.
"""
