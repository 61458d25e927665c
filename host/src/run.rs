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
use crate::checkpoint::writer::Writer;
use crate::config::run::{Console, RunConfig};
use crate::metrics::Histogram;
use crate::pipeline::{BATCH_LINES, LoadedRule, Pipeline, Rejects, Repartitioning, Sources};
use crate::registry::watch::Changes;
use crate::sink::kafka::{AlertTopic, Output, RejectTopic, create_topics};
use crate::sink::records::RejectSink;
use crate::sink::{Fanout, Sink, jsonl::JsonLines, table::Table};
use crate::source::kafka::{KafkaSource, Reading, Rebalance};
use crate::status::{CheckpointStatus, Publisher, Shared, Status};
use anyhow::Context;
use std::io::BufWriter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

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
    let create = |specs: &[(&str, i32)], settings: &[(&str, &str)]| -> anyhow::Result<()> {
        create_topics(
            &k.brokers,
            &k.options,
            specs,
            out.topic_replication,
            settings,
        )
    };
    let outputs: Vec<(&str, i32)> = topics.iter().map(|t| (*t, out.topic_partitions)).collect();
    create(&outputs, &[])?;
    if let Store::Kafka { topic, .. } = &store {
        let settings = crate::checkpoint::store::topic_settings();
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        create(&[(topic.as_str(), 1)], &settings)?;
    }
    let keys: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.name.as_str(), r.config.window.key.as_str()))
        .collect();
    let file = if fresh_start {
        warn!(
            "--fresh-start: ignoring the checkpoints in {}; windows start empty",
            store.describe()
        );
        Default::default()
    } else {
        store.load_file()?
    };
    let mut plan = crate::repartition::plan(k, &keys)?;
    if k.keyed_by == "auto" && !fresh_start {
        // A rule checkpointed as repartitioned stays so (e.g. first started on an empty
        // topic): its state would not carry over to counting per input partition.
        let from_topic;
        let records = match &store {
            Store::File(_) => &file.partitions,
            Store::Kafka { .. } => {
                from_topic = store.load(&plan.inputs)?;
                &from_topic
            }
        };
        plan.keep_repartitioned(&k.group_id, records);
    }
    let n = plan.inputs.len() as i32;
    let internal: Vec<(&str, i32)> = plan.topics.values().map(|t| (t.as_str(), n)).collect();
    create(&internal, &[])?;
    // Alerts, rejects, checkpoint records and repartitioned events share one producer.
    let output = Output::connect(&k.brokers, &k.options)?;
    let reject_topic = |topic: &Option<String>| -> Option<Box<dyn RejectSink>> {
        Some(Box::new(RejectTopic::new(output.clone(), topic.as_ref()?)))
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
    if let Some(topic) = &out.alerts_topic {
        sinks.push(Box::new(AlertTopic::new(output.clone(), topic)));
    }
    let mut sink = Fanout(sinks);

    let mut pipeline = Pipeline::new(Sources::partitions(), rules, out.mode, rejects)?;
    let mut subscribed = k.topics.clone();
    subscribed.extend(plan.topics.values().cloned());
    pipeline.set_repartitioning(Repartitioning {
        output: output.clone(),
        keyed_by: plan.keyed_by,
        partitions: n,
        topics: plan.topics,
        inputs: plan.inputs,
    })?;
    pipeline.set_triggers(file.triggers);
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
    let mut checkpoints = Checkpoints {
        writer: Writer::start(&store, output, &file)?,
        last: Instant::now(),
        tried: Instant::now(),
        seconds: Histogram::default(),
        failing: None,
    };
    drop(file);
    let mut quiet_closed = false;
    // Per partition index: what its reader says of it this round.
    let mut partitions: Vec<Reading> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        source.next_batch(BATCH_LINES, POLL, &mut lines)?;
        // Idleness as of the fetch answers that brought this batch: a partition whose new
        // data landed with it is not idle while the batch's other partitions move on.
        for p in source.refresh(config.watermark.idle_timeout, false) {
            pipeline.set_source_idle(p.index, p.reading);
        }
        pipeline.apply_ready(&changes, &mut sink)?;
        let processed = !lines.is_empty();
        if processed {
            quiet_closed = false;
            pipeline.process(source.buffer(), &lines, &mut sink)?;
        }
        while let Some(change) = source.take_rebalance() {
            match change {
                Rebalance::Revoke(names) => release(
                    &names,
                    &mut source,
                    &mut pipeline,
                    &mut checkpoints,
                    &mut sink,
                )?,
                Rebalance::Assign(names) => {
                    // With --fresh-start, the first assignment ignores the store (later ones
                    // are hand-overs between instances and restore what the others wrote).
                    let store = (!std::mem::take(&mut ignore_store)).then_some(&store);
                    take(&names, &mut source, &mut pipeline, store)?
                }
            }
        }
        let mut quiet_for = Duration::MAX;
        partitions.clear();
        for p in source.refresh(config.watermark.idle_timeout, true) {
            let (i, reading) = (p.index, p.reading);
            pipeline.name_source(i, p.name);
            pipeline.set_source_idle(i, reading);
            // Quiet means: input partitions we read have nothing new (not: we read none yet;
            // repartition topics get watermark markers every second, quiet or not).
            if reading.assigned && !pipeline.is_internal(i) {
                quiet_for = quiet_for.min(p.quiet_for);
            }
            partitions.resize(partitions.len().max(i + 1), Reading::default());
            partitions[i] = reading;
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
        checkpoints.collect(&source, false)?;
        if checkpoints.due(config.checkpoint.interval) {
            checkpoints.start(&mut pipeline, &source, &mut sink)?;
        }
        if let Some(p) = status.as_mut() {
            p.publish(false, |s| {
                pipeline.status(s);
                for (i, part) in s.partitions.iter_mut().enumerate() {
                    let Reading { assigned, idle, .. } =
                        partitions.get(i).copied().unwrap_or_default();
                    part.assigned = assigned;
                    part.idle = idle;
                    part.lag = if assigned { source.lag(i) } else { None };
                }
                let assigned = s.partitions.iter().any(|p| p.assigned);
                s.ready = assigned
                    && s.rules.iter().any(|r| r.state == "running")
                    && checkpoints.failing.is_none();
                (s.kafka_problem, s.kafka_problems) = source.problem();
                s.checkpoint = Some(CheckpointStatus {
                    age_seconds: checkpoints.last.elapsed().as_secs_f64(),
                    duration_seconds: checkpoints.seconds.clone(),
                    failing: checkpoints.failing.clone(),
                });
            });
        }
    }
    info!("stopping: writing a last checkpoint");
    checkpoints.write_now(&mut pipeline, &source, &mut sink)?;
    crate::metrics::print_summary(&pipeline.summary(started.elapsed()));
    Ok(())
}

