//! Property bags (`name=value&name2&…` after the topic prefix), §5 of the notes.

use crate::util::{pct_decode, pct_encode};

/// Decoded properties in wire order; `None` is a name without `=` (null value).
pub(crate) type Bag = Vec<(String, Option<String>)>;

/// Parses a property bag. One leading `?` is tolerated. Returns `None` for a name or
/// value that does not decode to UTF-8, or an empty name.
pub(crate) fn parse(bag: &str) -> Option<Bag> {
    let bag = bag.strip_prefix('?').unwrap_or(bag);
    let mut out = Vec::new();
    for pair in bag.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let name = pct_decode(name)?;
        if name.is_empty() {
            return None;
        }
        let value = match value {
            Some(v) => Some(pct_decode(v)?),
            None => None,
        };
        out.push((name, value));
    }
    Some(out)
}

/// Encodes a bag: names and values percent-encoded (`$` of system names becomes `%24`).
pub(crate) fn encode(bag: &[(String, Option<String>)]) -> String {
    bag.iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{}={}", pct_encode(n), pct_encode(v)),
            None => pct_encode(n),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// True for system property names (`$.mid`, …).
pub(crate) fn is_system(name: &str) -> bool {
    name.starts_with("$.")
}

/// Size counted against message limits: system values plus application names and values.
pub(crate) fn size(bag: &Bag) -> usize {
    bag.iter()
        .map(|(n, v)| {
            let v = v.as_deref().map_or(0, str::len);
            if is_system(n) {
                v
            } else {
                n.len() + v
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_encoded_bag() {
        let bag =
            parse("%24.mid=msg-1&%24.ct=application%2Fjson&%24.ce=utf-8&level=critical&temp%20alert=a%2Fb")
                .unwrap();
        assert_eq!(bag[0], ("$.mid".into(), Some("msg-1".into())));
        assert_eq!(bag[1], ("$.ct".into(), Some("application/json".into())));
        assert_eq!(bag[4], ("temp alert".into(), Some("a/b".into())));
    }

    #[test]
    fn null_empty_leading_question_mark_and_plus() {
        let bag = parse("?prop1&prop2=&prop3=a%20string&p=a+b").unwrap();
        assert_eq!(
            bag,
            vec![
                ("prop1".into(), None),
                ("prop2".into(), Some(String::new())),
                ("prop3".into(), Some("a string".into())),
                ("p".into(), Some("a+b".into())),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(parse("=x").is_none());
        assert!(parse("a=%FF").is_none());
    }

    #[test]
    fn encode_round_trips() {
        let bag: Bag = vec![
            ("$.to".into(), Some("/devices/d/messages/deviceBound".into())),
            ("k y".into(), Some("a&b=c".into())),
            ("n".into(), None),
        ];
        let s = encode(&bag);
        assert_eq!(s, "%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&k%20y=a%26b%3Dc&n");
        assert_eq!(parse(&s).unwrap(), bag);
    }
}
