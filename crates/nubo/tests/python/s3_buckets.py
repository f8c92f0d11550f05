"""Buckets: create (with location), head, list (in pages), delete (refused while
an object is left, aborting incomplete multipart uploads), invalid names,
versioning on, off and suspended, canned ACLs (public-read vs private, read
anonymously and by another account), CORS configuration, preflight and actual
requests, tenancy between two accounts, NoSuchBucket for anyone, and the
per-account bucket quota.
"""
from s3_common import (
    REGION,
    anonymous_client,
    bucket_name,
    client,
    destroy_bucket,
    done,
    error_code,
    expect_error,
    http_request,
    new_bucket,
    object_url,
    other_client,
    status_of,
)

s3 = client()
other = other_client()


def create_head_list_delete():
    b = new_bucket(s3, "life")
    loc = s3.get_bucket_location(Bucket=b)
    assert loc["LocationConstraint"] == REGION, f"get_bucket_location: {loc}"
    assert status_of(s3.head_bucket(Bucket=b)) == 200
    listed = s3.list_buckets()["Buckets"]
    mine = [x for x in listed if x["Name"] == b]
    assert len(mine) == 1, f"list_buckets shows {b} once: {listed}"
    assert mine[0]["CreationDate"] is not None

    s3.put_object(Bucket=b, Key="k", Body=b"x")
    expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=b)
    assert status_of(s3.head_bucket(Bucket=b)) == 200, "a refused delete keeps the bucket"
    s3.delete_object(Bucket=b, Key="k")
    assert status_of(s3.delete_bucket(Bucket=b)) == 204
    expect_error(None, 404, s3.head_bucket, Bucket=b)
    expect_error("NoSuchBucket", 404, s3.delete_bucket, Bucket=b)
    expect_error("NoSuchBucket", 404, s3.get_bucket_location, Bucket=b)
    assert b not in [x["Name"] for x in s3.list_buckets()["Buckets"]]


def delete_aborts_uploads():
    """Incomplete multipart uploads do not keep a bucket: deleting it aborts
    them, as AWS does; an object still does."""
    b = new_bucket(s3, "mpu-left")
    for key in ("a", "b/c"):
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=b"p" * 100_000)
    s3.create_multipart_upload(Bucket=b, Key="no-parts")
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=b)
    assert len(s3.list_multipart_uploads(Bucket=b)["Uploads"]) == 3, "a refused delete aborts nothing"
    s3.delete_object(Bucket=b, Key="k")
    assert status_of(s3.delete_bucket(Bucket=b)) == 204
    expect_error(None, 404, s3.head_bucket, Bucket=b)
    # The name comes back empty: none of the uploads survived.
    s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=b), "the uploads are gone"
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=b, Key="b/c", UploadId=up)
    s3.delete_bucket(Bucket=b)


def invalid_names():
    for name in ["A_B", "ab", "a" * 64, "192.168.0.1", "-abc", "abc-", "a..b", "Upper", "foo-.bar", "foo.-bar"]:
        expect_error(
            "InvalidBucketName",
            400,
            s3.create_bucket,
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )
    # The limits themselves are fine: 3 and 63 characters.
    for name in ["a3c", (bucket_name("x") + "b" * 63)[:63], "my.dotted-name.1"]:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.delete_bucket(Bucket=name)


def versioning():
    b = new_bucket(s3, "ver")
    got = s3.get_bucket_versioning(Bucket=b)
    assert "Status" not in got, f"a new bucket was never versioned: {got}"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})

    # Noncurrent versions and delete markers still count as content.
    s3.put_object(Bucket=b, Key="k", Body=b"1")
    s3.delete_object(Bucket=b, Key="k")
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=b)
    destroy_bucket(s3, b)

    # Suspending versioning of a bucket that never had it says so; its writes
    # are null versions, which a PUT does not name.
    b = new_bucket(s3, "susp")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b).get("Status") == "Suspended"
    put = s3.put_object(Bucket=b, Key="k", Body=b"1")
    assert "VersionId" not in put, f"a null version is not named: {put.get('VersionId')}"
    listed = s3.list_object_versions(Bucket=b)["Versions"]
    assert [(v["Key"], v["VersionId"]) for v in listed] == [("k", "null")], listed
    destroy_bucket(s3, b)


