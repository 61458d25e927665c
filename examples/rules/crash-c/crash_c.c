/*
 * The crash rule (rules/crash) written in plain C against sdk/ABI.md, without the Rust SDK:
 * events whose `content` contains params.keyword (ASCII case-insensitive) and whose
 * `severity` is one of params.severities count; a window whose count is greater than
 * params.threshold is an alert.
 *
 * Freestanding C for wasm32-unknown-unknown: no libc, no imports. See build.sh and README.md.
 *
 * Memory layout: params and the error message live in static buffers. The input buffer and
 * the answer bitmap live past the end of static data (__heap_base, set by wasm-ld); memory is
 * grown to fit each batch, so no batch is too large for the module (the host's memory limit
 * still applies). Every batch is checked against the documented layout before it is read; a
 * malformed batch (a host bug) traps with a message in rulewatch_error, as the Rust SDK's
 * panics do.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
typedef __SIZE_TYPE__ usize;

#define EXPORT(name) __attribute__((export_name(name)))

/* ---- the ABI (sdk/ABI.md, version 1) ---------------------------------------------------- */

#define ABI_VERSION 1u
#define KIND_I64 1u
#define KIND_F64 2u
#define KIND_STR 3u

/* Declared fields, in order: event batch columns 2 and 3. */
static const char FIELDS[] = "str severity\nstr content\n";
#define COL_TIME 0u
#define COL_KEY 1u
#define COL_SEVERITY 2u
#define COL_CONTENT 3u
#define EVENT_COLUMNS 4u

/* Window batch columns. */
#define COL_WSTART 0u
#define COL_WEND 1u
#define COL_WKEY 2u
#define COL_COUNT 3u
#define WINDOW_COLUMNS 4u

static u64 pack(const void *ptr, u32 len) {
    return ((u64)(u32)(usize)ptr << 32) | (u64)len;
}

/* ---- freestanding helpers --------------------------------------------------------------- */

/* clang may emit calls to these even with -ffreestanding; LLVM never rewrites the body of a
 * function named memset/memcpy into a call to itself. */
