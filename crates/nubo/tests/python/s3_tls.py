"""boto3 and the aws CLI over HTTPS, trusting the region's private CA through
AWS_CA_BUNDLE, as an operator's users would; a client that trusts only the
usual public CAs is refused.
"""
import os

import boto3
from botocore.exceptions import SSLError

from s3_common import ENDPOINT, REGION, aws_cli, bucket_name, client, creds, done

assert ENDPOINT.startswith("https://"), ENDPOINT
assert os.environ.get("AWS_CA_BUNDLE"), "the test names the region's CA in AWS_CA_BUNDLE"

s3 = client()
b = bucket_name("tls")
s3.create_bucket(Bucket=b)
body = os.urandom(300_000)
s3.put_object(Bucket=b, Key="over-tls.bin", Body=body)
assert s3.get_object(Bucket=b, Key="over-tls.bin")["Body"].read() == body
listed = aws_cli(["s3", "ls", f"s3://{b}/"]).stdout
assert "over-tls.bin" in listed, listed
done("boto3 and the aws CLI trust the region's CA")

key_id, secret = creds()
public_cas_only = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    aws_access_key_id=key_id,
    aws_secret_access_key=secret,
    region_name=REGION,
    verify=True,
)
try:
    public_cas_only.list_buckets()
except SSLError as e:
    assert "CERTIFICATE_VERIFY_FAILED" in str(e), e
else:
    raise AssertionError("a client that does not trust the region's CA was served")
done("a client without the region's CA is refused")
