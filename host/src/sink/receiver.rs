//! An HTTP receiver as `[[output.sinks]]` describes it: its URL, the client that reaches it
//! (timeout, the CA its certificate must chain to) and the headers every request carries
//! (credentials read from files and the environment once, at start). [`Receiver::post_json`]
//! classifies the answer for [`super::deliver`]: 2xx delivered; a timeout, a connection
//! failure, 5xx, 408 and 429 worth retrying; any other answer a refusal.

use super::deliver::Failure;
use crate::config::sinks::SinkConfig;
use anyhow::Context;

/// One receiver URL and how to reach it.
pub(super) struct Receiver {
    /// The URL requests go to.
    pub url: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
}

impl Receiver {
    /// The receiver at `url` (the sink's own, or one derived from it) with `config`'s
    /// client settings and credentials.
    pub(super) fn new(config: &SinkConfig, url: &str) -> anyhow::Result<Receiver> {
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).with_context(|| {
                format!(
                    "cannot read the sink's CA file {}",
                    crate::text::shown_path(ca)
                )
            })?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            anyhow::ensure!(
                !certs.is_empty(),
                "the sink's CA file {} holds no PEM certificate",
                crate::text::shown_path(ca)
            );
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Receiver {
            url: url.to_owned(),
            agent,
            headers: headers(config)?,
        })
    }

    /// POSTs `body` (JSON) with `extra` headers; `Ok` on a 2xx answer.
    pub(super) fn post_json(&self, body: &[u8], extra: &[(&str, &str)]) -> Result<(), Failure> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        for (k, v) in self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
            request = request.header(k, v);
        }
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        match request.send(body) {
            Ok(answer) => {
                let status = answer.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(
                    &mut std::io::Read::take(answer.into_body().into_reader(), 512),
                    &mut text,
                );
                Err(Failure {
                    reason: format!("HTTP {status} from {}: {}", self.url, text.trim()),
                    retry: status >= 500 || status == 408 || status == 429,
                })
            }
            Err(e) => Err(Failure {
                reason: format!("{}: {e}", self.url),
                retry: true,
            }),
        }
    }
}

/// The headers every request carries: `headers`, then `headers_from_env`, then basic or
/// bearer credentials from their files.
fn headers(config: &SinkConfig) -> anyhow::Result<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> = config
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (header, variable) in &config.headers_from_env {
        let value = std::env::var(variable)
            .with_context(|| format!("the environment variable {variable} is not set"))?;
        headers.push((header.clone(), value));
    }
    let secret = |path: &std::path::Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the sink's secret file {}",
                crate::text::shown_path(path)
            )
        })?;
        Ok(text.trim().to_owned())
    };
    if let Some(path) = &config.bearer_token_file {
        headers.push(("Authorization".into(), format!("Bearer {}", secret(path)?)));
    }
    if let (Some(user), Some(path)) = (&config.username, &config.password_file) {
        use base64::Engine;
        let pair = format!("{user}:{}", secret(path)?);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        headers.push(("Authorization".into(), format!("Basic {encoded}")));
    }
    Ok(headers)
}
