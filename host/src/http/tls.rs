//! TLS for the endpoint (`[http.tls_server_config]`), with the system's OpenSSL: the
//! certificate and key are read again whenever either file changes on disk (as cert-manager
//! rotates a Secret), checked before each handshake by size and modification time; a
//! half-written pair is not used, the previous one serves on. Mutual TLS verifies client
//! certificates against `client_ca_file`. A failed handshake is counted in
//! `rulewatch_http_tls_handshake_failures_total`.

use crate::config::http::{ClientAuth, TlsServerConfig};
use crate::text::shown_path;
use anyhow::Context;
use axum::Router;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tracing::{info, warn};

/// Handshakes that failed since start (a client that does not trust the certificate, or
/// whose own certificate was refused).
pub(super) static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// What identifies a version of the files: each one's size and modification time.
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// The acceptor of the files as they are now.
pub(super) struct Reloading {
    config: TlsServerConfig,
    current: Mutex<(Stamp, Arc<SslAcceptor>)>,
}

impl Reloading {
    /// Builds the acceptor from `config`'s files; an error names the file and what is wrong.
    pub(super) fn load(config: &TlsServerConfig) -> anyhow::Result<Self> {
        let stamp = stamp(config);
        let acceptor = build(config)?;
        Ok(Reloading {
            config: config.clone(),
            current: Mutex::new((stamp, Arc::new(acceptor))),
        })
    }

    /// The acceptor to use now: rebuilt if a file changed since, the old one if the new
    /// files do not make one (yet).
    fn acceptor(&self) -> Arc<SslAcceptor> {
        let now = stamp(&self.config);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now != current.0 {
            match build(&self.config) {
                Ok(acceptor) => {
                    info!("HTTP TLS: the certificate files changed; serving the new ones");
                    *current = (now, Arc::new(acceptor));
                }
                Err(e) => {
                    // Tried again at the next change (a rotation may write them one by one).
                    warn!(
                        "HTTP TLS: the certificate files changed but do not load ({e:#}); the previous ones serve on"
                    );
                    current.0 = now;
                }
            }
        }
        current.1.clone()
    }
}

fn files(config: &TlsServerConfig) -> Vec<&Path> {
    let mut files = vec![config.cert_file.as_path(), config.key_file.as_path()];
    files.extend(config.client_ca_file.as_deref());
    files
}

fn stamp(config: &TlsServerConfig) -> Stamp {
    files(config)
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

fn build(config: &TlsServerConfig) -> anyhow::Result<SslAcceptor> {
    let setting = |name: &str, path: &PathBuf| {
        format!("[http.tls_server_config] {name} {}", shown_path(path))
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(&config.cert_file)
        .with_context(|| {
            setting("cert_file", &config.cert_file) + ": not a PEM certificate chain it can read"
        })?;
    b.set_private_key_file(&config.key_file, SslFiletype::PEM)
        .with_context(|| {
            setting("key_file", &config.key_file) + ": not a PEM private key it can read"
        })?;
    b.check_private_key().with_context(|| {
        setting("key_file", &config.key_file) + ": not the key of cert_file's certificate"
    })?;
    if let Some(ca) = &config.client_ca_file {
        b.set_ca_file(ca)
            .with_context(|| setting("client_ca_file", ca) + ": not a PEM CA file it can read")?;
        let mode = match config.client_auth() {
            ClientAuth::RequireAndVerifyClientCert => {
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
            }
            ClientAuth::VerifyClientCertIfGiven => SslVerifyMode::PEER,
            ClientAuth::NoClientCert => SslVerifyMode::NONE,
        };
        b.set_verify(mode);
    }
    Ok(b.build())
}

/// Serves `router` over TLS on `listener` until the process ends: each connection's
/// handshake and requests on a task of its own, so that a slow client holds up no other.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<Reloading>,
    router: Router,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, say: the next accept may work.
            Err(_) => continue,
        };
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            let acceptor = tls.acceptor();
            let Ok(ssl) = Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, tcp) else {
                return;
            };
            if Pin::new(&mut stream).accept().await.is_err() {
                HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let service = TowerToHyperService::new(router);
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
