//! `[http]` in rulewatch.toml: where the status page, `/metrics`, `/api/*`, `/healthz` and
//! `/readyz` are served, and who may read them. TLS and basic auth take the names of
//! Prometheus' web configuration file (`tls_server_config`, `cert_file`, `key_file`,
//! `client_ca_file`, `client_auth_type`, `basic_auth_users` with bcrypt hashes), so that a
//! scrape config or a probe is written from what users of Prometheus exporters know.
//! Every setting also has a `RULEWATCH_HTTP_*` variable, which wins over the file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[http]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// `host:port` to serve on; `off` to serve nothing. Loopback by default: set
    /// `0.0.0.0:9898` in a container.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Whether alert keys and evidence positions appear on the page and in `/api/*`; false
    /// where keys are personal data (counts, rules and metrics stay).
    #[serde(default = "yes")]
    pub show_keys: bool,
    /// Whether `/healthz` and `/readyz` answer without authentication (for probes that
    /// carry no credentials, as Kubernetes' do not).
    #[serde(default = "yes")]
    pub open_probes: bool,
    /// TLS, as Prometheus' `tls_server_config`.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// Users and the bcrypt hashes of their passwords, as Prometheus' `basic_auth_users`.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// A file whose content (trimmed) is a token accepted as `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

/// `[http.tls_server_config]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsServerConfig {
    /// The certificate chain (PEM); read again when it changes on disk.
    pub cert_file: PathBuf,
    /// Its private key (PEM); read again when it changes on disk.
    pub key_file: PathBuf,
    /// CAs (PEM) that sign client certificates: mutual TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `RequireAndVerifyClientCert` (the default with `client_ca_file`),
    /// `VerifyClientCertIfGiven`, or `NoClientCert` (the default without).
    #[serde(default)]
    pub client_auth_type: Option<ClientAuth>,
}

/// What a client must show (Prometheus' `client_auth_type` values that apply).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// A client certificate, if given, must be signed by `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A client certificate signed by `client_ca_file` is required.
    RequireAndVerifyClientCert,
}

