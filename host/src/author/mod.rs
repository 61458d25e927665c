//! Tools for rule authors: `rulewatch new` scaffolds a rule crate, `rulewatch build` compiles
//! it to a module beside its TOML, and `rulewatch test` runs the real module over sample
//! events and checks its alerts (and late and bad records) against expectations.

pub(crate) mod build;
pub(crate) mod lang;
pub(crate) mod new;
pub(crate) mod test;
