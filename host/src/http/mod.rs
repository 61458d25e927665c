//! The HTTP endpoint of a running engine: the live status page (`/`), `/metrics`,
//! `/healthz`, `/readyz`, `/api/status` and `/api/rules`. It serves the snapshot the
//! processing loop publishes ([`crate::status`]) from a thread of its own, so a slow or
//! stuck client never slows the pipeline. `[http]` ([`HttpConfig`]) adds TLS ([`tls`]),
//! credentials ([`auth`]) and keeps keys off the page and the API (`show_keys = false`).

mod auth;
mod prometheus;
mod tls;

use crate::config::http::HttpConfig;
use crate::status::{Shared, Status};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// `/healthz` fails when the processing loop has not published for this long: it is stuck.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(30);

/// The status page: plain HTML and JavaScript that polls `/api/status`.
const PAGE: &str = include_str!("page.html");

/// Starts serving as `config` says on `listen` (`host:port`; port 0 picks a free one) and
/// returns the address it listens on. Settings that cannot work (a key file that does not
/// load, a token file that cannot be read, an address taken) are errors naming them.
pub(crate) fn serve(
    listen: &str,
    config: &HttpConfig,
    status: Shared,
) -> anyhow::Result<SocketAddr> {
    config.validate()?;
    let auth = Arc::new(auth::Auth::load(config)?);
    let tls = (config.tls_server_config.as_ref())
        .map(tls::Reloading::load)
        .transpose()?
        .map(Arc::new);
    let listener = std::net::TcpListener::bind(listen).with_context(|| {
        format!("[http] listen: cannot listen on {listen} for the status page and metrics (is the port in use? set --http-listen, or `off`)")
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the HTTP runtime")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let who = match (auth.required(), config.open_probes) {
        (false, _) => "open to anyone who can reach it",
        (true, true) => "credentials required but on /healthz and /readyz",
        (true, false) => "credentials required",
    };
    let keys = if config.show_keys {
        ""
    } else {
        "; keys hidden"
    };
    let router = router(status, config.show_keys, auth);
    std::thread::Builder::new()
        .name("rulewatch-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                match tls {
                    Some(tls) => tls::serve(listener, tls, router).await,
                    None => axum::serve(listener, router).await,
                }
            })
        })?;
    info!(
        "status page on {scheme}://{addr}/ (also /metrics, /healthz, /readyz, /api/status, \
         /api/rules; {who}{keys})"
    );
    Ok(addr)
}

/// Failures to authenticate and TLS handshakes that failed, since start (for `/metrics`).
pub(crate) fn refusals() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (
        auth::FAILURES.load(Relaxed),
        tls::HANDSHAKE_FAILURES.load(Relaxed),
    )
}

/// `status` as the API shows it: without keys and evidence unless `show_keys`.
fn visible(mut status: Status, show_keys: bool) -> Status {
    if !show_keys {
        for a in &mut status.alerts {
            a.key = "(hidden)".into();
            a.evidence.clear();
        }
    }
    status
}

fn router(status: Shared, show_keys: bool, auth: Arc<auth::Auth>) -> Router {
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
            get(move |State(s): State<Shared>| async move {
                json(&visible(with_sinks(s.get()), show_keys))
            }),
        )
        .route(
            "/api/rules",
            get(|State(s): State<Shared>| async move { json(&s.get().rules) }),
        )
        .layer(axum::middleware::from_fn_with_state(auth, auth::check))
        .with_state(status)
}

/// `status` with each delivery receiver's counts as they are now.
fn with_sinks(mut status: Status) -> Status {
    status.sinks = (crate::sink::deliver::receivers().into_iter())
        .map(|(name, p)| crate::status::SinkStatus {
            name,
            delivered: p.delivered(),
            dead_letters: p.dead(),
            waiting: p.waiting(),
            failing: p.failure(),
            backed_up: p.backed_up(),
        })
        .collect();
    status
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
    let receivers = crate::sink::deliver::receivers();
    let backed_up = receivers
        .iter()
        .find(|(_, p)| p.backed_up())
        .map(|(name, p)| {
            format!(
                "alert delivery to {name} is backed up ({} alerts waiting): reading waits for it",
                p.waiting()
            )
        });
    if s.ready && backed_up.is_none() {
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
    } else if let Some(backed_up) = &backed_up {
        backed_up.as_str()
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

/// `rulewatch health`: asks `url` (`http://` or `https://host:port/path`) and succeeds on a
/// 200 answer. For container health checks, where no HTTP client is installed. Over HTTPS
/// the certificate is not verified, as Kubernetes' HTTPS probes do not verify it: the check
/// asks its own container's process.
pub(crate) fn check(url: &str) -> anyhow::Result<()> {
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => anyhow::bail!("{url}: give an http:// or https:// URL"),
    };
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("{url}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{url}: {host} has no address"))?;
    let timeout = Duration::from_secs(5);
    let tcp = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!("{url}: cannot connect (is rulewatch running with its HTTP endpoint on?)")
    })?;
    tcp.set_read_timeout(Some(timeout))?;
    let mut conn: Box<dyn ReadWrite> = if tls {
        use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
        let mut connector = SslConnector::builder(SslMethod::tls_client())?;
        connector.set_verify(SslVerifyMode::NONE);
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        Box::new(
            connector
                .build()
                .connect(name, tcp)
                .with_context(|| format!("{url}: the TLS handshake failed"))?,
        )
    } else {
        Box::new(tcp)
    };
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

/// A connection, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;
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
        let addr = serve("127.0.0.1:0", &HttpConfig::default(), shared.clone()).unwrap();
        check(&format!("http://{addr}/healthz")).unwrap();
        let e = check(&format!("http://{addr}/readyz"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("503") && e.contains("not ready: starting"),
            "{e}"
        );
        let e = check("ftp://localhost/healthz").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
    }
}
