//! The HTTP endpoint in production, with a real client (curl): TLS with a certificate the
//! test makes, rotated while the engine runs; basic auth with a bcrypt hash, right and
//! wrong; mutual TLS, right and wrong; `show_keys = false` keeping every key off the page
//! and the API; bad settings refused at start by name, and no secret in the log.

mod common;

use common::kafka::{EC_KEY, make_certificates, openssl};
use common::live::Live;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `curl -s ARGS URL`: its exit code and what it printed; HTTP status in `%{http_code}`.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (./test.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The HTTP status of GET `url` with `args`; `None` when no HTTP answer came (TLS refused).
fn status(url: &str, args: &[&str]) -> Option<u16> {
    let (code, out) = curl(&[args, &["-o", "/dev/null", "-w", "%{http_code}", url]].concat());
    (code == 0).then(|| out.parse().unwrap())
}

/// A rulewatch.toml with `http` under `[http]`, in `dir`.
fn config(dir: &Path, http: &str) -> String {
    let path = dir.join("rulewatch.toml");
    std::fs::write(&path, format!("[http]\n{http}")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// TLS settings for the certificates `make_certificates` made in `certs`.
fn tls(certs: &Path) -> String {
    format!(
        "[http.tls_server_config]\ncert_file = '{0}/server.pem'\nkey_file = '{0}/server.key'\n",
        certs.display()
    )
}

/// A replay serving its endpoint as `config` says.
fn engine(config: &str) -> (Live, String) {
    let live = Live::start_with(None, true, &["--config", config]);
    let addr = live.addr.clone().unwrap().replace("127.0.0.1", "localhost");
    (live, addr)
}

#[test]
fn tls_from_files_that_are_rotated_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs, "localhost");
    let (mut live, addr) = engine(&config(dir.path(), &tls(&certs)));
    let ca = certs.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = format!("https://{addr}/healthz");
    assert_eq!(status(&url, &["--cacert", ca]), Some(200), "{}", live.log());
    assert!(
        live.log().contains("status page on https://"),
        "{}",
        live.log()
    );
    // Not plain HTTP, and not to a client that does not trust the CA.
    assert_eq!(status(&format!("http://{addr}/healthz"), &[]), None);
    assert_eq!(status(&url, &[]), None);
    // A Prometheus scrape over TLS, which counted the handshake refused just now.
    let (code, metrics) = curl(&["--cacert", ca, &format!("https://{addr}/metrics")]);
    assert_eq!(code, 0);
    let failures = metric(&metrics, "rulewatch_http_tls_handshake_failures_total");
    assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");

    // cert-manager writes a new pair from a new CA: served without a restart.
    let next = dir.path().join("next");
    std::fs::create_dir(&next).unwrap();
    make_certificates(&next, "localhost");
    for file in ["server.key", "server.pem"] {
        std::fs::copy(next.join(file), certs.join(file)).unwrap();
    }
    let new_ca = next.join("ca.pem");
    let new_ca = new_ca.to_str().unwrap();
    eventually(Duration::from_secs(20), live.log_reader(), || {
        live.assert_running();
        (status(&url, &["--cacert", new_ca]) == Some(200)).then_some(())
    });
    assert_eq!(
        status(&url, &["--cacert", ca]),
        None,
        "the old certificate is gone"
    );
    assert!(
        live.log().contains("certificate files changed"),
        "{}",
        live.log()
    );
    // The image's health check speaks HTTPS too.
    let health = rulewatch(&["health", "--url", &url], None);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
}

#[test]
fn basic_auth_with_bcrypt_hashes_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("correct horse", 6).unwrap();
    let settings = format!("[http.basic_auth_users]\nprometheus = '{hash}'\n");
    let (live, addr) = engine(&config(dir.path(), &settings));
    let metrics = format!("http://{addr}/metrics");
    assert_eq!(
        status(&metrics, &["-u", "prometheus:correct horse"]),
        Some(200)
    );
    assert_eq!(
        status(&metrics, &["-u", "prometheus:wrong horse"]),
        Some(401)
    );
    assert_eq!(
        status(&metrics, &["-u", "grafana:correct horse"]),
        Some(401)
    );
    assert_eq!(status(&format!("http://{addr}/api/status"), &[]), Some(401));
    assert_eq!(status(&format!("http://{addr}/"), &[]), Some(401));
    // Probes stay open by default: a kubelet sends no credentials.
    assert_eq!(status(&format!("http://{addr}/healthz"), &[]), Some(200));
    let (_, text) = curl(&["-u", "prometheus:correct horse", &metrics]);
    let failures = metric(&text, "rulewatch_http_auth_failures_total");
    assert!(failures.is_some_and(|n| n >= 4.0), "{text}");
    assert!(!live.log().contains("horse"), "a password in the log");

    // A closed probe, and a bearer token from a file.
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let settings = format!(
        "open_probes = false\nbearer_token_file = '{}'\n",
        token.display()
    );
    let (_live, addr) = engine(&config(dir.path(), &settings));
    let healthz = format!("http://{addr}/healthz");
    assert_eq!(status(&healthz, &[]), Some(401));
    assert_eq!(
        status(&healthz, &["-H", "Authorization: Bearer t0ken"]),
        Some(200)
    );
    assert_eq!(
        status(&healthz, &["-H", "Authorization: Bearer t0kem"]),
        Some(401)
    );
}

