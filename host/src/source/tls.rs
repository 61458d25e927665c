//! Telling TLS failures apart. librdkafka reports a broker it cannot trust only as
//! "certificate verify failed", whether the certificate is signed by a CA the client does
//! not trust or is made out to another name. On such a failure rulewatch makes two
//! handshakes of its own with the same CA settings — one checking the chain only, one also
//! the name — and says which it is.

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};
use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The `host:port` a librdkafka error is about, from its `ssl://host:port/...` prefix.
pub(super) fn broker_of(reason: &str) -> Option<&str> {
    let at = reason.find("ssl://")? + "ssl://".len();
    let rest = &reason[at..];
    Some(&rest[..rest.find('/')?])
}

/// Why a TLS handshake with `broker` (`host:port`) fails under the CA settings of
/// `options`, in words, or `None` when it succeeds.
pub(super) fn diagnose(broker: &str, options: &BTreeMap<String, String>) -> Option<String> {
    let (host, _) = broker.rsplit_once(':')?;
    let ca = options.get("ssl.ca.location");
    let ca_said = ca.map_or("the system's CAs (no ssl.ca.location)".into(), |c| {
        format!("ssl.ca.location = {c}")
    });
    match handshake(broker, host, ca, false) {
        Err(e) => Some(format!(
            "the certificate of broker {broker} is not signed by a CA trusted here ({e}; \
             trusted: {ca_said}): point ssl.ca.location at the CA that signed it"
        )),
        Ok(()) => match handshake(broker, host, ca, true) {
            Err(e) => Some(format!(
                "the certificate of broker {broker} is trusted but not made out to `{host}` \
                 ({e}): reach the broker by a name its certificate holds (bootstrap.servers, \
                 and the broker's advertised listeners), or give it a certificate for `{host}`"
            )),
            Ok(()) => None,
        },
    }
}

fn handshake(
    broker: &str,
    host: &str,
    ca: Option<&String>,
    check_name: bool,
) -> Result<(), String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    match ca {
        Some(path) if std::path::Path::new(path).is_dir() => {
            builder.load_verify_locations(None, Some(path.as_ref()))
        }
        Some(path) => builder.load_verify_locations(Some(path.as_ref()), None),
        None => builder.set_default_verify_paths(),
    }
    .map_err(|e| format!("cannot load the CAs: {e}"))?;
    let mut config = builder.build().configure().map_err(|e| e.to_string())?;
    config.set_verify_hostname(check_name);
    let addr = broker
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {broker}"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| tcp.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    match config.connect(host, tcp) {
        Ok(_) => Ok(()),
        Err(HandshakeError::Failure(mid)) => {
            let verify = mid.ssl().verify_result();
            Err(if verify.as_raw() != 0 {
                verify.error_string().to_owned()
            } else {
                mid.error().to_string()
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_broker_in_librdkafkas_reason() {
        let reason = "ssl://localhost:39961/bootstrap: SSL handshake failed: error:0A000086";
        assert_eq!(broker_of(reason), Some("localhost:39961"));
        assert_eq!(
            broker_of("sasl_ssl://b-1.example:9096/1: SSL"),
            Some("b-1.example:9096")
        );
        assert_eq!(broker_of("1/1 brokers are down"), None);
    }
}
