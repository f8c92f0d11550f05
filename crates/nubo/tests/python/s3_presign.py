"""Presigned URLs: boto3's generate_presigned_url for get_object and put_object,
used with plain urllib (no AWS headers); an expired URL (AccessDenied, "Request
has expired"); validity beyond a week or negative (AccessDenied); tampered URLs
(SignatureDoesNotMatch); a browser's CORS preflight of one; `aws s3 presign`.
"""
import time
import urllib.parse

from s3_common import (
    aws_cli,
    client,
    destroy_bucket,
    done,
    error_code,
    error_message,
    http_request,
    new_bucket,
)

s3 = client()
b = new_bucket(s3, "presign")


def presign(method, key, expires=300):
    return s3.generate_presigned_url(method, Params={"Bucket": b, "Key": key}, ExpiresIn=expires)


def tamper(url, **changes):
    """The URL with some query parameters replaced."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def put_and_get():
    url = presign("put_object", "up/loaded.bin")
    assert "X-Amz-Signature=" in url and url.startswith("http://127.0.0.1:"), url
    body = b"uploaded through a presigned URL"
    status, _, text = http_request(url, method="PUT", data=body, headers={"Content-Type": "application/octet-stream"})
    assert status == 200, f"presigned PUT: {status} {text[:300]}"
    assert s3.get_object(Bucket=b, Key="up/loaded.bin")["Body"].read() == body

    status, headers, got = http_request(presign("get_object", "up/loaded.bin"))
    assert status == 200 and got == body, f"presigned GET: {status} {got[:300]}"
    assert headers.get("ETag"), "a presigned GET answers like a GET"

    status, _, text = http_request(presign("get_object", "up/missing"))
    assert status == 404 and error_code(text) == "NoSuchKey", f"presigned GET of a missing key: {status} {text[:300]}"


def expired():
    s3.put_object(Bucket=b, Key="soon", Body=b"gone soon")
    get_url = presign("get_object", "soon", expires=1)
    put_url = presign("put_object", "soon", expires=1)
    time.sleep(2.5)
    for method, url, data in (("GET", get_url, None), ("PUT", put_url, b"late")):
        status, _, text = http_request(url, method=method, data=data)
        assert status == 403, f"expired presigned {method}: {status} {text[:300]}"
        assert error_code(text) == "AccessDenied", f"expired {method}: {error_code(text)}"
        assert "expired" in error_message(text).lower(), f"the message says it expired: {error_message(text)}"
    assert s3.get_object(Bucket=b, Key="soon")["Body"].read() == b"gone soon"


def tampered():
    s3.put_object(Bucket=b, Key="doc", Body=b"the real one")
    s3.put_object(Bucket=b, Key="other-doc", Body=b"not yours")
    url = presign("get_object", "doc")
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Signature"][0]
    flipped = ("0" if sig[-1] != "0" else "1")
    for name, bad in [
        ("signature changed", tamper(url, **{"X-Amz-Signature": sig[:-1] + flipped})),
        ("expiry extended", tamper(url, **{"X-Amz-Expires": "3600"})),
        ("key changed", url.replace("/doc?", "/other-doc?")),
    ]:
        status, _, text = http_request(bad)
        assert status == 403, f"{name}: {status} {text[:300]}"
        assert error_code(text) == "SignatureDoesNotMatch", f"{name}: {error_code(text)}"

    # A presigned PUT cannot become a GET, nor the other way round.
    status, _, text = http_request(presign("put_object", "doc"))
    assert status == 403 and error_code(text) == "SignatureDoesNotMatch", f"PUT URL used to GET: {status}"
    status, _, text = http_request(url, method="PUT", data=b"overwritten")
    assert status == 403 and error_code(text) == "SignatureDoesNotMatch", f"GET URL used to PUT: {status}"
    assert s3.get_object(Bucket=b, Key="doc")["Body"].read() == b"the real one"


def validity_bounds():
    """A URL is valid for at most a week, and never for a negative time."""
    s3.put_object(Bucket=b, Key="bounded", Body=b"b")
    for expires in (7 * 24 * 3600 + 1, -7):
        status, _, text = http_request(presign("get_object", "bounded", expires=expires))
        assert status == 403 and error_code(text) == "AccessDenied", f"expires {expires}: {status} {text[:300]}"
    status, _, _ = http_request(presign("get_object", "bounded", expires=7 * 24 * 3600))
    assert status == 200, f"a week is allowed: {status}"


def cors_preflight():
    """A browser's preflight of a presigned URL: it carries no signature of its
    own, and the bucket's CORS rules answer it."""
    s3.put_object(Bucket=b, Key="cors", Body=b"c")
    url = presign("put_object", "cors")
    status, _, _ = http_request(url, method="OPTIONS")
    assert status == 400, f"a preflight without Origin: {status}"
    ask = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}
    status, _, _ = http_request(url, method="OPTIONS", headers=ask)
    assert status == 403, f"no CORS rule yet: {status}"
    rule = {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["PUT"]}
    s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [rule]})
    status, headers, _ = http_request(url, method="OPTIONS", headers=ask)
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == "https://app.example", (status, dict(headers))
    assert headers.get("Access-Control-Allow-Methods") == "PUT", dict(headers)
    status, headers, _ = http_request(url, method="PUT", data=b"from a page", headers={"Origin": "https://app.example"})
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == "https://app.example", (status, dict(headers))


def cli_presign():
    s3.put_object(Bucket=b, Key="cli/file.txt", Body=b"presigned by the aws CLI")
    out = aws_cli(["s3", "presign", f"s3://{b}/cli/file.txt", "--expires-in", "600"])
    url = out.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in url, f"aws s3 presign printed {url!r}"
    status, _, got = http_request(url)
    assert status == 200 and got == b"presigned by the aws CLI", f"GET of the CLI's URL: {status} {got[:300]}"


put_and_get()
expired()
tampered()
validity_bounds()
cors_preflight()
cli_presign()
destroy_bucket(s3, b)
done("presign")
