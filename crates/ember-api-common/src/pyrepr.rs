//! Python's `repr()` and `str()` of JSON values. OpenStack services build
//! validation messages from them ("Value: {'a': 'b'}. … is not of type
//! 'string'"); clients and tests compare those messages verbatim.

use serde_json::Value;

pub fn repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

/// `str()`: strings bare, everything else as `repr`.
pub fn str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&repr_str(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&repr_str(k));
                out.push_str(": ");
                write_repr(v, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python() {
        assert_eq!(
            repr(&json!({"name": "snap-001", "force": true, "x": null})),
            "{'name': 'snap-001', 'force': True, 'x': None}"
        );
        assert_eq!(repr(&json!([1, 2, 3])), "[1, 2, 3]");
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(str(&json!("abc")), "abc");
    }
}

/// Parses a flat dict written as JSON or as a Python literal
/// (`{'k': 'v', 'n': 1}`), the way Cinder's `ast.literal_eval` reads
/// `?metadata=` filters. Values come back as strings (`str()` of numbers,
/// booleans and `None`). `None` for anything that is not such a dict.
pub fn parse_literal_dict(text: &str) -> Option<Vec<(String, String)>> {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        return Some(
            map.into_iter()
                .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_else(|| str(&v))))
                .collect(),
        );
    }
    let mut p = Literal {
        s: text.trim().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            let value = p.scalar()?;
            out.push((key, value));
            p.skip_ws();
            match p.next()? {
                b',' => {
                    p.skip_ws();
                    if p.peek() == Some(b'}') {
                        p.i += 1;
                        break;
                    }
                }
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.skip_ws();
    (p.i == p.s.len()).then_some(out)
}

struct Literal<'a> {
    s: &'a [u8],
    i: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        (self.next()? == c).then_some(())
    }
    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let quote = self.next().filter(|q| *q == b'\'' || *q == b'"')?;
        let mut bytes = Vec::new();
        loop {
            match self.next()? {
                b'\\' => match self.next()? {
                    b'n' => bytes.push(b'\n'),
                    b't' => bytes.push(b'\t'),
                    c => bytes.push(c),
                },
                c if c == quote => break,
                c => bytes.push(c),
            }
        }
        String::from_utf8(bytes).ok()
    }
    fn scalar(&mut self) -> Option<String> {
        self.skip_ws();
        if matches!(self.peek(), Some(b'\'' | b'"')) {
            return self.string();
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'+')
        {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match word {
            "True" | "False" | "None" => Some(word.to_string()),
            w if !w.is_empty() && w.parse::<f64>().is_ok() => Some(w.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod literal_tests {
    use super::parse_literal_dict;

    fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn reads_python_and_json_dicts() {
        assert_eq!(
            parse_literal_dict("{'Type': 'work'}"),
            pairs(&[("Type", "work")])
        );
        assert_eq!(
            parse_literal_dict(r#"{"a": "b", "n": 3}"#),
            pairs(&[("a", "b"), ("n", "3")])
        );
        assert_eq!(
            parse_literal_dict("{'a': 1, \"b\": True,}"),
            pairs(&[("a", "1"), ("b", "True")])
        );
        assert_eq!(parse_literal_dict("{}"), pairs(&[]));
        assert_eq!(
            parse_literal_dict("{'it\\'s': 'x'}"),
            pairs(&[("it's", "x")])
        );
    }

    #[test]
    fn refuses_what_is_not_a_flat_dict() {
        for bad in [
            "",
            "[1]",
            "{'a'}",
            "{'a': os.system}",
            "{'a': 'b'",
            "{'a': 'b'} x",
            "{'a': {'b': 1}}",
        ] {
            assert_eq!(parse_literal_dict(bad), None, "{bad}");
        }
    }
}
