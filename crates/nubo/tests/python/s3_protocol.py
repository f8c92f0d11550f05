"""Protocol: virtual-hosted-style requests (Host: BUCKET.s3.localhost:PORT, sent
to 127.0.0.1), signature version 2, UNSIGNED-PAYLOAD, streaming SigV4 chunked uploads
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) with good and bad chunk signatures, bad
signatures and payload hashes, clock skew (RequestTimeTooSkewed), malformed XML,
Expect: 100-continue answered early (the connection closes) or not, and uploads
cut short (Content-Length larger than what is sent): nothing partial
is kept.
"""
import datetime
import hashlib
import hmac
import os
import socket
import time

import boto3
from botocore.config import Config

from s3_common import (
    ENDPOINT,
    HOST,
    PORT,
    REGION,
    bucket_name,
    client,
    creds,
    destroy_bucket,
    done,
    error_code,
    etag_of,
    expect_error,
    http_request,
    md5_b64,
    new_bucket,
    other_client,
    send,
    sha256_hex,
    signature_of,
    signed_headers,
    signed_send,
    signing_key,
    utcnow,
)

s3 = client()
b = new_bucket(s3, "proto")
EMPTY_SHA256 = sha256_hex(b"")
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def assert_absent(key, why):
    expect_error(None, 404, s3.head_object, Bucket=b, Key=key)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix=key).get("Contents", [])]
    assert key not in listed, f"{why}: {key} is listed"


def virtual_hosted():
    vhost = f"{b}.s3.localhost:{PORT}"
    body = b"virtually hosted"
    status, _, text = signed_send("PUT", "/vh/key.txt", {"Content-Type": "text/plain"}, body, host=vhost)
    assert status == 200, f"virtual-hosted PUT: {status} {text[:300]}"
    assert s3.get_object(Bucket=b, Key="vh/key.txt")["Body"].read() == body, "the PUT landed in the bucket"

    status, headers, text = signed_send("GET", "/vh/key.txt", host=vhost)
    assert status == 200 and text == body, f"virtual-hosted GET: {status} {text[:300]}"
    assert headers.get("etag") == etag_of(body) and headers.get("content-type") == "text/plain", headers

    status, _, text = signed_send("GET", "/?list-type=2&prefix=vh%2F", host=vhost)
    assert status == 200 and b"<Key>vh/key.txt</Key>" in text, f"virtual-hosted ListObjectsV2: {status} {text[:500]}"

    status, headers, _ = signed_send("HEAD", "/vh/key.txt", host=vhost)
    assert status == 200 and headers.get("content-length") == str(len(body)), f"virtual-hosted HEAD: {status}"

    status, _, text = signed_send("GET", "/vh/key.txt", host=f"no-such-bucket-vh.s3.localhost:{PORT}")
    assert status == 404 and error_code(text) == "NoSuchBucket", f"virtual host of a missing bucket: {status} {text[:300]}"


def signature_v2():
    """AWS's older signature (boto's "s3"), for bucket and object requests and
    presigned URLs: it signs a bucket as /bucket/ where the request says /bucket."""
    key_id, secret = creds()
    cfg = Config(signature_version="s3", s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    v2 = boto3.client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id=key_id, aws_secret_access_key=secret,
        region_name=REGION, config=cfg,
    )
    name = bucket_name("v2")
    v2.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    v2.put_object(Bucket=name, Key="k", Body=b"signed the old way")
    assert [o["Key"] for o in v2.list_objects(Bucket=name)["Contents"]] == ["k"]
    assert v2.get_object(Bucket=name, Key="k")["Body"].read() == b"signed the old way"
    url = v2.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=300)
    assert "Signature=" in url and "X-Amz-" not in url, url
    status, _, body = http_request(url)
    assert (status, body) == (200, b"signed the old way"), (status, body[:300])
    v2.delete_object(Bucket=name, Key="k")
    v2.delete_bucket(Bucket=name)


def unsigned_payload():
    body = os.urandom(200_000)
    status, headers, text = signed_send("PUT", f"/{b}/unsigned.bin", body=body, payload_hash="UNSIGNED-PAYLOAD")
    assert status == 200, f"UNSIGNED-PAYLOAD PUT: {status} {text[:300]}"
    assert headers.get("etag") == etag_of(body), headers
    assert s3.get_object(Bucket=b, Key="unsigned.bin")["Body"].read() == body


def chunked_body(chunks, seed, key, timestamp, scope, bad_index=None):
    """The aws-chunked encoding of chunks, each signed after the one before."""
    out, previous = b"", seed
    for i, chunk in enumerate(chunks + [b""]):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, EMPTY_SHA256, sha256_hex(chunk)])
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if i == bad_index:
            signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        out += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
        previous = signature
    return out


