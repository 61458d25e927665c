// The crash rule (rules/crash) in AssemblyScript: events whose `content` contains
// params.keyword (ASCII case-insensitive) and whose `severity` is one of params.severities
// count; a window whose count is greater than params.threshold is an alert. Window, key and
// output are in crash-ts.toml.

import { Event, Field, Params, Rule, Utf8, WindowCount, register } from "rulewatch-sdk/assembly";

// The ABI functions (rulewatch_init, rulewatch_filter, ...) become this module's exports.
export * from "rulewatch-sdk/assembly/exports";

/** The crash rule, built from crash-ts.toml's [params]. */
class Crash extends Rule {
  /** Word to look for in `content`, ignoring ASCII case. */
  keyword: Utf8;
  /** Severities that count (exact match). */
  severities: Utf8[];
  /** Alert when a window's count is greater than this. */
  threshold: u64;

  constructor(params: Params) {
    super();
    // A misspelled param is an error, not a silent default; missing or mistyped ones too.
    params.only(["keyword", "severities", "threshold"]);
    this.keyword = Utf8.of(params.string("keyword"));
    this.severities = Utf8.all(params.strings("severities"));
    this.threshold = params.u64("threshold");
    if (this.keyword.length == 0) params.refuse("params.keyword is empty: every event would match");
    if (this.severities.length == 0) params.refuse("params.severities is empty: no event could match");
  }

  filter(event: Event): bool {
    // Views over the batch and constants encoded in init: no allocation per event.
    return event.text("severity").equalsAny(this.severities) &&
      event.text("content").containsIgnoreCase(this.keyword);
  }

  alert(window: WindowCount): bool {
    return window.count > this.threshold;
  }
}

// The fields the rule reads (the host sends only these), and how to build it from its params.
register([Field.str("severity"), Field.str("content")], (params: Params): Rule => new Crash(params));
