"""Multipart uploads: create, upload_part (5 MiB parts, last smaller),
upload_part_copy with CopySourceRange, list_parts, list_multipart_uploads,
complete (the multipart ETag, the whole body's SHA-256, metadata kept; again,
as a retry does; conditionally; a part listed twice), each part read alone and
GetObjectAttributes, the object's checksum from its parts' (COMPOSITE and
FULL_OBJECT), abort (NoSuchUpload after), part numbers out of range, parts out
of order, a wrong part ETag, and a non-final part under 5 MiB.
"""
import base64
import hashlib
import os

from s3_common import (
    MiB,
    client,
    crc32_b64,
    destroy_bucket,
    done,
    expect_error,
    md5_hex,
    multipart_etag,
    new_bucket,
    sha256_b64,
    status_of,
)

s3 = client()
b = new_bucket(s3, "mpu")


def uploads(prefix=None):
    args = {"Bucket": b}
    if prefix is not None:
        args["Prefix"] = prefix
    return [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(**args).get("Uploads", [])]


def complete_upload():
    source = os.urandom(7 * MiB)
    s3.put_object(Bucket=b, Key="copy-source", Body=source)

    key = "big/object.bin"
    up = s3.create_multipart_upload(Bucket=b, Key=key, ContentType="application/x-test", Metadata={"kind": "mpu"})
    uid = up["UploadId"]
    assert uid and up["Key"] == key and up["Bucket"] == b, up
    assert (key, uid) in uploads(), f"list_multipart_uploads shows it: {uploads()}"
    assert (key, uid) in uploads("big/") and uploads("nothing/") == []

    part1 = os.urandom(5 * MiB)
    part2 = source[1 * MiB : 6 * MiB]  # by upload_part_copy
    part3 = os.urandom(MiB + 123)
    r1 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=part1)
    assert r1["ETag"] == f'"{md5_hex(part1)}"', f"part ETag is its MD5: {r1['ETag']}"
    r2 = s3.upload_part_copy(
        Bucket=b,
        Key=key,
        UploadId=uid,
        PartNumber=2,
        CopySource={"Bucket": b, "Key": "copy-source"},
        CopySourceRange=f"bytes={1 * MiB}-{6 * MiB - 1}",
    )
    etag2 = r2["CopyPartResult"]["ETag"]
    assert etag2 == f'"{md5_hex(part2)}"', f"copied part ETag: {etag2}"
    # A part copy whose condition fails is refused as a copy is: 412, not 304.
    source_etag = s3.head_object(Bucket=b, Key="copy-source")["ETag"]
    expect_error(
        "PreconditionFailed",
        412,
        s3.upload_part_copy,
        Bucket=b,
        Key=key,
        UploadId=uid,
        PartNumber=2,
        CopySource={"Bucket": b, "Key": "copy-source"},
        CopySourceIfNoneMatch=source_etag,
    )
    r3 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=3, Body=part3)
    # Uploading a part again replaces it.
    r3 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=3, Body=part3)

    listed = s3.list_parts(Bucket=b, Key=key, UploadId=uid)
    got = [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]]
    want = [(1, len(part1), r1["ETag"]), (2, len(part2), etag2), (3, len(part3), r3["ETag"])]
    assert got == want, f"list_parts: {got}"
    assert listed["IsTruncated"] is False
    page = s3.list_parts(Bucket=b, Key=key, UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2] and page["IsTruncated"] is True, page
    rest = s3.list_parts(Bucket=b, Key=key, UploadId=uid, PartNumberMarker=page["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3], rest

    expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key=key)
    parts = [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": etag2}, {"PartNumber": 3, "ETag": r3["ETag"]}]
    done_ = s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    expected_etag = multipart_etag([part1, part2, part3])
    assert done_["ETag"] == expected_etag, f"multipart ETag {done_['ETag']} != {expected_etag}"
    assert done_["Key"] == key and done_["Bucket"] == b, done_

    whole = part1 + part2 + part3
    got = s3.get_object(Bucket=b, Key=key)
    body = got["Body"].read()
    assert got["ContentLength"] == len(whole), got["ContentLength"]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(whole).hexdigest(), "the whole object's SHA-256"
    assert got["ETag"] == expected_etag and got["ContentType"] == "application/x-test", got
    assert got["Metadata"] == {"kind": "mpu"}, got["Metadata"]
    # A range across the first part boundary.
    edge = s3.get_object(Bucket=b, Key=key, Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")["Body"].read()
    assert edge == whole[5 * MiB - 10 : 5 * MiB + 10], "a range across parts"
    listed = s3.list_objects_v2(Bucket=b, Prefix="big/")["Contents"]
    assert listed[0]["Size"] == len(whole) and listed[0]["ETag"] == expected_etag, listed

    assert (key, uid) not in uploads(), "a completed upload is no longer listed"
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=b, Key=key, UploadId=uid)

    # Completing again (a client's retry) answers as the first time.
    again = s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    assert again["ETag"] == expected_etag, again

    # Each part can be read alone.
    for number, data in ((1, part1), (2, part2), (3, part3)):
        got = s3.get_object(Bucket=b, Key=key, PartNumber=number)
        assert got["Body"].read() == data, f"part {number}"
        assert got["PartsCount"] == 3 and got["ETag"] == expected_etag, got
        head = s3.head_object(Bucket=b, Key=key, PartNumber=number)
        assert head["ContentLength"] == len(data) and head["PartsCount"] == 3, head
    expect_error("InvalidPart", 400, s3.get_object, Bucket=b, Key=key, PartNumber=4)

    attrs = s3.get_object_attributes(
        Bucket=b, Key=key, ObjectAttributes=["ETag", "ObjectParts", "ObjectSize", "StorageClass"], MaxParts=2
    )
    assert attrs["ETag"] == expected_etag.strip('"') and attrs["ObjectSize"] == len(whole), attrs
    assert attrs["StorageClass"] == "STANDARD", attrs
    listed = attrs["ObjectParts"]
    assert listed["TotalPartsCount"] == 3 and listed["IsTruncated"] is True and listed["NextPartNumberMarker"] == 2
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, len(part1)), (2, len(part2))], listed


