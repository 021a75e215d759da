#!/usr/bin/env python3
"""Holds N logged-in GT06 wristbands on a running ewall, each sending a status heartbeat (0x13)
every --heartbeat seconds, to measure the service's resident memory per connected device.

Device i has the IMEI `ewall simulate` gives device i (86 + 12 digits + Luhn digit), so a run of
`ewall simulate --register --devices N` registers them first. Each connection comes from its own
127.x.y.z address. Prints `connected K` once every device has its login answered, then holds the
connections until killed (SIGTERM), so that several of these processes, each below the open-file
limit, add up to the count measured.

    python3 benches/idle_connections.py --target 127.0.0.1:5023 --first 0 --count 5000
"""

import argparse
import asyncio
import signal
import sys


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def imei(index: int) -> str:
    body = f"86{index % 10**12:012d}"
    return body + luhn_check_digit(body)


def crc_itu(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return ~crc & 0xFFFF


def frame(protocol: int, content: bytes, serial: int) -> bytes:
    body = bytes([len(content) + 5, protocol]) + content + serial.to_bytes(2, "big")
    return b"\x78\x78" + body + crc_itu(body).to_bytes(2, "big") + b"\x0d\x0a"


def login(device: str, serial: int) -> bytes:
    digits = device.rjust(16, "0")
    return frame(0x01, bytes.fromhex(digits), serial)


def heartbeat(serial: int) -> bytes:
    # Terminal info (GPS fixed, charging), voltage level 6, signal 4, language 0x0002.
    return frame(0x13, bytes([0xC4, 0x06, 0x04, 0x00, 0x02]), serial)


def source_address(index: int) -> str:
    # 127.0.0.1 is left to the service's own clients.
    n = index + 2
    return f"127.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}"


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(3)
    rest = await reader.readexactly(head[2] + 2)
    return head + rest


async def wristband(host, port, index, heartbeat_s, logged_in, stop, connecting):
    async with connecting:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source_address(index), 0)
        )
        writer.write(login(imei(index), 1))
        await writer.drain()
        reply = await read_reply(reader)
    if reply[3] != 0x01:
        raise RuntimeError(f"login of {imei(index)} answered {reply.hex()}")
    logged_in.append(index)
    serial = 2
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), heartbeat_s)
            break
        except asyncio.TimeoutError:
            pass
        writer.write(heartbeat(serial))
        await writer.drain()
        await read_reply(reader)
        serial = (serial + 1) & 0xFFFF
    writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    logged_in = []
    connecting = asyncio.Semaphore(200)

    tasks = [
        asyncio.create_task(
            wristband(host, int(port), i, args.heartbeat, logged_in, stop, connecting)
        )
        for i in range(args.first, args.first + args.count)
    ]
    while len(logged_in) < args.count:
        done = [t for t in tasks if t.done() and t.exception()]
        if done:
            print(f"error: {done[0].exception()!r}", file=sys.stderr, flush=True)
            sys.exit(1)
        await asyncio.sleep(0.2)
    print(f"connected {len(logged_in)}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
