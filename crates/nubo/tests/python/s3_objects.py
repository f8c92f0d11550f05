"""Objects: put/get/head/delete, ranges, copy (metadata COPY and REPLACE, across
buckets), batch delete (also racing over the same versions), metadata and
content headers, conditional GETs, PUTs (racing creators: one wins) and deletes,
part numbers, request ids, a PUT of unknown length (chunked transfer encoding),
NoSuchKey/NoSuchBucket, awkward keys and the 1024-byte key limit, empty objects,
Content-MD5 and flexible checksums (SHA256, CRC32), ETag = MD5 of the body.
"""
import datetime
import http.client
import os
import re
import threading

from botocore.exceptions import ClientError

from s3_common import (
    ENDPOINT,
    HOST,
    PORT,
    client,
    crc32_b64,
    destroy_bucket,
    done,
    etag_of,
    expect_error,
    md5_b64,
    new_bucket,
    sha256_b64,
    signed_headers,
    status_of,
)

s3 = client()
b = new_bucket(s3, "obj")


def put_get_head_delete():
    body = b"hello world"
    put = s3.put_object(Bucket=b, Key="hello.txt", Body=body)
    assert put["ETag"] == etag_of(body), f"PUT ETag {put['ETag']} is the MD5 of the body"
    got = s3.get_object(Bucket=b, Key="hello.txt")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == etag_of(body)
    assert got["AcceptRanges"] == "bytes", got.get("AcceptRanges")
    assert isinstance(got["LastModified"], datetime.datetime)
    head = s3.head_object(Bucket=b, Key="hello.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag_of(body), head
    assert head["LastModified"] == got["LastModified"]

    # Overwrite replaces the whole object.
    s3.put_object(Bucket=b, Key="hello.txt", Body=b"bye")
    assert s3.get_object(Bucket=b, Key="hello.txt")["Body"].read() == b"bye"

    assert status_of(s3.delete_object(Bucket=b, Key="hello.txt")) == 204
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key="hello.txt")
    expect_error(None, 404, s3.head_object, Bucket=b, Key="hello.txt")
    assert status_of(s3.delete_object(Bucket=b, Key="hello.txt")) == 204, "deleting a missing key succeeds"

    for size in (1, 1000, 100 * 1024, 3 * 1024 * 1024 + 7):
        data = os.urandom(size)
        put = s3.put_object(Bucket=b, Key=f"rand/{size}", Body=data)
        assert put["ETag"] == etag_of(data), f"ETag of {size} bytes"
        assert s3.get_object(Bucket=b, Key=f"rand/{size}")["Body"].read() == data, f"{size} bytes round trip"


def ranges():
    s3.put_object(Bucket=b, Key="digits", Body=b"0123456789")
    for rng, content, crange in [
        ("bytes=0-4", b"01234", "bytes 0-4/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=5-", b"56789", "bytes 5-9/10"),
        ("bytes=5-100", b"56789", "bytes 5-9/10"),
        ("bytes=9-9", b"9", "bytes 9-9/10"),
    ]:
        got = s3.get_object(Bucket=b, Key="digits", Range=rng)
        assert status_of(got) == 206, f"{rng}: status {status_of(got)}"
        assert got["Body"].read() == content, f"{rng}: body"
        assert got["ContentRange"] == crange, f"{rng}: Content-Range {got.get('ContentRange')}"
        assert got["ContentLength"] == len(content), f"{rng}: Content-Length"
    for rng in ("bytes=10-", "bytes=20-30"):
        e = expect_error("InvalidRange", 416, s3.get_object, Bucket=b, Key="digits", Range=rng)
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("content-range") in (None, "bytes */10")


