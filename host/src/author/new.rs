//! `rulewatch new NAME`: a rule crate that builds, tests and loads as it is.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Where the scaffold's SDK comes from when `--sdk` is not given: the SDK beside the engine's
/// sources when they are on this machine (a clone of the repository), else crates.io.
fn default_sdk() -> String {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    match sdk.canonicalize() {
        Ok(path) if path.join("Cargo.toml").exists() => {
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        _ => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

/// The rule's names: the crate (`my-rule`), its library (`my_rule`) and its type (`MyRule`).
struct Names {
    name: String,
    krate: String,
    ty: String,
}

fn names(name: &str) -> anyhow::Result<Names> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a usable rule name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter (for example `failed-logins`)"
        );
    }
    let ty = name
        .split(['-', '_'])
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    Ok(Names {
        name: name.to_owned(),
        krate: name.replace('-', "_"),
        ty,
    })
}

/// Writes the rule crate `name` into `dir` (default `./NAME`), which must not exist yet.
/// `sdk` is the Cargo dependency spec of `rulewatch-sdk` (a version, or `{ path = "…" }`).
pub fn run(name: &str, dir: Option<PathBuf>, sdk: Option<String>) -> anyhow::Result<()> {
    let n = names(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} already exists: choose another name or --dir",
            dir.display()
        );
    }
    let sdk = sdk.map_or_else(default_sdk, |s| {
        if Path::new(&s).exists() {
            format!("{{ path = {s:?} }}")
        } else {
            format!("\"{s}\"")
        }
    });
    let fill = |template: &str| {
        template
            .replace("{{name}}", &n.name)
            .replace("{{crate}}", &n.krate)
            .replace("{{type}}", &n.ty)
            .replace("{{sdk}}", &sdk)
    };
    let files: [(String, &str); 9] = [
        ("Cargo.toml".into(), include_str!("template/Cargo.toml.in")),
        ("src/lib.rs".into(), include_str!("template/lib.rs.in")),
        (
            format!("{name}.toml"),
            include_str!("template/rule.toml.in"),
        ),
        ("events.jsonl".into(), include_str!("template/events.jsonl")),
        (
            "expected.jsonl".into(),
            include_str!("template/expected.jsonl"),
        ),
        ("late.jsonl".into(), include_str!("template/late.jsonl")),
        ("bad.jsonl".into(), include_str!("template/bad.jsonl")),
        ("README.md".into(), include_str!("template/README.md.in")),
        (".gitignore".into(), include_str!("template/gitignore.in")),
    ];
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, template) in files {
        let path = dir.join(file);
        std::fs::write(&path, fill(template))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let d = dir.display();
    println!("created rule `{name}` in {d}; next:");
    println!("  cd {d} && cargo test         # unit tests of the logic");
    println!("  rulewatch build {d}           # -> {d}/{}.wasm", n.krate);
    println!(
        "  rulewatch test {d}/{name}.toml --events {d}/events.jsonl --expect {d}/expected.jsonl"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo_conventions() {
        let n = names("failed-logins").unwrap();
        assert_eq!(
            (n.krate.as_str(), n.ty.as_str()),
            ("failed_logins", "FailedLogins")
        );
        for bad in ["", "Upper", "9lives", "with space", "dots.no"] {
            assert!(names(bad).is_err(), "{bad}");
        }
    }
}
