//! Every Kafka client's configuration, in one place: the group consumer of `run`, readers
//! outside any group (checkpoint restore, the keying check, backtests, evidence), the
//! shared producer and the admin client that creates topics.
//!
//! The order is the invariant: the engine's defaults for that kind of client first, then
//! what the call needs, then the user's `[kafka] options` — so that a user can override
//! anything (security settings, timeouts, codecs) and the engine never silently wins.
//! A leaf: it knows librdkafka's settings and nothing of the rest of the engine.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use std::collections::BTreeMap;

/// The largest message the shared producer writes. Checkpoint records are the largest: one
/// partition's whole state (see `checkpoint::store::MAX_RECORD`).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Which client, with what only that kind needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Client<'a> {
    /// A member of consumer group `group` that commits offsets itself (what checkpoints
    /// cover) and reads from the start of a partition with no committed offset.
    Member {
        /// `group.id`.
        group: &'a str,
        /// Whether it reads only committed records (`exactly_once`): a partition's end is
        /// then its last stable offset.
        read_committed: bool,
    },
    /// A consumer outside any group that assigns partitions itself and reports their ends.
    Reader,
    /// The shared idempotent producer; with a transactional id, transactional.
    Producer {
        /// `transactional.id` (`exactly_once`).
        transactional_id: Option<&'a str>,
    },
    /// The admin client.
    Admin,
}

/// The configuration of a client of kind `client` to `brokers`: the engine's defaults,
/// then `extra`, then the user's `options`.
pub(crate) fn config(
    brokers: &str,
    client: Client<'_>,
    extra: &[(&str, String)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults(client) {
        config.set(k, v);
    }
    for (k, v) in extra {
        config.set(*k, v);
    }
    for (k, v) in options {
        config.set(k, v);
    }
    // librdkafka logs what its `debug` setting asks for; tracing filters.
    config.set_log_level(RDKafkaLogLevel::Debug);
    config
}

/// `isolation.level` for consumers that read only committed records, or all of them.
pub(crate) fn isolation(read_committed: bool) -> &'static str {
    if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    }
}

/// The engine's own settings for each kind of client.
fn defaults(client: Client<'_>) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_owned();
    match client {
        Client::Member {
            group,
            read_committed,
        } => vec![
            ("group.id", s(group)),
            ("isolation.level", s(isolation(read_committed))),
            ("enable.auto.commit", s("false")),
            ("enable.auto.offset.store", s("false")),
            ("auto.offset.reset", s("earliest")),
            ("enable.partition.eof", s("false")),
            // Answer fetches promptly and keep a deep local queue: alerts are wanted within
            // a second, and some brokers hold a fetch for the whole wait when little is new.
            ("fetch.wait.max.ms", s("10")),
            ("queued.min.messages", s("1000000")),
            ("max.partition.fetch.bytes", s("10485760")),
            // Also the rebalance timeout: how long the group waits for members to rejoin.
            // The loop polls at least every 100 ms, so a minute is margin enough, and a
            // member that died while the group formed delays the others less than with
            // librdkafka's 5 minutes.
            ("max.poll.interval.ms", s("60000")),
        ],
        Client::Reader => vec![
            ("group.id", s("rulewatch-reader")),
            ("enable.auto.commit", s("false")),
            // Some brokers report the first offset of the last record batch as the high
            // watermark: only the end of the records says where the end is.
            ("enable.partition.eof", s("true")),
            ("fetch.wait.max.ms", s("10")),
        ],
        Client::Producer { transactional_id } => {
            let mut settings = vec![
                ("enable.idempotence", s("true")),
                ("linger.ms", s("5")),
                ("message.max.bytes", (MAX_MESSAGE + (1 << 20)).to_string()),
            ];
            if let Some(id) = transactional_id {
                settings.push(("transactional.id", s(id)));
                // How long a transaction of an instance that died stays open, holding back
                // read_committed consumers and the hand-over of its partitions, before the
                // broker aborts it (Kafka Streams' value under exactly-once).
                settings.push(("transaction.timeout.ms", s("10000")));
            }
            settings
        }
        Client::Admin => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    #[test]
    fn the_users_options_come_last_and_win() {
        let options = BTreeMap::from([
            ("fetch.wait.max.ms".to_owned(), "500".to_owned()),
            ("security.protocol".to_owned(), "SSL".to_owned()),
        ]);
        let extra = [("fetch.wait.max.ms", "50".to_owned())];
        let c = config("b:9092", Client::Reader, &extra, &options);
        assert_eq!(c.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(c.get("security.protocol"), Some("SSL"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        let c = config("b:9092", Client::Reader, &extra, &BTreeMap::new());
        assert_eq!(
            c.get("fetch.wait.max.ms"),
            Some("50"),
            "extra over the defaults"
        );
        let member = Client::Member {
            group: "g",
            read_committed: true,
        };
        let c = config("b", member, &[], &BTreeMap::new());
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }

    /// librdkafka refuses, when a client is created, a setting its build cannot serve
    /// ("OpenSSL not available at build time", "Unsupported value"): these are the settings
    /// of managed Kafka services and of producers' codecs.
    #[test]
    fn the_build_speaks_tls_sasl_and_every_codec() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let options = BTreeMap::from([
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ])
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let member = Client::Member {
                group: "test",
                read_committed: false,
            };
            let consumer: Result<BaseConsumer, _> =
                config("127.0.0.1:1", member, &[], &options).create();
            assert!(consumer.is_ok(), "{mechanism}: {:?}", consumer.err());
        }
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let options = BTreeMap::from([("compression.type".to_owned(), codec.to_owned())]);
            let producer: Result<BaseProducer, _> = config(
                "127.0.0.1:1",
                Client::Producer {
                    transactional_id: None,
                },
                &[],
                &options,
            )
            .create();
            assert!(producer.is_ok(), "{codec}: {:?}", producer.err());
        }
    }
}
