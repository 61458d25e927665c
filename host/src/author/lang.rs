//! The languages a rule can be written in, as one table ([`LangSpec`]): how `rulewatch new`
//! scaffolds each, how `rulewatch build` recognises and builds it, and how its logic is unit
//! tested. Adding a language is adding a row; nothing else matches on [`Lang`].

use super::build;
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

/// Everything the authoring tools know of one language.
pub(crate) struct LangSpec {
    /// The language.
    pub(crate) lang: Lang,
    /// The file a rule's folder in this language has, by which `rulewatch build` knows it
    /// (and which the language's SDK folder has too).
    pub(crate) marker: &'static str,
    /// The SDK's folder under `sdk/` (`""`: `sdk/` itself); `None`: no SDK.
    pub(crate) sdk_folder: Option<&'static str>,
    /// The scaffold's file with the rule's two decisions.
    pub(crate) logic: &'static str,
    /// The command, run in the rule's folder, that tests the logic natively.
    pub(crate) unit_tests: &'static str,
    /// The scaffold's own files: (path in the rule folder, template).
    pub(crate) files: fn() -> Vec<(&'static str, Cow<'static, str>)>,
    /// Builds the rule in a folder; the module's path.
    pub(crate) build: fn(&Path) -> anyhow::Result<PathBuf>,
}

/// Every language, in the order `rulewatch build` looks for their markers.
pub(crate) const LANGS: [LangSpec; 4] = [
    LangSpec {
        lang: Lang::Rust,
        marker: "Cargo.toml",
        sdk_folder: Some(""),
        logic: "src/lib.rs",
        unit_tests: "cargo test",
        files: rust_files,
        build: build::rust,
    },
    LangSpec {
        lang: Lang::Go,
        marker: "go.mod",
        sdk_folder: Some("go"),
        logic: "rule.go",
        unit_tests: "go test",
        files: go_files,
        build: build::go,
    },
    LangSpec {
        lang: Lang::Ts,
        marker: "package.json",
        sdk_folder: Some("assemblyscript"),
        logic: "assembly/index.ts",
        unit_tests: "npm install && npm test",
        files: ts_files,
        build: build::assemblyscript,
    },
    LangSpec {
        lang: Lang::C,
        marker: "Makefile",
        sdk_folder: None,
        logic: "rule.c",
        unit_tests: "make test",
        files: c_files,
        build: build::make,
    },
];

impl Lang {
    /// This language's row of [`LANGS`].
    pub(crate) fn spec(self) -> &'static LangSpec {
        LANGS
            .iter()
            .find(|s| s.lang == self)
            .expect("every language has a row")
    }

    /// The language of the rule in `dir`, by its marker file.
    pub(crate) fn of(dir: &Path) -> Option<Lang> {
        LANGS
            .iter()
            .find(|s| dir.join(s.marker).exists())
            .map(|s| s.lang)
    }

    /// The marker files of every language, for messages: `A, B, C or D`.
    pub(crate) fn markers() -> String {
        let names: Vec<&str> = LANGS.iter().map(|s| s.marker).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        }
    }
}

/// The files every scaffold has: sample events and what the rule should make of them.
fn shared_files() -> [(&'static str, Cow<'static, str>); 4] {
    let text = Cow::Borrowed;
    [
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
    ]
}

fn rust_files() -> Vec<(&'static str, Cow<'static, str>)> {
    let text = Cow::Borrowed;
    let mut files = vec![
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
    ];
    files.extend(shared_files());
    files
}

fn go_files() -> Vec<(&'static str, Cow<'static, str>)> {
    let text = Cow::Borrowed;
    let mut files = vec![
        ("go.mod", text(include_str!("template/go/go.mod.in"))),
        ("rule.go", text(include_str!("template/go/rule.go.in"))),
        (
            "rule_test.go",
            text(include_str!("template/go/rule_test.go.in")),
        ),
        ("README.md", text(include_str!("template/go/README.md.in"))),
        (".gitignore", text(include_str!("template/go/gitignore.in"))),
    ];
    files.extend(shared_files());
    files
}

fn ts_files() -> Vec<(&'static str, Cow<'static, str>)> {
    let text = Cow::Borrowed;
    let mut files = vec![
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
    ];
    files.extend(shared_files());
    files
}

fn c_files() -> Vec<(&'static str, Cow<'static, str>)> {
    let text = Cow::Borrowed;
    let mut files = vec![
        ("Makefile", text(include_str!("template/c/Makefile.in"))),
        ("rule.c", Cow::Owned(c_rule())),
        ("README.md", text(include_str!("template/c/README.md.in"))),
        (".gitignore", text(include_str!("template/c/gitignore.in"))),
    ];
    files.extend(shared_files());
    files
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_language_has_one_row_whose_scaffold_has_its_marker_and_logic() {
        for lang in Lang::value_variants() {
            let rows = LANGS.iter().filter(|s| s.lang == *lang).count();
            assert_eq!(rows, 1, "{lang:?}");
            let spec = lang.spec();
            let files: Vec<&str> = (spec.files)().iter().map(|(path, _)| *path).collect();
            assert!(files.contains(&spec.marker), "{lang:?}: {files:?}");
            assert!(files.contains(&spec.logic), "{lang:?}: {files:?}");
            assert!(files.contains(&"events.jsonl"), "{lang:?}: {files:?}");
        }
    }

    #[test]
    fn a_folder_is_known_by_its_marker() {
        let dir = std::env::temp_dir().join(format!("rulewatch-lang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Lang::of(&dir), None);
        for spec in &LANGS {
            std::fs::write(dir.join(spec.marker), "").unwrap();
            assert_eq!(Lang::of(&dir), Some(spec.lang));
            std::fs::remove_file(dir.join(spec.marker)).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            Lang::markers(),
            "Cargo.toml, go.mod, package.json or Makefile"
        );
    }
}
