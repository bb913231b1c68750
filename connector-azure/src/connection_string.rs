//! Device and module connection strings (`azure-iot-hub.md` §2).
//!
//! `key=value` pairs separated by `;`, each split on its **first** `=` (keys and tokens end
//! in `=`). Keys are case-sensitive; unknown and duplicate keys are refused, as are empty
//! values and credential combinations that cannot work:
//!
//! | credential | keys |
//! |---|---|
//! | device/module key | `HostName;DeviceId;SharedAccessKey[;ModuleId][;GatewayHostName]` |
//! | policy key (token with `skn`) | `HostName;DeviceId;SharedAccessKeyName;SharedAccessKey[;…]` |
//! | pre-built token (cannot be renewed) | `HostName;DeviceId;SharedAccessSignature[;ModuleId][;GatewayHostName]` |
//! | X.509 client certificate | `HostName;DeviceId;x509=true[;ModuleId][;GatewayHostName]` |
//!
//! ```
//! use connector_azure::ConnectionString;
//! let cs: ConnectionString =
//!     "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
//!         .parse()?;
//! assert_eq!(cs.device_id(), "device-01");
//! assert!(!format!("{cs:?}").contains("AAECAw"));
//! # Ok::<(), connector_azure::ConnectionStringError>(())
//! ```

use std::str::FromStr;

use crate::error::{ConnectionStringError, SasError};
use crate::sas::{SasKey, SasToken};

/// The longest device or module id the hub accepts.
pub const MAX_ID_LEN: usize = 128;

/// How the device authenticates. `Debug` never shows keys or tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A device or module key: fresh tokens without `skn`.
    DeviceKey(SasKey),
    /// A shared access policy key: fresh tokens with `skn={name}`.
    PolicyKey {
        /// The policy name (`SharedAccessKeyName`).
        name: String,
        /// The policy key.
        key: SasKey,
    },
    /// A complete token (`SharedAccessSignature`), used as is: it cannot be renewed.
    Signature(SasToken),
    /// A TLS client certificate (`x509=true`); the MQTT password stays empty.
    X509,
}

/// A parsed device or module connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionString {
    host_name: String,
    device_id: String,
    module_id: Option<String>,
    gateway_host_name: Option<String>,
    credential: Credential,
}

impl ConnectionString {
    /// A connection string from its parts, validated as the parser does (for identities
    /// learnt from DPS).
    pub fn new(
        host_name: impl Into<String>,
        device_id: impl Into<String>,
        credential: Credential,
    ) -> Result<Self, ConnectionStringError> {
        let cs = Self {
            host_name: host_name.into(),
            device_id: device_id.into(),
            module_id: None,
            gateway_host_name: None,
            credential,
        };
        cs.validate()?;
        Ok(cs)
    }

    /// Makes this a module connection.
    pub fn with_module_id(mut self, module_id: impl Into<String>) -> Result<Self, ConnectionStringError> {
        self.module_id = Some(module_id.into());
        self.validate()?;
        Ok(self)
    }

    /// Connects through an IoT Edge gateway.
    pub fn with_gateway_host_name(mut self, host: impl Into<String>) -> Result<Self, ConnectionStringError> {
        self.gateway_host_name = Some(host.into());
        self.validate()?;
        Ok(self)
    }