def acls():
    public = new_bucket(s3, "pub", ACL="public-read")
    private = new_bucket(s3, "priv")
    for b in (public, private):
        s3.put_object(Bucket=b, Key="doc.txt", Body=b"hello " + b.encode())
    # The owner is named by its account id (accounts have no other name).
    acl = s3.get_bucket_acl(Bucket=public)
    me = s3.list_buckets()["Owner"]["ID"]
    assert acl["Owner"] == {"ID": me, "DisplayName": me}, acl["Owner"]
    grants = [(g["Grantee"]["Type"], g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]]
    assert grants == [("Group", None, "READ"), ("CanonicalUser", me, "FULL_CONTROL")], grants

    status, _, body = http_request(object_url(public, "doc.txt"))
    assert status == 200 and body == b"hello " + public.encode(), f"anonymous GET of public-read: {status} {body[:200]}"
    got = other.get_object(Bucket=public, Key="doc.txt")["Body"].read()
    assert got == b"hello " + public.encode(), "another account reads a public-read object"

    status, _, body = http_request(object_url(private, "doc.txt"))
    assert status == 403 and error_code(body) == "AccessDenied", f"anonymous GET of private: {status} {body[:300]}"
    expect_error("AccessDenied", 403, other.get_object, Bucket=private, Key="doc.txt")
    expect_error(None, 403, other.head_object, Bucket=private, Key="doc.txt")

    # public-read is read only: nobody else writes.
    status, _, body = http_request(object_url(public, "anon.txt"), method="PUT", data=b"x")
    assert status == 403 and error_code(body) == "AccessDenied", f"anonymous PUT: {status} {body[:300]}"
    expect_error("AccessDenied", 403, other.put_object, Bucket=public, Key="o.txt", Body=b"x")
    expect_error("AccessDenied", 403, anonymous_client().delete_object, Bucket=public, Key="doc.txt")

    # ACLs change both ways.
    s3.put_bucket_acl(Bucket=public, ACL="private")
    status, _, body = http_request(object_url(public, "doc.txt"))
    assert status == 403 and error_code(body) == "AccessDenied", f"after ACL private: {status}"
    expect_error("AccessDenied", 403, other.get_object, Bucket=public, Key="doc.txt")
    s3.put_bucket_acl(Bucket=private, ACL="public-read")
    status, _, body = http_request(object_url(private, "doc.txt"))
    assert status == 200 and body == b"hello " + private.encode(), f"after ACL public-read: {status} {body[:300]}"

    # A missing key in a private bucket does not tell strangers whether it exists.
    status, _, body = http_request(object_url(public, "nope.txt"))
    assert status == 403, f"anonymous GET of a missing key in a private bucket: {status}"
    for b in (public, private):
        destroy_bucket(s3, b)


def cors():
    b = new_bucket(s3, "cors")
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    expect_error("NoSuchCORSConfiguration", 404, s3.get_bucket_cors, Bucket=b)
    rule = {
        "AllowedOrigins": ["https://app.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }
    s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [rule]})
    rules = s3.get_bucket_cors(Bucket=b)["CORSRules"]
    assert len(rules) == 1, rules
    for field, value in rule.items():
        assert rules[0].get(field) == value, f"CORS {field}: {rules[0].get(field)} != {value}"

    def preflight(origin, method):
        return http_request(
            object_url(b, "k"),
            method="OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type",
            },
        )

    status, headers, body = preflight("https://app.example.com", "PUT")
    assert status == 200, f"preflight: {status} {body[:300]}"
    allow_origin = headers.get("Access-Control-Allow-Origin")
    assert allow_origin == "https://app.example.com", f"Access-Control-Allow-Origin: {allow_origin}"
    methods = [m.strip() for m in (headers.get("Access-Control-Allow-Methods") or "").split(",")]
    assert "PUT" in methods, f"Access-Control-Allow-Methods: {methods}"
    assert headers.get("Access-Control-Max-Age") == "3000", headers.get("Access-Control-Max-Age")

    # The actual request gets the grant too, with the rule's methods; a
    # preflight needs an origin and the method it asks for.
    status, headers, _ = http_request(object_url(b, "k"), headers={"Origin": "https://app.example.com"})
    assert status == 403, f"the object is private: {status}"
    assert headers.get("Access-Control-Allow-Origin") == "https://app.example.com", dict(headers)
    assert headers.get("Access-Control-Allow-Methods") == "GET, PUT", dict(headers)
    status, _, body = http_request(object_url(b, "k"), method="OPTIONS")
    assert (status, error_code(body)) == (400, "BadRequest"), f"OPTIONS without Origin: {status} {body[:200]}"
    status, _, body = http_request(object_url(b, "k"), method="OPTIONS", headers={"Origin": "https://app.example.com"})
    assert status == 400, f"OPTIONS without Access-Control-Request-Method: {status} {body[:200]}"

    status, _, _ = preflight("https://evil.example.com", "PUT")
    assert status == 403, f"preflight from an origin not allowed: {status}"
    status, _, _ = preflight("https://app.example.com", "DELETE")
    assert status == 403, f"preflight for a method not allowed: {status}"

    assert status_of(s3.delete_bucket_cors(Bucket=b)) == 204
    expect_error("NoSuchCORSConfiguration", 404, s3.get_bucket_cors, Bucket=b)
    status, _, _ = preflight("https://app.example.com", "PUT")
    assert status == 403, f"preflight without CORS configuration: {status}"
    destroy_bucket(s3, b)


