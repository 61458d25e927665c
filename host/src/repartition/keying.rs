//! Whether the input topic is keyed by a rule's group-by field: every message's key is the
//! value of that field, so all events of a key are in one partition. Checked on a sample:
//! the first messages of each partition.

use crate::source::kafka;
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::time::Duration;

/// Messages sampled per partition.
const SAMPLE: i64 = 100;

/// What the sample says about one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Sampled messages that have the field (as a string or number).
    pub with_field: usize,
    /// Of those, messages whose key is the field's value.
    pub keyed: usize,
}

impl Sample {
    /// Keyed by the field: every sampled message that has it is keyed by its value.
    pub(crate) fn keyed(&self) -> bool {
        self.with_field > 0 && self.keyed == self.with_field
    }
}

/// The partitions of `topics` (`topic/partition`), and the sample per field of `fields`.
pub(crate) fn inspect(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topics: &[String],
    fields: &[&str],
) -> anyhow::Result<(Vec<String>, BTreeMap<String, Sample>)> {
    let consumer = kafka::reader(brokers, options, &[])?;
    let mut samples: BTreeMap<String, Sample> = fields
        .iter()
        .map(|f| (f.to_string(), Sample::default()))
        .collect();
    let mut partitions = Vec::new();
    for topic in topics {
        let limit = Some(SAMPLE);
        partitions.extend(kafka::read_from_start(
            &consumer,
            topic,
            limit,
            Duration::from_secs(30),
            |msg| {
                let payload = msg.payload().unwrap_or_default();
                let Ok(serde_json::Value::Object(event)) = serde_json::from_slice(payload) else {
                    return;
                };
                for (field, sample) in &mut samples {
                    let value = match event.get(field) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Number(n)) => n.to_string(),
                        _ => continue,
                    };
                    sample.with_field += 1;
                    if msg.key() == Some(value.as_bytes()) {
                        sample.keyed += 1;
                    }
                }
            },
        )?);
    }
    if partitions.is_empty() {
        anyhow::bail!(
            "topic {} has no partitions: does it exist? (rulewatch does not create its input)",
            topics.join(", ")
        );
    }
    Ok((partitions, samples))
}
