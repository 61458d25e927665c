//! A real Kafka broker for the tests: Apache Kafka (KRaft, broker and controller in one
//! process, `tests/kafka/broker.sh`) on free loopback ports, plus small producer/consumer
//! helpers built on rdkafka's bundled librdkafka.

use super::eventually;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The consumer group protocol an engine joins its group with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Kafka's classic protocol (eager or cooperative assignment by the members).
    Classic,
    /// KIP-848's `consumer` protocol: the broker assigns, incrementally.
    Consumer,
}

/// A running broker, or a cluster of them ([`Broker::cluster`]); killed on drop.
pub(crate) struct Broker {
    /// Its Kafka processes: one, or one per node of a cluster (node id = index + 1).
    pub(super) nodes: Vec<Node>,
    /// Bootstrap addresses: `127.0.0.1:PORT` (one per node), or `HOST:PORT` when it speaks
    /// TLS.
    pub addr: String,
    /// Its certificates, when it speaks TLS.
    pub tls: Option<Tls>,
}

/// The certificates of a broker that speaks TLS: a CA and a server certificate made for the
/// test.
pub(crate) struct Tls {
    /// Holds the certificates.
    pub dir: tempfile::TempDir,
    /// Whether clients must also authenticate with SCRAM (`SASL_SSL`).
    pub sasl: bool,
}

/// The SCRAM user of a [`Broker::start_sasl`] broker, and its password.
pub(crate) const SCRAM_USER: &str = "rulewatch";
/// See [`SCRAM_USER`].
pub(crate) const SCRAM_PASSWORD: &str = "rulewatch-scram-secret";

