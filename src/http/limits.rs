//! Request limits every HTTP port applies before a handler runs: the length of the request
//! target, the size and number of headers, and the size and read time of the body. Each breach
//! is answered with its own status as a problem document (414, 431, 413, 408) instead of the
//! handler's extractor guessing (a 50 MB JSON body used to be a 422).
//!
//! The limits below are those of the router; hyper's own, a little higher, only catch what
//! would not fit its buffer (and [`super::serve`] answers those as problems too).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;

/// Longest request target (path and query), bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes in one request (names, values and separators).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;

/// Middleware: 414 for a target over [`MAX_URI_BYTES`], 431 for headers over
/// [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`].
pub async fn head_limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target has {target} bytes; at most {MAX_URI_BYTES} are accepted"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request has {} header fields in {bytes} bytes; at most {MAX_HEADERS} fields in {MAX_HEADER_BYTES} bytes are accepted",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// How large a body a group of routes accepts and how long it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    /// Largest body, bytes.
    pub max_bytes: usize,
    /// Longest the body may take to arrive, counted from the end of the headers.
    pub read_timeout: Duration,
}

/// Applies `limit` to every route of `router`: 413 for a body announced or found to be over
/// `max_bytes`, 408 for one not in by `read_timeout`.
///
/// The body is still read by the handler's extractor, after authentication, so a client
/// without a token cannot make the server buffer large bodies.
pub fn with_body_limit<S>(router: axum::Router<S>, limit: BodyLimit) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .route_layer(axum::middleware::from_fn_with_state(limit, body_limits))
        .route_layer(axum::extract::DefaultBodyLimit::max(limit.max_bytes))
}

/// Middleware behind [`with_body_limit`].
async fn body_limits(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(announced) = content_length(&parts.headers) {
        if announced > limit.max_bytes as u64 {
            return close(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body has {announced} bytes; this endpoint accepts at most {}",
                    limit.max_bytes
                ),
            ));
        }
    }
    let expired = Arc::new(AtomicBool::new(false));
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(limit.read_timeout)),
        expired: expired.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if expired.load(Ordering::Relaxed) {
        return close(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(limit.read_timeout)
            ),
        ));
    }
    response
}

/// A request body that fails once its deadline passes, and says so in `expired`.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a body read past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyDeadline;

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response, marked so the connection closes after it (the rest of the body is unread).
fn close(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    fn app(max_bytes: usize) -> Router {
        let limit = BodyLimit {
            max_bytes,
            read_timeout: Duration::from_secs(5),
        };
        let routes = Router::new().route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        with_body_limit(routes, limit)
            .layer(axum::middleware::from_fn(head_limits))
            .layer(axum::middleware::from_fn(
                super::super::problem::problem_errors,
            ))
    }

    async fn status(app: Router, request: Request) -> u16 {
        app.oneshot(request).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_whether_announced_or_not() {
        let request = |body: Vec<u8>, announce: bool| {
            let mut builder = Request::builder().method("POST").uri("/echo");
            if announce {
                builder = builder.header(header::CONTENT_LENGTH, body.len());
            }
            builder.body(Body::from(body)).unwrap()
        };
        assert_eq!(status(app(10), request(vec![b'x'; 10], true)).await, 200);
        assert_eq!(status(app(10), request(vec![b'x'; 11], true)).await, 413);
        assert_eq!(status(app(10), request(vec![b'x'; 11], false)).await, 413);
    }

    #[tokio::test]
    async fn long_targets_and_many_headers_are_refused() {
        let long = Request::builder()
            .method("POST")
            .uri(format!("/echo?{}", "q".repeat(MAX_URI_BYTES)))
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(app(10), long).await, 414);
        let mut many = Request::builder().method("POST").uri("/echo");
        for i in 0..=MAX_HEADERS {
            many = many.header(format!("x-{i}"), "1");
        }
        assert_eq!(
            status(app(10), many.body(Body::empty()).unwrap()).await,
            431
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_408() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
        let stream = tokio_stream_from(rx);
        let request = Request::builder()
            .method("POST")
            .uri("/echo")
            .body(Body::from_stream(stream))
            .unwrap();
        assert_eq!(status(app(10), request).await, 408);
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
