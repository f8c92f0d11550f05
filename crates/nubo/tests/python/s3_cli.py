"""The aws CLI against the endpoint: s3 mb, s3 ls, s3 cp of a 200 MiB file of
random data (multipart with the CLI's default 8 MiB parts) and back with the same
SHA-256, s3 sync of a small tree (and a second sync that has nothing to do),
s3 ls --recursive, s3 cp --recursive one request at a time over one connection
(empty files among them), s3 presign, s3 rb --force.
"""
import hashlib
import os
import shutil
import tempfile
import time

from s3_common import REGION, MiB, aws_cli, bucket_name, client, done, expect_error, http_request

s3 = client()
b = bucket_name("cli")
TREE = {
    "a.txt": b"alpha\n",
    "with space.txt": b"spaced out\n",
    "sub/b.txt": b"beta\n",
    "sub/deeper/c.bin": os.urandom(300_000),
    "sub/deeper/empty": b"",
}


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def ls_keys(output):
    """Keys in `aws s3 ls --recursive` output: DATE TIME SIZE KEY."""
    return {line.split(None, 3)[3] for line in output.splitlines() if line.strip()}


def run(tmp):
    out = aws_cli(["s3", "mb", f"s3://{b}"])
    assert f"make_bucket: {b}" in out.stdout, out.stdout
    s3.head_bucket(Bucket=b)
    assert b in aws_cli(["s3", "ls"]).stdout, "aws s3 ls lists the bucket"

    big = os.path.join(tmp, "big.bin")
    h = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(25):
            block = os.urandom(8 * MiB)
            h.update(block)
            f.write(block)
    want = h.hexdigest()
    aws_cli(["s3", "cp", big, f"s3://{b}/big.bin"])
    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == 200 * MiB, head["ContentLength"]
    assert head["ETag"].endswith('-25"'), f"uploaded in 25 parts of 8 MiB: {head['ETag']}"
    os.remove(big)
    back = os.path.join(tmp, "back.bin")
    aws_cli(["s3", "cp", f"s3://{b}/big.bin", back])
    assert os.path.getsize(back) == 200 * MiB
    assert file_sha256(back) == want, "the 200 MiB file comes back with the same SHA-256"
    os.remove(back)

    tree = os.path.join(tmp, "tree")
    for rel, data in TREE.items():
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        # An hour old: S3's whole-second LastModified is then surely newer.
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    out = aws_cli(["s3", "sync", tree, f"s3://{b}/tree/"])
    assert out.stdout.count("upload:") == len(TREE), f"sync uploads every file: {out.stdout}"
    again = aws_cli(["s3", "sync", tree, f"s3://{b}/tree/"])
    assert "upload:" not in again.stdout, f"a second sync has nothing to do: {again.stdout}"
    listed = ls_keys(aws_cli(["s3", "ls", "--recursive", f"s3://{b}"]).stdout)
    assert listed == {"big.bin"} | {f"tree/{rel}" for rel in TREE}, f"s3 ls --recursive: {sorted(listed)}"
    for rel, data in TREE.items():
        assert s3.get_object(Bucket=b, Key=f"tree/{rel}")["Body"].read() == data, rel

    # One request at a time, so that each PUT reuses the connection of the one
    # before: the PUTs after an empty file's used to hang until the read
    # timeout (this CLI's botocore mistook their answers for the empty one's;
    # see crates/s3/src/request_body.rs), which made the sync above fail
    # whenever a loaded machine had its uploads reuse connections.
    one_by_one = os.path.join(tmp, "one-by-one")
    os.makedirs(one_by_one)
    files = {"0-empty": b"", "1.txt": b"one\n", "2-empty": b"", "3.txt": b"three\n"}
    for name, data in files.items():
        with open(os.path.join(one_by_one, name), "wb") as f:
            f.write(data)
    sequential = os.path.join(tmp, "sequential.cfg")
    with open(sequential, "w") as f:
        f.write(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n    max_concurrent_requests = 1\n")
    out = aws_cli(
        ["--cli-read-timeout", "30", "s3", "cp", "--recursive", one_by_one, f"s3://{b}/one-by-one/"],
        env_extra={"AWS_CONFIG_FILE": sequential},
    )
    assert out.stdout.count("upload:") == len(files), out.stdout
    for name, data in files.items():
        assert s3.get_object(Bucket=b, Key=f"one-by-one/{name}")["Body"].read() == data, name

    url = aws_cli(["s3", "presign", f"s3://{b}/tree/a.txt", "--expires-in", "300"]).stdout.strip()
    status, _, body = http_request(url)
    assert status == 200 and body == TREE["a.txt"], f"GET of the presigned URL: {status} {body[:300]}"

    out = aws_cli(["s3", "rb", f"s3://{b}", "--force"])
    assert f"remove_bucket: {b}" in out.stdout, out.stdout
    expect_error(None, 404, s3.head_bucket, Bucket=b)


tmp = tempfile.mkdtemp(prefix="nubo-s3-cli-")
try:
    run(tmp)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
done("cli")