def streaming_request(key, chunks, bad_index=None):
    """(path, headers, encoded body) of a streaming SigV4 PUT."""
    path = f"/{b}/{key}"
    decoded = sum(len(c) for c in chunks)
    encoded_length = len(chunked_body(chunks, "0" * 64, b"k", "t", "s"))
    headers = signed_headers(
        "PUT",
        f"http://{HOST}:{PORT}{path}",
        {
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(decoded),
            "Content-Length": str(encoded_length),
            "Content-Type": "application/octet-stream",
        },
        payload_hash=STREAMING,
    )
    timestamp = headers["X-Amz-Date"]
    scope = f"{timestamp[:8]}/{REGION}/s3/aws4_request"
    key_bytes = signing_key(creds()[1], timestamp[:8])
    body = chunked_body(chunks, signature_of(headers), key_bytes, timestamp, scope, bad_index)
    assert len(body) == encoded_length
    return path, headers, body


def streaming_chunked():
    chunks = [os.urandom(64 * 1024), os.urandom(64 * 1024)]
    path, headers, body = streaming_request("streamed.bin", chunks)
    status, _, text = send("PUT", path, headers, body)
    assert status == 200, f"streaming SigV4 PUT: {status} {text[:300]}"
    got = s3.get_object(Bucket=b, Key="streamed.bin")
    assert got["Body"].read() == b"".join(chunks), "GET returns the decoded body"
    assert got["ContentLength"] == 128 * 1024
    assert got["ETag"] == etag_of(b"".join(chunks)), "the ETag is the MD5 of the decoded body"
    assert got.get("ContentEncoding") in (None, ""), f"aws-chunked is not stored: {got.get('ContentEncoding')}"

    for bad in (0, 1, 2):  # the first, second and final (empty) chunk
        path, headers, body = streaming_request(f"streamed-bad-{bad}.bin", chunks, bad_index=bad)
        status, _, text = send("PUT", path, headers, body)
        assert status == 403 and error_code(text) == "SignatureDoesNotMatch", f"bad chunk {bad}: {status} {text[:300]}"
        assert_absent(f"streamed-bad-{bad}.bin", "a PUT with a bad chunk signature")


def bad_signatures():
    body = b"signed"
    status, _, text = signed_send("PUT", f"/{b}/wrong-secret", body=body, key=(creds()[0], "x" * 40))
    assert status == 403 and error_code(text) == "SignatureDoesNotMatch", f"wrong secret: {status} {text[:300]}"
    status, _, text = signed_send("PUT", f"/{b}/wrong-key", body=body, key=("AKNOSUCHKEY000000000", "x" * 40))
    assert status == 403 and error_code(text) == "InvalidAccessKeyId", f"unknown key id: {status} {text[:300]}"
    status, _, text = signed_send("PUT", f"/{b}/wrong-hash", body=body, payload_hash=sha256_hex(b"other"))
    assert status == 400 and error_code(text) == "XAmzContentSHA256Mismatch", f"wrong payload hash: {status} {text[:300]}"
    for key in ("wrong-secret", "wrong-key", "wrong-hash"):
        assert_absent(key, "a refused PUT")


def clock_skew():
    for minutes in (-20, 20):
        when = utcnow() + datetime.timedelta(minutes=minutes)
        status, _, text = signed_send("GET", f"/{b}?list-type=2", when=when)
        assert status == 403 and error_code(text) == "RequestTimeTooSkewed", f"{minutes} min skew: {status} {text[:300]}"
    when = utcnow() - datetime.timedelta(minutes=5)
    status, _, text = signed_send("GET", f"/{b}?list-type=2", when=when)
    assert status == 200, f"5 minutes of skew is within the 15 allowed: {status} {text[:300]}"


def malformed_xml():
    s3.put_object(Bucket=b, Key="survivor", Body=b"x")
    for body in (b"<VersioningConfiguration><Status>Enabled</Status>", b"this is not xml"):
        status, _, text = signed_send("PUT", f"/{b}?versioning", {"Content-MD5": md5_b64(body)}, body)
        assert status == 400 and error_code(text) == "MalformedXML", f"versioning {body!r}: {status} {text[:300]}"
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    for body in (b"<Delete><Object><Key>survivor</Key></Object>", b"<<<>>>"):
        status, _, text = signed_send("POST", f"/{b}?delete", {"Content-MD5": md5_b64(body)}, body)
        assert status == 400 and error_code(text) == "MalformedXML", f"delete {body!r}: {status} {text[:300]}"
    assert s3.get_object(Bucket=b, Key="survivor")["Body"].read() == b"x"


