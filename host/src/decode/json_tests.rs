//! The scanner against serde_json: hand-picked cases and mutated lines.

use super::*;

fn names(ns: &[&str]) -> Vec<Box<str>> {
    ns.iter().map(|n| Box::from(*n)).collect()
}

fn text<'a>(line: &'a [u8], scratch: &'a [u8], v: &Value) -> &'a [u8] {
    v.bytes(line, scratch)
}

#[test]
fn projects_wanted_members() {
    let line = br#" {"a": "x", "skip": {"n": [1, 2, {"q": "\u00e9"}]}, "b": -1.5e3, "c": "t\"\u00e9\ud83d\ude00", "d": null} "#;
    let ns = names(&["a", "b", "c", "d", "e"]);
    let mut slots = vec![Value::Missing; 5];
    let mut scratch = Vec::new();
    scan_object(line, &ns, &mut slots, &mut scratch).unwrap();
    assert_eq!(text(line, &scratch, &slots[0]), b"x");
    assert_eq!(text(line, &scratch, &slots[1]), b"-1.5e3");
    assert_eq!(
        std::str::from_utf8(text(line, &scratch, &slots[2])).unwrap(),
        "t\"é😀"
    );
    assert_eq!(slots[3], Value::Null);
    assert_eq!(slots[4], Value::Missing);
}

#[test]
fn escaped_keys_match_and_last_duplicate_wins() {
    let line = br#"{"\u0061": 1, "a": 2}"#;
    let mut slots = vec![Value::Missing];
    let mut scratch = Vec::new();
    scan_object(line, &names(&["a"]), &mut slots, &mut scratch).unwrap();
    assert_eq!(text(line, &scratch, &slots[0]), b"2");
}

#[test]
fn tells_non_objects_from_non_json() {
    let mut slots = vec![];
    let mut scratch = Vec::new();
    let mut scan = |l: &[u8]| scan_object(l, &[], &mut slots, &mut scratch);
    assert_eq!(scan(b"[]"), Err(ScanError::NotObject("an array")));
    assert_eq!(scan(b" null "), Err(ScanError::NotObject("null")));
    assert_eq!(scan(b"\"s\""), Err(ScanError::NotObject("a string")));
    assert!(matches!(scan(b"{not json"), Err(ScanError::Syntax(_))));
    assert!(matches!(scan(b""), Err(ScanError::Syntax(e)) if e.reason == "empty line"));
    assert!(matches!(scan(b"{} x"), Err(ScanError::Syntax(e)) if e.at == 3));
}

/// Differential test: on many generated and mutated lines, the scanner accepts exactly
/// what serde_json accepts and extracts the same values.
#[test]
fn nesting_is_refused_where_serde_json_refuses_it() {
    let ns = names(&["a"]);
    let mut slots = vec![Value::Missing; 1];
    for depth in [126, 127, 128, 129, 200] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for line in [format!("{{\"a\":{nested}}}"), nested] {
            let oracle = serde_json::from_str::<serde_json::Value>(&line);
            let ours = scan_object(line.as_bytes(), &ns, &mut slots, &mut Vec::new());
            // Valid JSON that is not an object is refused as such, not as JSON.
            let accepted = matches!(ours, Ok(()) | Err(ScanError::NotObject(_)));
            assert_eq!(accepted, oracle.is_ok(), "depth {depth}: {}", &line[..8]);
        }
    }
}

#[test]
fn every_special_byte_is_seen_at_every_offset_of_a_long_string() {
    let ns = names(&["k"]);
    let mut slots = vec![Value::Missing; 1];
    let mut scratch = Vec::new();
    for at in 0..40 {
        for special in ["\\\"", "\\n", "\"", "\u{1}", "é", "\u{7f}"] {
            let mut text = "x".repeat(40);
            text.insert_str(at, special);
            let line = format!("{{\"k\":\"{text}\"}}");
            let oracle = serde_json::from_str::<serde_json::Value>(&line);
            let ours = scan_object(line.as_bytes(), &ns, &mut slots, &mut scratch);
            match (oracle, ours) {
                (Ok(v), Ok(())) => assert_eq!(
                    text_of(&line, &scratch, &slots[0]),
                    v["k"].as_str().unwrap().as_bytes(),
                    "{line}"
                ),
                (Err(_), Err(_)) => {}
                (o, s) => panic!("{line}: serde_json {o:?}, scanner {s:?}"),
            }
        }
    }
}

fn text_of<'a>(line: &'a str, scratch: &'a [u8], v: &Value) -> &'a [u8] {
    v.bytes(line.as_bytes(), scratch)
}

