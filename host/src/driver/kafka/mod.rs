//! `rulewatch run`: the long-running service. It consumes Kafka in a consumer group, runs
//! the pipeline batch by batch, and checkpoints window state together with the offsets it
//! covers, so that a restart after any crash resumes exactly where the last checkpoint was.
//!
//! Under `at_least_once`, an exactly-once effect without Kafka transactions: alerts carry a
//! deterministic id of (rule, window, key); a checkpoint is written only after every alert
//! before it is acknowledged by the broker; offsets are committed only for what a checkpoint
//! covers. After a crash, the work since the last checkpoint is redone from the same offsets
//! and produces the same alerts again, which consumers deduplicate by id. Under
//! `exactly_once`, each checkpoint is a Kafka transaction holding everything sent since the
//! last one, the checkpoint records and the offsets they cover, so that the redone work is
//! never visible to `read_committed` consumers (see `checkpoints.rs`).
//!
//! Scale-out: instances in one group split the partitions. State is per partition and so
//! is the watermark that closes its windows, so a partition's results do not depend on
//! which instance reads it. On a rebalance, revoked partitions are checkpointed before they
//! are released, and assigned ones are restored from the store before they are read; an
//! instance that dies leaves its last checkpoint, from which the new owner redoes the rest.

mod checkpoints;
mod poll;

use crate::checkpoint::Checkpoint;
use crate::checkpoint::store::Store;
use crate::config::run::{Guarantee, RunConfig};
use crate::pipeline::{Pipeline, Rejects, Repartitioning};
use crate::registry::LoadedRule;
use crate::registry::watch::Changes;
use crate::repartition::Plan;
use crate::sink::Fanout;
use crate::sink::kafka::{RejectTopic, create_topics};
use crate::sink::producer::Output;
use crate::sink::records::RejectSink;
use crate::source::Sources;
use crate::source::idle::Quiet;
use crate::source::kafka::KafkaSource;
use anyhow::Context;
use checkpoints::Checkpoints;
use poll::Engine;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tracing::{info, warn};

/// Runs until SIGTERM or SIGINT, then checkpoints and returns.
pub(crate) fn run(
    config: &RunConfig,
    rules: &[LoadedRule],
    changes: Changes,
    fresh_start: bool,
) -> anyhow::Result<()> {
    let stop = stop_on_signals()?;
    // Up first, so that health and readiness answer while the broker is being reached.
    let mut status = super::serve_status(&config.http, "kafka")?;
    let (k, out) = (&config.kafka, &config.output);
    let store = store(config);
    create_output_topics(config, &store)?;
    let file = if fresh_start {
        warn!(
            "--fresh-start: ignoring the checkpoints in {}; windows start empty",
            store.describe()
        );
        Default::default()
    } else {
        store.load_file()?
    };
    let plan = plan(config, rules, &store, &file, fresh_start)?;
    let n = plan.inputs.len() as i32;
    let internal: Vec<(&str, i32)> = plan.topics.values().map(|t| (t.as_str(), n)).collect();
    create(config, &internal, &[])?;

    // Alerts, rejects, checkpoint records and repartitioned events share one producer.
    let exactly_once = k.guarantee == Guarantee::ExactlyOnce;
    let id = exactly_once.then(|| transactional_id(config));
    let output = Output::connect(&k.brokers, &k.options, id.as_deref())?;
    if let Some(id) = &id {
        info!(
            "exactly once: each checkpoint commits a transaction (as {id}) every {}",
            humantime::format_duration(config.checkpoint_interval())
        );
    }
    let (rejects, sink) = outputs(config, &output)?;
    let mut pipeline = Pipeline::new(Sources::partitions(), rules, out.mode, rejects)?;
    pipeline.set_workers(crate::config::run::workers(config.engine.workers))?;
    let mut subscribed = k.topics.clone();
    subscribed.extend(plan.topics.values().cloned());
    pipeline.set_repartitioning(Repartitioning {
        output: Arc::new(output.clone()),
        keyed_by: plan.keyed_by,
        partitions: n,
        topics: plan.topics,
        inputs: plan.inputs,
    })?;
    pipeline.set_triggers(file.triggers);
    if let Some(p) = status.as_mut() {
        p.publish(true, |s| pipeline.status(s));
    }
    let source = KafkaSource::connect(
        &k.brokers,
        &k.group_id,
        &subscribed,
        &k.options,
        k.max_message_bytes,
        exactly_once,
        Quiet {
            idle: config.watermark.idle_timeout,
            close: config.watermark.quiet_close,
        },
    )?;
    info!(
        "consuming {} from {} as group {}; checkpoints in {}",
        subscribed.join(", "),
        k.brokers,
        k.group_id,
        store.describe()
    );
    let checkpoints = Checkpoints::new(&store, output, &file, exactly_once)?;
    drop(file);
    let engine = Engine {
        config,
        pipeline,
        source,
        sink,
        checkpoints,
        store,
        changes,
        status,
        progress: Vec::new(),
        quiet_closed: false,
    };
    engine.run(&stop, fresh_start)
}

