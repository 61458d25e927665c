// The rule the SDK's tests register: the crash rule, plus a number field.

import { Event, Field, Params, Rule, Utf8, WindowCount, register } from "../assembly/index";

/** Fields of the registered test rule. */
export const FIELDS: Field[] = [Field.str("severity"), Field.str("content"), Field.num("latency")];

/** The crash rule, reading `latency` too when `min_latency` is set. */
export class Probe extends Rule {
  keyword: Utf8;
  severities: Utf8[];
  threshold: u64;
  minLatency: f64;

  constructor(params: Params) {
    super();
    params.only(["keyword", "severities", "threshold", "min_latency"]);
    this.keyword = Utf8.of(params.string("keyword"));
    this.severities = Utf8.all(params.strings("severities"));
    this.threshold = params.u64("threshold");
    this.minLatency = params.f64Or("min_latency", -Infinity);
    if (this.keyword.length == 0) params.refuse("params.keyword is empty: every event would match");
    if (this.severities.length == 0) params.refuse("params.severities is empty: no event could match");
  }

  filter(e: Event): bool {
    return e.text("severity").equalsAny(this.severities) &&
      e.text("content").containsIgnoreCase(this.keyword) &&
      e.num("latency") >= this.minLatency;
  }

  alert(w: WindowCount): bool {
    return w.count > this.threshold;
  }
}

register(FIELDS, (p: Params): Rule => new Probe(p));

/** Params the tests use. */
export const PARAMS = `{"keyword":"crash","severities":["High","Critical"],"threshold":2}`;