def copies():
    src_body = b"copy me"
    s3.put_object(
        Bucket=b,
        Key="src",
        Body=src_body,
        ContentType="text/x-source",
        Metadata={"origin": "src"},
    )
    out = s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"})
    assert out["CopyObjectResult"]["ETag"] == etag_of(src_body), out
    head = s3.head_object(Bucket=b, Key="dst")
    assert head["Metadata"] == {"origin": "src"}, f"COPY keeps metadata: {head['Metadata']}"
    assert head["ContentType"] == "text/x-source", head["ContentType"]
    assert s3.get_object(Bucket=b, Key="dst")["Body"].read() == src_body

    s3.copy_object(
        Bucket=b,
        Key="replaced",
        CopySource={"Bucket": b, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"fresh": "yes"},
        ContentType="text/plain",
    )
    head = s3.head_object(Bucket=b, Key="replaced")
    assert head["Metadata"] == {"fresh": "yes"}, f"REPLACE replaces metadata: {head['Metadata']}"
    assert head["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=b, Key="replaced")["Body"].read() == src_body

    other_bucket = new_bucket(s3, "obj2")
    s3.copy_object(Bucket=other_bucket, Key="a/b", CopySource={"Bucket": b, "Key": "src"})
    got = s3.get_object(Bucket=other_bucket, Key="a/b")
    assert got["Body"].read() == src_body and got["Metadata"] == {"origin": "src"}
    # The source is untouched by all this.
    assert s3.head_object(Bucket=b, Key="src")["Metadata"] == {"origin": "src"}
    expect_error("NoSuchKey", 404, s3.copy_object, Bucket=b, Key="x", CopySource={"Bucket": b, "Key": "missing"})
    destroy_bucket(s3, other_bucket)


def batch_delete():
    for k in ("del/a", "del/b", "del/c"):
        s3.put_object(Bucket=b, Key=k, Body=b"x")
    out = s3.delete_objects(
        Bucket=b,
        Delete={"Objects": [{"Key": "del/a"}, {"Key": "del/b"}, {"Key": "del/missing"}]},
    )
    deleted = sorted(d["Key"] for d in out.get("Deleted", []))
    assert deleted == ["del/a", "del/b", "del/missing"], f"Deleted: {out}"
    assert not out.get("Errors"), f"Errors: {out.get('Errors')}"
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="del/").get("Contents", [])]
    assert left == ["del/c"], left

    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "del/c"}], "Quiet": True})
    assert not out.get("Deleted"), f"Quiet mode lists no successes: {out}"
    assert not out.get("Errors"), out
    assert "Contents" not in s3.list_objects_v2(Bucket=b, Prefix="del/")


def metadata_and_headers():
    s3.put_object(
        Bucket=b,
        Key="meta",
        Body=b"{}",
        Metadata={"color": "blue", "Mixed-Case": "Value Kept"},
        ContentType="application/json; charset=utf-8",
        ContentDisposition='attachment; filename="meta.json"',
        CacheControl="max-age=60",
        ContentLanguage="en",
    )
    for got in (s3.head_object(Bucket=b, Key="meta"), s3.get_object(Bucket=b, Key="meta")):
        assert got["Metadata"] == {"color": "blue", "mixed-case": "Value Kept"}, got["Metadata"]
        assert got["ContentType"] == "application/json; charset=utf-8", got["ContentType"]
        assert got["ContentDisposition"] == 'attachment; filename="meta.json"', got.get("ContentDisposition")
        assert got["CacheControl"] == "max-age=60", got.get("CacheControl")
        assert got["ContentLanguage"] == "en", got.get("ContentLanguage")


def conditionals():
    put = s3.put_object(Bucket=b, Key="cond", Body=b"conditional")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=b, Key="cond")["LastModified"]
    day = datetime.timedelta(days=1)

    assert s3.get_object(Bucket=b, Key="cond", IfMatch=etag)["Body"].read() == b"conditional"
    expect_error("PreconditionFailed", 412, s3.get_object, Bucket=b, Key="cond", IfMatch='"0123"')
    expect_error(None, 412, s3.head_object, Bucket=b, Key="cond", IfMatch='"0123"')
    e = expect_error(None, 304, s3.get_object, Bucket=b, Key="cond", IfNoneMatch=etag)
    assert e.response["ResponseMetadata"]["HTTPHeaders"].get("etag") == etag, "a 304 carries the ETag (RFC 7232 4.1)"
    expect_error(None, 304, s3.head_object, Bucket=b, Key="cond", IfNoneMatch=etag)
    assert status_of(s3.get_object(Bucket=b, Key="cond", IfNoneMatch='"0123"')) == 200

    assert status_of(s3.get_object(Bucket=b, Key="cond", IfModifiedSince=modified - day)) == 200
    expect_error(None, 304, s3.get_object, Bucket=b, Key="cond", IfModifiedSince=modified)
    assert status_of(s3.get_object(Bucket=b, Key="cond", IfUnmodifiedSince=modified)) == 200
    expect_error("PreconditionFailed", 412, s3.get_object, Bucket=b, Key="cond", IfUnmodifiedSince=modified - day)

    # RFC 7232 precedence, as S3 documents: If-Match true wins over
    # If-Unmodified-Since false; If-None-Match false wins over If-Modified-Since true.
    both = s3.get_object(Bucket=b, Key="cond", IfMatch=etag, IfUnmodifiedSince=modified - day)
    assert status_of(both) == 200
    expect_error(None, 304, s3.get_object, Bucket=b, Key="cond", IfNoneMatch=etag, IfModifiedSince=modified - day)


