"""Crash writer: 8 threads upload objects of 64 KiB to 2 MiB of random data into
the bucket NUBO_CRASH_BUCKET (created if missing) for up to 60 s or until the
server goes away. After each PUT that succeeded, one JSON line
{"key", "sha256", "size"} is appended (and fsynced) to NUBO_ACKED_FILE. Connection
errors end a thread quietly: the server is expected to be killed mid-write.
"""
import hashlib
import json
import os
import random
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from s3_common import REGION, client

BUCKET = os.environ["NUBO_CRASH_BUCKET"]
ACKED = os.environ["NUBO_ACKED_FILE"]
THREADS = 8
DEADLINE = time.monotonic() + 60

s3 = client(connect_timeout=5, read_timeout=30, max_pool_connections=THREADS)
lock = threading.Lock()
acked = open(ACKED, "a")
counts = {"acked": 0, "stopped": 0}


def ack(key, data):
    line = json.dumps({"key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    with lock:
        acked.write(line + "\n")
        acked.flush()
        os.fsync(acked.fileno())
        counts["acked"] += 1


def writer(n):
    rng = random.Random()
    i = 0
    while time.monotonic() < DEADLINE:
        size = rng.randint(64 * 1024, 2 * 1024 * 1024)
        data = os.urandom(size)
        key = f"w{n}/{i:05d}-{size}"
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        except (BotoCoreError, ClientError, OSError) as e:
            with lock:
                counts["stopped"] += 1
                print(f"writer {n} stops after {i} objects: {type(e).__name__}", flush=True)
            return
        ack(key, data)
        i += 1


try:
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
except ClientError as e:
    if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
        raise
threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
acked.close()
print(f"ok: crash writer acked {counts['acked']} objects, {counts['stopped']} writers stopped by errors")
