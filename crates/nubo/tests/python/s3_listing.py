"""Listing: ListObjectsV2 (Prefix, Delimiter and CommonPrefixes, StartAfter,
MaxKeys with ContinuationToken paging, KeyCount, IsTruncated), ListObjects V1
(Marker, NextMarker, Delimiter), an empty bucket, the edge cases tools hit (an
empty delimiter, MaxKeys 0, an absent marker, an empty continuation token,
FetchOwner, a prefix that needs encoding, Ceph's allow-unordered), and versions:
list_object_versions after overwrites and deletes, GET of an old version, delete
of one version, delete markers.
"""
from s3_common import client, destroy_bucket, done, expect_error, new_bucket

s3 = client()
TREE = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "c/4.txt", "d.txt"]
PAGED = [f"page/key-{i:02d}" for i in range(25)]


def keys(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def prefixes(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


def empty_bucket():
    b = new_bucket(s3, "empty")
    v2 = s3.list_objects_v2(Bucket=b)
    assert v2["KeyCount"] == 0 and "Contents" not in v2 and v2["IsTruncated"] is False, v2
    v1 = s3.list_objects(Bucket=b)
    assert "Contents" not in v1 and v1["IsTruncated"] is False, v1
    versions = s3.list_object_versions(Bucket=b)
    assert "Versions" not in versions and "DeleteMarkers" not in versions, versions
    s3.delete_bucket(Bucket=b)


def list_v2(b):
    everything = s3.list_objects_v2(Bucket=b)
    assert keys(everything) == sorted(TREE + PAGED), f"all keys in order: {keys(everything)}"
    assert everything["KeyCount"] == len(TREE + PAGED)
    assert everything["IsTruncated"] is False
    for o in everything["Contents"]:
        assert o["Size"] == len(o["Key"]), o
        assert o["ETag"].startswith('"') and "LastModified" in o, o

    r = s3.list_objects_v2(Bucket=b, Prefix="b/")
    assert keys(r) == ["b/1.txt", "b/2.txt", "b/c/3.txt"] and r["KeyCount"] == 3, r
    assert r["Prefix"] == "b/"

    r = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert keys(r) == ["a.txt", "d.txt"], keys(r)
    assert prefixes(r) == ["b/", "c/", "page/"], prefixes(r)
    assert r["KeyCount"] == 5, f"KeyCount counts keys and common prefixes: {r['KeyCount']}"
    assert r["Delimiter"] == "/"

    r = s3.list_objects_v2(Bucket=b, Prefix="b/", Delimiter="/")
    assert keys(r) == ["b/1.txt", "b/2.txt"] and prefixes(r) == ["b/c/"], r

    r = s3.list_objects_v2(Bucket=b, Prefix="nothing/")
    assert r["KeyCount"] == 0 and "Contents" not in r, r

    r = s3.list_objects_v2(Bucket=b, StartAfter="b/2.txt", MaxKeys=3)
    assert keys(r) == ["b/c/3.txt", "c/4.txt", "d.txt"], keys(r)
    assert r["StartAfter"] == "b/2.txt"

    # 25 keys, 7 at a time: 7 + 7 + 7 + 4.
    seen, token, counts = [], None, []
    while True:
        args = {"Bucket": b, "Prefix": "page/", "MaxKeys": 7}
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        assert r["MaxKeys"] == 7
        counts.append(r["KeyCount"])
        assert r["KeyCount"] == len(keys(r))
        seen += keys(r)
        if not r["IsTruncated"]:
            assert "NextContinuationToken" not in r, r
            break
        token = r["NextContinuationToken"]
        assert token, "a truncated listing gives a continuation token"
        assert len(counts) < 10, "paging ends"
    assert counts == [7, 7, 7, 4], counts
    assert seen == PAGED, seen

    # MaxKeys counts common prefixes too; no entry appears twice across pages.
    seen, token = [], None
    for _ in range(10):
        args = {"Bucket": b, "Delimiter": "/", "MaxKeys": 2}
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        page = keys(r) + prefixes(r)
        assert 0 < len(page) <= 2 and r["KeyCount"] == len(page), r
        seen += page
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert sorted(seen) == ["a.txt", "b/", "c/", "d.txt", "page/"], f"V2 pages of 2 with a delimiter, each entry once: {seen}"


def list_v1(b):
    r = s3.list_objects(Bucket=b, Marker="b/2.txt", MaxKeys=3)
    assert keys(r) == ["b/c/3.txt", "c/4.txt", "d.txt"], keys(r)
    assert r["IsTruncated"] is True and r.get("Marker") == "b/2.txt", r

    # Without a delimiter, the next marker is the last key (NextMarker if given).
    seen, marker = [], ""
    for _ in range(10):
        r = s3.list_objects(Bucket=b, Prefix="page/", MaxKeys=7, **({"Marker": marker} if marker else {}))
        seen += keys(r)
        if not r["IsTruncated"]:
            break
        marker = r.get("NextMarker") or keys(r)[-1]
    assert seen == PAGED, seen

    # With a delimiter, a truncated response must name NextMarker.
    seen, marker = [], ""
    for _ in range(10):
        r = s3.list_objects(Bucket=b, Delimiter="/", MaxKeys=2, **({"Marker": marker} if marker else {}))
        page = keys(r) + prefixes(r)
        assert 0 < len(page) <= 2, r
        seen += page
        if not r["IsTruncated"]:
            break
        assert r.get("NextMarker"), f"NextMarker with a delimiter: {r}"
        assert r["NextMarker"] in page, f"NextMarker is the last key or prefix returned: {r['NextMarker']} {page}"
        marker = r["NextMarker"]
    # A marker that is a common prefix skips all the keys under it.
    assert sorted(seen) == ["a.txt", "b/", "c/", "d.txt", "page/"], f"V1 pages of 2 with a delimiter, each entry once: {seen}"

    r = s3.list_objects(Bucket=b, Prefix="b/", Delimiter="/")
    assert keys(r) == ["b/1.txt", "b/2.txt"] and prefixes(r) == ["b/c/"], r


def edge_cases(b):
    everything = sorted(TREE + PAGED)
    for listed in (s3.list_objects(Bucket=b, Delimiter=""), s3.list_objects_v2(Bucket=b, Delimiter="")):
        assert "Delimiter" not in listed, f"an empty delimiter is no delimiter: {listed.get('Delimiter')!r}"
        assert keys(listed) == everything and prefixes(listed) == [], listed
    assert s3.list_objects(Bucket=b)["Marker"] == "", "ListObjects names its marker, empty when absent"
    for listed in (s3.list_objects(Bucket=b, MaxKeys=0), s3.list_objects_v2(Bucket=b, MaxKeys=0)):
        assert listed["IsTruncated"] is False and keys(listed) == [], f"MaxKeys 0: {listed}"
    # boto3 asks for url-encoded keys; ListObjects gives its prefix back as sent.
    newline = s3.list_objects(Bucket=b, Prefix="\n")
    assert newline["Prefix"] == "\n" and keys(newline) == [], newline
    # Some clients send an empty token on the first page.
    first = s3.list_objects_v2(Bucket=b, ContinuationToken="")
    assert first["ContinuationToken"] == "" and keys(first) == everything, first

    assert "Owner" not in s3.list_objects_v2(Bucket=b, MaxKeys=1)["Contents"][0], "V2 lists owners when asked"
    owner = s3.list_objects_v2(Bucket=b, MaxKeys=1, FetchOwner=True)["Contents"][0].get("Owner")
    me = s3.list_buckets()["Owner"]
    assert owner and owner["ID"] == me["ID"], f"FetchOwner: {owner} (the bucket's owner is {me})"
    assert s3.list_objects(Bucket=b, MaxKeys=1)["Contents"][0].get("Owner") == owner, "V1 lists owners"

    # Ceph's allow-unordered: nubo's order is as good as any, but it forbids a delimiter.
    unordered = client()

    def allow_unordered(params, **_):
        params["url"] += "&allow-unordered=true"

    unordered.meta.events.register("before-call.s3.ListObjects", allow_unordered)
    assert sorted(keys(unordered.list_objects(Bucket=b))) == everything
    expect_error("InvalidArgument", 400, unordered.list_objects, Bucket=b, Delimiter="/")


def unversioned_versions(b):
    r = s3.list_object_versions(Bucket=b, Prefix="a.txt")
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in r["Versions"]] == [("a.txt", "null", True)], r


def versions():
    b = new_bucket(s3, "vers")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    ids = []
    for body in (b"one", b"two", b"three"):
        ids.append(s3.put_object(Bucket=b, Key="k", Body=body)["VersionId"])
    s3.put_object(Bucket=b, Key="other", Body=b"o")
    assert len(set(ids)) == 3 and all(i and i != "null" for i in ids), f"distinct version ids: {ids}"
    v1, v2, v3 = ids

    r = s3.list_object_versions(Bucket=b, Prefix="k")
    listed = [(v["VersionId"], v["IsLatest"], v["Size"]) for v in r["Versions"]]
    assert listed == [(v3, True, 5), (v2, False, 3), (v1, False, 3)], f"newest first: {listed}"
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"three"
    old = s3.get_object(Bucket=b, Key="k", VersionId=v1)
    assert old["Body"].read() == b"one" and old["VersionId"] == v1
    assert s3.head_object(Bucket=b, Key="k", VersionId=v2)["ContentLength"] == 3

    # A plain delete puts a delete marker on top.
    out = s3.delete_object(Bucket=b, Key="k")
    assert out.get("DeleteMarker") is True and out.get("VersionId"), out
    marker = out["VersionId"]
    e = expect_error("NoSuchKey", 404, s3.get_object, Bucket=b, Key="k")
    assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true", "x-amz-delete-marker"
    assert s3.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"two", "old versions stay readable"
    assert keys(s3.list_objects_v2(Bucket=b)) == ["other"], "a deleted key is not listed"
    r = s3.list_object_versions(Bucket=b, Prefix="k")
    markers = [(m["Key"], m["VersionId"], m["IsLatest"]) for m in r.get("DeleteMarkers", [])]
    assert markers == [("k", marker, True)], markers
    assert [(v["VersionId"], v["IsLatest"]) for v in r["Versions"]] == [(v3, False), (v2, False), (v1, False)]

    # Deleting one version removes just it.
    out = s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert out.get("VersionId") == v2, out
    expect_error("NoSuchVersion", 404, s3.get_object, Bucket=b, Key="k", VersionId=v2)
    r = s3.list_object_versions(Bucket=b, Prefix="k")
    assert [v["VersionId"] for v in r["Versions"]] == [v3, v1], r["Versions"]

    # Deleting the delete marker brings the newest version back.
    out = s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert out.get("DeleteMarker") is True and out.get("VersionId") == marker, out
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"three"
    r = s3.list_object_versions(Bucket=b, Prefix="k")
    assert "DeleteMarkers" not in r, r
    assert [(v["VersionId"], v["IsLatest"]) for v in r["Versions"]] == [(v3, True), (v1, False)]
    assert sorted(keys(s3.list_objects_v2(Bucket=b))) == ["k", "other"]
    destroy_bucket(s3, b)


empty_bucket()
tree = new_bucket(s3, "list")
for key in TREE + PAGED:
    s3.put_object(Bucket=tree, Key=key, Body=key.encode())
list_v2(tree)
list_v1(tree)
edge_cases(tree)
unversioned_versions(tree)
destroy_bucket(s3, tree)
versions()
done("listing")
