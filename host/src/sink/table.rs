//! Alerts as the console sink of Spark Structured Streaming prints them (with
//! `truncate=false`): a `Batch: N` header, then a table with `interval`, the key column and
//! the count column. With several rules, each gets its own table under its name.

use super::{AlertRow, Sink};
use crate::decode::time::format_spark;
use crate::text::one_line;
use std::io::{self, Write};

/// Writes Spark-style console tables.
pub(crate) struct Table<W: Write> {
    out: W,
}

impl<W: Write> Table<W> {
    /// Writes to `out`.
    pub(crate) fn new(out: W) -> Self {
        Table { out }
    }
}

impl<W: Write> Sink for Table<W> {
    fn emit(&mut self, batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        let rule = "-------------------------------------------";
        writeln!(self.out, "{rule}\nBatch: {batch}\n{rule}")?;
        let mut rest = rows;
        let several = rows.iter().any(|r| r.rule.name != rows[0].rule.name);
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .position(|r| r.rule.name != first.rule.name)
                .unwrap_or(rest.len());
            if several {
                writeln!(self.out, "Rule: {}", one_line(&first.rule.name))?;
            }
            let cells: Vec<[String; 3]> = rest[..n]
                .iter()
                .map(|r| {
                    [
                        format!("{{{}, {}}}", format_spark(r.start), format_spark(r.end)),
                        // A key is outside text: it must not drive the terminal.
                        one_line(&r.key).into_owned(),
                        r.count.to_string(),
                    ]
                })
                .collect();
            let header = [
                "interval".to_owned(),
                one_line(&first.rule.key_column).into_owned(),
                one_line(&first.rule.count_column).into_owned(),
            ];
            write_table(&mut self.out, &header, &cells)?;
            rest = &rest[n..];
        }
        writeln!(self.out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_table(out: &mut impl Write, header: &[String; 3], rows: &[[String; 3]]) -> io::Result<()> {
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .chain([header[c].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(*w)))
        .collect::<String>()
        + "+";
    let row = |cells: &[String; 3]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("|{c:<w$}"))
            .collect::<String>()
            + "|"
    };
    writeln!(out, "{line}\n{}\n{line}", row(header))?;
    for r in rows {
        writeln!(out, "{}", row(r))?;
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutputMode;
    use crate::sink::RuleMeta;
    use std::sync::Arc;

    #[test]
    fn prints_the_spark_console_layout() {
        let meta = Arc::new(RuleMeta {
            name: "crash".into(),
            role: crate::config::Role::Primary,
            sha256: "0".into(),
            key_column: "user_id".into(),
            count_column: "crash_count".into(),
            mode: OutputMode::Append,
        });
        let row = |key: &str, count| AlertRow {
            rule: meta.clone(),
            start: 1_769_553_350_000,
            end: 1_769_553_360_000,
            key: key.into(),
            count,
            watermark: None,
            evidence: Vec::new(),
        };
        let mut out = Vec::new();
        Table::new(&mut out)
            .emit(3, &[row("user_1503", 5), row("user_7", 12)])
            .unwrap();
        let expected = "\
-------------------------------------------
Batch: 3
-------------------------------------------
+------------------------------------------+---------+-----------+
|interval                                  |user_id  |crash_count|
+------------------------------------------+---------+-----------+
|{2026-01-27 22:35:50, 2026-01-27 22:36:00}|user_1503|5          |
|{2026-01-27 22:35:50, 2026-01-27 22:36:00}|user_7   |12         |
+------------------------------------------+---------+-----------+

";
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        // A key holding a terminal escape and a forged line stays in its cell.
        let mut out = Vec::new();
        let hostile = "\u{1b}]0;x\u{7}\u{1b}[2J\n2026-01-01 forged";
        Table::new(&mut out).emit(0, &[row(hostile, 3)]).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out}");
        assert!(
            out.contains("|\\u{1b}]0;x\\u{7}\\u{1b}[2J\\n2026-01-01 forged|"),
            "{out}"
        );
    }
}