def abort_upload():
    key = "aborted"
    uid = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=os.urandom(MiB))
    assert status_of(s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=uid)) == 204
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=b, Key=key, UploadId=uid)
    expect_error("NoSuchUpload", 404, s3.upload_part, Bucket=b, Key=key, UploadId=uid, PartNumber=2, Body=b"x")
    expect_error(
        "NoSuchUpload",
        404,
        s3.complete_multipart_upload,
        Bucket=b,
        Key=key,
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]},
    )
    expect_error("NoSuchUpload", 404, s3.abort_multipart_upload, Bucket=b, Key=key, UploadId=uid)
    assert (key, uid) not in uploads()
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key=key)


def refusals():
    key = "refused"
    uid = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    for number in (0, 10001):
        expect_error("InvalidArgument", 400, s3.upload_part, Bucket=b, Key=key, UploadId=uid, PartNumber=number, Body=b"x")

    p1, p2, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)
    e1 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    e3 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=3, Body=p3)["ETag"]

    def complete(k, u, parts):
        return s3.complete_multipart_upload(Bucket=b, Key=k, UploadId=u, MultipartUpload={"Parts": parts})

    expect_error("InvalidPartOrder", 400, complete, key, uid, [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}])
    expect_error("InvalidPart", 400, complete, key, uid, [{"PartNumber": 1, "ETag": f'"{md5_hex(b"wrong")}"'}])
    expect_error("InvalidPart", 400, complete, key, uid, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 7, "ETag": e3}])
    # Refused completions leave the upload in place; gaps in part numbers are fine.
    assert (key, uid) in uploads(), "the upload survives refused completions"
    out = complete(key, uid, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e3}])
    assert out["ETag"] == multipart_etag([p1, p3]), out["ETag"]
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == p1 + p3

    key = "too-small"
    uid = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    small1, small2 = os.urandom(MiB), os.urandom(1000)
    e1 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=small1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=2, Body=small2)["ETag"]
    expect_error("EntityTooSmall", 400, complete, key, uid, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}])
    # A single small part is a valid (final) part.
    out = complete(key, uid, [{"PartNumber": 2, "ETag": e2}])
    assert out["ETag"] == multipart_etag([small2]), out["ETag"]
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == small2


