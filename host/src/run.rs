//! `rulewatch run`: the long-running service. It consumes Kafka in a consumer group, runs
//! the pipeline batch by batch, and checkpoints window state together with the offsets it
//! covers, so that a restart after any crash resumes exactly where the last checkpoint was.
//!
//! Exactly-once effect without Kafka transactions: alerts carry a deterministic id of
//! (rule, window, key); a checkpoint is written only after every alert before it is
//! acknowledged by the broker; offsets are committed only for what a checkpoint covers.
//! After a crash, the work since the last checkpoint is redone from the same offsets and
//! produces the same alerts again, which consumers deduplicate by id.
//!
//! Scale-out: instances in one group split the partitions. State is per partition and so
//! is the watermark that closes its windows, so a partition's results do not depend on
//! which instance reads it. On a rebalance, revoked partitions are checkpointed before they
//! are released, and assigned ones are restored from the store before they are read; an
//! instance that dies leaves its last checkpoint, from which the new owner redoes the rest.

use crate::checkpoint::store::Store;
use crate::checkpoint::writer::{Writer, Written};
use crate::config::run::{Console, RunConfig};
use crate::metrics::Histogram;
use crate::pipeline::{BATCH_LINES, LoadedRule, Pipeline, Rejects, Repartitioning, Sources};
use crate::registry::watch::Changes;
use crate::sink::kafka::{AlertTopic, Output, RejectTopic, create_topics};
use crate::sink::records::RejectSink;
use crate::sink::{Fanout, Sink, jsonl::JsonLines, table::Table};
use crate::source::kafka::{KafkaSource, Rebalance};
use crate::status::{CheckpointStatus, Publisher, Shared, Status};
use anyhow::Context;
use std::io::BufWriter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a poll waits for messages before the loop looks at idleness and checkpoints.
const POLL: Duration = Duration::from_millis(100);

