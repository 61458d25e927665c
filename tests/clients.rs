//! What real producers write and where real clusters live: every compression codec Kafka
//! defines, produced by a real client (librdkafka) into the real broker, read by `rulewatch
//! run` with alerts written back with the same codec — over plaintext and over TLS (the broker's
//! own listener, with a CA made by the test) — and TLS problems named in the log.

mod common;

use common::engine::{Engine, assert_same, dedup, sorted};
use common::kafka::{Broker, keyed_messages, sentinels};
use common::*;
use std::time::Duration;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Far past the generated data.
const END: &str = "2026-01-28T00:00:00Z";

/// For each codec: a one-partition topic produced with it, an engine that reads it and writes
/// its alerts with the same codec; the alerts equal the reference's.
fn every_codec(broker: &Broker) {
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(
        dir.path(),
        "logs.jsonl",
        &["--events", "20000", "--late-share", "0", "--seed", "41"],
    ))
    .unwrap();
    let expected = crash_reference(&input).alerts;
    assert!(expected.len() > 20);
    for codec in CODECS {
        let topic = format!("logs-{codec}");
        broker.create_topic(&topic, 1);
        let compressed = [("compression.type", codec)];
        broker.produce_with(&topic, &keyed_messages(&input), &compressed);
        broker.produce_with(&topic, &sentinels(1, END), &compressed);
        let state = dir.path().join(format!("state-{codec}"));
        let alerts = format!("alerts-{codec}");
        let option = format!("compression.type={codec}");
        let mut engine = Engine::start_on(
            broker,
            &topic,
            dir.path(),
            &[
                "--group-id",
                &format!("g-{codec}"),
                "--keyed-by",
                "user_id",
                "--alerts-topic",
                &alerts,
                "--checkpoint-dir",
                state.to_str().unwrap(),
                "--kafka-option",
                &option,
            ],
        );
        let got = broker.consume(&alerts, Duration::from_secs(90), |got| {
            engine.assert_running();
            dedup(got).len() >= expected.len()
        });
        let log = engine.log();
        assert_same(
            &sorted(&dedup(&got)),
            &expected,
            &format!("{codec}:\n{log}"),
        );
        let (status, log) = engine.terminate();
        assert!(status.success(), "{codec}: {log}");
    }
}

#[test]
fn every_codec_over_plaintext() {
    every_codec(&Broker::start());
}

#[test]
fn every_codec_over_tls() {
    let broker = Broker::start_tls();
    assert!(broker.addr.starts_with("localhost:"));
    every_codec(&broker);
}

/// Waits up to 30 s for `what` in the engine's log.
fn wait_for_log(engine: &mut Engine, what: &str) -> String {
    let missing = || format!("no `{what}` in:\n{}", engine.log());
    eventually(Duration::from_secs(30), missing, || {
        Some(engine.log()).filter(|log| log.contains(what))
    })
}

