//! Who may read the endpoint: basic auth with bcrypt-hashed passwords and a bearer token
//! from a file (`[http]`), checked on every request but the open probes. A wrong or missing
//! credential is a 401, counted in `rulewatch_http_auth_failures_total`; no credential is
//! ever logged.

use crate::config::http::HttpConfig;
use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests refused for a missing or wrong credential since start.
pub(super) static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Most (user, password) pairs remembered as verified: bcrypt costs tens of milliseconds
/// by design, and a scrape every few seconds must not pay it each time.
const REMEMBERED: usize = 64;

/// The credentials the endpoint accepts; none: everyone may read it.
pub(super) struct Auth {
    users: BTreeMap<String, String>,
    token: Option<(PathBuf, Vec<u8>)>,
    open_probes: bool,
    /// SHA-256 of `user:password` pairs verified against their hash.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Auth {
    /// The credentials of `config`, its token read now; an error names the setting.
    pub(super) fn load(config: &HttpConfig) -> anyhow::Result<Self> {
        let token = match &config.bearer_token_file {
            None => None,
            Some(path) => {
                let shown = crate::text::shown_path(path);
                let text = std::fs::read(path)
                    .with_context(|| format!("[http] bearer_token_file {shown}: cannot read it"))?;
                let token = text.trim_ascii().to_vec();
                anyhow::ensure!(
                    !token.is_empty(),
                    "[http] bearer_token_file {shown}: it is empty; put the token in it"
                );
                Some((path.clone(), token))
            }
        };
        Ok(Auth {
            users: config.basic_auth_users.clone(),
            token,
            open_probes: config.open_probes,
            verified: Mutex::default(),
        })
    }

    /// Whether any credential is asked for.
    pub(super) fn required(&self) -> bool {
        !self.users.is_empty() || self.token.is_some()
    }

    /// Whether `request` may be answered.
    fn allows(&self, request: &Request) -> bool {
        if !self.required()
            || (self.open_probes && matches!(request.uri().path(), "/healthz" | "/readyz"))
        {
            return true;
        }
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(token) = given.strip_prefix("Bearer ") {
            return self
                .token
                .as_ref()
                .is_some_and(|(_, t)| same(t, token.trim().as_bytes()));
        }
        given
            .strip_prefix("Basic ")
            .and_then(|b| decode_basic(b.trim()))
            .is_some_and(|(user, password)| self.password_is(&user, &password))
    }

    fn password_is(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let pair: [u8; 32] = Sha256::digest(format!("{user}:{password}:{hash}")).into();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.contains(&pair) {
            return true;
        }
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(pair);
        true
    }

    /// What a 401 says the client should send.
    fn challenge(&self) -> &'static str {
        if self.users.is_empty() {
            "Bearer"
        } else {
            "Basic realm=\"rulewatch\", charset=\"UTF-8\""
        }
    }
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `user:password` from the base64 of a basic auth header.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The middleware: answers 401 unless the request carries an accepted credential.
pub(super) async fn check(
    State(auth): State<std::sync::Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.allows(&request) {
        return next.run(request).await;
    }
    FAILURES.fetch_add(1, Ordering::Relaxed);
    let mut answer = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(auth.challenge()),
    );
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, authorization: Option<&str>) -> Request {
        let mut r = Request::builder().uri(path);
        if let Some(a) = authorization {
            r = r.header(header::AUTHORIZATION, a);
        }
        r.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn basic_and_bearer_credentials_are_checked_and_probes_stay_open() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let mut config = HttpConfig::default();
        let hash = bcrypt::hash("right", 4).unwrap();
        config.basic_auth_users.insert("prometheus".into(), hash);
        config.bearer_token_file = Some(token);
        let auth = Auth::load(&config).unwrap();
        let basic = |u: &str, p: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {b}")
        };
        assert!(auth.allows(&request("/metrics", Some(&basic("prometheus", "right")))));
        // Again, from what was verified.
        assert!(auth.allows(&request("/metrics", Some(&basic("prometheus", "right")))));
        assert!(!auth.allows(&request("/metrics", Some(&basic("prometheus", "wrong")))));
        assert!(!auth.allows(&request("/metrics", Some(&basic("nobody", "right")))));
        assert!(auth.allows(&request("/", Some("Bearer s3cret-token"))));
        assert!(!auth.allows(&request("/", Some("Bearer s3cret-tokeN"))));
        assert!(!auth.allows(&request("/api/status", None)));
        assert!(auth.allows(&request("/healthz", None)));
        config.open_probes = false;
        let closed = Auth::load(&config).unwrap();
        assert!(!closed.allows(&request("/readyz", None)));
        // No credentials configured: open.
        assert!(
            Auth::load(&HttpConfig::default())
                .unwrap()
                .allows(&request("/", None))
        );
    }
}
