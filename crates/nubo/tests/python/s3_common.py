"""Helpers shared by the s3_*.py end-to-end scripts.

Every script talks only to the S3 endpoint in NUBO_S3_ENDPOINT
(http://127.0.0.1:PORT), with the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (and OTHER_ACCESS_KEY_ID / OTHER_SECRET_ACCESS_KEY for a
second account) in region AWS_DEFAULT_REGION (local-1).
"""
import atexit
import base64
import datetime
import hashlib
import hmac
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from unittest import mock

import boto3
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"].rstrip("/")
REGION = os.environ.get("AWS_DEFAULT_REGION", "local-1")
_url = urllib.parse.urlsplit(ENDPOINT)
HOST = _url.hostname
PORT = _url.port
assert HOST == "127.0.0.1", f"the S3 endpoint must be on 127.0.0.1, not {ENDPOINT}"

MiB = 1024 * 1024

# Never go through a proxy: all traffic is for 127.0.0.1.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def creds():
    return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def other_creds():
    return os.environ["OTHER_ACCESS_KEY_ID"], os.environ["OTHER_SECRET_ACCESS_KEY"]


def client(key=None, s3=None, **config):
    """A boto3 S3 client on the endpoint, path-style, no retries.

    key: (key_id, secret), default the first account's.
    """
    key_id, secret = key or creds()
    options = {"addressing_style": "path"}
    options.update(s3 or {})
    cfg = Config(
        region_name=REGION,
        signature_version="s3v4",
        s3=options,
        retries={"max_attempts": 1},
        **config,
    )
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=cfg,
    )


def other_client():
    return client(other_creds())


def anonymous_client():
    cfg = Config(
        region_name=REGION,
        signature_version=UNSIGNED,
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
    )
    return boto3.client("s3", endpoint_url=ENDPOINT, region_name=REGION, config=cfg)


def bucket_name(prefix="t"):
    """A fresh, valid bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_bucket(s3, prefix="t", **kwargs):
    """Creates a bucket in this region and returns its name."""
    name = bucket_name(prefix)
    s3.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        **kwargs,
    )
    return name


def destroy_bucket(s3, bucket):
    """Deletes every version, delete marker and upload in a bucket, then the bucket."""
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            out = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            assert not out.get("Errors"), f"cleanup of {bucket}: {out.get('Errors')}"
    s3.delete_bucket(Bucket=bucket)


def status_of(response):
    return response["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(code, status, fn, *args, **kwargs):
    """Calls fn and asserts it fails with a ClientError of this status and code.

    code may be a string, a tuple of accepted strings, or None (for responses
    without a body, such as HEAD's, where botocore reports the status as code).
    Returns the ClientError.
    """
    what = _describe(fn, args, kwargs)
    try:
        result = fn(*args, **kwargs)
    except ClientError as e:
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        got_code = e.response["Error"]["Code"]
        assert got_status == status, f"{what}: expected HTTP {status}, got {got_status} ({got_code}: {e})"
        accepted = (code,) if isinstance(code, str) else code
        if accepted is not None:
            assert got_code in accepted, f"{what}: expected error code {code}, got {got_code} ({e})"
        return e
    if isinstance(result, dict):
        result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
    raise AssertionError(f"{what}: expected {status} {code}, but it succeeded: {str(result)[:500]}")


def _describe(fn, args, kwargs):
    """fn(args, kwargs) for a message, long values shortened."""

    def short(v):
        if isinstance(v, (bytes, str)) and len(v) > 80:
            return f"<{len(v)} {'bytes' if isinstance(v, bytes) else 'chars'}>"
        return repr(v)

    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{getattr(fn, '__name__', fn)}({', '.join(parts)})"


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def crc32_b64(data):
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


def etag_of(data):
    """The ETag S3 gives a single-part object: its MD5 in hex, quoted."""
    return f'"{md5_hex(data)}"'


def multipart_etag(parts):
    """The ETag S3 gives a multipart object: md5 of the parts' binary MD5s, then -N."""
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def error_code(body):
    """The <Code> of an S3 XML error body, or None."""
    m = re.search(rb"<Code>([^<]*)</Code>", body or b"")
    return m.group(1).decode() if m else None


def error_message(body):
    m = re.search(rb"<Message>([^<]*)</Message>", body or b"")
    return m.group(1).decode() if m else ""


def object_url(bucket, key=""):
    return f"{ENDPOINT}/{bucket}/{urllib.parse.quote(key, safe='/~')}"


def http_request(url, method="GET", data=None, headers=None):
    """A plain (unsigned unless the URL is presigned) request with urllib.

    Returns (status, headers, body); HTTP errors are returned, not raised.
    """
    assert url.startswith(f"http://127.0.0.1:{PORT}/"), f"refusing to send anywhere but the endpoint: {url}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _direct.open(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def signed_headers(method, url, headers=None, body=b"", key=None, when=None, payload_hash=None):
    """Signs a request with botocore's SigV4Auth for service s3, as of `when`.

    url names the Host the request claims (it may be a virtual host); the
    request itself is sent by `send` to 127.0.0.1. Returns the headers to send
    (including Host and Authorization).
    """
    key_id, secret = key or creds()
    headers = dict(headers or {})
    headers.setdefault("Host", urllib.parse.urlsplit(url).netloc)
    headers["x-amz-content-sha256"] = payload_hash or sha256_hex(body)
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    signer = SigV4Auth(Credentials(key_id, secret), "s3", REGION)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


def signature_of(headers):
    return re.search(r"Signature=([0-9a-f]{64})", headers["Authorization"]).group(1)


def signing_key(secret, date):
    """The SigV4 signing key for service s3 on date (YYYYMMDD)."""
    k = f"AWS4{secret}".encode()
    for part in (date, REGION, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def send(method, path, headers, body=b""):
    """Sends a request to the endpoint over http.client, returns (status, headers, body).

    headers are sent as given (a Host header in them is kept).
    """
    conn = http.client.HTTPConnection(HOST, PORT, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def signed_send(method, path, headers=None, body=b"", key=None, when=None, host=None, payload_hash=None):
    """Signs (as of `when`, for `host`) and sends a request to the endpoint."""
    host = host or f"{HOST}:{PORT}"
    h = signed_headers(method, f"http://{host}{path}", headers, body, key, when, payload_hash)
    return send(method, path, h, body)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def aws_cli(args, env_extra=None, check=True, timeout=600):
    """Runs the `aws` CLI (v1, beside this Python) against the endpoint.

    Returns the CompletedProcess; with check, asserts exit code 0.
    """
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    assert os.path.exists(aws), f"no aws CLI beside {sys.executable}: is awscli in requirements.txt?"
    config = os.path.join(_cli_home(), "config")
    env = dict(os.environ)
    env.update(
        AWS_CONFIG_FILE=config,
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(_cli_home(), "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION=REGION,
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
    )
    env.pop("AWS_PROFILE", None)
    env.update(env_extra or {})
    cmd = [aws, "--endpoint-url", ENDPOINT, *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, (
            f"{' '.join(args)} exited {done.returncode}\nstdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
        )
    return done


_home = None


def _cli_home():
    global _home
    if _home is None:
        _home = tempfile.mkdtemp(prefix="nubo-aws-cli-")
        atexit.register(shutil.rmtree, _home, True)
        with open(os.path.join(_home, "config"), "w") as f:
            f.write(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
    return _home


def done(topic):
    print(f"ok: {topic}")
