//! The HTTP endpoint of a running engine: the live status page (`/`), `/metrics`,
//! `/healthz`, `/readyz`, `/api/status` and `/api/rules`. It serves the snapshot the
//! processing loop publishes ([`crate::status`]) from a thread of its own, so a slow or
//! stuck client never slows the pipeline.

mod prometheus;

use crate::status::Shared;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use tracing::info;

/// `/healthz` fails when the processing loop has not published for this long: it is stuck.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// The status page: plain HTML and JavaScript that polls `/api/status`.
const PAGE: &str = include_str!("page.html");

/// Starts serving on `listen` (`host:port`; port 0 picks a free one) and returns the
/// address it listens on.
pub fn serve(listen: &str, status: Shared) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| {
        format!("cannot listen on {listen} for the status page and metrics (is the port in use? set --http-listen, or `off`)")
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the HTTP runtime")?;
    std::thread::Builder::new()
        .name("rulewatch-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router(status)).await
            })
        })?;
    info!(
        "status page on http://{addr}/ (also /metrics, /healthz, /readyz, /api/status, /api/rules)"
    );
    Ok(addr)
}

fn router(status: Shared) -> Router {
    fn json(body: &impl serde::Serialize) -> Response {
        let body = serde_json::to_string(body).expect("serializable");
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/metrics",
            get(|State(s): State<Shared>| async move {
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(header::CONTENT_TYPE, kind)], prometheus::render(s.get()))
            }),
        )
        .route(
            "/healthz",
            get(|State(s): State<Shared>| async move { healthz(&s) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Shared>| async move { readyz(&s) }),
        )
        .route(
            "/api/status",
            get(|State(s): State<Shared>| async move { json(&s.get()) }),
        )
        .route(
            "/api/rules",
            get(|State(s): State<Shared>| async move { json(&s.get().rules) }),
        )
        .with_state(status)
}

/// Live: the processing loop keeps publishing. Consuming Kafka it never waits long for
/// data; replaying a file or a pipe it may wait for input as long as the input takes.
fn healthz(status: &Shared) -> Response {
    let s = status.get();
    let age = s.published.elapsed();
    if age < STALE_AFTER || s.source == "file" {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let msg = format!(
            "unhealthy: the processing loop has not made progress for {} s\n",
            age.as_secs()
        );
        (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
    }
}

/// Ready: rules are running and the source has partitions (or a file) to read.
fn readyz(status: &Shared) -> Response {
    let s = status.get();
    if s.ready {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let failing = s
        .checkpoint
        .as_ref()
        .and_then(|c| c.failing.as_deref())
        .map(|why| format!("checkpoints are not being written ({why})"));
    let kafka = s.kafka_problem.as_ref().map(|p| format!("Kafka: {p}"));
    let why = if let Some(failing) = &failing {
        failing.as_str()
    } else if let Some(kafka) = &kafka {
        kafka.as_str()
    } else if s.rules.is_empty() {
        "starting (reaching the broker, restoring the checkpoint)"
    } else if s.a_rule_runs() {
        "no input partitions assigned yet"
    } else {
        "no rule is running"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {why}\n"),
    )
        .into_response()
}

/// `rulewatch health`: asks `url` (`http://host:port/path`) and succeeds on a 200 answer.
/// For container health checks, where no HTTP client is installed.
pub fn check(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("{url}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{url}: {host} has no address"))?;
    let timeout = Duration::from_secs(5);
    let mut conn = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!("{url}: cannot connect (is rulewatch running with its HTTP endpoint on?)")
    })?;
    conn.set_read_timeout(Some(timeout))?;
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .with_context(|| format!("{url}: no answer"))?;
    let status_line = answer.lines().next().unwrap_or_default();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("{body}");
        Ok(())
    } else {
        anyhow::bail!("{url}: {status_line}: {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use axum::body::to_bytes;
    use std::time::Instant;

    fn answer(r: Response) -> (u16, String) {
        let code = r.status().as_u16();
        let body = futures_executor::block_on(to_bytes(r.into_body(), 1 << 16)).unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn healthz_fails_once_the_loop_stops_publishing() {
        let mut status = Status::new("kafka");
        let shared = Shared::new(status.clone());
        assert_eq!(answer(healthz(&shared)).0, 200);
        status.published = Instant::now() - STALE_AFTER - Duration::from_secs(1);
        shared.publish(status);
        let (code, body) = answer(healthz(&shared));
        assert_eq!(code, 503);
        assert!(body.contains("has not made progress for 31 s"), "{body}");
        // A replay waiting for its input is not stuck.
        let mut replay = Status::new("file");
        replay.published = Instant::now() - STALE_AFTER - Duration::from_secs(1);
        assert_eq!(answer(healthz(&Shared::new(replay))).0, 200);
    }

    #[test]
    fn health_check_command_reads_the_status_code() {
        let shared = Shared::new(Status::new("file"));
        let addr = serve("127.0.0.1:0", shared.clone()).unwrap();
        check(&format!("http://{addr}/healthz")).unwrap();
        let e = check(&format!("http://{addr}/readyz"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("503") && e.contains("not ready: starting"),
            "{e}"
        );
        let e = check("https://localhost/healthz").unwrap_err().to_string();
        assert!(e.contains("only http://"), "{e}");
    }
}
