//! The S3 listener: connections served by `front` (and `s3s` behind it), and
//! the periodic chores of object storage (usage records, abandoned uploads).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::service::S3ServiceBuilder;

use crate::ObjectStorage;
use crate::access::{Access, Auth};
use crate::front;
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
            async move { Ok::<_, Infallible>(front::handle(&s3, &storage, req).await) }
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