#[test]
fn mutual_tls_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs, "localhost");
    // A client certificate from the same CA, and one from another.
    client_certificate(&certs);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_certificates(&other, "localhost");
    client_certificate(&other);
    let settings = format!(
        "{}client_ca_file = '{}/ca.pem'\n",
        tls(&certs),
        certs.display()
    );
    let (live, addr) = engine(&config(dir.path(), &settings));
    let url = format!("https://{addr}/api/rules");
    let ca = format!("{}/ca.pem", certs.display());
    let with = |dir: &Path| {
        let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
        let cert = cert.to_str().unwrap().to_owned();
        let key = key.to_str().unwrap().to_owned();
        status(&url, &["--cacert", &ca, "--cert", &cert, "--key", &key])
    };
    assert_eq!(with(&certs), Some(200), "{}", live.log());
    assert_eq!(
        status(&url, &["--cacert", &ca]),
        None,
        "no client certificate"
    );
    assert_eq!(with(&other), None, "a client certificate of another CA");
    let (_, metrics) = {
        let (cert, key) = (certs.join("client.pem"), certs.join("client.key"));
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &format!("https://{addr}/metrics"),
        ])
    };
    let failures = metric(&metrics, "rulewatch_http_tls_handshake_failures_total");
    assert!(failures.is_some_and(|n| n >= 2.0), "{metrics}");
}

/// A client certificate (`client.pem`, `client.key`) signed by the CA in `dir`.
fn client_certificate(dir: &Path) {
    let ec = EC_KEY;
    let request = [
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=prometheus",
    ];
    openssl(dir, &[&["req"][..], &ec, &request].concat());
    let sign = [
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
    ];
    let out = ["-CAcreateserial", "-out", "client.pem", "-days", "2"];
    openssl(dir, &[&sign[..], &out].concat());
}

#[test]
fn show_keys_false_keeps_every_key_off_the_page_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read(workspace().join("examples/data/sample.jsonl")).unwrap();
    for show in [true, false] {
        let (mut live, addr) = engine(&config(dir.path(), &format!("show_keys = {show}\n")));
        live.feed(&sample);
        let api = eventually(Duration::from_secs(30), live.log_reader(), || {
            live.assert_running();
            let (_, api) = curl(&[&format!("http://{addr}/api/status")]);
            api.contains("\"count\"").then_some(api)
        });
        let (_, rules) = curl(&[&format!("http://{addr}/api/rules")]);
        let (_, page) = curl(&[&format!("http://{addr}/")]);
        let (_, metrics) = curl(&[&format!("http://{addr}/metrics")]);
        let everything = format!("{api}{rules}{page}{metrics}");
        // The sample's keys are user ids: `user_` and digits (`user_id` names the field).
        let a_key = everything
            .match_indices("user_")
            .any(|(at, _)| everything[at + 5..].starts_with(|c: char| c.is_ascii_digit()));
        assert_eq!(a_key, show, "show_keys = {show}: {api}");
        if !show {
            assert!(
                api.contains("(hidden)") && !api.contains("\"line\""),
                "{api}"
            );
            assert!(metric(&metrics, "rulewatch_alerts_total{rule=\"crash\"}").is_some());
        }
    }
}

#[test]
fn bad_settings_are_refused_at_start_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |http: &str, says: &str| {
        let config = config(dir.path(), http);
        let out = rulewatch(
            &[
                "replay",
                "-",
                "--config",
                &config,
                "--http-listen",
                "127.0.0.1:0",
            ],
            Some(b""),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "expected `{says}` in {err}");
        err.into_owned()
    };
    let err = refused(
        "[http.basic_auth_users]\nops = 'hunter2'\n",
        "[http.basic_auth_users] ops: not a bcrypt hash",
    );
    assert!(!err.contains("hunter2"), "the secret in the message: {err}");
    refused(
        "[http.tls_server_config]\ncert_file = '/nonexistent.pem'\nkey_file = '/nonexistent.key'\n",
        "[http.tls_server_config] cert_file /nonexistent.pem",
    );
    refused(
        "bearer_token_file = '/nonexistent-token'\n",
        "[http] bearer_token_file /nonexistent-token: cannot read it",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config(dir.path(), "");
    let port = taken.local_addr().unwrap().to_string();
    let out = rulewatch(
        &["replay", "-", "--config", &config, "--http-listen", &port],
        Some(b""),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("[http] listen: cannot listen on"));
}
