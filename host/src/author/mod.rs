//! Tools for rule authors: `rulewatch new` scaffolds a rule crate, `rulewatch build` compiles
//! it to a module beside its TOML, and `rulewatch test` runs the real module over sample
//! events and checks its alerts (and late and bad records) against expectations.

pub mod build;
pub mod new;
pub mod test;
