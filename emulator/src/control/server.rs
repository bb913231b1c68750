//! The control API's HTTP/1.1 server (hyper) on the emulator's runtime thread.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::api::{ErrorBody, Info};
use super::routes::{route, ApiError};
use crate::azure::Hub;
use crate::util::pct_decode;

/// Request bodies above this are refused with 413.
const MAX_BODY: usize = 1024 * 1024;

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    aws: Arc<crate::aws::AwsCore>,
    info: Info,
) {
    let info = Rc::new(info);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control API accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (hub, aws, info) = (hub.clone(), aws.clone(), info.clone());
        tokio::task::spawn_local(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (hub, aws, info) = (hub.clone(), aws.clone(), info.clone());
                async move { Ok::<_, Infallible>(handle(&hub, &aws, &info, req).await) }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                tracing::debug!(error = %e, "control API connection ended with an error");
            }
        });
    }
}

async fn handle(
    hub: &Arc<Hub>,
    aws: &crate::aws::AwsCore,
    info: &Info,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let result = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            match path.split('/').filter(|s| !s.is_empty()).map(pct_decode).collect::<Option<Vec<String>>>() {
                Some(segs) if segs.first().is_some_and(|s| s == "aws") => {
                    let rest: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
                    super::aws_routes::route(aws, &method, &rest, &query, &body)
                }
                Some(segs) => route(hub, info, &method, &segs, &query, &body).await,
                None => Err(ApiError::bad_request("path is not valid percent-encoded UTF-8")),
            }
        }
        Err(_) => Err(ApiError::new(413, 413_000, "request body too large")),
    };
    let (status, body) = match result {
        Ok((status, value)) => (status, value.to_string()),
        Err(e) => {
            let body = ErrorBody { error_code: e.code, message: e.message };
            (e.status, serde_json::to_string(&body).unwrap_or_default())
        }
    };
    tracing::debug!(method = %method, path = %path, status, "control request");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}
