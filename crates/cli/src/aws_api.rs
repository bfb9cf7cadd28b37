//! The AWS-compatible endpoint: one HTTP listener for every AWS-style API sluice serves
//! (today Firehose), default `127.0.0.1:4566` as LocalStack users expect, set by
//! `[aws_api] listen`. Requests are AWS JSON 1.1: `POST /` with `X-Amz-Target:
//! <Service>_<version>.<Operation>`; the target picks the service. Signatures are not
//! checked: the listener is for loopback and trusted networks, like LocalStack.
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_delivery::api::{ApiError, Firehose, TARGET_PREFIX};
use sluice_delivery::limits::API_REQUEST_BYTES_MAX;
use tokio::sync::watch;

use crate::limits::AWS_API_REQUESTS_IN_FLIGHT_MAX;

/// A running listener.
pub struct AwsApi {
    /// The bound address.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AwsApi {
    /// Binds `listen` and serves `firehose` until stopped.
    pub async fn start(listen: SocketAddr, firehose: Firehose) -> Result<AwsApi> {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!(
                "cannot listen on {listen} for the AWS API; set [aws_api] listen to a free port"
            )
        })?;
        let addr = listener.local_addr().context("the AWS API listener has no address")?;
        let app = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .layer(DefaultBodyLimit::max(API_REQUEST_BYTES_MAX))
            .with_state(Arc::new(Api {
                firehose,
                permits: tokio::sync::Semaphore::new(AWS_API_REQUESTS_IN_FLIGHT_MAX),
            }));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(%error, "the AWS API listener failed");
            }
        });
        tracing::info!(%addr, "AWS API listening");
        Ok(AwsApi { addr, stop, task })
    }

    /// The endpoint URL for SDKs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Api {
    firehose: Firehose,
    permits: tokio::sync::Semaphore,
}

async fn handle(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    // Requests beyond the limit wait here, holding only their body.
    let Ok(_permit) = api.permits.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let outcome = match target.strip_prefix(TARGET_PREFIX) {
        Some(operation) => api.firehose.handle(operation, &body).await,
        None => Err(ApiError {
            status: 400,
            kind: "UnknownOperationException",
            message: format!(
                "X-Amz-Target {target:?} names no API sluice serves; Firehose's is \
                 {TARGET_PREFIX}<Operation>"
            ),
        }),
    };
    let (status, body) = match outcome {
        Ok(value) => (StatusCode::OK, value.to_string().into_bytes()),
        Err(error) => {
            tracing::debug!(target, kind = error.kind, message = %error.message, "AWS API error");
            (StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST), error.body())
        }
    };
    (status, [("content-type", "application/x-amz-json-1.1")], body).into_response()
}