def conditional_writes():
    """If-Match / If-None-Match on PUT hold at the moment the object commits."""
    key = "cw"
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=b, Key=key, Body=b"0", IfMatch="*")
    etag = s3.put_object(Bucket=b, Key=key, Body=b"1", IfNoneMatch="*")["ETag"]
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=b, Key=key, Body=b"2", IfNoneMatch="*")
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=b, Key=key, Body=b"2", IfMatch='"0123"')
    etag = s3.put_object(Bucket=b, Key=key, Body=b"3", IfMatch=etag)["ETag"]
    assert etag == etag_of(b"3") and s3.get_object(Bucket=b, Key=key)["Body"].read() == b"3"
    # A refused write stores nothing, inline or in a file.
    big = os.urandom(200_000)
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=b, Key=key, Body=big, IfNoneMatch="*")
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"3"

    # Of writers racing to create a key with If-None-Match: *, exactly one wins.
    racers = 8
    results = [None] * racers

    def create(i):
        try:
            client().put_object(Bucket=b, Key="race", Body=str(i).encode(), IfNoneMatch="*")
            results[i] = "won"
        except ClientError as e:
            results[i] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=create, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == ["PreconditionFailed"] * (racers - 1) + ["won"], results
    winner = results.index("won")
    assert s3.get_object(Bucket=b, Key="race")["Body"].read() == str(winner).encode()


def conditional_deletes():
    """DeleteObject's If-Match, last-modified time and size, and the same per
    key in DeleteObjects; deleting what is not there succeeds whatever they say."""
    etag = s3.put_object(Bucket=b, Key="cd", Body=b"four")["ETag"]
    modified = s3.head_object(Bucket=b, Key="cd")["LastModified"]
    long_ago = datetime.datetime(2015, 1, 1, tzinfo=datetime.timezone.utc)
    expect_error("PreconditionFailed", 412, s3.delete_object, Bucket=b, Key="cd", IfMatch='"0123"')
    expect_error("PreconditionFailed", 412, s3.delete_object, Bucket=b, Key="cd", IfMatchSize=5)
    expect_error("PreconditionFailed", 412, s3.delete_object, Bucket=b, Key="cd", IfMatchLastModifiedTime=long_ago)
    s3.head_object(Bucket=b, Key="cd")
    s3.delete_object(Bucket=b, Key="cd", IfMatch=etag, IfMatchSize=4, IfMatchLastModifiedTime=modified)
    expect_error(None, 404, s3.head_object, Bucket=b, Key="cd")
    assert status_of(s3.delete_object(Bucket=b, Key="cd", IfMatch='"0123"')) == 204

    for k in ("cd/a", "cd/b"):
        s3.put_object(Bucket=b, Key=k, Body=b"xy")
    out = s3.delete_objects(
        Bucket=b,
        Delete={"Objects": [{"Key": "cd/a", "ETag": '"0123"'}, {"Key": "cd/b", "Size": 2}]},
    )
    assert [(e["Key"], e["Code"]) for e in out.get("Errors", [])] == [("cd/a", "PreconditionFailed")], out
    assert [d["Key"] for d in out.get("Deleted", [])] == ["cd/b"], out
    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "cd/a", "ETag": etag_of(b"xy")}]})
    assert not out.get("Errors") and [d["Key"] for d in out["Deleted"]] == ["cd/a"], out


