//! What the pipeline's unit tests share: the crash rule, events and batches.

use crate::config::Role;
use crate::pipeline::Repartitioning;
use crate::registry::LoadedRule;
use crate::repartition::ForwardOutput;
use crate::rules::{RuleModule, builtin};
use crate::sink::{AlertRow, Sink};
use crate::source::lines::Line;
use std::sync::{Arc, Mutex};

/// The built-in crash rule, grouping by `key`.
pub(crate) fn crash(key: &str) -> LoadedRule {
    let mut config = builtin::crash_config();
    config.window.key = key.to_owned();
    LoadedRule {
        name: "crash".into(),
        role: Role::Primary,
        config,
        module: Arc::new(
            RuleModule::compile("crash", builtin::CRASH_WASM, &Default::default()).unwrap(),
        ),
    }
}

/// An event `second` seconds into 2026 of `user` with `severity` and `content`.
pub(super) fn event(second: u32, severity: &str, user: &str, content: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-01-01T00:{:02}:{:02}Z","severity":"{severity}","user_id":"{user}","content":"{content}"}}"#,
        second / 60,
        second % 60
    )
}

/// A batch of `texts` read from source `source`, numbered from 0.
pub(super) fn batch(source: u32, texts: &[String]) -> (Arc<Vec<u8>>, Arc<Vec<Line>>) {
    let (mut buf, mut lines) = (Vec::new(), Vec::new());
    for (n, text) in texts.iter().enumerate() {
        let start = buf.len();
        buf.extend_from_slice(text.as_bytes());
        lines.push(Line {
            range: start..buf.len(),
            source,
            number: n as u64,
            offset: 0,
            too_large: false,
        });
    }
    (Arc::new(buf), Arc::new(lines))
}

/// Records what is forwarded: (topic, partition or key, record).
#[derive(Default)]
pub(crate) struct Recorded(pub(crate) Mutex<Vec<(String, String, String)>>);

impl ForwardOutput for Recorded {
    fn send_keyed(&self, topic: &str, key: &[u8], record: &[u8]) {
        let key = String::from_utf8_lossy(key).into_owned();
        let record = String::from_utf8_lossy(record).into_owned();
        self.0.lock().unwrap().push((topic.into(), key, record));
    }

    fn send_to_partition(&self, topic: &str, partition: i32, record: &[u8]) {
        let record = String::from_utf8_lossy(record).into_owned();
        (self.0.lock().unwrap()).push((topic.into(), format!("#{partition}"), record));
    }
}

/// Repartitioning through `output`, for rules and topics `topics` (rule, topic), the
/// input keyed by `keyed_by`: one input partition, `logs/0`, and two internal ones.
pub(crate) fn repartitioning(
    keyed_by: Option<&str>,
    topics: &[(&str, &str)],
    output: &Arc<Recorded>,
) -> Repartitioning {
    Repartitioning {
        output: Arc::clone(output) as Arc<dyn ForwardOutput>,
        keyed_by: keyed_by.map(str::to_owned),
        topics: topics
            .iter()
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .collect(),
        inputs: vec!["logs/0".into()],
        partitions: 2,
    }
}

/// Keeps every row as text, in order, with its trigger number.
#[derive(Default)]
pub(crate) struct Rows(pub(crate) Vec<String>);

impl Sink for Rows {
    fn emit(&mut self, trigger: u64, rows: &[AlertRow]) -> std::io::Result<()> {
        for r in rows {
            let row = (trigger, &r.rule.name, r.start, &r.key, r.count, r.watermark);
            self.0.push(format!("{row:?}"));
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