/// The checkpoint writer as the loop drives it, and what the status says of it.
struct Checkpoints {
    writer: Writer,
    /// When the last checkpoint was written (or the run started).
    last: Instant,
    /// When the last one was handed to the writer.
    tried: Instant,
    /// From snapshot to stored records.
    seconds: Histogram,
    /// Why checkpoints are not being written, while they are not.
    failing: Option<String>,
}

impl Checkpoints {
    /// Hands a checkpoint of the pipeline's state and the source's offsets, taken between
    /// batches after the console and reject files are flushed, to the writer.
    fn start(
        &mut self,
        pipeline: &mut Pipeline,
        source: &KafkaSource,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        sink.flush()?;
        pipeline.flush_rejects()?;
        let offsets = source.offsets();
        let records = pipeline.checkpoint(&offsets)?;
        self.writer.submit(records, offsets, pipeline.triggers());
        self.tried = Instant::now();
        Ok(())
    }

    /// Whether the next checkpoint is due: `interval` after the last was written, or after
    /// the last try while they fail.
    fn due(&self, interval: Duration) -> bool {
        !self.writer.busy() && self.last.elapsed() >= interval && self.tried.elapsed() >= interval
    }

    /// Commits the offsets of a checkpoint the writer finished; with `wait`, waits for the
    /// one in flight. A checkpoint that could not be stored commits nothing: offsets stay
    /// where the last good one put them, processing goes on, and the next one is tried an
    /// interval later; each change between failing and working is logged once.
    fn collect(&mut self, source: &KafkaSource, wait: bool) -> anyhow::Result<()> {
        match self.writer.finished(wait)? {
            None => {}
            Some(Ok(written)) => {
                if let Err(e) = source.commit(&written.offsets, wait) {
                    // The checkpoint, not the group's offsets, is what a restart resumes from.
                    warn!("{e:#}");
                }
                self.seconds.observe(written.took.as_secs_f64());
                self.last = Instant::now();
                if self.failing.take().is_some() {
                    info!("checkpoints are written again; offsets are committed again");
                }
            }
            Some(Err(e)) => {
                let why = format!("{e:#}");
                if self.failing.as_deref() != Some(why.as_str()) {
                    error!(
                        "checkpoint not written: {why}; offsets stay committed where the last \
                         checkpoint put them (a restart redoes the work since, with the same \
                         alert ids), processing goes on, and it is tried again every interval"
                    );
                }
                self.failing = Some(why);
            }
        }
        Ok(())
    }

    /// Writes a checkpoint now and waits until it is stored.
    fn write_now(
        &mut self,
        pipeline: &mut Pipeline,
        source: &KafkaSource,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        self.collect(source, true)?;
        self.start(pipeline, source, sink)?;
        self.collect(source, true)
    }
}

/// Gives partitions `names` back to the group, checkpointed first so that their next owner
/// starts where this instance ended.
fn release(
    names: &[String],
    source: &mut KafkaSource,
    pipeline: &mut Pipeline,
    checkpoints: &mut Checkpoints,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if !names.is_empty() {
        checkpoints.write_now(pipeline, source, sink)?;
    }
    for name in names {
        pipeline.drop_partition(source.index(name));
    }
    // Cooperative rebalances also announce empty changes; librdkafka waits for them too.
    source.revoke(names)?;
    if !names.is_empty() {
        info!(
            "rebalance: checkpointed and released {} partition(s) in {:?}",
            names.len(),
            started.elapsed()
        );
    }
    Ok(())
}

/// Takes partitions `names`: restores their state from `store` (unless none is given),
/// then reads each from the offset its state covers.
fn take(
    names: &[String],
    source: &mut KafkaSource,
    pipeline: &mut Pipeline,
    store: Option<&Store>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let records = match store {
        Some(store) if !names.is_empty() => store.load(names)?,
        _ => Default::default(),
    };
    let mut offsets = std::collections::BTreeMap::new();
    let mut pairs = 0;
    for name in names {
        let i = source.index(name);
        pipeline.name_source(i, name);
        pipeline.drop_partition(i);
    }
    for (name, state) in records {
        offsets.insert(name.clone(), state.offset);
        pairs += state
            .rules
            .values()
            .map(|r| r.windows.pairs())
            .sum::<usize>();
        pipeline.restore_partition(source.index(&name), state);
    }
    source.assign(names, &offsets)?;
    if !names.is_empty() {
        info!(
            "rebalance: restored {} of {} partition(s){} ({pairs} open (window, key) pairs) in \
             {:?}",
            offsets.len(),
            names.len(),
            store.map_or(String::new(), |s| format!(" from {}", s.describe())),
            started.elapsed()
        );
    }
    Ok(())
}