    /// `HostName`: the hub, used in the user name and the token resource.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }
    /// `DeviceId`.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
    /// `ModuleId`, for module connections.
    pub fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }
    /// `GatewayHostName`: where the TCP/TLS connection goes instead of `HostName`.
    pub fn gateway_host_name(&self) -> Option<&str> {
        self.gateway_host_name.as_deref()
    }
    /// The credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
    /// `SharedAccessKey` (device, module or policy key).
    pub fn shared_access_key(&self) -> Option<&SasKey> {
        match &self.credential {
            Credential::DeviceKey(k) | Credential::PolicyKey { key: k, .. } => Some(k),
            _ => None,
        }
    }
    /// `SharedAccessKeyName`.
    pub fn shared_access_key_name(&self) -> Option<&str> {
        match &self.credential {
            Credential::PolicyKey { name, .. } => Some(name),
            _ => None,
        }
    }
    /// `SharedAccessSignature`.
    pub fn shared_access_signature(&self) -> Option<&SasToken> {
        match &self.credential {
            Credential::Signature(t) => Some(t),
            _ => None,
        }
    }
    /// `x509=true`.
    pub fn is_x509(&self) -> bool {
        matches!(self.credential, Credential::X509)
    }

    /// The token resource of this identity: `{HostName}/devices/{DeviceId}[/modules/{ModuleId}]`.
    pub fn resource_uri(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/devices/{}/modules/{m}", self.host_name, self.device_id),
            None => format!("{}/devices/{}", self.host_name, self.device_id),
        }
    }

    fn validate(&self) -> Result<(), ConnectionStringError> {
        check_host("HostName", &self.host_name)?;
        check_identity("DeviceId", &self.device_id)?;
        if let Some(m) = &self.module_id {
            check_identity("ModuleId", m)?;
        }
        if let Some(g) = &self.gateway_host_name {
            check_host("GatewayHostName", g)?;
        }
        match &self.credential {
            Credential::PolicyKey { name, .. } if name.is_empty() => {
                Err(ConnectionStringError::EmptyValue("SharedAccessKeyName"))
            }
            Credential::Signature(t) if !t.covers(&self.resource_uri()) => {
                Err(ConnectionStringError::InvalidValue {
                    key: "SharedAccessSignature",
                    reason: format!(
                        "the token's resource `{}` does not cover this identity",
                        t.resource_uri()
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

const KEYS: [&str; 7] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "SharedAccessKey",
    "SharedAccessKeyName",
    "SharedAccessSignature",
    "GatewayHostName",
];
const X509: &str = "x509";

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        let s = s.trim();
        if s.is_empty() {
            return Err(E::Empty);
        }
        // One slot per known key, in KEYS order, then x509.
        let mut values: [Option<&str>; 8] = [None; 8];
        let segments: Vec<&str> = s.split(';').collect();
        let last = segments.len() - 1;
        for (index, segment) in segments.into_iter().enumerate() {
            if segment.is_empty() && index == last && index > 0 {
                continue; // one trailing `;`
            }
            let (key, value) = segment.split_once('=').ok_or(E::MalformedPair { index })?;
            let slot = match KEYS.iter().position(|k| *k == key) {
                Some(i) => i,
                None if key == X509 => 7,
                None => return Err(E::UnknownKey(shown_key(key))),
            };
            let name = if slot == 7 { X509 } else { KEYS[slot] };
            if values[slot].is_some() {
                return Err(E::DuplicateKey(name));
            }
            if value.is_empty() {
                return Err(E::EmptyValue(name));
            }
            values[slot] = Some(value);
        }
        let [host, device, module, key, key_name, signature, gateway, x509] = values;
        let host = host.ok_or(E::MissingField("HostName"))?;
        let device = device.ok_or(E::MissingField("DeviceId"))?;
        if let Some(v) = x509 {
            if !v.eq_ignore_ascii_case("true") {
                return Err(E::InvalidValue { key: X509, reason: "the only allowed value is `true`".into() });
            }
        }
        let conflicts = [
            ("SharedAccessKey", key.is_some(), "SharedAccessSignature", signature.is_some()),
            ("SharedAccessKey", key.is_some(), X509, x509.is_some()),
            ("SharedAccessSignature", signature.is_some(), X509, x509.is_some()),
            ("SharedAccessKeyName", key_name.is_some(), "SharedAccessSignature", signature.is_some()),
            ("SharedAccessKeyName", key_name.is_some(), X509, x509.is_some()),
        ];
        if let Some((a, _, b, _)) = conflicts.into_iter().find(|(_, x, _, y)| *x && *y) {
            return Err(E::Conflict { a, b });
        }
        let sas_key = |k: &str| {
            SasKey::from_base64(k).map_err(|e| E::InvalidValue {
                key: "SharedAccessKey",
                reason: match e {
                    SasError::InvalidKey { reason } => reason.into(),
                    other => other.to_string(),
                },
            })
        };
        let credential = match (key, key_name, signature, x509) {
            (Some(k), None, _, _) => Credential::DeviceKey(sas_key(k)?),
            (Some(k), Some(name), _, _) => Credential::PolicyKey { name: name.to_owned(), key: sas_key(k)? },
            (None, Some(_), _, _) => return Err(E::MissingField("SharedAccessKey")),
            (None, None, Some(t), _) => Credential::Signature(t.parse().map_err(|e: SasError| {
                E::InvalidValue { key: "SharedAccessSignature", reason: e.to_string() }
            })?),
            (None, None, None, Some(_)) => Credential::X509,
            (None, None, None, None) => return Err(E::MissingCredential),
        };
        let cs = Self {
            host_name: host.to_owned(),
            device_id: device.to_owned(),
            module_id: module.map(str::to_owned),
            gateway_host_name: gateway.map(str::to_owned),
            credential,
        };
        cs.validate()?;
        Ok(cs)
    }
}

/// An unknown key as shown in the error. A pasted secret can land in the key position
/// (`…;<base64 key>=` or `…;<key>=!!`), so a key is shown only when it reads like a
/// misspelt or unsupported key name: letters (and `_`, `-`, `.`) only — base64 secrets
/// almost always hold a digit, `+` or `/` — and either short (at most 20 characters, below
/// the 22 of the smallest base64 key) or close to a known key name (a typo of one). The
/// value is never looked at: it may be the secret's tail.
fn shown_key(key: &str) -> String {
    let letters = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic() || b"_-.".contains(&b));
    let near_known = KEYS.iter().chain(std::iter::once(&X509)).any(|k| edit_distance(k, key) <= 3);
    if letters && (key.len() <= 20 || near_known) {
        key.to_owned()
    } else {
        "<redacted>".to_owned()
    }
}

/// Levenshtein distance, ASCII case-insensitive (both strings are short key names).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_host(key: &'static str, host: &str) -> Result<(), ConnectionStringError> {
    let invalid = |reason: &str| ConnectionStringError::InvalidValue { key, reason: reason.into() };
    if host.is_empty() {
        return Err(ConnectionStringError::EmptyValue(key));
    }
    if host.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(invalid(
            "a host name has only letters, digits, `-`, `_` and `.` (no scheme, port or path)",
        ));
    }
    if host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return Err(invalid("empty DNS label"));
    }
    Ok(())
}

