//! The line protocol: validating one line, and reading lines with a length cap.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Most properties an envelope may carry.
pub const MAX_PROPERTIES: usize = 32;
/// Longest envelope topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Why a single line was refused (the text goes back to the producer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineError {
    /// Not valid JSON (or not UTF-8).
    #[error("malformed JSON: {detail}")]
    Malformed {
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// An envelope with a bad `topic` or `properties`.
    #[error("bad envelope: {reason}")]
    Envelope {
        /// What is wrong.
        reason: String,
    },
    /// Longer than `max_line_bytes`.
    #[error("line too long: {len} bytes, limit {limit}")]
    TooLong {
        /// Bytes read before the newline.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A validated line: what the agent publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// The envelope's channel name, if any.
    pub topic: Option<String>,
    /// The envelope's properties (empty for a raw value).
    pub properties: BTreeMap<String, String>,
    /// Compact JSON of the payload value.
    pub payload: Bytes,
}

fn envelope_error(reason: impl Into<String>) -> LineError {
    LineError::Envelope { reason: reason.into() }
}

fn check_topic(t: &str) -> Result<(), LineError> {
    if t.is_empty() || t.len() > MAX_TOPIC_BYTES {
        return Err(envelope_error(format!("topic must be 1-{MAX_TOPIC_BYTES} bytes")));
    }
    if t.chars().any(|c| c.is_control() || c == '+' || c == '#') {
        return Err(envelope_error("topic holds a control character or an MQTT wildcard"));
    }
    Ok(())
}

/// Validates one line (without its newline) per the [module's protocol](super).
pub fn parse_line(line: &[u8]) -> Result<ParsedLine, LineError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed { detail: e.to_string() })?;
    let is_envelope = value.as_object().is_some_and(|o| {
        o.contains_key("payload")
            && o.keys().all(|k| matches!(k.as_str(), "payload" | "topic" | "properties"))
    });
    if !is_envelope {
        let payload = Bytes::from(value.to_string());
        return Ok(ParsedLine { topic: None, properties: BTreeMap::new(), payload });
    }
    let Value::Object(mut o) = value else {
        return Err(envelope_error("not an object"));
    };
    let topic = match o.remove("topic") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            check_topic(&t)?;
            Some(t)
        }
        Some(_) => return Err(envelope_error("topic must be a string")),
    };
    let mut properties = BTreeMap::new();
    match o.remove("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            if p.len() > MAX_PROPERTIES {
                return Err(envelope_error(format!("more than {MAX_PROPERTIES} properties")));
            }
            for (k, v) in p {
                if k.is_empty() {
                    return Err(envelope_error("empty property name"));
                }
                match v {
                    Value::String(s) => {
                        properties.insert(k, s);
                    }
                    _ => return Err(envelope_error(format!("property {k:?} is not a string"))),
                }
            }
        }
        Some(_) => return Err(envelope_error("properties must be an object of strings")),
    }
    let payload = o.remove("payload").map(|p| p.to_string()).unwrap_or_default();
    Ok(ParsedLine { topic, properties, payload: Bytes::from(payload) })
}

/// How reading one line ended.
pub(super) enum LineRead {
    /// A whole line is in the buffer.
    Line,
    /// A line longer than the limit was skipped; its length.
    TooLong(usize),
    /// End of stream at a line boundary.
    Eof,
    /// End of stream inside a line.
    EofPartial,
}

pub(super) async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if total == 0 { LineRead::Eof } else { LineRead::EofPartial });
        }
        let (chunk, found) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (&avail[..i], true),
            None => (avail, false),
        };
        total += chunk.len();
        // Room for one byte past the limit: a `\r` before the newline.
        if !overflow && buf.len() + chunk.len() > max.saturating_add(1) {
            overflow = true;
            buf.clear();
            buf.shrink_to(max.min(64 * 1024));
        } else if !overflow {
            buf.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(found);
        r.consume(used);
        if found {
            if !overflow && buf.last() == Some(&b'\r') {
                buf.pop();
                total -= 1;
            }
            if overflow || buf.len() > max {
                return Ok(LineRead::TooLong(total));
            }
            return Ok(LineRead::Line);
        }
    }
}
