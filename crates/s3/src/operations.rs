//! The S3 operations nubo implements, each handed to the module that owns it;
//! the others answer `NotImplemented` (the `s3s` default). A failed operation's
//! error carries the request's id, as the `x-amz-request-id` header does.

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::ObjectStorage;
use crate::front::RequestId;

pub struct Operations(pub Arc<ObjectStorage>);

macro_rules! operations {
    ($($op:ident: $input:ty => $output:ty,)*) => {
        #[async_trait::async_trait]
        impl S3 for Operations {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    let id = req.extensions.get::<RequestId>().cloned();
                    self.0.$op(req).await.map_err(|mut e| {
                        if let Some(RequestId(id)) = id {
                            e.set_request_id(id);
                        }
                        e
                    })
                }
            )*
        }
    };
}

operations! {
    list_buckets: ListBucketsInput => ListBucketsOutput,
    create_bucket: CreateBucketInput => CreateBucketOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    put_bucket_versioning: PutBucketVersioningInput => PutBucketVersioningOutput,
    get_bucket_versioning: GetBucketVersioningInput => GetBucketVersioningOutput,
    put_bucket_acl: PutBucketAclInput => PutBucketAclOutput,
    get_bucket_acl: GetBucketAclInput => GetBucketAclOutput,
    put_bucket_policy: PutBucketPolicyInput => PutBucketPolicyOutput,
    get_bucket_policy: GetBucketPolicyInput => GetBucketPolicyOutput,
    delete_bucket_policy: DeleteBucketPolicyInput => DeleteBucketPolicyOutput,
    put_bucket_cors: PutBucketCorsInput => PutBucketCorsOutput,
    get_bucket_cors: GetBucketCorsInput => GetBucketCorsOutput,
    delete_bucket_cors: DeleteBucketCorsInput => DeleteBucketCorsOutput,
    put_object: PutObjectInput => PutObjectOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    get_object_attributes: GetObjectAttributesInput => GetObjectAttributesOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    list_object_versions: ListObjectVersionsInput => ListObjectVersionsOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    list_multipart_uploads: ListMultipartUploadsInput => ListMultipartUploadsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}