def resent_part():
    """A part uploaded twice, both answers listed: the later one counts."""
    key = "resent"
    uid = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    first = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=b"first")["ETag"]
    second = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=b"second")["ETag"]
    parts = [{"PartNumber": 1, "ETag": first}, {"PartNumber": 1, "ETag": second}]
    s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"second"


def conditional_completion():
    """CompleteMultipartUpload's If-None-Match / If-Match, as a PUT's."""
    key = "cond"

    def upload(data):
        uid = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=data)["ETag"]
        return uid, [{"PartNumber": 1, "ETag": etag}]

    uid, parts = upload(b"one")
    expect_error(
        "NoSuchKey", 404, s3.complete_multipart_upload,
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, IfMatch="*",
    )
    first = s3.complete_multipart_upload(
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
    )["ETag"]
    uid, parts = upload(b"two")
    expect_error(
        "PreconditionFailed", 412, s3.complete_multipart_upload,
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, IfNoneMatch="*",
    )
    assert (key, uid) in uploads(), "a refused completion keeps its upload"
    s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, IfMatch=first)
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"two"


def checksums():
    """An upload started with a checksum algorithm: the object's checksum from
    its parts', COMPOSITE (SHA-256) or FULL_OBJECT (CRC32, the CRC of the whole
    object, which botocore checks as it downloads)."""
    p1, p2 = os.urandom(5 * MiB), os.urandom(1000)
    key = "sha-composite"
    up = s3.create_multipart_upload(Bucket=b, Key=key, ChecksumAlgorithm="SHA256")
    assert up["ChecksumAlgorithm"] == "SHA256" and up.get("ChecksumType") == "COMPOSITE", up
    uid = up["UploadId"]
    r1 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=p1, ChecksumAlgorithm="SHA256")
    r2 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=2, Body=p2, ChecksumAlgorithm="SHA256")
    assert (r1["ChecksumSHA256"], r2["ChecksumSHA256"]) == (sha256_b64(p1), sha256_b64(p2))
    parts = [
        {"PartNumber": 1, "ETag": r1["ETag"], "ChecksumSHA256": r1["ChecksumSHA256"]},
        {"PartNumber": 2, "ETag": r2["ETag"], "ChecksumSHA256": r2["ChecksumSHA256"]},
    ]
    digests = hashlib.sha256(p1).digest() + hashlib.sha256(p2).digest()
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode() + "-2"
    expect_error(
        "BadDigest", 400, s3.complete_multipart_upload,
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, ChecksumSHA256=sha256_b64(b"no"),
    )
    out = s3.complete_multipart_upload(
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, ChecksumSHA256=composite
    )
    assert (out["ChecksumSHA256"], out["ChecksumType"]) == (composite, "COMPOSITE"), out
    assert "ChecksumSHA256" not in s3.head_object(Bucket=b, Key=key), "checksums only when asked for"
    head = s3.head_object(Bucket=b, Key=key, ChecksumMode="ENABLED")
    assert (head["ChecksumSHA256"], head["ChecksumType"]) == (composite, "COMPOSITE"), head
    part = s3.get_object(Bucket=b, Key=key, PartNumber=2, ChecksumMode="ENABLED")
    assert part["ChecksumSHA256"] == sha256_b64(p2) and part["Body"].read() == p2, "a part carries its own"
    attrs = s3.get_object_attributes(Bucket=b, Key=key, ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}, attrs
    assert [p["ChecksumSHA256"] for p in attrs["ObjectParts"]["Parts"]] == [sha256_b64(p1), sha256_b64(p2)]

    key = "crc-full"
    up = s3.create_multipart_upload(Bucket=b, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    uid = up["UploadId"]
    parts = []
    for number, data in ((1, p1), (2, p2)):
        r = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=number, Body=data, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    out = s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    assert (out["ChecksumCRC32"], out["ChecksumType"]) == (crc32_b64(p1 + p2), "FULL_OBJECT"), out
    got = s3.get_object(Bucket=b, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc32_b64(p1 + p2) and got["Body"].read() == p1 + p2

    expect_error("InvalidRequest", 400, s3.create_multipart_upload, Bucket=b, Key="k", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")


complete_upload()
abort_upload()
refusals()
resent_part()
conditional_completion()
checksums()
destroy_bucket(s3, b)
done("multipart")
