//! The RocketMQ remoting frame: encoding requests and decoding responses.
//!
//! Wire layout (apache/rocketmq `remoting/.../protocol/RemotingCommand.java`, `NettyDecoder.java`):
//!
//! ```text
//! int32 BE  total length = 4 + header length + body length (excludes itself)
//! int32 BE  (serialize type << 24) | (header length & 0xFFFFFF); JSON = 0, ROCKETMQ = 1
//! header    JSON object, or the ROCKETMQ binary layout (RocketMQSerializable.java)
//! body      raw bytes (usually fastjson text)
//! ```
//!
//! Requests are always sent with a JSON header, which every broker accepts. Responses come in
//! whichever header type the server is configured for, so both are decoded. Decoding never
//! panics on hostile input: every length is checked against what is left of the frame.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

/// The broker's own cap (`com.rocketmq.remoting.frameMaxLength`, default 16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// `flag` bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;

/// LanguageCode JAVA: understood by every broker version (RUST only since 4.9.4).
const LANGUAGE_JAVA: &str = "JAVA";

/// MQVersion ordinal sent with requests. 401 (V4_9_4) or more makes the name server answer with
/// standard JSON (string map keys) in route data; any broker accepts a newer client version.
pub const CLIENT_VERSION: i32 = 479;

/// One remoting command, request or response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// Request code, or response code when [`Command::is_response`].
    pub code: i32,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: BTreeMap<String, String>,
    pub body: Bytes,
}

impl Command {
    pub fn request(code: i32) -> Self {
        Command {
            code,
            version: CLIENT_VERSION,
            ..Default::default()
        }
    }

    pub fn with_field(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// The whole frame, length prefix included, with a JSON header.
    pub fn encode(&self) -> Bytes {
        let header = serde_json::json!({
            "code": self.code,
            "extFields": self.ext_fields,
            "flag": self.flag,
            "language": LANGUAGE_JAVA,
            "opaque": self.opaque,
            "serializeTypeCurrentRPC": "JSON",
            "version": self.version,
            "remark": self.remark,
        });
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut buf = BytesMut::with_capacity(8 + header.len() + self.body.len());
        buf.put_i32((4 + header.len() + self.body.len()) as i32);
        buf.put_i32(header.len() as i32 & 0x00FF_FFFF);
        buf.put_slice(&header);
        buf.put_slice(&self.body);
        buf.freeze()
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is out of range (4 ..= {1} bytes)")]
    BadLength(i64, usize),
    #[error("frame header length {header} does not fit in a frame of {frame} bytes")]
    HeaderOverrun { header: usize, frame: usize },
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("JSON header is not valid: {0}")]
    BadJsonHeader(String),
    #[error("binary header is truncated")]
    TruncatedBinaryHeader,
}

/// Checks the 4-byte length prefix and returns the length of the rest of the frame.
pub fn frame_length(prefix: [u8; 4], max_frame: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix) as i64;
    if len < 4 || len as u64 > max_frame as u64 {
        return Err(FrameError::BadLength(len, max_frame));
    }
    Ok(len as usize)
}

/// Decodes a frame without its 4-byte length prefix.
pub fn decode(frame: Bytes) -> Result<Command, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::BadLength(frame.len() as i64, frame.len()));
    }
    let mark = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let serialize_type = (mark >> 24) as u8;
    let header_len = (mark & 0x00FF_FFFF) as usize;
    if header_len > frame.len() - 4 {
        return Err(FrameError::HeaderOverrun {
            header: header_len,
            frame: frame.len(),
        });
    }
    let header = &frame[4..4 + header_len];
    let mut cmd = match serialize_type {
        0 => decode_json_header(header)?,
        1 => decode_binary_header(header)?,
        other => return Err(FrameError::UnknownSerializeType(other)),
    };
    cmd.body = frame.slice(4 + header_len..);
    Ok(cmd)
}

fn decode_json_header(header: &[u8]) -> Result<Command, FrameError> {
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| FrameError::BadJsonHeader(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| FrameError::BadJsonHeader("not an object".into()))?;
    let int = |k: &str| obj.get(k).and_then(|v| v.as_i64()).unwrap_or(0) as i32;
    let mut ext_fields = BTreeMap::new();
    if let Some(fields) = obj.get("extFields").and_then(|v| v.as_object()) {
        for (k, v) in fields {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            ext_fields.insert(k.clone(), v);
        }
    }
    Ok(Command {
        code: int("code"),
        version: int("version"),
        opaque: int("opaque"),
        flag: int("flag"),
        remark: obj
            .get("remark")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        ext_fields,
        body: Bytes::new(),
    })
}