impl TlsServerConfig {
    /// What clients must show: as set, else required when there is a client CA.
    pub(crate) fn client_auth(&self) -> ClientAuth {
        self.client_auth_type.unwrap_or(match self.client_ca_file {
            Some(_) => ClientAuth::RequireAndVerifyClientCert,
            None => ClientAuth::NoClientCert,
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            show_keys: true,
            open_probes: true,
            tls_server_config: None,
            basic_auth_users: BTreeMap::new(),
            bearer_token_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".into()
}

fn yes() -> bool {
    true
}

impl HttpConfig {
    /// The address to listen on, unless switched off.
    pub(crate) fn address(&self) -> Option<&str> {
        (self.listen != "off").then_some(self.listen.as_str())
    }

    /// These settings with the `RULEWATCH_HTTP_*` variables applied over them
    /// (`RULEWATCH_HTTP_LISTEN` is `--http-listen`'s, read with the flag).
    pub(crate) fn with_env(mut self) -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let flag = |name: &str| -> anyhow::Result<Option<bool>> {
            var(name)
                .map(|v| match v.as_str() {
                    "true" | "1" => Ok(true),
                    "false" | "0" => Ok(false),
                    _ => anyhow::bail!("{name}={v}: give true or false"),
                })
                .transpose()
        };
        if let Some(v) = flag("RULEWATCH_HTTP_SHOW_KEYS")? {
            self.show_keys = v;
        }
        if let Some(v) = flag("RULEWATCH_HTTP_OPEN_PROBES")? {
            self.open_probes = v;
        }
        if let Some(users) = var("RULEWATCH_HTTP_BASIC_AUTH_USERS") {
            self.basic_auth_users.clear();
            for pair in users.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((user, hash)) = pair.split_once(':') else {
                    anyhow::bail!(
                        "RULEWATCH_HTTP_BASIC_AUTH_USERS: give USER:BCRYPT_HASH pairs separated \
                         by commas"
                    );
                };
                self.basic_auth_users.insert(user.into(), hash.into());
            }
        }
        if let Some(v) = var("RULEWATCH_HTTP_BEARER_TOKEN_FILE") {
            self.bearer_token_file = Some(v.into());
        }
        let (cert, key) = (
            var("RULEWATCH_HTTP_TLS_CERT_FILE"),
            var("RULEWATCH_HTTP_TLS_KEY_FILE"),
        );
        if cert.is_some() || key.is_some() {
            let (Some(cert), Some(key)) = (cert, key) else {
                anyhow::bail!(
                    "RULEWATCH_HTTP_TLS_CERT_FILE and RULEWATCH_HTTP_TLS_KEY_FILE go together: \
                     give both"
                );
            };
            let tls = self.tls_server_config.get_or_insert(TlsServerConfig {
                cert_file: PathBuf::new(),
                key_file: PathBuf::new(),
                client_ca_file: None,
                client_auth_type: None,
            });
            (tls.cert_file, tls.key_file) = (cert.into(), key.into());
        }
        if let Some(ca) = var("RULEWATCH_HTTP_TLS_CLIENT_CA_FILE") {
            let Some(tls) = self.tls_server_config.as_mut() else {
                anyhow::bail!(
                    "RULEWATCH_HTTP_TLS_CLIENT_CA_FILE needs TLS: set \
                     RULEWATCH_HTTP_TLS_CERT_FILE and RULEWATCH_HTTP_TLS_KEY_FILE too"
                );
            };
            tls.client_ca_file = Some(ca.into());
        }
        Ok(self)
    }

    /// Refuses settings that cannot work, naming them (files are checked when served).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        use super::{MAX_NAME, MAX_TEXT, capped};
        capped("[http] listen", &self.listen, MAX_NAME)?;
        for (user, hash) in &self.basic_auth_users {
            capped("an [http.basic_auth_users] user name", user, MAX_NAME)?;
            if user.is_empty() || user.contains(':') {
                anyhow::bail!(
                    "[http.basic_auth_users]: `{}` cannot be a user name (not empty, no `:`)",
                    crate::text::shown(user)
                );
            }
            // Never show the hash: name the user.
            if hash.len() > MAX_TEXT || bcrypt_cost(hash).is_none() {
                anyhow::bail!(
                    "[http.basic_auth_users] {}: not a bcrypt hash ($2a$, $2b$ or $2y$, then \
                     the cost and 53 characters); make one with `htpasswd -nBC 10 USER` or \
                     Python's bcrypt",
                    crate::text::shown(user)
                );
            }
        }
        if self.tls_server_config.as_ref().is_some_and(|t| {
            t.client_auth() != ClientAuth::NoClientCert && t.client_ca_file.is_none()
        }) {
            anyhow::bail!(
                "[http.tls_server_config] client_auth_type verifies client certificates: give \
                 client_ca_file, the CA that signs them"
            );
        }
        Ok(())
    }
}

/// The cost of a bcrypt hash in its modular crypt form, if it is one.
pub(crate) fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    let (cost, salted) = rest.split_once('$')?;
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    (cost.len() == 2 && salted.len() == 53 && salted.chars().all(valid))
        .then(|| cost.parse().ok())
        .flatten()
        .filter(|c| (4..=31).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_web_config_names_parse_and_bad_hashes_are_refused_by_user() {
        let hash = "$2y$10$AN3TRoGvOK1PC4lGWVYcbu2cvFv.9ZplL7kr5IMDXvU7Xl.QwXbrG";
        let c: HttpConfig = toml::from_str(&format!(
            "listen = \"0.0.0.0:9898\"\nshow_keys = false\n\
             [tls_server_config]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
             client_ca_file = \"ca.pem\"\n[basic_auth_users]\nprometheus = '{hash}'\n"
        ))
        .unwrap();
        assert!(!c.show_keys && c.open_probes);
        let tls = c.tls_server_config.as_ref().unwrap();
        assert_eq!(tls.client_auth(), ClientAuth::RequireAndVerifyClientCert);
        c.validate().unwrap();
        assert_eq!(bcrypt_cost(hash), Some(10));

        let mut bad = c.clone();
        bad.basic_auth_users
            .insert("grafana".into(), "plaintext-secret".into());
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("grafana: not a bcrypt hash"), "{e}");
        assert!(!e.contains("plaintext-secret"), "{e}");

        let e = toml::from_str::<HttpConfig>("[tls_server_config]\ncert_file = \"c\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_file"), "{e}");
    }
}