def concurrent_batch_deletes():
    """Batch deletes racing over the same versions each see every one deleted."""
    vb = new_bucket(s3, "mdel")
    s3.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Enabled"})
    for _ in range(3):
        for k in ("a", "b", "c"):
            s3.put_object(Bucket=vb, Key=k, Body=k.encode())
    doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in s3.list_object_versions(Bucket=vb)["Versions"]]
    assert len(doomed) == 9
    results = [None] * 4

    def delete(i):
        results[i] = client().delete_objects(Bucket=vb, Delete={"Objects": doomed})

    threads = [threading.Thread(target=delete, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in results:
        assert r is not None and len(r["Deleted"]) == 9 and "Errors" not in r, r
    left = s3.list_object_versions(Bucket=vb)
    assert "Versions" not in left and "DeleteMarkers" not in left, left
    s3.delete_bucket(Bucket=vb)


def part_numbers():
    """A single-part object is its own part 1, and has no part 2."""
    s3.put_object(Bucket=b, Key="single", Body=b"body")
    got = s3.get_object(Bucket=b, Key="single", PartNumber=1)
    assert got["Body"].read() == b"body" and got["ETag"] == etag_of(b"body")
    expect_error("InvalidPart", 400, s3.get_object, Bucket=b, Key="single", PartNumber=2)
    expect_error("InvalidRequest", 400, s3.get_object, Bucket=b, Key="single", PartNumber=1, Range="bytes=0-1")


def request_ids():
    """Every answer names its request; an error's body names the same one."""
    seen = {}

    def keep(http_response, **_):
        seen["body"] = http_response.content

    watched = client()
    watched.meta.events.register("after-call.s3.GetObject", keep)
    e = expect_error("NoSuchKey", 404, watched.get_object, Bucket=b, Key="no-such-key")
    header = e.response["ResponseMetadata"]["RequestId"]
    assert header and re.search(rb"<RequestId>([^<]+)</RequestId>", seen["body"]).group(1).decode() == header
    assert s3.head_bucket(Bucket=b)["ResponseMetadata"]["RequestId"], "a success names its request too"


def chunked_without_length():
    """A PUT sent with Transfer-Encoding: chunked and no Content-Length."""
    body = os.urandom(300_000)
    path = f"/{b}/chunked"
    headers = signed_headers("PUT", f"{ENDPOINT}{path}", body=body)
    conn = http.client.HTTPConnection(HOST, PORT, timeout=60)
    try:
        conn.request("PUT", path, body=iter([body[:1000], body[1000:]]), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, f"{resp.status} {answer[:300]}"
    assert resp.getheader("ETag") == etag_of(body)
    assert s3.get_object(Bucket=b, Key="chunked")["Body"].read() == body


def missing():
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key="never/was")
    expect_error("NoSuchBucket", 404, s3.get_object, Bucket="no-such-bucket-here", Key="k")
    expect_error("NoSuchBucket", 404, s3.put_object, Bucket="no-such-bucket-here", Key="k", Body=b"x")
    expect_error("NoSuchBucket", 404, s3.list_objects_v2, Bucket="no-such-bucket-here")
    expect_error(None, 404, s3.head_object, Bucket="no-such-bucket-here", Key="k")


def awkward_keys():
    keys = [
        "with space.txt",
        "dir/sub dir/ünïcödé 文件.txt",
        "a+b=c&d?e#f.txt",
        "percent%20literal",
        "deep/ly/nested/path/",
        "dir//double-slash",
        "emoji-\U0001F600",
        "tilde~and'quote\"",
    ]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == k.encode(), f"GET {k!r}"
        assert s3.head_object(Bucket=b, Key=k)["ContentLength"] == len(k.encode()), f"HEAD {k!r}"
    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
        listed += [o["Key"] for o in page.get("Contents", [])]
    for k in keys:
        assert k in listed, f"{k!r} is listed as is: {listed}"
    for k in keys:
        s3.delete_object(Bucket=b, Key=k)
        expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key=k)


def key_length():
    for longest in ("k" * 1024, "é" * 512, "x/" * 512):
        assert len(longest.encode()) == 1024
        s3.put_object(Bucket=b, Key=longest, Body=b"long")
        assert s3.get_object(Bucket=b, Key=longest)["Body"].read() == b"long"
        s3.delete_object(Bucket=b, Key=longest)
    for too_long in ("k" * 1025, "é" * 512 + "x"):
        assert len(too_long.encode()) == 1025
        expect_error("KeyTooLongError", 400, s3.put_object, Bucket=b, Key=too_long, Body=b"x")


def empty_object():
    put = s3.put_object(Bucket=b, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"', put["ETag"]
    got = s3.get_object(Bucket=b, Key="empty")
    assert got["ContentLength"] == 0 and got["Body"].read() == b""
    assert s3.head_object(Bucket=b, Key="empty")["ContentLength"] == 0
    listed = s3.list_objects_v2(Bucket=b, Prefix="empty")["Contents"]
    assert listed[0]["Size"] == 0, listed


def content_md5():
    body = b"checked by md5"
    put = s3.put_object(Bucket=b, Key="md5", Body=body, ContentMD5=md5_b64(body))
    assert put["ETag"] == etag_of(body)
    expect_error("BadDigest", 400, s3.put_object, Bucket=b, Key="md5-bad", Body=body, ContentMD5=md5_b64(b"other"))
    expect_error(None, 404, s3.head_object, Bucket=b, Key="md5-bad")
    for malformed in ("not-base64!!", "AAAA"):
        expect_error("InvalidDigest", 400, s3.put_object, Bucket=b, Key="md5-bad", Body=body, ContentMD5=malformed)
    expect_error(None, 404, s3.head_object, Bucket=b, Key="md5-bad")


def checksums():
    body = os.urandom(70000)
    put = s3.put_object(Bucket=b, Key="sha", Body=body, ChecksumAlgorithm="SHA256")
    assert put.get("ChecksumSHA256") == sha256_b64(body), f"PUT ChecksumSHA256: {put.get('ChecksumSHA256')}"
    got = s3.get_object(Bucket=b, Key="sha", ChecksumMode="ENABLED")
    assert got.get("ChecksumSHA256") == sha256_b64(body), f"GET ChecksumSHA256: {got.get('ChecksumSHA256')}"
    assert got["Body"].read() == body
    head = s3.head_object(Bucket=b, Key="sha", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == sha256_b64(body), head

    put = s3.put_object(Bucket=b, Key="crc", Body=body, ChecksumAlgorithm="CRC32")
    assert put.get("ChecksumCRC32") == crc32_b64(body), f"PUT ChecksumCRC32: {put.get('ChecksumCRC32')}"
    got = s3.get_object(Bucket=b, Key="crc", ChecksumMode="ENABLED")
    assert got.get("ChecksumCRC32") == crc32_b64(body), f"GET ChecksumCRC32: {got.get('ChecksumCRC32')}"
    assert got["Body"].read() == body

    expect_error(
        ("BadDigest", "XAmzContentChecksumMismatch"),
        400,
        s3.put_object,
        Bucket=b,
        Key="sha-bad",
        Body=body,
        ChecksumSHA256=sha256_b64(b"something else"),
    )
    expect_error(None, 404, s3.head_object, Bucket=b, Key="sha-bad")
    expect_error(
        ("BadDigest", "XAmzContentChecksumMismatch"),
        400,
        s3.put_object,
        Bucket=b,
        Key="crc-bad",
        Body=body,
        ChecksumCRC32=crc32_b64(b"something else"),
    )
    expect_error(None, 404, s3.head_object, Bucket=b, Key="crc-bad")


put_get_head_delete()
ranges()
copies()
batch_delete()
metadata_and_headers()
conditionals()
conditional_writes()
conditional_deletes()
concurrent_batch_deletes()
part_numbers()
request_ids()
chunked_without_length()
missing()
awkward_keys()
key_length()
empty_object()
content_md5()
checksums()
destroy_bucket(s3, b)
done("objects")