#[test]
fn agrees_with_serde_json() {
    let seeds: &[&str] = &[
        r#"{"timestamp":"2026-01-27T22:00:00.000Z","severity":"High","user_id":"user_1","content":"App crash","seq":12}"#,
        r#"{"a":[1,2.5,-0.0,1e9,{"b":null}],"k":"v\\n\u0041","n":true,"f":false}"#,
        r#"{"k":"\ud83d\ude00","x":{},"y":[]}"#,
        r#"{"k":"héllo wörld, long enough for eight-byte steps","n":"ünïcödé"}"#,
        r#"  {  "k" : 0 , "z" : "" }  "#,
        // Strings over several 16-byte blocks, escapes and specials at any offset.
        r#"{"k":"a long plain ascii string that spans several sixteen-byte blocks " and on","n":"0123456789abcdef0123456789abcdeéf\0123456789abcdef"}"#,
        // Duplicate keys (the last wins), a huge number, deep nesting.
        r#"{"k":"first","k":"second","n":1e400,"a":[[[[[[[[[[[[[[[[{"z":[[[]]]}]]]]]]]]]]]]]]]]}"#,
    ];
    let ns = names(&["k", "n", "timestamp", "seq", "a", "z"]);
    let mut rng = fastrand::Rng::with_seed(7);
    let alphabet = b"{}[]\":,\\/0123456789-+.eEtrufalsn ux\t\x01ab\xff\xc3\xa9\x80";
    let mut slots = vec![Value::Missing; ns.len()];
    let mut scratch = Vec::new();
    for round in 0..60_000 {
        let mut line = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..rng.usize(0..4) {
            let at = rng.usize(0..=line.len());
            match rng.u8(0..3) {
                0 if at < line.len() => {
                    line.remove(at);
                }
                1 => line.insert(at, alphabet[rng.usize(0..alphabet.len())]),
                _ if at < line.len() => line[at] = alphabet[rng.usize(0..alphabet.len())],
                _ => {}
            }
        }
        let oracle = serde_json::from_slice::<serde_json::Value>(&line);
        let ours = scan_object(&line, &ns, &mut slots, &mut scratch);
        match (&oracle, &ours) {
            (Ok(serde_json::Value::Object(map)), Ok(())) => {
                for (n, v) in ns.iter().zip(&slots) {
                    match (map.get(&**n), v) {
                        (None, Value::Missing) => {}
                        (Some(serde_json::Value::String(s)), Value::Str { .. }) => {
                            assert_eq!(text(&line, &scratch, v), s.as_bytes())
                        }
                        (Some(serde_json::Value::Number(_)), Value::Num(_)) => {}
                        (Some(serde_json::Value::Null), Value::Null) => {}
                        (Some(serde_json::Value::Bool(_)), Value::Bool) => {}
                        (Some(serde_json::Value::Array(_)), Value::Array) => {}
                        (Some(serde_json::Value::Object(_)), Value::Object) => {}
                        (o, v) => panic!(
                            "{}: field {n}: serde_json {o:?}, scanner {v:?}",
                            String::from_utf8_lossy(&line)
                        ),
                    }
                }
            }
            (Ok(_), Err(ScanError::NotObject(_))) | (Err(_), Err(ScanError::Syntax(_))) => {}
            // Valid JSON grammar that serde_json cannot hold in an f64; the scanner keeps
            // numbers as text and leaves that judgement to the field's consumer.
            (Err(e), _) if e.to_string().contains("number out of range") => {}
            (o, s) => panic!(
                "{}: serde_json {o:?}, scanner {s:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

#[test]
fn keys_of_every_length_match_only_themselves() {
    for n in 0..24 {
        let key: String = (0..n).map(|i| (b'a' + i as u8) as char).collect();
        assert!(same(key.as_bytes(), key.as_bytes()), "{key}");
        for at in 0..n {
            let mut other = key.clone().into_bytes();
            other[at] = b'Z';
            assert!(!same(key.as_bytes(), &other), "{key} at {at}");
        }
        assert!(!same(key.as_bytes(), format!("{key}x").as_bytes()));
        // Through the scanner: only the member with exactly this key fills the slot.
        let line = format!(r#"{{"{key}x":1,"{key}":2,"x{key}":3}}"#);
        let mut slots = vec![Value::Missing];
        let mut scratch = Vec::new();
        scan_object(line.as_bytes(), &names(&[&key]), &mut slots, &mut scratch).unwrap();
        assert_eq!(text(line.as_bytes(), &scratch, &slots[0]), b"2", "{line}");
    }
}
