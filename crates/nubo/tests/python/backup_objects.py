"""Objects for the backup test, whose bytes follow from their keys, so that
any object a restored region lists can be checked whatever moment the backup
caught.

  fill BUCKET N          makes BUCKET with N objects (inline and in files)
  churn BUCKET STOP      puts, overwrites, deletes and multipart-uploads in
                         BUCKET until the file STOP exists (at most 2000
                         rounds or 180 s), writing the rounds done so far
                         to STOP.rounds
  verify BUCKET:N ...    every object of each BUCKET has the bytes of its
                         key, and BUCKET holds N of them (* for any number)
"""
import hashlib
import os
import sys
import time

from s3_common import MiB, client, done

s3 = client()


def body(key):
    """The bytes of `key`: 100 bytes (kept in its row) or 5 MiB and more for
    multipart keys, 70-325 KB (a file) otherwise."""
    digest = hashlib.sha256(key.encode()).digest()
    if key.endswith("-small"):
        size = 100
    elif key.startswith("mp/"):
        size = 5 * MiB + 1000 + digest[1]
    else:
        size = 70_000 + digest[0] * 1000
    return (digest * (size // len(digest) + 1))[:size]


def multipart(bucket, key):
    data = body(key)
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, at in enumerate(range(0, len(data), 5 * MiB), start=1):
        r = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data[at : at + 5 * MiB]
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )


def fill(bucket, n):
    s3.create_bucket(Bucket=bucket)
    for i in range(n):
        key = f"kept/{i}" + ("-small" if i % 4 == 0 else "")
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))
    multipart(bucket, "mp/kept")
    done(f"{n + 1} objects in {bucket}")


def churn(bucket, stop):
    s3.create_bucket(Bucket=bucket)
    started = time.monotonic()
    puts = deletes = uploads = 0
    i = 0
    while not os.path.exists(stop) and i < 2000 and time.monotonic() - started < 180:
        key = f"churn/{i % 40}" + ("-small" if i % 5 == 0 else "")
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))
        puts += 1
        if i % 3 == 0:
            s3.delete_object(Bucket=bucket, Key=f"churn/{(i * 7) % 40}")
            deletes += 1
        if i % 25 == 0:
            multipart(bucket, f"mp/{i % 4}")
            uploads += 1
        i += 1
        with open(stop + ".rounds", "w") as f:
            f.write(str(i))
    assert os.path.exists(stop), "the backup did not end in time"
    done(f"churn: {puts} puts, {deletes} deletes, {uploads} multipart uploads")


def verify(specs):
    for spec in specs:
        bucket, want = spec.split(":")
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        for key in keys:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert got == body(key), f"{bucket}/{key}: {len(got)} bytes, not its own"
        if want != "*":
            assert len(keys) == int(want), f"{bucket}: {len(keys)} objects, not {want}"
        done(f"{bucket}: {len(keys)} objects, each with its bytes")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "fill":
        fill(args[0], int(args[1]))
    elif mode == "churn":
        churn(args[0], args[1])
    elif mode == "verify":
        verify(args)
    else:
        sys.exit(f"unknown mode {mode}")
