//! The subset of AMF0 (Action Message Format, version 0) that an RTMP publisher speaks: numbers,
//! booleans, strings, objects, ECMA and strict arrays, null and undefined. Encoding writes
//! exactly these; decoding reads a server's answers (`_result`, `_error`, `onStatus`) and
//! refuses anything else with an error, never a panic.

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `0x00`: an IEEE-754 double.
    Number(f64),
    /// `0x01`.
    Boolean(bool),
    /// `0x02` (or `0x0C`, a long string, when decoded).
    String(String),
    /// `0x03`: named properties in order.
    Object(Vec<(String, Value)>),
    /// `0x05`.
    Null,
    /// `0x06`.
    Undefined,
    /// `0x08`: an associative array (written with its count).
    EcmaArray(Vec<(String, Value)>),
    /// `0x0A`: a dense array.
    StrictArray(Vec<Value>),
}

/// Why bytes are not the AMF0 this module reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// The data ends inside a value.
    #[error("AMF0 data ends inside a value")]
    Truncated,
    /// A type marker this module does not read.
    #[error("AMF0 type marker {0:#04x} is not supported")]
    Unsupported(u8),
    /// A string is not UTF-8.
    #[error("AMF0 string is not UTF-8")]
    NotUtf8,
    /// Objects nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 values nested too deeply")]
    TooDeep,
}

/// Deepest nesting decoded (an RTMP server's answers nest two levels).
pub const MAX_DEPTH: usize = 16;

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => {
                p.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Boolean(b) => {
                out.push(0x01);
                out.push(u8::from(*b));
            }
            Value::String(s) => {
                if let Ok(len) = u16::try_from(s.len()) {
                    out.push(0x02);
                    out.extend_from_slice(&len.to_be_bytes());
                } else {
                    out.push(0x0C);
                    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                }
                out.extend_from_slice(s.as_bytes());
            }
            Value::Object(props) => {
                out.push(0x03);
                write_props(props, out);
            }
            Value::Null => out.push(0x05),
            Value::Undefined => out.push(0x06),
            Value::EcmaArray(props) => {
                out.push(0x08);
                out.extend_from_slice(&(props.len() as u32).to_be_bytes());
                write_props(props, out);
            }
            Value::StrictArray(items) => {
                out.push(0x0A);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for v in items {
                    v.write(out);
                }
            }
        }
    }
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    // Property names are short literals of this crate; longer ones are cut at a char boundary.
    let mut end = key.len().min(usize::from(u16::MAX));
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&key.as_bytes()[..end]);
}

fn write_props(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        write_key(k, out);
        v.write(out);
    }
    out.extend_from_slice(&[0, 0, 0x09]);
}

/// Encodes a sequence of values (a command or a data message body).
pub fn encode(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for v in values {
        v.write(&mut out);
    }
    out
}

/// Decodes every value in `data`.
pub fn decode_all(mut data: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut values = Vec::new();
    while !data.is_empty() {
        values.push(read_value(&mut data, 0)?);
    }
    Ok(values)
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], Amf0Error> {
    if data.len() < n {
        return Err(Amf0Error::Truncated);
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Ok(head)
}

fn read_u16(data: &mut &[u8]) -> Result<u16, Amf0Error> {
    let b = take(data, 2)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn read_u32(data: &mut &[u8]) -> Result<u32, Amf0Error> {
    let b = take(data, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_string(data: &mut &[u8], len: usize) -> Result<String, Amf0Error> {
    let b = take(data, len)?;
    String::from_utf8(b.to_vec()).map_err(|_| Amf0Error::NotUtf8)
}

fn read_props(data: &mut &[u8], depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
    let mut props = Vec::new();
    loop {
        let len = usize::from(read_u16(data)?);
        if len == 0 {
            // The end marker follows an empty name.
            if take(data, 1)?[0] == 0x09 {
                return Ok(props);
            }
            return Err(Amf0Error::Unsupported(0x09));
        }
        let key = read_string(data, len)?;
        props.push((key, read_value(data, depth + 1)?));
    }
}

fn read_value(data: &mut &[u8], depth: usize) -> Result<Value, Amf0Error> {
    if depth > MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    let marker = take(data, 1)?[0];
    Ok(match marker {
        0x00 => {
            let b = take(data, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Value::Number(f64::from_be_bytes(a))
        }
        0x01 => Value::Boolean(take(data, 1)?[0] != 0),
        0x02 => {
            let len = usize::from(read_u16(data)?);
            Value::String(read_string(data, len)?)
        }
        0x0C => {
            let len = read_u32(data)? as usize;
            Value::String(read_string(data, len)?)
        }
        0x03 => Value::Object(read_props(data, depth)?),
        0x05 => Value::Null,
        0x06 => Value::Undefined,
        0x08 => {
            let _count = read_u32(data)?;
            Value::EcmaArray(read_props(data, depth)?)
        }
        0x0A => {
            let count = read_u32(data)? as usize;
            // Each value takes at least one byte: a count beyond the data is a lie.
            if count > data.len() {
                return Err(Amf0Error::Truncated);
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(read_value(data, depth + 1)?);
            }
            Value::StrictArray(items)
        }
        other => return Err(Amf0Error::Unsupported(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = vec![
            Value::String("onVolume".into()),
            Value::Object(vec![
                ("t".into(), Value::Number(1200.0)),
                (
                    "speakers".into(),
                    Value::StrictArray(vec![Value::EcmaArray(vec![
                        ("uid".into(), Value::String("ana".into())),
                        ("speaking".into(), Value::Boolean(true)),
                    ])]),
                ),
                ("none".into(), Value::Null),
                ("u".into(), Value::Undefined),
            ]),
        ];
        assert_eq!(decode_all(&encode(&v)).expect("decodes"), v);
    }

    #[test]
    fn known_bytes() {
        // "connect" as an AMF0 string, then 1.0.
        let bytes = encode(&[Value::String("connect".into()), Value::Number(1.0)]);
        assert_eq!(
            bytes,
            [
                0x02, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3F, 0xF0, 0, 0, 0, 0,
                0, 0
            ]
        );
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        assert_eq!(decode_all(&[0x02, 0, 5, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(decode_all(&[0x11]), Err(Amf0Error::Unsupported(0x11)));
        assert_eq!(
            decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf0Error::Truncated)
        );
        let deep: Vec<u8> = std::iter::repeat_n([0x0A, 0, 0, 0, 1], 40)
            .flatten()
            .collect();
        assert_eq!(decode_all(&deep), Err(Amf0Error::TooDeep));
        // Every prefix of a valid message fails cleanly.
        let good = encode(&[Value::Object(vec![("k".into(), Value::Number(2.0))])]);
        for n in 0..good.len() {
            assert!(decode_all(&good[..n]).is_err() || n == 0);
        }
    }
}
