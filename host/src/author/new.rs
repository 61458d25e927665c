//! `rulewatch new NAME --lang LANG`: a rule that builds, tests and loads as it is.

use anyhow::{Context, bail};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The language of a rule's logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// A Rust crate using rulewatch-sdk (`cargo test`, `cargo build`).
    Rust,
    /// A Go module using the Go SDK (`go test`, `GOOS=wasip1 go build`).
    Go,
    /// An AssemblyScript (TypeScript) package using the AssemblyScript SDK (`npm test`,
    /// `npm run build`).
    Ts,
    /// Plain C against the ABI, no SDK (`make`).
    C,
}

impl Lang {
    /// The file a rule's folder in this language has, by which `rulewatch build` knows it (and
    /// which the language's SDK folder has too).
    pub(crate) fn marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Go => "go.mod",
            Lang::Ts => "package.json",
            Lang::C => "Makefile",
        }
    }

    /// The language of the rule in `dir`, by its marker file.
    pub(crate) fn of(dir: &Path) -> Option<Lang> {
        [Lang::Rust, Lang::Go, Lang::Ts, Lang::C]
            .into_iter()
            .find(|lang| dir.join(lang.marker()).exists())
    }
}

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
    let folder = match lang {
        Lang::Rust => "",
        Lang::Go => "go",
        Lang::Ts => "assemblyscript",
        Lang::C => return Ok(String::new()),
    };
    match local_sdk(folder).filter(|p| p.join(lang.marker()).exists()) {
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

/// The C scaffold's rule: its own header over the body of the C crash rule of
/// `examples/rules/crash-c` (the same params, so the same logic), which is built and tested
/// there.
fn c_rule() -> String {
    let example = include_str!("../../../examples/rules/crash-c/crash_c.c");
    let body = example.split_once("*/").map_or(example, |(_, body)| body);
    include_str!("template/c/rule-header.c.in")
        .trim_end()
        .to_owned()
        + body
}

/// The scaffold's files for `lang`: (path in the rule folder, template).
fn templates(lang: Lang) -> Vec<(&'static str, Cow<'static, str>)> {
    let text = Cow::Borrowed;
    let mut files = match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                text(include_str!("template/rust/Cargo.toml.in")),
            ),
            ("src/lib.rs", text(include_str!("template/rust/lib.rs.in"))),
            (
                "README.md",
                text(include_str!("template/rust/README.md.in")),
            ),
            (
                ".gitignore",
                text(include_str!("template/rust/gitignore.in")),
            ),
        ],
        Lang::Go => vec![
            ("go.mod", text(include_str!("template/go/go.mod.in"))),
            ("rule.go", text(include_str!("template/go/rule.go.in"))),
            (
                "rule_test.go",
                text(include_str!("template/go/rule_test.go.in")),
            ),
            ("README.md", text(include_str!("template/go/README.md.in"))),
            (".gitignore", text(include_str!("template/go/gitignore.in"))),
        ],
        Lang::Ts => vec![
            (
                "package.json",
                text(include_str!("template/ts/package.json.in")),
            ),
            (
                "asconfig.json",
                text(include_str!("template/ts/asconfig.json.in")),
            ),
            (
                "assembly/index.ts",
                text(include_str!("template/ts/index.ts.in")),
            ),
            (
                "assembly/tsconfig.json",
                text(include_str!("template/ts/tsconfig.json.in")),
            ),
            (
                "assembly/rule.test.ts",
                text(include_str!("template/ts/rule.test.ts.in")),
            ),
            ("README.md", text(include_str!("template/ts/README.md.in"))),
            (".gitignore", text(include_str!("template/ts/gitignore.in"))),
        ],
        Lang::C => vec![
            ("Makefile", text(include_str!("template/c/Makefile.in"))),
            ("rule.c", Cow::Owned(c_rule())),
            ("README.md", text(include_str!("template/c/README.md.in"))),
            (".gitignore", text(include_str!("template/c/gitignore.in"))),
        ],
    };
    files.extend([
        (
            "events.jsonl",
            text(include_str!("template/shared/events.jsonl")),
        ),
        (
            "expected.jsonl",
            text(include_str!("template/shared/expected.jsonl")),
        ),
        (
            "late.jsonl",
            text(include_str!("template/shared/late.jsonl")),
        ),
        ("bad.jsonl", text(include_str!("template/shared/bad.jsonl"))),
    ]);
    files
}

/// The file with the rule's two decisions, per language.
fn logic_file(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Go => "rule.go",
        Lang::Ts => "assembly/index.ts",
        Lang::C => "rule.c",
    }
}

/// The commands that test the logic natively, per language.
fn unit_test_command(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "cargo test",
        Lang::Go => "go test",
        Lang::Ts => "npm install && npm test",
        Lang::C => "make test",
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
            .replace("{{logic}}", logic_file(lang))
            .replace("{{cargo_sdk}}", &cargo_dependency(&sdk))
    };
    let toml = format!("{name}.toml");
    let files = templates(lang).into_iter().chain([(
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
        unit_test_command(lang)
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
