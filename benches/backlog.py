#!/usr/bin/env python3
"""A wristband emptying its blind-area backlog: registers one GT06 device on a running ewall,
logs it in, writes 1,000 position frames (one second apart) in one send, and reads the
acknowledgements. Prints JSON: the acknowledgements received, whether they came in order, the
commits the service made meanwhile and the positions it stored (from `/metrics`), and the
seconds from the send to the last acknowledgement.

The frames are the real capture of `fixtures/frames/gt06/location.hex` with the time and the
serial changed (and the CRC recomputed); their date is in 2015, so run the service with
`[ingest] max_fix_age` long enough to keep them plausible.

    python3 benches/backlog.py --api http://127.0.0.1:8080 --gt06 127.0.0.1:5023 --token TOKEN
"""

import argparse
import json
import socket
import time
import urllib.request

LOGIN = "78780d01086471700328358100093f040d0a"  # fixtures/frames/gt06/login.hex
LOCATION = "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a"
IMEI = "864717003283581"
FRAMES = 1000


def crc_itu(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return ~crc & 0xFFFF


def location(i: int) -> bytes:
    body = bytearray(bytes.fromhex(LOCATION)[2:-4])
    # 2015-10-20 14:00:00 plus i seconds (hh mm ss at body[5:8]), serial 2 + i.
    body[5], body[6], body[7] = 14 + i // 3600, (i // 60) % 60, i % 60
    body[-2:] = (2 + i).to_bytes(2, "big")
    return b"\x78\x78" + bytes(body) + crc_itu(bytes(body)).to_bytes(2, "big") + b"\x0d\x0a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the service's HTTP address")
    parser.add_argument("--gt06", required=True, help="its GT06 listener, HOST:PORT")
    parser.add_argument("--token", required=True, help="an admin or operator token")
    args = parser.parse_args()

    def call(method, path, body):
        request = urllib.request.Request(
            f"{args.api}/api/v1{path}", method=method, data=json.dumps(body).encode(),
            headers={"authorization": f"Bearer {args.token}", "content-type": "application/json"})
        return json.load(urllib.request.urlopen(request))

    def metric(name):
        text = urllib.request.urlopen(f"{args.api}/metrics").read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    person = call("POST", "/persons", {"name": "backlog", "level": "normal", "timezone": "Asia/Shanghai"})
    call("POST", "/devices", {"imei": IMEI, "person_id": person["id"]})
    host, port = args.gt06.rsplit(":", 1)
    device = socket.create_connection((host, int(port)))
    device.sendall(bytes.fromhex(LOGIN))
    device.recv(10)
    frames = b"".join(location(i) for i in range(FRAMES))
    commits = metric("ewall_batch_commit_duration_seconds_count")
    stored = metric("ewall_fixes_stored_total")
    started = time.perf_counter()
    device.sendall(frames)
    replies = b""
    while len(replies) < 10 * FRAMES:
        chunk = device.recv(65536)
        if not chunk:
            break
        replies += chunk
    seconds = time.perf_counter() - started
    serials = [int.from_bytes(replies[i + 4:i + 6], "big") for i in range(0, len(replies), 10)]
    print(json.dumps({
        "frames": FRAMES,
        "acks": len(serials),
        "in_order": serials == list(range(2, 2 + len(serials))),
        "commits": metric("ewall_batch_commit_duration_seconds_count") - commits,
        "stored": metric("ewall_fixes_stored_total") - stored,
        "seconds": round(seconds, 3),
    }))


if __name__ == "__main__":
    main()
