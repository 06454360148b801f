//! A lenient reader for the JSON that RocketMQ's fastjson writes.
//!
//! Bodies come from `com.alibaba.fastjson.JSON.toJSONString` (apache/rocketmq
//! `RemotingSerializable.encode`), which is not always JSON: maps keyed by objects are written with
//! the object inline as the key (`{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}`) and maps keyed
//! by numbers with bare numeric keys (`{"brokerAddrs":{0:"127.0.0.1:10911"}}`). Fields may be missing
//! (older brokers have no `pullOffset`), and NaN or Infinity are written as `null`.
//!
//! This module parses any of that into a [`Value`] tree whose object keys are themselves values, and
//! offers forgiving accessors. It is a small recursive-descent parser with a depth limit, so a
//! hostile body can neither panic it nor blow the stack.

/// Nesting deeper than this is refused (RocketMQ bodies nest a handful of levels).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Numbers keep their text so that 64-bit offsets are read exactly.
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Keys are values: strings, bare numbers, or whole objects.
    Object(Vec<(Value, Value)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON body at byte {offset}: {what}")]
pub struct ParseError {
    pub offset: usize,
    pub what: &'static str,
}

pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    let mut p = Parser { s: input, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing data"));
    }
    Ok(v)
}

/// The string keys of the object at top-level field `field`, read without building the values
/// (a broker's subscription-group table is megabytes of configs of which only the names are
/// needed). `Ok(None)` when the body is an object without that field, or the field is not an object.
pub fn object_keys(input: &[u8], field: &str) -> Result<Option<Vec<String>>, ParseError> {
    let mut p = Parser { s: input, i: 0 };
    p.expect(b'{', "expected an object")?;
    let mut found = None;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.key(0)?;
            p.expect(b':', "expected :")?;
            p.ws();
            if found.is_none() && key.as_str() == Some(field) && p.peek() == Some(b'{') {
                found = Some(p.keys_skipping_values()?);
            } else {
                p.skip(1)?;
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(p.err("expected , or }")),
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing data"));
    }
    Ok(found)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError {
            offset: self.i,
            what,
        }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ParseError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b'\'') => self.string().map(Value::String),
            Some(b't') => self.word(b"true", Value::Bool(true)),
            Some(b'f') => self.word(b"false", Value::Bool(false)),
            Some(b'n') => self.word(b"null", Value::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }
    fn word(&mut self, w: &[u8], v: Value) -> Result<Value, ParseError> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.err("unknown literal"))
        }
    }
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        let text =
            std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
        if text.parse::<f64>().is_err() {
            return Err(self.err("bad number"));
        }
        Ok(Value::Number(text.to_string()))
    }
    fn string(&mut self) -> Result<String, ParseError> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                c if c == quote => break,
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .ok_or_else(|| self.err("short \\u escape"))?;
                            self.i += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected , or ]")),
            }
        }
    }
    fn key(&mut self, depth: usize) -> Result<Value, ParseError> {
        match self.peek() {
            // fastjson never writes unquoted identifiers, but bare numbers and objects, yes.
            Some(b'"' | b'\'' | b'{' | b'[') => self.value(depth + 1),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            _ => Err(self.err("expected an object key")),
        }
    }

    /// At `{`: the object's keys that are strings; values are skipped.
    fn keys_skipping_values(&mut self) -> Result<Vec<String>, ParseError> {
        self.i += 1;
        let mut keys = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(keys);
        }
        loop {
            self.ws();
            if let Value::String(k) = self.key(1)? {
                keys.push(k);
            }
            self.expect(b':', "expected :")?;
            self.skip(2)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(keys);
                }
                _ => return Err(self.err("expected , or }")),
            }
        }
    }

    /// Steps over one value without allocating (strings are scanned, not decoded).
    fn skip(&mut self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(quote @ (b'"' | b'\'')) => {
                self.i += 1;
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\\') => self.i += 2,
                        Some(c) if c == quote => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(_) => self.i += 1,
                    }
                }
            }
            Some(open @ (b'{' | b'[')) => {
                self.i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                loop {
                    self.ws();
                    match self.peek() {
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(b',' | b':') => self.i += 1,
                        Some(_) => self.skip(depth + 1)?,
                        None => return Err(self.err("unexpected end")),
                    }
                }
            }
            Some(_) => self.value(depth).map(|_| ()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.i += 1;
        let mut fields = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.ws();
            let key = self.key(depth)?;
            self.expect(b':', "expected :")?;
            let value = self.value(depth + 1)?;
            fields.push((key, value));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(fields));
                }
                _ => return Err(self.err("expected , or }")),
            }
        }
    }
}