#[test]
fn a_wrong_ca_or_host_name_is_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // A CA that did not sign the broker's certificate.
    let broker = Broker::start_tls();
    broker.create_topic("logs", 1);
    let other = tempfile::tempdir().unwrap();
    common::kafka::make_certificates(other.path(), "localhost");
    let ca = format!("ssl.ca.location={}", other.path().join("ca.pem").display());
    let mut engine = Engine::start(
        &broker,
        dir.path(),
        &["--keyed-by", "user_id", "--kafka-option", &ca],
    );
    let log = wait_for_log(
        &mut engine,
        "Kafka TLS: the certificate of broker localhost:",
    );
    assert!(
        log.contains("is not signed by a CA trusted here")
            && log.contains("point ssl.ca.location at the CA that signed it"),
        "{log}"
    );
    // Also where an orchestrator and a dashboard look.
    let addr = http_addr(|| engine.log());
    // The status is published every quarter of a second.
    let no_problem = || {
        format!(
            "/readyz says nothing of Kafka: {:?}",
            http_get(&addr, "/readyz")
        )
    };
    let (code, body) = eventually(Duration::from_secs(10), no_problem, || {
        Some(http_get(&addr, "/readyz")).filter(|(_, body)| body.contains("Kafka"))
    });
    assert!(
        code == 503 && body.contains("not ready: Kafka: ") && body.contains("ssl.ca.location"),
        "{code} {body}"
    );
    let metrics = http_get(&addr, "/metrics").1;
    assert!(metric(&metrics, "rulewatch_kafka_problems_total").is_some_and(|n| n >= 1.0));
    engine.kill();

    // A certificate for another name than the one the client connects to.
    let broker = Broker::start_tls_named("broker.example");
    let mut engine = Engine::start(&broker, dir.path(), &["--keyed-by", "user_id"]);
    let log = wait_for_log(
        &mut engine,
        "Kafka TLS: the certificate of broker localhost:",
    );
    assert!(
        log.contains("is trusted but not made out to `localhost`"),
        "the reason should say the name does not match: {log}"
    );
    engine.kill();
}

/// `SASL_SSL` with SCRAM-SHA-512 on the broker's own listener, as managed Kafka services
/// serve it: the engine consumes, writes its alerts and keeps its checkpoints in a topic
/// through it, and gives the reference's alerts; a wrong password is named in the log and
/// on `/readyz` with what to check.
#[test]
fn sasl_ssl_with_scram_end_to_end_and_a_wrong_password_named() {
    let broker = Broker::start_sasl();
    assert!(
        broker
            .client_options()
            .iter()
            .any(|(k, v)| k == "security.protocol" && v == "sasl_ssl")
    );
    broker.create_topic("logs", 2);
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(
        dir.path(),
        "logs.jsonl",
        &["--events", "20000", "--late-share", "0", "--seed", "43"],
    ))
    .unwrap();
    let messages = keyed_messages(&input);
    broker.produce("logs", &messages);
    broker.produce("logs", &sentinels(2, END));
    let per_partition = broker.read_all("logs");
    let inputs: Vec<Vec<u8>> = (per_partition.values())
        .map(|ms| {
            ms.iter()
                .flat_map(|m| [&m.value[..], b"\n"].concat())
                .collect()
        })
        .collect();
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let expected = crash_reference_partitions(&inputs).alerts;
    assert!(expected.len() > 20);
    let args = [
        "--keyed-by",
        "user_id",
        "--alerts-topic",
        "alerts",
        "--checkpoint-topic",
        "cp",
    ];
    let mut engine = Engine::start(&broker, dir.path(), &args);
    let got = broker.consume("alerts", Duration::from_secs(90), |got| {
        engine.assert_running();
        dedup(got).len() >= expected.len()
    });
    assert_same(&sorted(&dedup(&got)), &expected, &engine.log());
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(
        !broker.read_all("cp").is_empty(),
        "checkpoints went to the topic"
    );

    let wrong = [
        "--keyed-by",
        "user_id",
        "--kafka-option",
        "sasl.password=wrong",
    ];
    let mut engine = Engine::start(&broker, dir.path(), &wrong);
    // The hint comes with the client's report, which may follow librdkafka's own line.
    let log = wait_for_log(&mut engine, "sasl.username");
    assert!(log.contains("SASL authentication"), "{log}");
    assert!(!log.contains("password=wrong"), "{log}");
    let addr = http_addr(|| engine.log());
    let no_problem = || {
        format!(
            "/readyz says nothing of SASL: {:?}",
            http_get(&addr, "/readyz")
        )
    };
    let (_, body) = eventually(Duration::from_secs(20), no_problem, || {
        Some(http_get(&addr, "/readyz"))
            .filter(|(code, body)| *code == 503 && body.contains("sasl"))
    });
    assert!(
        body.contains("not ready: Kafka: ") && body.contains("sasl.username"),
        "{body}"
    );
    engine.kill();
}
