//! `rulewatch new NAME --lang LANG`: a rule that builds, tests and loads as it is.

use super::lang::Lang;
use anyhow::{Context, bail};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The SDK folder `sdk/FOLDER` (holding `marker`) of a clone of the repository: the one the
/// current folder is in, else the tree this binary was built from, if it is on this machine.
/// Which of the two it was, for the message.
fn local_sdk(folder: &str, marker: &str) -> Option<(PathBuf, &'static str)> {
    let found = |root: &Path| {
        let sdk = root.join("sdk").join(folder);
        let ours = root.join("sdk/ABI.md").is_file() && sdk.join(marker).is_file();
        ours.then(|| sdk.canonicalize().ok()).flatten()
    };
    let cwd = std::env::current_dir().ok();
    let here = cwd.iter().flat_map(|d| d.ancestors()).find_map(found);
    let built = || found(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    match here {
        Some(sdk) => Some((sdk, "the clone of the repository this folder is in")),
        None => built().map(|sdk| (sdk, "the source tree this rulewatch was built from")),
    }
}

/// Where the scaffold's SDK comes from when `--sdk` is not given: the SDK beside the engine's
/// sources when they are on this machine, else (Rust) this version from crates.io.
fn default_sdk(lang: Lang) -> anyhow::Result<String> {
    let spec = lang.spec();
    let Some(folder) = spec.sdk_folder else {
        return Ok(String::new());
    };
    match local_sdk(folder, spec.marker) {
        Some((path, whence)) => {
            println!(
                "using the SDK at {} ({whence}; --sdk PATH chooses another)",
                path.display()
            );
            Ok(path.display().to_string())
        }
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

/// `text` as one shell word: as it is when it needs no quoting, else in single quotes.
fn shell_quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./+@:,=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
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
    // Commands that work when copied in order, from where `new` ran.
    let d = shell_quoted(&dir.display().to_string());
    println!("created rule `{name}` ({lang:?}) in {d}; next:");
    println!("  cd {d}");
    let tests = lang.spec().unit_tests;
    println!("  {tests:<40} # unit tests of the logic");
    let wasm = format!("# -> {}.wasm beside {name}.toml", n.krate);
    println!("  {:<40} {wasm}", "rulewatch build .");
    println!("  rulewatch test {name}.toml --events events.jsonl --expect expected.jsonl");
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

    #[test]
    fn folders_are_printed_as_one_shell_word() {
        assert_eq!(shell_quoted("slow-requests"), "slow-requests");
        assert_eq!(shell_quoted("../rules/a_b"), "../rules/a_b");
        assert_eq!(shell_quoted("my rules"), "'my rules'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        assert_eq!(shell_quoted(""), "''");
    }
}
