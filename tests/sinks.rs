//! Alerts delivered where people are, end to end: `[[output.sinks]]` to a real Prometheus
//! Alertmanager (Debian's `prometheus-alertmanager`, started here on a free loopback port)
//! and to an HTTP receiver that refuses connections, answers 500, stalls and then recovers.

mod common;

use common::kafka::free_port;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A running Alertmanager; killed on drop.
struct Alertmanager {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one, alone (no cluster), routing every alert to a receiver that sends nothing,
    /// grouped by `alertname`.
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = "route:\n  receiver: quiet\n  group_by: [alertname]\n  group_wait: 1s\n\
                      receivers:\n  - name: quiet\n";
        std::fs::write(dir.path().join("am.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Self::spawn(dir.path(), &addr);
        let am = Alertmanager { child, addr, dir };
        am.wait_ready();
        am
    }

    fn spawn(dir: &Path, addr: &str) -> Child {
        let log = (std::fs::OpenOptions::new().create(true).append(true))
            .open(dir.join("am.log"))
            .unwrap();
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus-alertmanager runs (./test.sh installs it)")
    }

    fn wait_ready(&self) {
        let ready =
            || TcpStream::connect(&self.addr).is_ok() && http_get(&self.addr, "/-/ready").0 == 200;
        eventually(
            Duration::from_secs(30),
            || "Alertmanager did not start".into(),
            || ready().then_some(()),
        );
    }

    /// Kills it (its alerts are in memory only: gone) and starts it again at its address.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path(), &self.addr);
        self.wait_ready();
    }

