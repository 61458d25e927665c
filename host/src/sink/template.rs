//! Alert templates for the HTTP sinks: text with `{{field}}` placeholders, filled from an
//! alert row. A webhook's body template is JSON with the values escaped as JSON string
//! content (so `"text": "{{key}} …"` stays valid whatever the key holds); an Alertmanager
//! summary is plain text. Placeholders are checked when the configuration is read.

use super::AlertRow;
use crate::decode::time::format_rfc3339;

/// The placeholders a template may use.
pub(crate) const FIELDS: [&str; 8] = [
    "rule",
    "key",
    "key_field",
    "count",
    "window_start",
    "window_end",
    "alert_id",
    "watermark",
];

/// A parsed template: literal text and placeholders, in order.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
    json: bool,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Field(usize),
}

impl Template {
    /// Parses `text`; `json`: values are escaped as JSON string content, and the result
    /// must be JSON (checked on a sample alert). Says which placeholder is unknown.
    pub(crate) fn parse(text: &str, json: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("{{") {
            parts.push(Part::Text(rest[..at].to_owned()));
            let after = &rest[at + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without `}}}}` in template `{text}`"))?;
            let name = after[..end].trim();
            let field = FIELDS.iter().position(|f| *f == name).ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{{{name}}}}}` in template: use {}",
                    FIELDS.map(|f| format!("{{{{{f}}}}}")).join(", ")
                )
            })?;
            parts.push(Part::Field(field));
            rest = &after[end + 2..];
        }
        parts.push(Part::Text(rest.to_owned()));
        let template = Template { parts, json };
        if json {
            let sample = template.fill_with(|_| "x\"\\\n".to_owned());
            serde_json::from_str::<serde_json::Value>(&sample)
                .map_err(|e| format!("the template is not JSON once filled in: {e}"))?;
        }
        Ok(template)
    }

    /// The template filled in from `row`.
    pub(crate) fn fill(&self, row: &AlertRow) -> String {
        self.fill_with(|field| match FIELDS[field] {
            "rule" => row.rule.name.clone(),
            "key" => row.key.clone(),
            "key_field" => row.rule.key_column.clone(),
            "count" => row.count.to_string(),
            "window_start" => format_rfc3339(row.start),
            "window_end" => format_rfc3339(row.end),
            "alert_id" => row.id(),
            _ => row.watermark.map(format_rfc3339).unwrap_or_default(),
        })
    }

    fn fill_with(&self, value: impl Fn(usize) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) if self.json => {
                    let quoted = serde_json::to_string(&value(*f)).expect("a string serialises");
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
                Part::Field(f) => out.push_str(&value(*f)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::RuleMeta;
    use std::sync::Arc;

    fn row(key: &str) -> AlertRow {
        AlertRow {
            rule: Arc::new(RuleMeta {
                name: "crash".into(),
                role: crate::config::Role::Primary,
                sha256: String::new(),
                key_column: "user_id".into(),
                count_column: "count".into(),
                mode: crate::config::OutputMode::Append,
            }),
            start: 0,
            end: 10_000,
            key: key.into(),
            count: 7,
            watermark: None,
            evidence: Vec::new(),
        }
    }

    #[test]
    fn json_templates_stay_json_whatever_the_values_hold() {
        let t = Template::parse(
            r#"{"text": "{{rule}}: {{key_field}} {{ key }} x{{count}}"}"#,
            true,
        )
        .unwrap();
        let body = t.fill(&row("a\"b\\c\nd"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "crash: user_id a\"b\\c\nd x7");
        let plain = Template::parse("{{key}} in {{window_start}}", false).unwrap();
        assert_eq!(plain.fill(&row("u\"1")), "u\"1 in 1970-01-01T00:00:00Z");
    }

    #[test]
    fn unknown_placeholders_and_broken_json_are_refused_with_what_to_use() {
        let e = Template::parse("{{user}}", false).unwrap_err();
        assert!(
            e.contains("unknown placeholder `{{user}}`") && e.contains("{{key}}"),
            "{e}"
        );
        let e = Template::parse("{{key", false).unwrap_err();
        assert!(e.contains("without"), "{e}");
        let e = Template::parse(r#"{"text": {{key}}}"#, true).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }
}