/// Runs until SIGTERM or SIGINT, then checkpoints and returns.
pub fn run(
    config: &RunConfig,
    rules: &[LoadedRule],
    changes: Changes,
    fresh_start: bool,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }

    // Up first, so that health and readiness answer while the broker is being reached.
    let mut status = match config.http.address() {
        Some(listen) => {
            let shared = Shared::new(Status::new("kafka"));
            crate::http::serve(listen, shared.clone())?;
            Some(Publisher::new(shared, "kafka"))
        }
        None => None,
    };
    let k = &config.kafka;
    let out = &config.output;
    let topics: Vec<&str> = [&out.alerts_topic, &out.dead_letter_topic, &out.late_topic]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let store = match &config.checkpoint.topic {
        Some(topic) => Store::Kafka {
            brokers: k.brokers.clone(),
            options: k.options.clone(),
            topic: topic.clone(),
        },
        None => Store::File(config.checkpoint.dir.clone()),
    };
    if !topics.is_empty() {
        let partitions: Vec<(&str, i32)> =
            topics.iter().map(|t| (*t, out.topic_partitions)).collect();
        create_topics(
            &k.brokers,
            &k.options,
            &partitions,
            out.topic_replication,
            &[],
        )?;
    }
    if let Store::Kafka { topic, .. } = &store {
        let compact = [("cleanup.policy", "compact")];
        let spec = [(topic.as_str(), 1)];
        create_topics(
            &k.brokers,
            &k.options,
            &spec,
            out.topic_replication,
            &compact,
        )?;
    }
    let keys: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.name.as_str(), r.config.window.key.as_str()))
        .collect();
    let plan = crate::repartition::plan(k, &keys)?;
    if !plan.topics.is_empty() {
        let n = plan.inputs.len() as i32;
        let internal: Vec<(&str, i32)> = plan.topics.values().map(|t| (t.as_str(), n)).collect();
        create_topics(
            &k.brokers,
            &k.options,
            &internal,
            out.topic_replication,
            &[],
        )?;
    }
    // Alerts, rejects, checkpoint records and repartitioned events share one producer.
    let output = Some(Output::connect(&k.brokers, &k.options)?);
    let reject_topic = |topic: &Option<String>| -> Option<Box<dyn RejectSink>> {
        let (output, topic) = (output.as_ref()?, topic.as_ref()?);
        Some(Box::new(RejectTopic::new(output.clone(), topic)))
    };
    let rejects = Rejects {
        dead_letter: reject_topic(&out.dead_letter_topic),
        late: reject_topic(&out.late_topic),
    };

    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let stdout = BufWriter::new(std::io::stdout());
    match out.console {
        Console::Table => sinks.push(Box::new(Table::new(stdout))),
        Console::Jsonl => sinks.push(Box::new(JsonLines::new(stdout))),
        Console::None => {}
    }
    if let (Some(output), Some(topic)) = (&output, &out.alerts_topic) {
        sinks.push(Box::new(AlertTopic::new(output.clone(), topic)));
    }
    let mut sink = Fanout(sinks);

    let mut pipeline = Pipeline::new(Sources::partitions(), rules, out.mode, rejects)?;
    let mut subscribed = k.topics.clone();
    subscribed.extend(plan.topics.values().cloned());
    pipeline.set_repartitioning(Repartitioning {
        output: output.clone().expect("connected above"),
        keyed_by: plan.keyed_by,
        partitions: plan.inputs.len() as i32,
        topics: plan.topics,
        inputs: plan.inputs,
    })?;
    let file = if fresh_start {
        warn!(
            "--fresh-start: ignoring the checkpoints in {}; windows start empty",
            store.describe()
        );
        Default::default()
    } else {
        store.load_file()?
    };
    pipeline.set_triggers(file.triggers);
    // With --fresh-start, the first assignment ignores the store (later ones are hand-overs
    // between instances and restore what the others wrote).
    let mut ignore_store = fresh_start;
    if let Some(p) = status.as_mut() {
        p.publish(true, |s| pipeline.status(s));
    }
    let mut source = KafkaSource::connect(
        &k.brokers,
        &k.group_id,
        &subscribed,
        &k.options,
        k.max_message_bytes,
    )?;
    info!(
        "consuming {} from {} as group {}; checkpoints in {}",
        subscribed.join(", "),
        k.brokers,
        k.group_id,
        store.describe()
    );

    let mut lines = Vec::with_capacity(BATCH_LINES);
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut checkpoint_seconds = Histogram::default();
    let mut writer = Writer::start(&store, output.clone(), &file)?;
    drop(file);
    let mut quiet_closed = false;
    // Per partition index: (assigned, idle).
    let mut partitions: Vec<(bool, bool)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        source.next_batch(BATCH_LINES, POLL, &mut lines)?;
        pipeline.apply_ready(&changes, &mut sink)?;
        let processed = !lines.is_empty();
        if processed {
            quiet_closed = false;
            pipeline.process(source.buffer(), &lines, &mut sink)?;
        }
        while let Some(change) = source.take_rebalance() {
            match change {
                // Cooperative rebalances also announce empty changes; librdkafka still
                // waits for them to be acknowledged.
                Rebalance::Revoke(names) if names.is_empty() => source.revoke(&names)?,
                Rebalance::Assign(names) if names.is_empty() => {
                    source.assign(&names, &Default::default())?
                }
                Rebalance::Revoke(names) => {
                    // Checkpointed first, so that the next owner starts where this one ended.
                    let started = Instant::now();
                    finish_checkpoint(
                        &mut writer,
                        &source,
                        &mut last_checkpoint,
                        &mut checkpoint_seconds,
                    )?;
                    checkpoint(&mut writer, &mut pipeline, &source, &mut sink)?;
                    finish_checkpoint(
                        &mut writer,
                        &source,
                        &mut last_checkpoint,
                        &mut checkpoint_seconds,
                    )?;
                    for name in &names {
                        let i = source.index(name);
                        pipeline.drop_partition(i);
                    }
                    source.revoke(&names)?;
                    info!(
                        "rebalance: checkpointed and released {} partition(s) in {:?}",
                        names.len(),
                        started.elapsed()
                    );
                }
                Rebalance::Assign(names) => {
                    let started = Instant::now();
                    let records = if std::mem::take(&mut ignore_store) {
                        Default::default()
                    } else {
                        store.load(&names)?
                    };
                    let mut offsets = std::collections::BTreeMap::new();
                    let mut pairs = 0;
                    for name in &names {
                        let i = source.index(name);
                        pipeline.name_source(i, name);
                        pipeline.drop_partition(i);
                        if let Some(state) = records.get(name) {
                            offsets.insert(name.clone(), state.offset);
                            pairs += state
                                .rules
                                .values()
                                .map(|r| r.windows.pairs())
                                .sum::<usize>();
                        }
                    }
                    for (name, state) in records {
                        let i = source.index(&name);
                        pipeline.restore_partition(i, state);
                    }
                    source.assign(&names, &offsets)?;
                    info!(
                        "rebalance: restored {} of {} partition(s) from {} ({pairs} open \
                         (window, key) pairs) in {:?}",
                        offsets.len(),
                        names.len(),
                        store.describe(),
                        started.elapsed()
                    );
                }
            }
        }
        let mut quiet_for = Duration::MAX;
        partitions.clear();
        for (i, name, assigned, since) in source.refresh() {
            let idle = since >= config.watermark.idle_timeout;
            pipeline.name_source(i, name);
            pipeline.set_source_idle(i, idle);
            // Quiet means: partitions we read have nothing new (not: we read none yet).
            if assigned {
                quiet_for = quiet_for.min(since);
            }
            partitions.resize(partitions.len().max(i + 1), (false, false));
            partitions[i] = (assigned, idle);
        }
        pipeline.send_markers(&partitions, |i| source.next_offset(i));
        if let Some(q) = config.watermark.quiet_close
            && quiet_for != Duration::MAX
            && quiet_for >= q
            && !quiet_closed
        {
            info!(
                "no data for {}: closing the open windows",
                humantime::format_duration(q)
            );
            pipeline.close_open_windows();
            quiet_closed = true;
        }
        if !processed {
            pipeline.tick(&mut sink)?;
        }
        if let Some(written) = writer.finished(false)? {
            commit(&source, &written, false);
            checkpoint_seconds.observe(written.took.as_secs_f64());
            last_checkpoint = Instant::now();
        }
        if !writer.busy() && last_checkpoint.elapsed() >= config.checkpoint.interval {
            checkpoint(&mut writer, &mut pipeline, &source, &mut sink)?;
        }
        if let Some(p) = status.as_mut() {
            p.publish(false, |s| {
                pipeline.status(s);
                for (i, part) in s.partitions.iter_mut().enumerate() {
                    let (assigned, idle) = partitions.get(i).copied().unwrap_or_default();
                    part.assigned = assigned;
                    part.idle = idle;
                    part.lag = if assigned { source.lag(i) } else { None };
                }
                let assigned = s.partitions.iter().any(|p| p.assigned);
                s.ready = assigned && s.rules.iter().any(|r| r.state == "running");
                s.checkpoint = Some(CheckpointStatus {
                    age_seconds: last_checkpoint.elapsed().as_secs_f64(),
                    duration_seconds: checkpoint_seconds.clone(),
                });
            });
        }
    }
    info!("stopping: writing a last checkpoint");
    writer.finished(true)?;
    checkpoint(&mut writer, &mut pipeline, &source, &mut sink)?;
    if let Some(written) = writer.finished(true)? {
        commit(&source, &written, true);
    }
    crate::metrics::print_summary(&pipeline.summary(started.elapsed()));
    Ok(())
}

/// Hands the checkpoint of the pipeline's state and the source's offsets, taken between
/// batches after the console and reject files are flushed, to the writer.
fn checkpoint(
    writer: &mut Writer,
    pipeline: &mut Pipeline,
    source: &KafkaSource,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    sink.flush()?;
    pipeline.flush_rejects()?;
    let offsets = source.offsets();
    writer.submit(pipeline.checkpoint(&offsets)?, offsets, pipeline.triggers());
    Ok(())
}

/// Waits for the checkpoint in flight, if any, and commits its offsets.
fn finish_checkpoint(
    writer: &mut Writer,
    source: &KafkaSource,
    last: &mut Instant,
    seconds: &mut Histogram,
) -> anyhow::Result<()> {
    if let Some(written) = writer.finished(true)? {
        commit(source, &written, true);
        seconds.observe(written.took.as_secs_f64());
        *last = Instant::now();
    }
    Ok(())
}

/// Commits a written checkpoint's offsets to the group.
fn commit(source: &KafkaSource, written: &Written, wait: bool) {
    if let Err(e) = source.commit(&written.offsets, wait) {
        // The checkpoint, not the group's offsets, is what a restart resumes from.
        warn!("{e:#}");
    }
}