/// Where checkpoints are kept: `[checkpoint] topic`, else its folder.
fn store(config: &RunConfig) -> Store {
    let k = &config.kafka;
    match &config.checkpoint.topic {
        Some(topic) => Store::Kafka {
            brokers: k.brokers.clone(),
            options: k.options.clone(),
            topic: topic.clone(),
            read_committed: k.guarantee == Guarantee::ExactlyOnce,
        },
        None => Store::File(config.checkpoint.dir.clone()),
    }
}

/// The transactional id of this instance's producer: `transactional.id` in `[kafka] options`,
/// else one of its own (fencing between instances goes by the consumer group's generation,
/// KIP-447, so ids need not survive a restart; they must not be shared between live
/// instances).
fn transactional_id(config: &RunConfig) -> String {
    use std::hash::{BuildHasher, Hasher};
    let k = &config.kafka;
    if let Some(id) = k.options.get("transactional.id") {
        return id.clone();
    }
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    format!("rulewatch-{}-{:016x}", k.group_id, random.finish())
}

/// A flag SIGTERM and SIGINT set.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    Ok(stop)
}

/// Where rejected input and alerts go, as `[output]` says; topics through `output`.
fn outputs(config: &RunConfig, output: &Output) -> anyhow::Result<(Rejects, Fanout)> {
    let out = &config.output;
    let reject_topic = |topic: &Option<String>| -> Option<Box<dyn RejectSink>> {
        Some(Box::new(RejectTopic::new(output.clone(), topic.as_ref()?)))
    };
    let rejects = Rejects {
        dead_letter: reject_topic(&out.dead_letter_topic),
        late: reject_topic(&out.late_topic),
    };
    let alerts_topic = out.alerts_topic.as_deref();
    let sink = crate::sink::build(out.console, Some(output), alerts_topic, &out.sinks)?;
    Ok((rejects, sink))
}

/// Creates the topics named in `[output]` and the checkpoint topic, if missing.
fn create_output_topics(config: &RunConfig, store: &Store) -> anyhow::Result<()> {
    let out = &config.output;
    let sink_topics = out
        .sinks
        .iter()
        .filter_map(|s| s.dead_letter_topic.as_ref());
    let outputs: Vec<(&str, i32)> = [&out.alerts_topic, &out.dead_letter_topic, &out.late_topic]
        .into_iter()
        .flatten()
        .chain(sink_topics)
        .map(|t| (t.as_str(), out.topic_partitions))
        .collect();
    create(config, &outputs, &[])?;
    if let Store::Kafka { topic, .. } = store {
        let settings = crate::checkpoint::store::topic_settings();
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        create(config, &[(topic.as_str(), 1)], &settings)?;
    }
    Ok(())
}

/// Creates topics `specs` (name, partitions) with `settings`, if missing.
fn create(
    config: &RunConfig,
    specs: &[(&str, i32)],
    settings: &[(&str, &str)],
) -> anyhow::Result<()> {
    let k = &config.kafka;
    let replication = config.output.topic_replication;
    create_topics(&k.brokers, &k.options, specs, replication, settings)
}

/// Which rules repartition: as the input looks now, except that a rule checkpointed as
/// repartitioned stays so (e.g. first started on an empty topic), since its state would not
/// carry over to counting per input partition.
fn plan(
    config: &RunConfig,
    rules: &[LoadedRule],
    store: &Store,
    file: &Checkpoint,
    fresh_start: bool,
) -> anyhow::Result<Plan> {
    let k = &config.kafka;
    let mut plan = super::repartition_plan(k, rules)?;
    if k.keyed_by == "auto" && !fresh_start {
        let from_topic;
        let records = match store {
            Store::File(_) => &file.partitions,
            Store::Kafka { .. } => {
                from_topic = store.load(&plan.inputs)?;
                &from_topic
            }
        };
        let checkpointed = records
            .values()
            .flat_map(|r| r.rules.iter())
            .map(|(rule, state)| (rule.as_str(), &state.window));
        plan.keep_repartitioned(&k.group_id, checkpointed);
    }
    Ok(plan)
}