def raw_request(method, path, headers):
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock):
    """One answer on a raw socket: (status, lower-cased headers, body)."""
    f = sock.makefile("rb")
    status = int(f.readline().split()[1])
    headers = {}
    for line in iter(f.readline, b"\r\n"):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, f.read(int(headers.get("content-length", 0)))


def put_expecting_continue(sock, path, body):
    """Sends the headers of a signed PUT of `body` with Expect: 100-continue,
    and reads the first answer."""
    put = signed_headers("PUT", f"http://{HOST}:{PORT}{path}", {"Expect": "100-continue"}, body)
    put["Content-Length"] = str(len(body))
    sock.sendall(raw_request("PUT", path, put))
    return read_answer(sock)


def expect_continue():
    """A PUT with Expect: 100-continue answered from its headers alone (here:
    another account's bucket) closes the connection and says so: the client,
    which never sends the body, must not reuse it. (hyper takes the first bytes
    of whatever comes next for the unread body: a DELETE sent next became
    ELETE, and its signature did not match.) So does the answer to an empty
    one. A PUT whose body was read keeps the connection."""
    theirs = new_bucket(other_client(), "their")
    sock = socket.create_connection((HOST, PORT), timeout=30)
    try:
        status, headers, body = put_expecting_continue(sock, f"/{theirs}/k", b"12345")
        assert (status, error_code(body)) == (403, "AccessDenied"), (status, body[:300])
        assert headers.get("connection") == "close", f"the unread body closes the connection: {headers}"
    finally:
        sock.close()

    # An empty body gets no 100 Continue (hyper sends none), so its answer
    # looks early to the client: the connection closes too.
    sock = socket.create_connection((HOST, PORT), timeout=30)
    try:
        status, headers, _ = put_expecting_continue(sock, f"/{b}/empty", b"")
        assert status == 200 and headers.get("connection") == "close", (status, headers)
    finally:
        sock.close()

    sock = socket.create_connection((HOST, PORT), timeout=30)
    try:
        status, _, _ = put_expecting_continue(sock, f"/{b}/continued", b"12345")
        assert status == 100, f"100 Continue before the body: {status}"
        sock.sendall(b"12345")
        status, headers, _ = read_answer(sock)
        assert status == 200 and "connection" not in headers, (status, headers)
        sock.sendall(raw_request("GET", f"/{b}/continued", signed_headers("GET", f"http://{HOST}:{PORT}/{b}/continued")))
        status, _, body = read_answer(sock)
        assert (status, body) == (200, b"12345"), (status, body[:300])
    finally:
        sock.close()
    other_client().delete_bucket(Bucket=theirs)


def cut_short(path, headers, partial):
    """Sends the headers and part of the body on a raw socket, then hangs up."""
    lines = [f"PUT {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    sock = socket.create_connection((HOST, PORT), timeout=10)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + partial)
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def truncated_uploads():
    full = os.urandom(1024 * 1024)
    s3.put_object(Bucket=b, Key="keep", Body=b"the old content")
    for key, payload_hash in [
        ("cut-unsigned", "UNSIGNED-PAYLOAD"),
        ("cut-signed", sha256_hex(full)),
        ("keep", "UNSIGNED-PAYLOAD"),
    ]:
        path = f"/{b}/{key}"
        headers = signed_headers(
            "PUT",
            f"http://{HOST}:{PORT}{path}",
            {"Content-Length": str(len(full))},
            payload_hash=payload_hash,
        )
        cut_short(path, headers, full[: len(full) // 2])

    chunks = [os.urandom(64 * 1024), os.urandom(64 * 1024)]
    path, headers, body = streaming_request("cut-streamed", chunks)
    cut_short(path, headers, body[: len(body) // 2 + 100])

    time.sleep(1)
    for key in ("cut-unsigned", "cut-signed", "cut-streamed"):
        assert_absent(key, "an upload cut short")
    assert s3.get_object(Bucket=b, Key="keep")["Body"].read() == b"the old content", "a cut overwrite keeps the old object"
    # The server still answers normally after the hang-ups.
    s3.put_object(Bucket=b, Key="after", Body=b"fine")
    assert s3.get_object(Bucket=b, Key="after")["Body"].read() == b"fine"


virtual_hosted()
signature_v2()
unsigned_payload()
streaming_chunked()
bad_signatures()
clock_skew()
malformed_xml()
expect_continue()
truncated_uploads()
destroy_bucket(s3, b)
done("protocol")
