//! Drivers: one per kind of source, each owning the loop that feeds a [`Pipeline`] —
//! [`file`] for JSON lines (`replay`, `bench`, `rulewatch test`), [`kafka`] for a consumer
//! group (`run`), [`history`] for the history of Kafka topics (`replay --brokers`). A driver reads batches, applies rule changes between them, and publishes
//! the status; the pipeline never knows where its lines came from.
//!
//! [`Pipeline`]: crate::pipeline::Pipeline

pub(crate) mod file;
pub(crate) mod history;
pub(crate) mod kafka;

use crate::config::http::HttpConfig;
use crate::status::{Publisher, Shared, Status};

/// Serves the status page, `/metrics`, `/healthz` and `/readyz` as `http` says, unless it
/// is switched off, for a run reading `source` (`file` or `kafka`); the handle to publish
/// the status through.
pub(crate) fn serve_status(
    http: &HttpConfig,
    source: &'static str,
) -> anyhow::Result<Option<Publisher>> {
    let Some(listen) = http.address() else {
        return Ok(None);
    };
    let shared = Shared::new(Status::new(source));
    crate::http::serve(listen, http, shared.clone())?;
    Ok(Some(Publisher::new(shared, source)))
}

/// Which of `rules` count per input partition and which repartition, as `kafka` says
/// ([`crate::repartition::plan`]): one decision for `run` and the backtest.
fn repartition_plan(
    kafka: &crate::config::run::KafkaConfig,
    rules: &[crate::registry::LoadedRule],
) -> anyhow::Result<crate::repartition::Plan> {
    let keys: Vec<(&str, &str)> = (rules.iter())
        .map(|r| (r.name.as_str(), r.config.window.key.as_str()))
        .collect();
    crate::repartition::plan(kafka, &keys)
}