/// A bounds-checked reader over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        })
    }
    /// A length-prefixed string; a negative or oversized length is an error.
    fn string(&mut self, len: i64) -> Option<String> {
        let len = usize::try_from(len).ok()?;
        self.take(len)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

fn decode_binary_header(header: &[u8]) -> Result<Command, FrameError> {
    let mut r = Reader::new(header);
    let t = FrameError::TruncatedBinaryHeader;
    let code = r.i16().ok_or(t.clone())? as i32;
    let _language = r.u8().ok_or(t.clone())?;
    let version = r.i16().ok_or(t.clone())? as i32;
    let opaque = r.i32().ok_or(t.clone())?;
    let flag = r.i32().ok_or(t.clone())?;
    let remark_len = r.i32().ok_or(t.clone())?;
    let remark = if remark_len > 0 {
        Some(r.string(remark_len as i64).ok_or(t.clone())?)
    } else {
        None
    };
    let ext_len = r.i32().ok_or(t.clone())?;
    let mut ext_fields = BTreeMap::new();
    if ext_len > 0 {
        let ext = r.take(ext_len as usize).ok_or(t.clone())?;
        let mut e = Reader::new(ext);
        while !e.buf.is_empty() {
            let klen = e.i16().ok_or(t.clone())?;
            let key = e.string(klen as i64).ok_or(t.clone())?;
            let vlen = e.i32().ok_or(t.clone())?;
            let value = e.string(vlen as i64).ok_or(t.clone())?;
            ext_fields.insert(key, value);
        }
    }
    Ok(Command {
        code,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strip_prefix(frame: &Bytes) -> Bytes {
        frame.slice(4..)
    }

    #[test]
    fn json_request_round_trips() {
        let mut cmd = Command::request(208)
            .with_field("consumerGroup", "G")
            .with_field("topic", "T");
        cmd.opaque = 7;
        cmd.body = Bytes::from_static(b"{\"x\":1}");
        let frame = cmd.encode();
        let len =
            frame_length([frame[0], frame[1], frame[2], frame[3]], DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(len, frame.len() - 4);
        let back = decode(strip_prefix(&frame)).unwrap();
        assert_eq!(back.code, 208);
        assert_eq!(back.opaque, 7);
        assert_eq!(back.ext_fields["consumerGroup"], "G");
        assert_eq!(&back.body[..], b"{\"x\":1}");
    }

    #[test]
    fn binary_header_is_decoded() {
        let mut h = BytesMut::new();
        h.put_i16(0); // code SUCCESS
        h.put_u8(0); // JAVA
        h.put_i16(479);
        h.put_i32(42);
        h.put_i32(FLAG_RESPONSE);
        h.put_i32(2);
        h.put_slice(b"ok");
        let mut ext = BytesMut::new();
        ext.put_i16(1);
        ext.put_slice(b"k");
        ext.put_i32(2);
        ext.put_slice(b"vv");
        h.put_i32(ext.len() as i32);
        h.put_slice(&ext);
        let mut frame = BytesMut::new();
        frame.put_u32((1 << 24) | h.len() as u32);
        frame.put_slice(&h);
        frame.put_slice(b"body");
        let cmd = decode(frame.freeze()).unwrap();
        assert_eq!(cmd.opaque, 42);
        assert!(cmd.is_response());
        assert_eq!(cmd.remark.as_deref(), Some("ok"));
        assert_eq!(cmd.ext_fields["k"], "vv");
        assert_eq!(&cmd.body[..], b"body");
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused() {
        assert!(frame_length((-1i32).to_be_bytes(), DEFAULT_MAX_FRAME).is_err());
        assert!(frame_length(
            ((DEFAULT_MAX_FRAME + 1) as i32).to_be_bytes(),
            DEFAULT_MAX_FRAME
        )
        .is_err());
        assert!(frame_length(3i32.to_be_bytes(), DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn header_longer_than_frame_is_refused() {
        let mut frame = BytesMut::new();
        frame.put_u32(100);
        frame.put_slice(b"{}");
        assert!(matches!(
            decode(frame.freeze()),
            Err(FrameError::HeaderOverrun { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(Bytes::from(data));
        }

        #[test]
        fn binary_headers_with_random_tails_never_panic(
            code in any::<i16>(), tail in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut frame = BytesMut::new();
            frame.put_u32((1 << 24) | (2 + tail.len()) as u32);
            frame.put_i16(code);
            frame.put_slice(&tail);
            let _ = decode(frame.freeze());
        }

        #[test]
        fn encoded_requests_decode_to_themselves(
            code in 0i32..1000, opaque in any::<i32>(),
            fields in proptest::collection::btree_map("[a-zA-Z]{1,8}", "\\PC{0,16}", 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let mut cmd = Command::request(code);
            cmd.opaque = opaque;
            cmd.ext_fields = fields;
            cmd.body = Bytes::from(body);
            let frame = cmd.encode();
            let back = decode(frame.slice(4..)).unwrap();
            prop_assert_eq!(back, cmd);
        }
    }
}
