//! Where events come from. `replay` reads JSON lines from a file or stdin; each source hands
//! the pipeline batches of raw lines with their positions.

pub mod kafka;
pub mod lines;
mod tls;

use anyhow::Context;
use std::io::Read;
use std::path::Path;

/// Opens `path` for reading, or stdin for `-`.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    Ok(Box::new(file))
}
