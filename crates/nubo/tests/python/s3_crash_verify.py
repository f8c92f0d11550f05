"""Crash verifier, run after the server was killed during s3_crash_writer.py and
restarted: every acknowledged object (NUBO_ACKED_FILE) reads back whole with its
SHA-256, and every object listed in NUBO_CRASH_BUCKET is complete: either
acknowledged, or readable in full with Content-Length equal to its listed size and
its ETag the MD5 of the body. No partial object survives a crash.
"""
import hashlib
import json
import os

from s3_common import client, done

BUCKET = os.environ["NUBO_CRASH_BUCKET"]
s3 = client(read_timeout=120)

acked = {}
with open(os.environ["NUBO_ACKED_FILE"]) as f:
    for line in f:
        line = line.strip()
        if line:  # the writer may have been cut mid-line only if it crashed itself
            entry = json.loads(line)
            acked[entry["key"]] = entry
assert acked, "the writer acknowledged at least one object before the crash"

listed = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
    for o in page.get("Contents", []):
        listed[o["Key"]] = o

for key, entry in acked.items():
    assert key in listed, f"acknowledged {key} is listed after the restart"
    got = s3.get_object(Bucket=BUCKET, Key=key)
    body = got["Body"].read()
    assert len(body) == entry["size"] == got["ContentLength"], f"{key}: {len(body)} bytes, acknowledged {entry['size']}"
    assert hashlib.sha256(body).hexdigest() == entry["sha256"], f"{key}: SHA-256 differs from the acknowledged body"
    assert listed[key]["Size"] == entry["size"], f"{key}: listed size {listed[key]['Size']}, acknowledged {entry['size']}"

unacked = [k for k in listed if k not in acked]
for key in unacked:
    o = listed[key]
    got = s3.get_object(Bucket=BUCKET, Key=key)
    body = got["Body"].read()
    assert got["ContentLength"] == o["Size"] == len(body), (
        f"{key} (not acknowledged): listed {o['Size']} bytes, Content-Length {got['ContentLength']}, read {len(body)}"
    )
    assert got["ETag"] == o["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', f"{key}: ETag is not the MD5 of the body"
    # The writer names keys after their size: a partial body would not match.
    assert key.rsplit("-", 1)[-1] == str(len(body)), f"{key}: {len(body)} bytes, a partial object"

print(f"{len(acked)} acknowledged objects intact, {len(unacked)} unacknowledged but complete")
done("crash")