void *memset(void *dst, int c, usize n) {
    u8 *d = dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, usize n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

/* Little-endian loads at any alignment (offsets inside a batch need not be aligned). */
static u32 ld32(const u8 *p) {
    u32 v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

static i64 ld64(const u8 *p) {
    i64 v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

static u8 lower(u8 c) { return (c >= 'A' && c <= 'Z') ? (u8)(c + 32) : c; }

/* ---- last error ------------------------------------------------------------------------- */

static char err_buf[1024];
static u32 err_len;

static void err_clear(void) { err_len = 0; }

static void err_bytes(const void *s, u32 n) {
    const u8 *b = s;
    for (u32 i = 0; i < n && err_len < sizeof err_buf; i++) err_buf[err_len++] = (char)b[i];
}

static void err_str(const char *s) {
    while (*s && err_len < sizeof err_buf) err_buf[err_len++] = *s++;
}

static void err_u64(u64 v) {
    char d[20];
    u32 n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) err_bytes(&d[--n], 1);
}

/* Keeps the message for the host (it reads rulewatch_error after a trap), then traps. */
__attribute__((noreturn)) static void fail(const char *message) {
    err_clear();
    err_str(message);
    __builtin_trap();
}

/* ---- input and output buffers ----------------------------------------------------------- */

extern u8 __heap_base;

static u8 *in_ptr;   /* input buffer, at __heap_base */
static u32 in_cap;   /* bytes the host may write there */
static u8 *out_ptr;  /* bitmap, right after the input buffer */

#define PAGE 65536u

/* Makes linear memory at least `end` bytes long; traps if the host refuses to grow it. */
static void ensure_memory(u64 end) {
    u64 have = (u64)__builtin_wasm_memory_size(0) * PAGE;
    if (end <= have) return;
    u64 pages = (end - have + PAGE - 1) / PAGE;
    if (end > 0xFFFFFFFFull || __builtin_wasm_memory_grow(0, (usize)pages) == (usize)-1)
        fail("cannot grow linear memory for the input buffer (limits.memory too small?)");
}

EXPORT("rulewatch_input") u32 rulewatch_input(u32 len) {
    u64 base = ((u64)(usize)&__heap_base + 15) & ~15ull;
    u64 out = (base + len + 7) & ~7ull;
    /* Every accepted batch has an i64 column, so rows <= len / 8 and the bitmap needs at
     * most len / 64 + 1 bytes. */
    ensure_memory(out + (u64)len / 64 + 16);
    in_ptr = (u8 *)(usize)base;
    in_cap = len;
    out_ptr = (u8 *)(usize)out;
    return (u32)base;
}

/* ---- batches ---------------------------------------------------------------------------- */

struct column {
    u32 kind;
    const u8 *data;  /* i64/f64 values, or the rows + 1 string end offsets */
    const u8 *bytes; /* string bytes */
    u32 nbytes;
};

struct batch {
    u32 rows;
    struct column col[4];
};

/* Reads the header and the first `want` columns of the batch in the input buffer, checking
 * them as the Rust SDK's Batch::parse does, and that they have the expected kinds. */
static void parse_batch(u32 len, struct batch *b, const u32 *kinds, u32 want) {
    if (in_ptr == 0 || len > in_cap) fail("malformed batch: longer than the input buffer");
    const u8 *buf = in_ptr;
    if (len < 8) fail("malformed batch: truncated");
    u64 rows = ld32(buf), ncols = ld32(buf + 4);
    if (ncols < want) fail("malformed batch: too few columns");
    if (8 + 12 * ncols > len) fail("malformed batch: truncated");
    b->rows = (u32)rows;
    for (u32 c = 0; c < ncols; c++) {
        const u8 *h = buf + 8 + 12 * c;
        u64 kind = ld32(h), off = ld32(h + 4), clen = ld32(h + 8);
        if (off + clen > len) fail("malformed batch: column outside the batch");
        if (kind == KIND_I64 || kind == KIND_F64) {
            if (clen != rows * 8) fail("malformed batch: fixed column of the wrong length");
        } else if (kind == KIND_STR) {
            if (clen < (rows + 1) * 4) fail("malformed batch: string offsets truncated");
            if (ld32(buf + off + rows * 4) != clen - (rows + 1) * 4)
                fail("malformed batch: string bytes of the wrong length");
        } else {
            fail("malformed batch: unknown column kind");
        }
        if (c < want) {
            if (kind != kinds[c]) fail("malformed batch: a column of an unexpected kind");
            b->col[c].kind = (u32)kind;
            b->col[c].data = buf + off;
            b->col[c].bytes = buf + off + (rows + 1) * 4;
            b->col[c].nbytes = (u32)(clen - (rows + 1) * 4);
        }
    }
    /* Rows are bounded by an i64 column (every batch this rule accepts has one), which keeps
     * the bitmap inside what rulewatch_input reserved. */
    if (rows * 8 > len) fail("malformed batch: more rows than fit");
}

static void str_at(const struct column *c, u32 row, const u8 **s, u32 *n) {
    u32 start = row == 0 ? 0 : ld32(c->data + 4 * row);
    u32 end = ld32(c->data + 4 * row + 4);
    if (start > end || end > c->nbytes) fail("malformed batch: string offsets out of order");
    *s = c->bytes + start;
    *n = end - start;
}

/* Clears the bitmap for `rows` rows and returns its packed pointer/length. */
static u64 bitmap(u32 rows) {
    u32 n = (rows + 7) / 8;
    memset(out_ptr, 0, n);
    return pack(out_ptr, n);
}

static void set_bit(u32 i) { out_ptr[i / 8] |= (u8)(1u << (i % 8)); }

/* ---- params ----------------------------------------------------------------------------- */

#define MAX_SEVERITIES 256
#define POOL_BYTES 16384

static u8 pool[POOL_BYTES]; /* decoded param strings */
static u32 pool_len;

static int ready;
static const u8 *keyword; /* lower-cased */
static u32 keyword_len;
static const u8 *sev[MAX_SEVERITIES];
static u32 sev_len[MAX_SEVERITIES];
static u32 sev_count;
static u64 threshold;

/* The JSON parser: a cursor over the params text. On error it fills the error buffer and
 * returns 0; every caller passes that on. */
struct json {
    const u8 *p, *end, *start;
};

static int json_fail(struct json *j, const char *what) {
    err_clear();
    err_str("invalid params: ");
    err_str(what);
    err_str(" (at byte ");
    err_u64((u64)(j->p - j->start));
    err_str(" of the params JSON)");
    return 0;
}

static void ws(struct json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int peek(struct json *j) {
    ws(j);
    return j->p < j->end ? *j->p : -1;
}

static int expect(struct json *j, u8 c, const char *what) {
    if (peek(j) != c) return json_fail(j, what);
    j->p++;
    return 1;
}

static const char *type_name(int c) {
    switch (c) {
    case '"': return "a string";
    case '[': return "an array";
    case '{': return "a table";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    case -1: return "nothing";
    default: return (c == '-' || (c >= '0' && c <= '9')) ? "a number" : "invalid JSON";
    }
}

static int hex4(struct json *j, u32 *v) {
    if (j->end - j->p < 4) return json_fail(j, "truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        u8 c = *j->p++;
        u32 d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10u
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10u
              : 16u;
        if (d == 16) return json_fail(j, "bad \\u escape");
        *v = *v * 16 + d;
    }
    return 1;
}

static int pool_put(struct json *j, u8 c) {
    if (pool_len >= POOL_BYTES) return json_fail(j, "params hold more than 16384 bytes of text");
    pool[pool_len++] = c;
    return 1;
}

/* Decodes a JSON string (the cursor is on its opening quote) into the pool. */
static int string(struct json *j, const u8 **s, u32 *n) {
    j->p++;
    u32 first = pool_len;
    for (;;) {
        if (j->p >= j->end) return json_fail(j, "unterminated string");
        u8 c = *j->p++;
        if (c == '"') break;
        if (c < 0x20) return json_fail(j, "control character in a string");
        if (c != '\\') {
            if (!pool_put(j, c)) return 0;
            continue;
        }
        if (j->p >= j->end) return json_fail(j, "unterminated string");
        c = *j->p++;
        u32 cp;
        switch (c) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!hex4(j, &cp)) return 0;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(j, "lone trailing surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                u32 lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return json_fail(j, "lone leading surrogate");
                j->p += 2;
                if (!hex4(j, &lo)) return 0;
                if (lo < 0xDC00 || lo > 0xDFFF) return json_fail(j, "lone leading surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            break;
        default: return json_fail(j, "bad escape in a string");
        }
        /* UTF-8 encode. */
        int ok = cp < 0x80      ? pool_put(j, (u8)cp)
               : cp < 0x800     ? pool_put(j, (u8)(0xC0 | cp >> 6)) &&
                                  pool_put(j, (u8)(0x80 | (cp & 0x3F)))
               : cp < 0x10000   ? pool_put(j, (u8)(0xE0 | cp >> 12)) &&
                                  pool_put(j, (u8)(0x80 | ((cp >> 6) & 0x3F))) &&
                                  pool_put(j, (u8)(0x80 | (cp & 0x3F)))
                                : pool_put(j, (u8)(0xF0 | cp >> 18)) &&
                                  pool_put(j, (u8)(0x80 | ((cp >> 12) & 0x3F))) &&
                                  pool_put(j, (u8)(0x80 | ((cp >> 6) & 0x3F))) &&
                                  pool_put(j, (u8)(0x80 | (cp & 0x3F)));
        if (!ok) return 0;
    }
    *s = pool + first;
    *n = pool_len - first;
    return 1;
}

/* "invalid params: params.NAME must be WANT, found TYPE" */
static int wrong_type(const char *name, const char *want, const char *found) {
    err_clear();
    err_str("invalid params: params.");
    err_str(name);
    err_str(" must be ");
    err_str(want);
    err_str(", found ");
    err_str(found);
    return 0;
}

#define KEYWORD_WANT "a string (e.g. keyword = \"crash\")"
#define SEVERITIES_WANT "an array of strings (e.g. severities = [\"High\", \"Critical\"])"
#define THRESHOLD_WANT "a non-negative integer (e.g. threshold = 2)"

static int param_keyword(struct json *j) {
    int c = peek(j);
    if (c != '"') return wrong_type("keyword", KEYWORD_WANT, type_name(c));
    return string(j, &keyword, &keyword_len);
}

static int param_severities(struct json *j) {
    int c = peek(j);
    if (c != '[') return wrong_type("severities", SEVERITIES_WANT, type_name(c));
    j->p++;
    if (peek(j) == ']') {
        j->p++;
        return 1;
    }
    for (;;) {
        c = peek(j);
        if (c != '"') {
            wrong_type("severities", SEVERITIES_WANT, "an array holding ");
            err_str(type_name(c));
            err_str(" at index ");
            err_u64(sev_count);
            return 0;
        }
        if (sev_count == MAX_SEVERITIES) {
            err_clear();
            err_str("invalid params: params.severities has more than 256 items");
            return 0;
        }
        if (!string(j, &sev[sev_count], &sev_len[sev_count])) return 0;
        sev_count++;
        c = peek(j);
        if (c == ']') {
            j->p++;
            return 1;
        }
        if (!expect(j, ',', "expected `,` or `]` in params.severities")) return 0;
    }
}

static int param_threshold(struct json *j) {
    int c = peek(j);
    if (c != '-' && !(c >= '0' && c <= '9'))
        return wrong_type("threshold", THRESHOLD_WANT, type_name(c));
    int negative = c == '-';
    if (negative) j->p++;
    const u8 *digits = j->p;
    u64 v = 0;
    int overflow = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        u32 d = *j->p++ - '0';
        if (v > (~0ull - d) / 10) overflow = 1;
        v = v * 10 + d;
    }
    if (j->p == digits) return json_fail(j, "malformed number");
    int fractional = 0;
    if (j->p < j->end && *j->p == '.') {
        fractional = 1;
        j->p++;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        fractional = 1;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (fractional) return wrong_type("threshold", THRESHOLD_WANT, "a float");
    if (negative && v != 0) return wrong_type("threshold", THRESHOLD_WANT, "a negative integer");
    if (overflow) return wrong_type("threshold", THRESHOLD_WANT, "an integer that is too large");
    threshold = v;
    return 1;
}

static int key_is(const u8 *k, u32 n, const char *name) {
    u32 i = 0;
    while (i < n && name[i] && k[i] == (u8)name[i]) i++;
    return i == n && name[i] == 0;
}

static int missing(const char *name, const char *want) {
    err_clear();
    err_str("invalid params: params.");
    err_str(name);
    err_str(" is missing; it must be ");
    err_str(want);
    return 0;
}

/* Parses `{"keyword": ..., "severities": [...], "threshold": ...}` into the globals. */
static int parse_params(const u8 *text, u32 len) {
    struct json j = {text, text + len, text};
    int seen_keyword = 0, seen_severities = 0, seen_threshold = 0;
    pool_len = 0;
    keyword_len = 0;
    sev_count = 0;
    threshold = 0;
    if (peek(&j) != '{') {
        err_clear();
        err_str("invalid params: expected a table of params, found ");
        err_str(type_name(peek(&j)));
        return 0;
    }
    j.p++;
    int c = peek(&j);
    if (c == '}') j.p++;
    while (c != '}') {
        if (peek(&j) != '"') return json_fail(&j, "expected a param name");
        const u8 *k;
        u32 kn;
        if (!string(&j, &k, &kn)) return 0;
        if (!expect(&j, ':', "expected `:` after a param name")) return 0;
        int *seen;
        int (*param)(struct json *);
        if (key_is(k, kn, "keyword")) {
            seen = &seen_keyword;
            param = param_keyword;
        } else if (key_is(k, kn, "severities")) {
            seen = &seen_severities;
            param = param_severities;
        } else if (key_is(k, kn, "threshold")) {
            seen = &seen_threshold;
            param = param_threshold;
        } else {
            err_clear();
            err_str("invalid params: unknown param `");
            err_bytes(k, kn);
            err_str("`, expected one of `keyword`, `severities`, `threshold`");
            return 0;
        }
        if (*seen) {
            err_clear();
            err_str("invalid params: params.");
            err_bytes(k, kn);
            err_str(" is given twice");
            return 0;
        }
        if (!param(&j)) return 0;
        *seen = 1;
        c = peek(&j);
        if (c == ',') {
            j.p++;
            continue;
        }
        if (!expect(&j, '}', "expected `,` or `}` after a param")) return 0;
        c = '}';
    }
    if (peek(&j) != -1) return json_fail(&j, "trailing characters after the params");
    if (!seen_keyword) return missing("keyword", KEYWORD_WANT);
    if (!seen_severities) return missing("severities", SEVERITIES_WANT);
    if (!seen_threshold) return missing("threshold", THRESHOLD_WANT);
    return 1;
}

/* ---- the exports ------------------------------------------------------------------------ */

EXPORT("rulewatch_abi_version") u32 rulewatch_abi_version(void) { return ABI_VERSION; }

EXPORT("rulewatch_fields") u64 rulewatch_fields(void) {
    return pack(FIELDS, sizeof FIELDS - 1);
}

EXPORT("rulewatch_error") u64 rulewatch_error(void) { return pack(err_buf, err_len); }

EXPORT("rulewatch_init") u32 rulewatch_init(u32 len) {
    ready = 0;
    err_clear();
    if (in_ptr == 0 || len > in_cap) fail("rulewatch_init: params longer than the input buffer");
    if (!parse_params(in_ptr, len)) return 1;
    if (keyword_len == 0) {
        err_str("params.keyword is empty: every event would match");
        return 1;
    }
    if (sev_count == 0) {
        err_str("params.severities is empty: no event could match");
        return 1;
    }
    /* The keyword is compared lower-cased; it lives in the pool, which init owns. */
    for (u32 i = 0; i < keyword_len; i++) ((u8 *)keyword)[i] = lower(keyword[i]);
    ready = 1;
    return 0;
}

/* Whether `h` contains the (lower-cased) keyword, ignoring ASCII case. */
static int contains_keyword(const u8 *h, u32 n) {
    if (n < keyword_len) return 0;
    u8 first = keyword[0];
    for (u32 i = 0; i + keyword_len <= n; i++) {
        if (lower(h[i]) != first) continue;
        u32 k = 1;
        while (k < keyword_len && lower(h[i + k]) == keyword[k]) k++;
        if (k == keyword_len) return 1;
    }
    return 0;
}

static int severity_counts(const u8 *s, u32 n) {
    for (u32 i = 0; i < sev_count; i++) {
        if (sev_len[i] != n) continue;
        u32 k = 0;
        while (k < n && sev[i][k] == s[k]) k++;
        if (k == n) return 1;
    }
    return 0;
}

EXPORT("rulewatch_filter") u64 rulewatch_filter(u32 len) {
    static const u32 kinds[EVENT_COLUMNS] = {KIND_I64, KIND_STR, KIND_STR, KIND_STR};
    if (!ready) fail("rulewatch_init was not called");
    struct batch b;
    parse_batch(len, &b, kinds, EVENT_COLUMNS);
    u64 answer = bitmap(b.rows);
    for (u32 row = 0; row < b.rows; row++) {
        const u8 *severity, *content;
        u32 severity_len, content_len;
        str_at(&b.col[COL_SEVERITY], row, &severity, &severity_len);
        str_at(&b.col[COL_CONTENT], row, &content, &content_len);
        if (severity_counts(severity, severity_len) && contains_keyword(content, content_len))
            set_bit(row);
    }
    return answer;
}

EXPORT("rulewatch_alert") u64 rulewatch_alert(u32 len) {
    static const u32 kinds[WINDOW_COLUMNS] = {KIND_I64, KIND_I64, KIND_STR, KIND_I64};
    if (!ready) fail("rulewatch_init was not called");
    struct batch b;
    parse_batch(len, &b, kinds, WINDOW_COLUMNS);
    u64 answer = bitmap(b.rows);
    for (u32 row = 0; row < b.rows; row++) {
        i64 count = ld64(b.col[COL_COUNT].data + 8 * row);
        if (count > 0 && (u64)count > threshold) set_bit(row);
    }
    return answer;
}
