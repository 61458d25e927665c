//! rulewatch: a stream rule engine. JSON events flow
//! source → decode → rules (WebAssembly) → window → sink.

mod author;
mod bench;
mod checkpoint;
pub mod cli;
mod config;
pub mod decode;
mod driver;
mod evidence;
mod http;
mod kafka;
pub mod loadgen;
mod metrics;
mod pipeline;
mod registry;
mod repartition;
pub mod rules;
mod sink;
mod source;
mod status;
mod text;
pub mod window;