impl Tls {
    /// The CA that signed the broker's certificate.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// A free port on the loopback interface.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `openssl` in `dir`.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` arguments for a new unencrypted P-256 key.
pub(crate) const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A new CA (`ca.pem`) in `dir` and, signed by it, a server certificate for DNS name `host`
/// (and 127.0.0.1 when it is `localhost`): `server.pem`, `server.key`.
pub(crate) fn make_certificates(dir: &Path, host: &str) {
    let ec = EC_KEY;
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-days", "2", "-subj", "/CN=rulewatch test CA"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
            &["-subj", &format!("/CN={host}")],
        ]
        .concat(),
    );
    let ip = if host == "localhost" {
        ",IP:127.0.0.1"
    } else {
        ""
    };
    std::fs::write(
        dir.join("san.cnf"),
        format!("subjectAltName=DNS:{host}{ip}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub(crate) fn start() -> Broker {
        Self::launch(free_port(), &[], None)
    }

    /// Starts a broker reachable only over TLS, at `localhost:PORT`, with a certificate for
    /// `localhost` signed by a CA made here ([`Tls::ca`]).
    pub(crate) fn start_tls() -> Broker {
        Self::start_tls_named("localhost")
    }

    /// [`Broker::start_tls`] with a certificate for `host` instead of `localhost` (still
    /// reached at `localhost:PORT`).
    pub(crate) fn start_tls_named(host: &str) -> Broker {
        Self::start_secure(host, None)
    }

    /// A broker reachable only over `SASL_SSL` with SCRAM-SHA-512 (as managed Kafka
    /// services are), the user [`SCRAM_USER`] seeded when its storage is formatted; over
    /// TLS as [`Broker::start_tls`].
    pub(crate) fn start_sasl() -> Broker {
        Self::start_secure("localhost", Some((SCRAM_USER, SCRAM_PASSWORD)))
    }

    fn start_secure(host: &str, sasl: Option<(&str, &str)>) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path(), host);
        openssl(
            dir.path(),
            &[
                "pkcs12",
                "-export",
                "-in",
                "server.pem",
                "-inkey",
                "server.key",
                "-out",
                "server.p12",
                "-passout",
                "pass:rulewatch",
            ],
        );
        let port = free_port();
        let (keystore, ca) = (dir.path().join("server.p12"), dir.path().join("ca.pem"));
        // Reached as localhost whatever the certificate names.
        let tls = [
            "localhost",
            keystore.to_str().unwrap(),
            "rulewatch",
            ca.to_str().unwrap(),
        ];
        let tls_dir = Some(Tls {
            dir,
            sasl: sasl.is_some(),
        });
        Self::launch(port, &tls, tls_dir)
    }

    /// Runs `tests/kafka/broker.sh` on `port` (with `tls`: host, keystore, password, CA) and
    /// waits until it accepts connections.
    fn launch(port: u16, tls_args: &[&str], tls: Option<Tls>) -> Broker {
        let mut env = Vec::new();
        if tls.as_ref().is_some_and(|t| t.sasl) {
            env.push(("SCRAM_USER".to_owned(), SCRAM_USER.to_owned()));
            env.push(("SCRAM_PASSWORD".to_owned(), SCRAM_PASSWORD.to_owned()));
        }
        let controller = free_port().to_string();
        let mut args = vec![port.to_string(), controller];
        args.extend(tls_args.iter().map(|a| a.to_string()));
        let node = Node::spawn(tempfile::tempdir().unwrap(), port, args, env);
        let mut broker = Broker {
            nodes: vec![node],
            addr: format!("{}:{port}", tls_args.first().unwrap_or(&"127.0.0.1")),
            tls,
        };
        broker.nodes[0].wait_listening();
        broker
    }

    /// What the broker's script and the JVM printed (every node's, one after the other).
    pub(crate) fn log(&self) -> String {
        (self.nodes.iter().enumerate())
            .map(|(i, n)| format!("--- node {}:\n{}", i + 1, n.log()))
            .collect()
    }

    /// The librdkafka settings a client needs to reach this broker (TLS, its CA).
    pub(crate) fn client_options(&self) -> Vec<(String, String)> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let ca = ("ssl.ca.location".into(), tls.ca().display().to_string());
        if !tls.sasl {
            return vec![("security.protocol".into(), "ssl".into()), ca];
        }
        vec![
            ("security.protocol".into(), "sasl_ssl".into()),
            ca,
            ("sasl.mechanisms".into(), "SCRAM-SHA-512".into()),
            ("sasl.username".into(), SCRAM_USER.into()),
            ("sasl.password".into(), SCRAM_PASSWORD.into()),
        ]
    }

    /// A client configuration for this broker.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.addr);
        for (k, v) in self.client_options() {
            config.set(k, v);
        }
        config
    }

    /// Freezes the broker (SIGSTOP): clients see it unreachable; no data is lost.
    pub(crate) fn pause(&self) {
        for n in &self.nodes {
            signal(n.child.id(), "STOP");
        }
    }

    /// Resumes a paused broker (SIGCONT).
    pub(crate) fn resume(&self) {
        for n in &self.nodes {
            signal(n.child.id(), "CONT");
        }
    }

    /// Creates a topic.
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let replication = self.nodes.len() as i32;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        let result =
            futures_executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
                .unwrap();
        result[0].as_ref().unwrap();
    }

    /// Produces `(partition, key, value)` messages and waits for all acknowledgements.
    pub(crate) fn produce(&self, topic: &str, messages: &[(Option<i32>, String, Vec<u8>)]) {
        self.produce_with(topic, messages, &[]);
    }

    /// [`Broker::produce`] with more producer settings (e.g. `compression.type`).
    pub(crate) fn produce_with(
        &self,
        topic: &str,
        messages: &[(Option<i32>, String, Vec<u8>)],
        settings: &[(&str, &str)],
    ) {
        let stamped = messages
            .iter()
            .map(|(p, k, v)| (*p, k.as_str(), v.as_slice(), None));
        self.send(topic, stamped, settings);
    }

    /// Produces `(partition, key, value, timestamp ms)` messages and waits for all
    /// acknowledgements.
    pub(crate) fn produce_stamped(&self, topic: &str, messages: &[(i32, String, Vec<u8>, i64)]) {
        let stamped =
            (messages.iter()).map(|(p, k, v, t)| (Some(*p), k.as_str(), v.as_slice(), Some(*t)));
        self.send(topic, stamped, &[]);
    }

    fn send<'a>(
        &self,
        topic: &str,
        messages: impl Iterator<Item = (Option<i32>, &'a str, &'a [u8], Option<i64>)>,
        settings: &[(&str, &str)],
    ) {
        let mut config = self.client();
        for (k, v) in settings {
            config.set(*k, *v);
        }
        let producer: BaseProducer = config
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (partition, key, value, timestamp) in messages {
            let mut record = BaseRecord::to(topic).key(key).payload(value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(t) = timestamp {
                record = record.timestamp(t);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }

    /// Reads every message of `topic` until `done` says so or `timeout` passes.
    pub(crate) fn consume(
        &self,
        topic: &str,
        timeout: Duration,
        done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        self.consume_as("read_uncommitted", topic, timeout, done)
    }

    /// [`Broker::consume`] at isolation level `isolation` (`read_committed`: only the
    /// records of committed transactions, as a downstream consumer of alerts reads them).
    pub(crate) fn consume_as(
        &self,
        isolation: &str,
        topic: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("test-reader-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let started = Instant::now();
        // The topic may not exist yet (rulewatch creates its output topics as it starts).
        let mut tpl = TopicPartitionList::new();
        while tpl.count() == 0 && started.elapsed() < timeout {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            for p in metadata.topics()[0].partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .unwrap();
            }
            if tpl.count() == 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        while !done(&got) && started.elapsed() < timeout {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_owned(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                got.push(Received {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        got
    }
}

/// A consumed message.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.resume();
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// One Kafka process: `tests/kafka/broker.sh` with its arguments and environment, kept to
/// start it again on the same data.
pub(super) struct Node {
    child: Child,
    /// Its configuration, data and log.
    dir: tempfile::TempDir,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Node {
    /// Starts `broker.sh DIR ARGS…` with `env`, listening for clients on `port`.
    pub(super) fn spawn(
        dir: tempfile::TempDir,
        port: u16,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Node {
        let child = Self::run(dir.path(), &args, &env);
        Node {
            child,
            dir,
            port,
            args,
            env,
        }
    }

    fn run(dir: &Path, args: &[String], env: &[(String, String)]) -> Child {
        let script = super::workspace().join("tests/kafka/broker.sh");
        let log = (std::fs::OpenOptions::new().create(true).append(true))
            .open(dir.join(LOG))
            .unwrap();
        Command::new("bash")
            .arg(&script)
            .arg(dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bash runs tests/kafka/broker.sh")
    }

    /// Waits until the process accepts connections (60 s at most).
    pub(super) fn wait_listening(&mut self) {
        let (port, dir) = (self.port, self.dir.path().to_owned());
        let child = &mut self.child;
        let read = || log_in(&dir);
        let not_started = || format!("the broker did not start: {}", read());
        eventually(Duration::from_secs(60), not_started, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the broker exited ({status}): {}", read());
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the process again on its data and waits until it accepts connections.
    pub(super) fn restart(&mut self) {
        self.kill();
        self.child = Self::run(self.dir.path(), &self.args, &self.env);
        self.wait_listening();
    }

    fn log(&self) -> String {
        log_in(self.dir.path())
    }
}

/// A broker process's log file, in its folder.
const LOG: &str = "broker.log";

/// The log of the broker process whose folder is `dir`, so far.
fn log_in(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOG)).unwrap_or_default()
}

pub(super) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// The lines of a JSON-lines file as messages without keys, spread round robin over
/// `partitions` partitions: a user's events are in every partition.
pub(crate) fn round_robin(input: &[u8], partitions: i32) -> Vec<(Option<i32>, String, Vec<u8>)> {
    keyed_messages(input)
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, line))| (Some(i as i32 % partitions), String::new(), line))
        .collect()
}

/// The lines of a JSON-lines file as messages keyed by `user_id` (or by line number when a
/// line has none), to be spread over partitions by the producer's partitioner.
pub(crate) fn keyed_messages(input: &[u8]) -> Vec<(Option<i32>, String, Vec<u8>)> {
    input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let key = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("user_id").and_then(|u| u.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("line-{i}"));
            (None, key, line.to_vec())
        })
        .collect()
}

/// One event per partition far in the future (severity Low: never selected), which moves
/// every partition's watermark past all earlier windows so that they close.
pub(crate) fn sentinels(partitions: i32, time: &str) -> Vec<(Option<i32>, String, Vec<u8>)> {
    (0..partitions)
        .map(|p| {
            let line = format!(
                r#"{{"timestamp":"{time}","severity":"Low","user_id":"sentinel","content":"end of test data"}}"#
            );
            (Some(p), "sentinel".to_owned(), line.into_bytes())
        })
        .collect()
}

impl Broker {
    /// Every message of `topic` as it stands now, partition by partition in offset order.
    pub(crate) fn read_all(&self, topic: &str) -> BTreeMap<i32, Vec<Received>> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", "test-reader")
            .create()
            .unwrap();
        // Leaders move while a restarted node takes its partitions back: asked again until
        // they answer.
        let ask = Duration::from_secs(10);
        let metadata = super::eventually(
            Duration::from_secs(60),
            || format!("the metadata of {topic}"),
            || consumer.fetch_metadata(Some(topic), ask).ok(),
        );
        let mut total = 0;
        for p in metadata.topics()[0].partitions() {
            let (low, high) = super::eventually(
                Duration::from_secs(60),
                || format!("the offsets of {topic}/{}", p.id()),
                || consumer.fetch_watermarks(topic, p.id(), ask).ok(),
            );
            total += (high - low) as usize;
        }
        let got = self.consume(topic, Duration::from_secs(60), |g| g.len() >= total);
        assert_eq!(got.len(), total, "{topic}: not all messages read");
        let mut by_partition: BTreeMap<i32, Vec<Received>> = BTreeMap::new();
        for m in got {
            by_partition.entry(m.partition).or_default().push(m);
        }
        by_partition
    }
}