/// Checks a device or module id: 1–128 ASCII alphanumerics or `- . % _ * ? ! ( ) , : = @ $ '`.
pub fn check_identity(key: &'static str, id: &str) -> Result<(), ConnectionStringError> {
    let invalid = |reason: &str| ConnectionStringError::InvalidValue { key, reason: reason.into() };
    if id.is_empty() {
        return Err(ConnectionStringError::EmptyValue(key));
    }
    if id.contains(['+', '#']) {
        return Err(invalid("`+` and `#` are not allowed (MQTT wildcards)"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid("longer than 128 characters"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-.%_*?!(),:=@$'".contains(&b);
    if !id.bytes().all(allowed) {
        return Err(invalid("only ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '` are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStringError as E;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const TOKEN: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";

    fn parse(s: &str) -> Result<ConnectionString, E> {
        s.parse()
    }

    #[test]
    fn valid_strings_parse_into_their_parts() {
        let cs = parse(&format!("HostName=h.net;DeviceId=d1;SharedAccessKey={KEY}")).unwrap();
        assert_eq!((cs.host_name(), cs.device_id(), cs.module_id()), ("h.net", "d1", None));
        assert_eq!(cs.shared_access_key().map(|k| k.to_base64().expose().to_owned()).as_deref(), Some(KEY));
        assert_eq!(cs.resource_uri(), "h.net/devices/d1");

        let cs = parse(&format!(
            "GatewayHostName=edge.local;ModuleId=m1;SharedAccessKey={KEY};DeviceId=d1;HostName=h.net;"
        ))
        .unwrap();
        assert_eq!((cs.module_id(), cs.gateway_host_name()), (Some("m1"), Some("edge.local")));
        assert_eq!(cs.resource_uri(), "h.net/devices/d1/modules/m1");

        let cs = parse(&format!("HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey={KEY}"))
            .unwrap();
        assert_eq!(cs.shared_access_key_name(), Some("device"));

        let cs = parse("HostName=h;DeviceId=d;x509=true").unwrap();
        assert!(cs.is_x509() && cs.shared_access_key().is_none());
        assert!(parse("HostName=h;DeviceId=d;x509=TRUE").unwrap().is_x509());

        let cs = parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessSignature={TOKEN}"
        ))
        .unwrap();
        assert_eq!(cs.shared_access_signature().map(SasToken::expiry_unix), Some(1_735_689_600));
        let odd = "HostName=h;DeviceId=a-b.c%d_e*f?g!h(i)j,k:l=m@n$o'p;x509=true";
        assert_eq!(parse(odd).unwrap().device_id(), "a-b.c%d_e*f?g!h(i)j,k:l=m@n$o'p");
    }

    #[test]
    fn rejections_name_the_problem() {
        let long = "d".repeat(129);
        let table: Vec<(String, E)> = vec![
            ("".into(), E::Empty),
            ("  ".into(), E::Empty),
            ("HostName=h;;DeviceId=d;x509=true".into(), E::MalformedPair { index: 1 }),
            ("HostName=h;DeviceId".into(), E::MalformedPair { index: 1 }),
            (";HostName=h".into(), E::MalformedPair { index: 0 }),
            ("HostName=h;DeviceId=d;x509=true;Foo=1".into(), E::UnknownKey("Foo".into())),
            ("hostname=h;DeviceId=d;x509=true".into(), E::UnknownKey("hostname".into())),
            ("HostName=h;DeviceId=d;x509=true;Foo=".into(), E::UnknownKey("Foo".into())),
            ("HostName=h;DeviceId=d;x509=true;SharedAcessKeyNmae=x".into(), E::UnknownKey("SharedAcessKeyNmae".into())),
            ("HostName=h;DeviceId=d;x509=true;a b=1".into(), E::UnknownKey("<redacted>".into())),
            ("HostName=h;DeviceId=d;x509=true;UseProvisioning=true".into(), E::UnknownKey("UseProvisioning".into())),
            ("HostName=h;DeviceId=d;DeviceId=e;x509=true".into(), E::DuplicateKey("DeviceId")),
            ("HostName=h;DeviceId=d;x509=true;x509=true".into(), E::DuplicateKey("x509")),
            ("HostName=;DeviceId=d;x509=true".into(), E::EmptyValue("HostName")),
            (format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};ModuleId="), E::EmptyValue("ModuleId")),
            ("DeviceId=d;x509=true".into(), E::MissingField("HostName")),
            (format!("HostName=h;SharedAccessKeyName=owner;SharedAccessKey={KEY}"), E::MissingField("DeviceId")),
            ("HostName=h;DeviceId=d;SharedAccessKeyName=device".into(), E::MissingField("SharedAccessKey")),
            ("HostName=h;DeviceId=d".into(), E::MissingCredential),
            ("HostName=h;DeviceId=d;ModuleId=m".into(), E::MissingCredential),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true"),
                E::Conflict { a: "SharedAccessKey", b: "x509" },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};SharedAccessSignature={TOKEN}"),
                E::Conflict { a: "SharedAccessKey", b: "SharedAccessSignature" },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessSignature={TOKEN};x509=true"),
                E::Conflict { a: "SharedAccessSignature", b: "x509" },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKeyName=n;SharedAccessSignature={TOKEN}"),
                E::Conflict { a: "SharedAccessKeyName", b: "SharedAccessSignature" },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKeyName=n;x509=true".into(),
                E::Conflict { a: "SharedAccessKeyName", b: "x509" },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=abc!".into(),
                E::InvalidValue { key: "SharedAccessKey", reason: "not valid base64".into() },
            ),
            (
                "HostName=h;DeviceId=d;x509=yes".into(),
                E::InvalidValue { key: "x509", reason: "the only allowed value is `true`".into() },
            ),
            (
                "HostName=h;DeviceId=d+1;x509=true".into(),
                E::InvalidValue { key: "DeviceId", reason: "`+` and `#` are not allowed (MQTT wildcards)".into() },
            ),
            (
                "HostName=h;DeviceId=d;ModuleId=#;x509=true".into(),
                E::InvalidValue { key: "ModuleId", reason: "`+` and `#` are not allowed (MQTT wildcards)".into() },
            ),
            (
                format!("HostName=h;DeviceId={long};x509=true"),
                E::InvalidValue { key: "DeviceId", reason: "longer than 128 characters".into() },
            ),
            (
                "HostName=h;DeviceId=a/b;x509=true".into(),
                E::InvalidValue {
                    key: "DeviceId",
                    reason: "only ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '` are allowed".into(),
                },
            ),
            (
                "HostName=mqtts://h:8883;DeviceId=d;x509=true".into(),
                E::InvalidValue {
                    key: "HostName",
                    reason: "a host name has only letters, digits, `-`, `_` and `.` (no scheme, port or path)"
                        .into(),
                },
            ),
            (
                "HostName=h..net;DeviceId=d;x509=true".into(),
                E::InvalidValue { key: "HostName", reason: "empty DNS label".into() },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessSignature=sr=x".into(),
                E::InvalidValue {
                    key: "SharedAccessSignature",
                    reason: "token does not start with `SharedAccessSignature `".into(),
                },
            ),
            (
                format!("HostName=myhub.azure-devices.net;DeviceId=other;SharedAccessSignature={TOKEN}"),
                E::InvalidValue {
                    key: "SharedAccessSignature",
                    reason: "the token's resource `myhub.azure-devices.net/devices/device-01` does not cover this identity"
                        .into(),
                },
            ),
        ];
        for (s, want) in table {
            assert_eq!(parse(&s).as_ref().err(), Some(&want), "{s}");
        }
    }

    #[test]
    fn debug_and_errors_never_show_keys_or_signatures() {
        let cs =
            parse(&format!("HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey={KEY}")).unwrap();
        let shown = format!("{cs:?} {:#?}", cs.credential());
        assert!(!shown.contains("AAECAw"), "{shown}");
        assert!(shown.contains("SasKey(<redacted>)"), "{shown}");
        let cs = parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessSignature={TOKEN}"
        ))
        .unwrap();
        let shown = format!("{cs:?}");
        assert!(!shown.contains("vH1TWHoM") && !shown.contains("sig="), "{shown}");
        // Errors never echo values, even of misplaced keys.
        for bad in [
            format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}x"),
            format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};{KEY}"),
            format!("HostName=h;DeviceId=d;x509=true;{}", "AAECAwQFBgcICQoLDA0ODw=="),
            format!("HostName=h;DeviceId=d;SharedAccessSignature={TOKEN}&x=1"),
            // A key pasted where a name goes, followed by anything (the agent's fuzzing found
            // `<key>=!!` and a key then a second line showing the key as an "unknown key").
            format!("HostName=h;DeviceId=d;x509=true;{}=!!", KEY.trim_end_matches('=')),
            format!("HostName=h;DeviceId=d;x509=true;{}\nmore=1", KEY.trim_end_matches('=')),
            "HostName=h;DeviceId=d;x509=true;QUJDREVGR0hJSktMTU5PUFFSU1RVVldY=x".to_string(),
        ] {
            let e = parse(&bad).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains("AAECAw") && !shown.contains("vH1TWHoM") && !shown.contains("QUJDREVG"),
                "{shown}"
            );
        }
    }

    #[test]
    fn parts_are_validated_like_the_parser() {
        let key = SasKey::from_base64(KEY).unwrap();
        let cs = ConnectionString::new("h", "d", Credential::DeviceKey(key.clone())).unwrap();
        let cs = cs.with_module_id("m").unwrap().with_gateway_host_name("gw").unwrap();
        assert_eq!(cs.resource_uri(), "h/devices/d/modules/m");
        assert!(ConnectionString::new("h", "", Credential::X509).is_err());
        assert!(ConnectionString::new("h", "d", Credential::X509).unwrap().with_module_id("a+b").is_err());
        assert_eq!(
            ConnectionString::new("h", "d", Credential::PolicyKey { name: String::new(), key }).unwrap_err(),
            E::EmptyValue("SharedAccessKeyName")
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Stand-in for the `connection_string` fuzz target.
    #[test]
    fn random_strings_never_panic() {
        let seeds = [
            "HostName=h.net;DeviceId=d;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "HostName=h;DeviceId=d;ModuleId=m;x509=true;GatewayHostName=g",
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AA%3D%3D&se=1",
        ];
        let alphabet: Vec<char> = ";=HDSx509+#%/ \u{0}éA=".chars().collect();
        let mut next = test_support::xorshift(0x2545_f491_4f6c_dd1du64);
        for i in 0..20_000 {
            let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..(1 + next() % 5) {
                let pos = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => s.insert(pos, c),
                    1 if pos < s.len() => {
                        s.remove(pos);
                    }
                    _ if pos < s.len() => s[pos] = c,
                    _ => {}
                }
            }
            let s: String = s.into_iter().collect();
            if let Ok(cs) = s.parse::<ConnectionString>() {
                assert!(!cs.device_id().is_empty() && !cs.host_name().is_empty());
            }
        }
    }
}
