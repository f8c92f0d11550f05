//! The S3 listener: `s3s` behind CORS handling, with the periodic chores of
//! object storage (usage records, abandoned uploads).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::Body;
use s3s::service::{S3Service, S3ServiceBuilder};

use crate::ObjectStorage;
use crate::access::{Access, Auth};
use crate::cors::{self, Rule};
use crate::host::Host;
use crate::operations::Operations;

const CHORES_EVERY: Duration = Duration::from_secs(10);

/// Serves S3 on `listener` (plain or TLS) until `shutdown` resolves.
pub async fn serve(
    storage: Arc<ObjectStorage>,
    mut listener: nubo_tls::Listener,
    shutdown: impl Future<Output = ()>,
) {
    let s3 = {
        let mut b = S3ServiceBuilder::new(Operations(storage.clone()));
        b.set_auth(Auth(storage.tenancy.clone()));
        b.set_access(Access);
        b.set_host(Host {
            base_domain: storage.config.base_domain.clone(),
        });
        b.build()
    };
    let chores = tokio::spawn(chores(storage.clone()));
    let http = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            (socket, _) = listener.next() => socket,
            () = shutdown.as_mut() => break,
        };
        let (s3, storage) = (s3.clone(), storage.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let (s3, storage) = (s3.clone(), storage.clone());
            async move { Ok::<_, Infallible>(handle(&s3, &storage, req).await) }
        });
        let conn = graceful.watch(
            http.serve_connection(TokioIo::new(socket), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {}
    }
    chores.abort();
    let _ = storage
        .usage
        .flush(&storage.store, ObjectStorage::now_micros())
        .await;
}

/// The bucket a request names, from its Host header or its path.
fn bucket_of(storage: &ObjectStorage, req: &Request<Incoming>) -> Option<String> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.split(':').next().unwrap_or("");
    if let Some(bucket) = name
        .strip_suffix(storage.config.base_domain.as_str())
        .and_then(|b| b.strip_suffix('.'))
        .filter(|b| !b.is_empty())
    {
        return Some(bucket.to_string());
    }
    req.uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|b| !b.is_empty())
        .map(String::from)
}

async fn cors_rules(storage: &ObjectStorage, bucket: Option<String>) -> Option<Vec<Rule>> {
    let bucket = bucket?;
    let row = storage.bucket_by_name(&bucket).await.ok()??;
    Rule::parse(row.cors.as_deref())
}

async fn handle(s3: &S3Service, storage: &ObjectStorage, req: Request<Incoming>) -> Response<Body> {
    let origin = req
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
        .map(String::from);
    let Some(origin) = origin else {
        return call(s3, req).await;
    };
    let bucket = bucket_of(storage, &req);
    if req.method() == Method::OPTIONS {
        let rules = cors_rules(storage, bucket).await;
        let (status, headers) = cors::preflight(rules, req.headers());
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    let method = req.method().to_string();
    let rules = cors_rules(storage, bucket).await;
    let mut response = call(s3, req).await;
    if let Some(rule) = rules
        .as_deref()
        .and_then(|rules| cors::matching(rules, &origin, &method, &[]))
    {
        cors::grant(response.headers_mut(), rule, &origin, &method, false);
    }
    response
}

async fn call(s3: &S3Service, req: Request<Incoming>) -> Response<Body> {
    match s3.call(req.map(Body::from)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = ?e, "S3 request failed outside the protocol");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

async fn chores(storage: Arc<ObjectStorage>) {
    let mut tick = tokio::time::interval(CHORES_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = storage
            .usage
            .flush(&storage.store, ObjectStorage::now_micros())
            .await
        {
            tracing::warn!(error = %e, "object storage usage not recorded; retrying");
        }
        match storage.abort_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "aborted abandoned multipart uploads"),
            Err(e) => tracing::warn!(error = ?e, "abandoned uploads not swept"),
        }
    }
}