static NULL: Value = Value::Null;

impl Value {
    /// The field `key` of an object (string keys only); Null when absent or not an object.
    pub fn get(&self, key: &str) -> &Value {
        if let Value::Object(fields) = self {
            for (k, v) in fields {
                if let Value::String(s) = k {
                    if s == key {
                        return v;
                    }
                }
            }
        }
        &NULL
    }
    pub fn entries(&self) -> &[(Value, Value)] {
        match self {
            Value::Object(f) => f,
            _ => &[],
        }
    }
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(a) => a,
            _ => &[],
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// An integer from a number or a numeric string; fractions are truncated.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) | Value::String(n) => n.parse::<i64>().ok().or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            }),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) | Value::String(n) => n.parse::<f64>().ok(),
            _ => None,
        }
    }
    /// A key rendered as text: strings as themselves, numbers as their digits.
    pub fn key_text(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Number(s) => Some(s),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn object_keys_are_parsed_as_objects() {
        let body = br#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":3,"topic":"MyTopic"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":1700000000000,"pullOffset":0}}}"#;
        let v = parse(body).unwrap();
        let (k, w) = &v.get("offsetTable").entries()[0];
        assert_eq!(k.get("brokerName").as_str(), Some("broker-a"));
        assert_eq!(k.get("queueId").as_i64(), Some(3));
        assert_eq!(w.get("brokerOffset").as_i64(), Some(100));
        assert_eq!(v.get("consumeTps").as_f64(), Some(1.5));
    }

    #[test]
    fn bare_numeric_keys_are_parsed() {
        let v = parse(br#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}}"#).unwrap();
        let e = v.get("brokerAddrs").entries();
        assert_eq!(e[0].0.key_text(), Some("0"));
        assert_eq!(e[1].1.as_str(), Some("127.0.0.1:10921"));
    }

    #[test]
    fn offsets_beyond_f64_precision_stay_exact() {
        let v = parse(br#"{"o":9007199254740993}"#).unwrap();
        assert_eq!(v.get("o").as_i64(), Some(9007199254740993));
    }

    #[test]
    fn missing_fields_read_as_null() {
        let v = parse(br#"{"brokerOffset":1}"#).unwrap();
        assert!(v.get("pullOffset").is_null());
        assert_eq!(v.get("pullOffset").as_i64(), None);
    }

    #[test]
    fn escapes_are_decoded() {
        let v = parse(br#"["a\"b\u00e9\n"]"#).unwrap();
        assert_eq!(v.items()[0].as_str(), Some("a\"b\u{e9}\n"));
    }

    #[test]
    fn truncated_and_deep_input_is_an_error() {
        assert!(parse(br#"{"a":{"b":"#).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"{} x").is_err());
    }

    #[test]
    fn object_keys_skips_the_values() {
        let body = br#"{"dataVersion":{"counter":1},"subscriptionGroupTable":{"G1":{"groupName":"G1","retry":{"a":[1,{"b":"x\"}"}]}},"G2":{}},"z":"tail"}"#;
        assert_eq!(
            object_keys(body, "subscriptionGroupTable").unwrap(),
            Some(vec!["G1".to_string(), "G2".to_string()])
        );
        assert_eq!(object_keys(body, "missing").unwrap(), None);
        assert!(object_keys(
            br#"{"subscriptionGroupTable":{"G1":{"#,
            "subscriptionGroupTable"
        )
        .is_err());
        assert!(object_keys(b"[]", "x").is_err());
    }

    proptest! {
        #[test]
        fn object_keys_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = object_keys(&data, "t");
        }

        #[test]
        fn object_keys_agree_with_the_full_parse(s in "[{}\\[\\]:,\"0-9a-z -]{0,200}") {
            let wrapped = format!("{{\"t\":{s}}}");
            if let Ok(full) = parse(wrapped.as_bytes()) {
                let keys: Vec<String> = full.get("t").entries().iter()
                    .filter_map(|(k, _)| k.as_str().map(str::to_string)).collect();
                let expected = matches!(full.get("t"), Value::Object(_)).then_some(keys);
                prop_assert_eq!(object_keys(wrapped.as_bytes(), "t").unwrap(), expected);
            }
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn parse_never_panics_on_json_like_text(s in "[{}\\[\\]:,\"0-9a-z\\\\ -]{0,256}") {
            let _ = parse(s.as_bytes());
        }
    }
}
