//! rulewatch: a stream rule engine. JSON events flow
//! source → decode → rules (WebAssembly) → window → sink.

pub mod author;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod decode;
pub mod driver;
pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod repartition;
pub mod rules;
pub mod sink;
pub mod source;
pub mod status;
pub mod text;
pub mod window;
