//! `rulewatch new NAME --lang LANG`: a rule that builds, tests and loads as it is.

use super::lang::Lang;
use anyhow::{Context, bail};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The SDK folder of this source tree for `lang`, when the engine's sources are on this
/// machine (a clone of the repository).
fn local_sdk(folder: &str) -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk")
        .join(folder);
    sdk.canonicalize().ok().filter(|p| p.is_dir())
}

/// Where the scaffold's SDK comes from when `--sdk` is not given: the SDK beside the engine's
/// sources when they are on this machine, else (Rust) this version from crates.io.
fn default_sdk(lang: Lang) -> anyhow::Result<String> {
    let spec = lang.spec();
    let Some(folder) = spec.sdk_folder else {
        return Ok(String::new());
    };
    match local_sdk(folder).filter(|p| p.join(spec.marker).exists()) {
        Some(path) => Ok(path.display().to_string()),
        None if lang == Lang::Rust => Ok(env!("CARGO_PKG_VERSION").to_owned()),
        None => bail!(
            "this rulewatch was not built from a source tree with sdk/{folder}: give the SDK's \
             folder with --sdk PATH"
        ),
    }
}

/// The Cargo dependency spec of `rulewatch-sdk` for `sdk`, a folder or a version.
fn cargo_dependency(sdk: &str) -> String {
    if Path::new(sdk).exists() {
        format!("{{ path = {sdk:?} }}")
    } else {
        format!("\"{sdk}\"")
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
            "`{}` is not a usable rule name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter (for example `failed-logins`)",
            crate::text::shown(name)
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

/// Writes the rule `name` in `lang` into `dir` (default `./NAME`), which must not exist yet.
/// `sdk` is the SDK to use: a folder, or (Rust) a crates.io version.
pub(crate) fn run(
    name: &str,
    dir: Option<PathBuf>,
    lang: Lang,
    sdk: Option<String>,
) -> anyhow::Result<()> {
    let n = names(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} already exists: choose another name or --dir",
            dir.display()
        );
    }
    let sdk = match sdk {
        Some(s) if Path::new(&s).exists() => std::fs::canonicalize(&s)
            .with_context(|| format!("--sdk {s}"))?
            .display()
            .to_string(),
        Some(s) => s,
        None => default_sdk(lang)?,
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", &n.name)
            .replace("{{crate}}", &n.krate)
            .replace("{{type}}", &n.ty)
            .replace("{{sdk}}", &sdk)
            .replace("{{logic}}", lang.spec().logic)
            .replace("{{cargo_sdk}}", &cargo_dependency(&sdk))
    };
    let toml = format!("{name}.toml");
    let files = (lang.spec().files)().into_iter().chain([(
        toml.as_str(),
        Cow::Borrowed(include_str!("template/shared/rule.toml.in")),
    )]);
    for (file, template) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(&template))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let d = dir.display();
    println!("created rule `{name}` ({lang:?}) in {d}; next:");
    println!(
        "  cd {d} && {:<22} # unit tests of the logic",
        lang.spec().unit_tests
    );
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
