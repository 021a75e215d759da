"""Seeds a fresh ewall with what the fuzzing needs to reach past 404: a person wearing a device,
an inclusion zone they are assigned, and a breach of it reported over the OsmAnd listener, so an
open alert exists. Prints the alert's id. Used by .ci/fuzz-api; loopback only.

usage: fuzz-seed.py API_BASE OSMAND_BASE TOKEN
"""

import sys
import time

import requests

IMEI = "490154203237518"  # a 15-digit IMEI whose Luhn check digit holds
HOME = (112.3611, 25.5832)  # lon, lat: Jiahe county
AWAY = (112.4100, 25.6300)  # about 7 km north-east of HOME


def main() -> None:
    api, osmand, token = sys.argv[1:4]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def post(path: str, body: dict) -> dict:
        response = session.post(api + path, json=body, timeout=10)
        if response.status_code != 201:
            sys.exit(f"seed: POST {path} answered {response.status_code}: {response.text}")
        return response.json()

    person = post("/api/v1/persons", {"name": "Fuzz Person", "level": "strict"})
    zone = post(
        "/api/v1/zones",
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": list(HOME)},
            "properties": {"name": "home", "kind": "inclusion", "radius_m": 500.0},
        },
    )
    post("/api/v1/devices", {"imei": IMEI, "person_id": person["id"]})
    response = session.put(
        f"{api}/api/v1/persons/{person['id']}/zones", json={"zone_ids": [zone["id"]]}, timeout=10
    )
    if response.status_code != 200:
        sys.exit(f"seed: assigning the zone answered {response.status_code}: {response.text}")

    now = int(time.time())
    for offset, (lon, lat) in zip((-90, -60, -30), (HOME, AWAY, AWAY)):
        fix = requests.get(
            osmand,
            params={"id": IMEI, "timestamp": now + offset, "lat": lat, "lon": lon, "accuracy": 10},
            timeout=10,
        )
        if fix.status_code != 200:
            sys.exit(f"seed: the OsmAnd listener answered {fix.status_code}: {fix.text}")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = session.get(
            f"{api}/api/v1/alerts", params={"person_id": person["id"]}, timeout=10
        ).json()["alerts"]
        if alerts:
            print(alerts[0]["id"])
            return
        time.sleep(0.2)
    sys.exit("seed: the breach raised no alert within 20 s")


if __name__ == "__main__":
    main()