    /// The alerts it holds as active (firing, not resolved).
    fn alerts(&self) -> Vec<Value> {
        let (code, body) = http_get(&self.addr, "/api/v2/alerts");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, epoch ms, floored to a 10 s window start, less `windows_back` windows.
fn window_start(windows_back: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now % 10_000 - windows_back * 10_000
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `counts` crash events per user in the window starting at `start`.
fn events(start: i64, counts: &[(&str, usize)]) -> String {
    let mut text = String::new();
    for (user, n) in counts {
        for i in 0..*n {
            text.push_str(&format!(
                r#"{{"timestamp":"{}","severity":"High","user_id":"{user}","content":"app crash"}}"#,
                rfc3339(start + 100 * i as i64)
            ));
            text.push('\n');
        }
    }
    text
}

fn replay_with(dir: &Path, input: &str, config: &str) -> (String, String) {
    std::fs::write(dir.join("events.jsonl"), input).unwrap();
    std::fs::write(dir.join("rulewatch.toml"), config).unwrap();
    let out = rulewatch_logging(
        &[
            "replay",
            dir.join("events.jsonl").to_str().unwrap(),
            "--config",
            dir.join("rulewatch.toml").to_str().unwrap(),
            "--format",
            "jsonl",
        ],
        None,
        "info",
    );
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

#[test]
fn a_replay_fires_alerts_in_every_alertmanager_grouped_and_they_resolve() {
    let (one, two) = (Alertmanager::start(), Alertmanager::start());
    let dir = tempfile::tempdir().unwrap();
    // A window that ended a few seconds ago: its alerts fire until 25 s after its end.
    let start = window_start(1);
    let input = events(start, &[("user_a", 3), ("user_b", 4), ("user_c", 1)]);
    let config = format!(
        "[[output.sinks]]\nkind = \"alertmanager\"\nurls = [\"http://{}\", \"http://{}\"]\n\
         resolve_after = \"25s\"\nlabels = {{ team = \"sre\" }}\n\
         summary = \"{{{{key}}}} crashed {{{{count}}}} times\"\n",
        one.addr, two.addr
    );
    let (stdout, _) = replay_with(dir.path(), &input, &config);
    assert_eq!(parse_alerts(&stdout).len(), 2, "{stdout}");
    for am in [&one, &two] {
        let mut alerts = am.alerts();
        alerts.sort_by_key(|a| a["labels"]["user_id"].as_str().unwrap().to_owned());
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        for (alert, (user, count)) in alerts.iter().zip([("user_a", "3"), ("user_b", "4")]) {
            assert_eq!(alert["labels"]["alertname"], "crash", "{alert}");
            assert_eq!(alert["labels"]["user_id"], user, "{alert}");
            assert_eq!(alert["labels"]["team"], "sre", "{alert}");
            assert_eq!(alert["annotations"]["count"], count, "{alert}");
            let summary = format!("{user} crashed {count} times");
            assert_eq!(alert["annotations"]["summary"], summary.as_str(), "{alert}");
            assert_eq!(alert["status"]["state"], "active", "{alert}");
            let starts = alert["startsAt"].as_str().unwrap();
            let starts = chrono::DateTime::parse_from_rfc3339(starts).unwrap();
            assert_eq!(starts.timestamp_millis(), start, "{alert}");
        }
        // Grouped as the route says: one group for the rule.
        let (_, body) = http_get(&am.addr, "/api/v2/alerts/groups");
        let groups: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(groups.len(), 1, "{body}");
        assert_eq!(groups[0]["labels"]["alertname"], "crash", "{body}");
        assert_eq!(groups[0]["alerts"].as_array().unwrap().len(), 2, "{body}");
    }
    // Not renewed, they resolve once `resolve_after` has passed.
    eventually(
        Duration::from_secs(60),
        || format!("{:?}", one.alerts()),
        || one.alerts().is_empty().then_some(()),
    );
}

/// How the flaky receiver answers now.
const REFUSE: u8 = 0;
const FAIL: u8 = 1;
const STALL: u8 = 2;
const OK: u8 = 3;

/// An HTTP receiver on `port` that refuses connections (not listening) until its mode
/// leaves REFUSE, then answers by mode; records the `Idempotency-Key` of each accepted POST.
fn flaky_receiver(port: u16, mode: Arc<AtomicU8>, got: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        while mode.load(Ordering::SeqCst) == REFUSE {
            std::thread::sleep(Duration::from_millis(20));
        }
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (mode, got) = (mode.clone(), got.clone());
            std::thread::spawn(move || answer(conn, &mode, &got));
        }
    });
}

/// Reads one request, answers it by mode.
fn answer(mut conn: TcpStream, mode: &AtomicU8, got: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let (mut key, mut length, mut auth) = (String::new(), 0usize, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if lower.starts_with("idempotency-key:") {
            key = line["idempotency-key:".len()..].trim().to_owned();
        }
        if lower.starts_with("authorization:") {
            auth = line["authorization:".len()..].trim().to_owned();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    match mode.load(Ordering::SeqCst) {
        FAIL => {
            let _ = conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy");
        }
        STALL => std::thread::sleep(Duration::from_secs(5)),
        _ => {
            // The token from the sink's bearer_token_file, else a refusal (a dead letter,
            // which fails the test).
            if auth != "Bearer s3cret-token" {
                let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            // The body from the sink's template.
            let alert: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(alert["alert_id"], key.as_str());
            assert!(
                alert["text"].as_str().unwrap().starts_with("crash: user_"),
                "{alert}"
            );
            got.lock().unwrap().push(key);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// An HTTP receiver that answers every request 400 (a refusal no retry can change); its
/// address.
fn refusing_receiver() -> std::net::SocketAddr {
    let refusing = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = refusing.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in refusing.incoming().flatten() {
            let mut buf = [0; 65536];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\nConnection: close\r\n\r\nno such",
            );
        }
    });
    addr
}

#[test]
fn a_receiver_that_refuses_fails_and_stalls_gets_every_alert_and_refusals_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(dir.path(), "logs.jsonl", &["--events", "40000"])).unwrap();
    let expected = crash_reference(&input).alerts;
    assert!(expected.len() > 20, "{}", expected.len());
    let (port, mode, got) = (free_port(), Arc::new(AtomicU8::new(REFUSE)), Arc::default());
    flaky_receiver(port, mode.clone(), Arc::clone(&got));
    // A receiver that refuses every alert as malformed: they go to its dead letter at once.
    let refusing_addr = refusing_receiver();
    let dead = dir.path().join("dead.jsonl");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let config = format!(
        "[[output.sinks]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/alerts\"\n\
         timeout = \"1s\"\nbackoff = \"100ms\"\nmax_backoff = \"500ms\"\nmax_attempts = 1000\n\
         bearer_token_file = \"{}\"\n\
         template = '{{\"alert_id\": \"{{{{alert_id}}}}\", \"text\": \"{{{{rule}}}}: {{{{key}}}} x{{{{count}}}}\"}}'\n\
         [[output.sinks]]\nkind = \"webhook\"\nurl = \"http://{refusing_addr}/\"\n\
         dead_letter = \"{}\"\n",
        token.display(),
        dead.display()
    );
    // The receiver's moods, while the replay waits for its deliveries.
    let moods = std::thread::spawn(move || {
        for next in [FAIL, STALL, OK] {
            std::thread::sleep(Duration::from_secs(2));
            mode.store(next, Ordering::SeqCst);
        }
    });
    let (stdout, stderr) = replay_with(dir.path(), std::str::from_utf8(&input).unwrap(), &config);
    moods.join().unwrap();
    let mut alerts = parse_alerts(&stdout);
    alerts.sort();
    assert_eq!(alerts, expected);
    let ids: BTreeSet<String> = json_lines(&stdout)
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    let delivered: BTreeSet<String> = got.lock().unwrap().iter().cloned().collect();
    assert_eq!(delivered, ids, "{stderr}");
    assert!(stderr.contains("cannot deliver"), "{stderr}");
    assert!(stderr.contains("delivering again"), "{stderr}");
    assert_eq!(stderr.matches("not delivered after").count(), 1, "{stderr}");
    let dead: BTreeSet<String> = json_lines(&std::fs::read_to_string(&dead).unwrap())
        .iter()
        .inspect(|d| assert!(d["error"].as_str().unwrap().contains("HTTP 400"), "{d}"))
        .map(|d| d["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead, ids);
}

#[test]
fn run_killed_mid_stream_and_restarted_delivers_every_alert_to_alertmanager() {
    use common::engine::{Engine, per_partition_reference};
    use common::kafka::{Broker, keyed_messages, sentinels};
    let am = Alertmanager::start();
    let broker = Broker::start();
    broker.create_topic("logs", 2);
    let dir = tempfile::tempdir().unwrap();
    // Old event times: the alerts stay firing for a century, so that all can be counted.
    let config = format!(
        "[[output.sinks]]\nkind = \"alertmanager\"\nurl = \"http://{}\"\nresolve_after = \"36500d\"\n",
        am.addr
    );
    let config_path = dir.path().join("rulewatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let args = ["--events", "60000", "--disorder", "8"];
    let messages =
        keyed_messages(&std::fs::read(generate(dir.path(), "logs.jsonl", &args)).unwrap());
    let half = messages.len() / 2;
    broker.produce("logs", &messages[..half]);
    let run = || {
        Engine::start(
            &broker,
            dir.path(),
            &["--config", config_path.to_str().unwrap()],
        )
    };
    let first = run();
    eventually(
        Duration::from_secs(60),
        || first.log(),
        || (!am.alerts().is_empty()).then_some(()),
    );
    // Killed between checkpoints, with deliveries in flight; the restart redoes the work.
    let first_log = first.log();
    first.kill();
    let mut second = run();
    broker.produce("logs", &messages[half..]);
    broker.produce("logs", &sentinels(2, "2026-01-28T00:00:00Z"));
    let expected: BTreeSet<(String, String, String)> = per_partition_reference(&broker, "logs")
        .into_iter()
        .map(|a| (a.key, a.window_start, a.count.to_string()))
        .collect();
    let held = || -> BTreeSet<(String, String, String)> {
        am.alerts()
            .iter()
            .map(|a| {
                let at = |k: &str| a["annotations"][k].as_str().unwrap().to_owned();
                let key = a["labels"]["user_id"].as_str().unwrap().to_owned();
                (key, at("window_start"), at("count"))
            })
            .collect()
    };
    let missing = || {
        let held = held();
        format!(
            "{} alerts in Alertmanager, {} expected; missing: {:?}\n--- first:\n{first_log}",
            held.len(),
            expected.len(),
            expected.difference(&held).take(5).collect::<Vec<_>>(),
        )
    };
    eventually(Duration::from_secs(120), missing, || {
        second.assert_running();
        (held() == expected).then_some(())
    });
}

#[test]
fn a_backed_up_receiver_makes_reading_wait_and_says_so_on_readyz_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens there: every attempt is refused, and the queue of 3 fills.
    let config = format!(
        "[[output.sinks]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/\"\nqueue = 3\n\
         max_attempts = 1000\nbackoff = \"50ms\"\nmax_backoff = \"100ms\"\n",
        free_port()
    );
    let config_path = dir.path().join("rulewatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut live =
        common::live::Live::start_with(None, true, &["--config", config_path.to_str().unwrap()]);
    // Ten windows of 3 crash events each, then an event that closes them all.
    let mut lines = Vec::new();
    for w in 0..10 {
        let start = 1_769_551_200_000 + w * 10_000;
        lines.extend(events(start, &[("user_a", 3)]).lines().map(str::to_owned));
    }
    lines.extend(
        events(1_769_551_200_000 + 1_000_000, &[("user_b", 1)])
            .lines()
            .map(str::to_owned),
    );
    live.send(&lines);
    let addr = live.addr.clone().unwrap();
    eventually(
        Duration::from_secs(30),
        || format!("{:?}\n{}", http_get(&addr, "/readyz"), live.log()),
        || {
            let (code, body) = http_get(&addr, "/readyz");
            (code == 503 && body.contains("backed up")).then_some(())
        },
    );
    let (_, metrics) = http_get(&addr, "/metrics");
    let waiting = metrics
        .lines()
        .find(|l| l.starts_with("rulewatch_sink_waiting{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(waiting >= 3.0, "{metrics}");
    assert!(
        metrics.contains("rulewatch_sink_failing{sink=\"webhook http://127.0.0.1:"),
        "{metrics}"
    );
    assert!(live.log().contains("delivery queue full"), "{}", live.log());
    // The status API and page show the receiver backed up.
    let (_, body) = http_get(&addr, "/api/status");
    let status: Value = serde_json::from_str(&body).unwrap();
    let sink = &status["sinks"][0];
    assert_eq!(sink["backed_up"], true, "{body}");
    assert!(
        sink["failing"].as_str().unwrap().contains("refused"),
        "{body}"
    );
    let dom = chromium(&["--dump-dom", &format!("http://{addr}/")]);
    assert!(
        dom.contains(r#"data-sink="webhook http://127.0.0.1:"#),
        "{dom}"
    );
    assert!(dom.contains("backed up: reading waits"), "{dom}");
    live.assert_running();
}

#[test]
fn a_webhook_over_https_trusts_its_ca_setting_and_not_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    common::kafka::make_certificates(dir.path(), "localhost");
    let port = free_port();
    let received = dir.path().join("received.jsonl");
    // Python's HTTPS server with the certificate the test CA signed: appends each body.
    let server = format!(
        r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open({received:?}, "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain({cert:?}, {key:?})
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
        received = received.display().to_string(),
        cert = dir.path().join("server.pem").display().to_string(),
        key = dir.path().join("server.key").display().to_string(),
    );
    let mut python = Command::new("python3")
        .args(["-c", &server])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs");
    eventually(
        Duration::from_secs(10),
        || "the HTTPS server did not start".into(),
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let start = window_start(1);
    let input = events(start, &[("user_a", 3), ("user_b", 5)]);
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        "[[output.sinks]]\nkind = \"webhook\"\nurl = \"https://localhost:{port}/\"\nca = \"{}\"\n\
         [[output.sinks]]\nkind = \"webhook\"\nurl = \"https://localhost:{port}/\"\n\
         max_attempts = 1\ndead_letter = \"{}\"\n",
        dir.path().join("ca.pem").display(),
        dead.display()
    );
    let (stdout, _) = replay_with(dir.path(), &input, &config);
    let _ = python.kill();
    let _ = python.wait();
    let sent: BTreeSet<String> = json_lines(&stdout)
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 2, "{stdout}");
    // Through the configured CA: delivered; through the system's CAs: refused, dead letters.
    let got: BTreeSet<String> = json_lines(&std::fs::read_to_string(&received).unwrap())
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, sent);
    let refused = json_lines(&std::fs::read_to_string(&dead).unwrap());
    assert_eq!(refused.len(), 2);
    for d in refused {
        let error = d["error"].as_str().unwrap().to_lowercase();
        assert!(
            error.contains("certificate") || error.contains("tls") || error.contains("ssl"),
            "{d}"
        );
    }
}

#[test]
fn under_run_dead_letters_can_go_to_a_kafka_topic() {
    use common::engine::{Engine, per_partition_reference};
    use common::kafka::{Broker, keyed_messages, sentinels};
    let broker = Broker::start();
    broker.create_topic("logs", 2);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[output.sinks]]\nkind = \"webhook\"\nurl = \"http://{}/\"\n\
         dead_letter_topic = \"webhook-dead\"\n",
        refusing_receiver()
    );
    let config_path = dir.path().join("rulewatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let input = std::fs::read(generate(dir.path(), "logs.jsonl", &["--events", "30000"])).unwrap();
    broker.produce("logs", &keyed_messages(&input));
    broker.produce("logs", &sentinels(2, "2026-01-28T00:00:00Z"));
    let expected = per_partition_reference(&broker, "logs");
    let mut engine = Engine::start(
        &broker,
        dir.path(),
        &["--config", config_path.to_str().unwrap()],
    );
    let got = broker.consume("webhook-dead", Duration::from_secs(90), |got| {
        engine.assert_running();
        got.len() >= expected.len()
    });
    let mut dead: Vec<(String, u64)> = got
        .iter()
        .map(|m| {
            let d: Value = serde_json::from_slice(&m.value).unwrap();
            assert!(d["error"].as_str().unwrap().contains("HTTP 400"), "{d}");
            assert_eq!(m.key.as_deref(), d["alert_id"].as_str(), "{d}");
            (
                d["alert"]["key"].as_str().unwrap().to_owned(),
                d["alert"]["count"].as_u64().unwrap(),
            )
        })
        .collect();
    dead.sort();
    let mut want: Vec<(String, u64)> = expected.iter().map(|a| (a.key.clone(), a.count)).collect();
    want.sort();
    assert_eq!(dead, want, "{}", engine.log());
}

#[test]
fn alerts_still_firing_are_sent_again_to_an_alertmanager_that_restarted() {
    use common::engine::{Engine, per_partition_reference};
    use common::kafka::{Broker, keyed_messages, sentinels};
    let mut am = Alertmanager::start();
    let broker = Broker::start();
    broker.create_topic("logs", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[output.sinks]]\nkind = \"alertmanager\"\nurl = \"http://{}\"\n\
         resolve_after = \"36500d\"\nresend_interval = \"1s\"\n",
        am.addr
    );
    let config_path = dir.path().join("rulewatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let input = std::fs::read(generate(dir.path(), "logs.jsonl", &["--events", "20000"])).unwrap();
    broker.produce("logs", &keyed_messages(&input));
    broker.produce("logs", &sentinels(1, "2026-01-28T00:00:00Z"));
    let expected = per_partition_reference(&broker, "logs").len();
    let mut engine = Engine::start(
        &broker,
        dir.path(),
        &["--config", config_path.to_str().unwrap()],
    );
    let all_there = |am: &Alertmanager| (am.alerts().len() == expected).then_some(());
    eventually(Duration::from_secs(60), || engine.log(), || all_there(&am));
    am.restart();
    // No new input: only the engine's resending fills the new Alertmanager.
    eventually(
        Duration::from_secs(30),
        || format!("{} of {expected}", am.alerts().len()),
        || {
            engine.assert_running();
            all_there(&am)
        },
    );
}