def tenancy():
    b = new_bucket(s3, "mine")
    s3.put_object(Bucket=b, Key="secret", Body=b"s")
    cfg = {"LocationConstraint": REGION}
    expect_error("BucketAlreadyExists", 409, other.create_bucket, Bucket=b, CreateBucketConfiguration=cfg)
    expect_error("BucketAlreadyOwnedByYou", 409, s3.create_bucket, Bucket=b, CreateBucketConfiguration=cfg)
    expect_error("AccessDenied", 403, other.list_objects_v2, Bucket=b)
    expect_error("AccessDenied", 403, other.list_objects, Bucket=b)
    expect_error("AccessDenied", 403, other.delete_bucket, Bucket=b)
    expect_error("AccessDenied", 403, other.put_object, Bucket=b, Key="x", Body=b"x")
    expect_error("AccessDenied", 403, other.delete_object, Bucket=b, Key="secret")
    expect_error("AccessDenied", 403, other.put_bucket_acl, Bucket=b, ACL="public-read")
    expect_error(None, 403, other.head_bucket, Bucket=b)
    assert b not in [x["Name"] for x in other.list_buckets()["Buckets"]], "list_buckets shows only your own"
    assert s3.get_object(Bucket=b, Key="secret")["Body"].read() == b"s", "the owner's object is untouched"
    theirs = new_bucket(other, "theirs")
    assert theirs in [x["Name"] for x in other.list_buckets()["Buckets"]]
    assert theirs not in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    expect_error("AccessDenied", 403, s3.list_objects_v2, Bucket=theirs)
    destroy_bucket(other, theirs)
    destroy_bucket(s3, b)
    # Once deleted, the name is free for anyone.
    other.create_bucket(Bucket=b, CreateBucketConfiguration=cfg)
    other.delete_bucket(Bucket=b)


def anonymous_on_missing_bucket():
    """A bucket that does not exist answers NoSuchBucket whoever asks."""
    name = bucket_name("gone")
    expect_error("NoSuchBucket", 404, anonymous_client().delete_object, Bucket=name, Key="k")
    expect_error("NoSuchBucket", 404, anonymous_client().put_object, Bucket=name, Key="k", Body=b"x")


def list_buckets_in_pages():
    made = sorted(new_bucket(s3, "pg") for _ in range(3))
    seen, token = [], None
    for _ in range(5):
        page = s3.list_buckets(MaxBuckets=1, Prefix="pg-", **({"ContinuationToken": token} if token else {}))
        seen += [x["Name"] for x in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == made, f"one bucket a page, each once: {seen} != {made}"
    for name in made:
        s3.delete_bucket(Bucket=name)


def quota():
    """At most 100 buckets per account by default; the 101st is TooManyBuckets."""
    held = len(s3.list_buckets()["Buckets"])
    made = [new_bucket(s3, "q") for _ in range(100 - held)]
    assert len(s3.list_buckets()["Buckets"]) == 100
    expect_error("TooManyBuckets", 400, new_bucket, s3, "q")
    s3.delete_bucket(Bucket=made.pop())
    made.append(new_bucket(s3, "q"))
    for b in made:
        s3.delete_bucket(Bucket=b)


create_head_list_delete()
delete_aborts_uploads()
invalid_names()
versioning()
acls()
cors()
tenancy()
anonymous_on_missing_bucket()
list_buckets_in_pages()
quota()
done("buckets")
