//! Fleet-provisioning topics (`aws-fleet-provisioning.md` §1), JSON format: one enum of
//! the three APIs, one assemble and one parse function.
//!
//! | API | request | answers |
//! |---|---|---|
//! | [`FleetApi::CreateKeysAndCertificate`] | `$aws/certificates/create/json` | `…/accepted`, `…/rejected` |
//! | [`FleetApi::CreateCertificateFromCsr`] | `$aws/certificates/create-from-csr/json` | `…/accepted`, `…/rejected` |
//! | [`FleetApi::RegisterThing`] | `$aws/provisioning-templates/{name}/provision/json` | `…/accepted`, `…/rejected` |
//!
//! ```
//! use connector_aws::fleet::{FleetApi, FleetTopic, TemplateName, TopicKind};
//! let api = FleetApi::RegisterThing(TemplateName::new("FleetTemplate")?);
//! assert_eq!(
//!     FleetTopic::new(api.clone(), TopicKind::Accepted).assemble(),
//!     "$aws/provisioning-templates/FleetTemplate/provision/json/accepted"
//! );
//! assert_eq!(FleetTopic::parse("$aws/provisioning-templates/FleetTemplate/provision/json/accepted")?.api, api);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use super::error::FleetError;

/// Longest provisioning template name (botocore `iot` model).
pub const TEMPLATE_NAME_MAX: usize = 36;

/// A provisioning template name: 1–36 of `0-9 A-Z a-z _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName(String);

impl TemplateName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, FleetError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > TEMPLATE_NAME_MAX {
            Some("longer than 36 characters")
        } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            Some("only ASCII letters, digits, `_` and `-` are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => {
                Err(FleetError::InvalidTemplateName { name: name.chars().take(64).collect(), reason })
            }
            None => Ok(Self(name)),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TemplateName {
    type Err = FleetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// One of the three fleet-provisioning APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetApi {
    /// CreateKeysAndCertificate: AWS makes the key pair and the certificate.
    CreateKeysAndCertificate,
    /// CreateCertificateFromCsr: AWS signs the device's CSR.
    CreateCertificateFromCsr,
    /// RegisterThing through the named template.
    RegisterThing(TemplateName),
}

impl FleetApi {
    /// The API's name, as in the AWS documentation.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateKeysAndCertificate => "CreateKeysAndCertificate",
            Self::CreateCertificateFromCsr => "CreateCertificateFromCsr",
            Self::RegisterThing(_) => "RegisterThing",
        }
    }

    /// The request topic (the answers' topics add `/accepted` or `/rejected`).
    pub fn request_topic(&self) -> String {
        match self {
            Self::CreateKeysAndCertificate => format!("{CERTIFICATES}create/json"),
            Self::CreateCertificateFromCsr => format!("{CERTIFICATES}create-from-csr/json"),
            Self::RegisterThing(t) => format!("{TEMPLATES}{t}/provision/json"),
        }
    }
}

/// Whether a topic carries the request or one of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// The request the device publishes.
    Request,
    /// `/accepted`: the answer document.
    Accepted,
    /// `/rejected`: the error document.
    Rejected,
}

/// A fleet-provisioning topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTopic {
    /// The API.
    pub api: FleetApi,
    /// Request or answer.
    pub kind: TopicKind,
}

const CERTIFICATES: &str = "$aws/certificates/";
const TEMPLATES: &str = "$aws/provisioning-templates/";

impl FleetTopic {
    /// The topic of `api` of `kind`.
    pub fn new(api: FleetApi, kind: TopicKind) -> Self {
        Self { api, kind }
    }

    /// The topic text.
    pub fn assemble(&self) -> String {
        let request = self.api.request_topic();
        match self.kind {
            TopicKind::Request => request,
            TopicKind::Accepted => format!("{request}/accepted"),
            TopicKind::Rejected => format!("{request}/rejected"),
        }
    }

    /// Matches a fleet-provisioning topic (JSON format only).
    pub fn parse(topic: &str) -> Result<Self, FleetError> {
        let unknown = || FleetError::UnknownTopic { topic: topic.chars().take(128).collect() };
        let (base, kind) = if let Some(b) = topic.strip_suffix("/accepted") {
            (b, TopicKind::Accepted)
        } else if let Some(b) = topic.strip_suffix("/rejected") {
            (b, TopicKind::Rejected)
        } else {
            (topic, TopicKind::Request)
        };
        let api = if let Some(rest) = base.strip_prefix(CERTIFICATES) {
            match rest {
                "create/json" => FleetApi::CreateKeysAndCertificate,
                "create-from-csr/json" => FleetApi::CreateCertificateFromCsr,
                _ => return Err(unknown()),
            }
        } else if let Some(rest) = base.strip_prefix(TEMPLATES) {
            let name = rest.strip_suffix("/provision/json").ok_or_else(unknown)?;
            FleetApi::RegisterThing(TemplateName::new(name).map_err(|_| unknown())?)
        } else {
            return Err(unknown());
        };
        Ok(Self { api, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> FleetApi {
        FleetApi::RegisterThing(TemplateName::new(name).unwrap())
    }

    #[test]
    fn topics_assemble_and_parse_back() {
        let table = [
            (FleetApi::CreateKeysAndCertificate, TopicKind::Request, "$aws/certificates/create/json"),
            (
                FleetApi::CreateKeysAndCertificate,
                TopicKind::Accepted,
                "$aws/certificates/create/json/accepted",
            ),
            (
                FleetApi::CreateKeysAndCertificate,
                TopicKind::Rejected,
                "$aws/certificates/create/json/rejected",
            ),
            (
                FleetApi::CreateCertificateFromCsr,
                TopicKind::Request,
                "$aws/certificates/create-from-csr/json",
            ),
            (
                FleetApi::CreateCertificateFromCsr,
                TopicKind::Accepted,
                "$aws/certificates/create-from-csr/json/accepted",
            ),
            (
                FleetApi::CreateCertificateFromCsr,
                TopicKind::Rejected,
                "$aws/certificates/create-from-csr/json/rejected",
            ),
            (
                template("Fleet_T-1"),
                TopicKind::Request,
                "$aws/provisioning-templates/Fleet_T-1/provision/json",
            ),
            (
                template("Fleet_T-1"),
                TopicKind::Accepted,
                "$aws/provisioning-templates/Fleet_T-1/provision/json/accepted",
            ),
            (
                template("Fleet_T-1"),
                TopicKind::Rejected,
                "$aws/provisioning-templates/Fleet_T-1/provision/json/rejected",
            ),
        ];
        for (api, kind, text) in table {
            let t = FleetTopic::new(api, kind);
            assert_eq!(t.assemble(), text);
            assert_eq!(FleetTopic::parse(text).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn other_topics_are_typed_errors() {
        for topic in [
            "",
            "$aws/certificates/create/cbor/accepted",
            "$aws/certificates/create/json/accepted/x",
            "$aws/certificates/create",
            "$aws/certificates/delete/json",
            "$aws/provisioning-templates//provision/json/accepted",
            "$aws/provisioning-templates/a/b/provision/json",
            "$aws/provisioning-templates/a+b/provision/json",
            "$aws/provisioning-templates/t/provision/cbor/rejected",
            "$aws/things/t/shadow/get/accepted",
            "/accepted",
        ] {
            assert!(matches!(FleetTopic::parse(topic), Err(FleetError::UnknownTopic { .. })), "{topic}");
        }
    }

    #[test]
    fn template_names_are_validated() {
        assert_eq!(TemplateName::new("a".repeat(36)).unwrap().as_str().len(), 36);
        for (name, reason) in [
            ("", "empty"),
            (&*"a".repeat(37), "longer than 36 characters"),
            ("a/b", "only ASCII letters, digits, `_` and `-` are allowed"),
            ("a b", "only ASCII letters, digits, `_` and `-` are allowed"),
            ("é", "only ASCII letters, digits, `_` and `-` are allowed"),
        ] {
            match TemplateName::new(name) {
                Err(FleetError::InvalidTemplateName { reason: r, .. }) => assert_eq!(r, reason, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!("ok_name".parse::<TemplateName>().is_ok());
    }
}
