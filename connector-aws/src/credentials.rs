//! SigV4 credentials: an access key id, its secret and an optional session token, given
//! explicitly, from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`) or from a profile of the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or
//! `default`). They are resolved once, when the provider is built.
//!
//! ```
//! use connector_aws::credentials::{parse_credentials_file, AwsCredentials};
//! let file = "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
//! let c = parse_credentials_file(file, "default")?;
//! assert_eq!(c.access_key_id(), "AKIAIOSFODNN7EXAMPLE");
//! assert!(!format!("{c:?}").contains("wJalr"));
//! # Ok::<(), connector_aws::CredentialsError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use connector_core::Secret;

use crate::error::CredentialsError;

/// An access key id with its secret and, for temporary credentials, a session token.
/// `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Long-term credentials. The key id must be non-empty printable ASCII without `/`
    /// (it goes into the credential scope).
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<Secret>,
    ) -> Result<Self, CredentialsError> {
        let access_key_id = access_key_id.into();
        if access_key_id.is_empty() {
            return Err(CredentialsError::InvalidAccessKeyId { reason: "empty" });
        }
        if !access_key_id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Err(CredentialsError::InvalidAccessKeyId {
                reason: "only printable ASCII without `/` or spaces",
            });
        }
        Ok(Self { access_key_id, secret_access_key: secret_access_key.into(), session_token: None })
    }

    /// Adds the session token of temporary credentials.
    pub fn with_session_token(mut self, token: impl Into<Secret>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// The access key id (not secret: it names the key).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &Secret {
        &self.secret_access_key
    }

    /// The session token, for temporary credentials.
    pub fn session_token(&self) -> Option<&Secret> {
        self.session_token.as_ref()
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where SigV4 credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsSource {
    /// Given by the caller.
    Explicit(AwsCredentials),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set, `AWS_SESSION_TOKEN`.
    Environment,
    /// A profile of the shared credentials file.
    Profile {
        /// The profile; `None`: `AWS_PROFILE`, else `default`.
        name: Option<String>,
        /// The file; `None`: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
        file: Option<PathBuf>,
    },
}

impl CredentialsSource {
    /// The default profile of the default file.
    pub fn default_profile() -> Self {
        CredentialsSource::Profile { name: None, file: None }
    }

    /// Resolves the credentials with the process environment (reads the file, if any).
    pub fn resolve(&self) -> Result<AwsCredentials, CredentialsError> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Resolves the credentials with `env` as the environment (tests, embedders).
    pub fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AwsCredentials, CredentialsError> {
        let var = |name: &'static str| env(name).filter(|v| !v.is_empty());
        match self {
            CredentialsSource::Explicit(c) => Ok(c.clone()),
            CredentialsSource::Environment => {
                let id = var("AWS_ACCESS_KEY_ID")
                    .ok_or(CredentialsError::MissingVariable { name: "AWS_ACCESS_KEY_ID" })?;
                let secret = var("AWS_SECRET_ACCESS_KEY")
                    .ok_or(CredentialsError::MissingVariable { name: "AWS_SECRET_ACCESS_KEY" })?;
                let c = AwsCredentials::new(id, secret)?;
                Ok(match var("AWS_SESSION_TOKEN") {
                    Some(t) => c.with_session_token(t),
                    None => c,
                })
            }
            CredentialsSource::Profile { name, file } => {
                let profile = name.clone().or_else(|| var("AWS_PROFILE")).unwrap_or_else(|| "default".into());
                let path = match file {
                    Some(p) => p.clone(),
                    None => match var("AWS_SHARED_CREDENTIALS_FILE") {
                        Some(p) => PathBuf::from(p),
                        None => {
                            let home =
                                var("HOME").or_else(|| var("USERPROFILE")).ok_or(CredentialsError::NoHome)?;
                            Path::new(&home).join(".aws").join("credentials")
                        }
                    },
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| CredentialsError::Read { path: path.clone(), source })?;
                let text = Secret::new(text);
                parse_credentials_file(text.expose(), &profile)
            }
        }
    }
}

/// Reads `profile` from the text of a shared credentials file (INI: `[profile]` sections,
/// `key = value` lines, `#` and `;` comments): `aws_access_key_id`,
/// `aws_secret_access_key` and, if present, `aws_session_token` (or the legacy
/// `aws_security_token`).
pub fn parse_credentials_file(text: &str, profile: &str) -> Result<AwsCredentials, CredentialsError> {
    let mut section: Option<String> = None;
    let mut found = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or(CredentialsError::Malformed { line: i + 1 })?.trim();
            // `[profile x]` is the config file's spelling; accept it here too.
            let name = name.strip_prefix("profile ").map_or(name, str::trim);
            section = Some(name.to_owned());
            found |= name == profile;
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(CredentialsError::Malformed { line: i + 1 })?;
        if section.as_deref() != Some(profile) {
            continue;
        }
        let v = v.trim().to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(Secret::new(v)),
            "aws_session_token" | "aws_security_token" => token = Some(Secret::new(v)),
            _ => {}
        }
    }
    if !found {
        return Err(CredentialsError::ProfileNotFound { profile: profile.to_owned() });
    }
    let missing = |key| CredentialsError::MissingKey { profile: profile.to_owned(), key };
    let c = AwsCredentials::new(id.ok_or_else(|| missing("aws_access_key_id"))?, {
        secret.filter(|s| !s.is_empty()).ok_or_else(|| missing("aws_secret_access_key"))?
    })?;
    Ok(match token.filter(|t| !t.is_empty()) {
        Some(t) => c.with_session_token(t),
        None => c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn environment_credentials_with_and_without_token() {
        let c = CredentialsSource::Environment
            .resolve_with(&env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", SECRET)]))
            .unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key().expose()), ("AKID", SECRET));
        assert!(c.session_token().is_none());
        let c = CredentialsSource::Environment
            .resolve_with(&env(&[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", "tok/en=="),
            ]))
            .unwrap();
        assert_eq!(c.session_token().map(Secret::expose), Some("tok/en=="));
        let err =
            CredentialsSource::Environment.resolve_with(&env(&[("AWS_ACCESS_KEY_ID", "AKID")])).unwrap_err();
        assert!(matches!(err, CredentialsError::MissingVariable { name: "AWS_SECRET_ACCESS_KEY" }));
        let err = CredentialsSource::Environment
            .resolve_with(&env(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", SECRET)]))
            .unwrap_err();
        assert!(matches!(err, CredentialsError::MissingVariable { name: "AWS_ACCESS_KEY_ID" }));
    }

    #[test]
    fn profiles_from_the_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            format!(
                "# comment\n[default]\naws_access_key_id=AKDEFAULT\naws_secret_access_key = {SECRET}\n\n\
                 [profile dev]\n; another\naws_access_key_id = AKDEV\naws_secret_access_key = s2\naws_session_token = t2\n"
            ),
        )
        .unwrap();
        let file = path.to_string_lossy().into_owned();
        let vars: &'static [(&str, &str)] = Box::leak(Box::new([
            ("AWS_SHARED_CREDENTIALS_FILE", Box::leak(file.into_boxed_str()) as &str),
            ("AWS_PROFILE", "dev"),
        ]));
        let c = CredentialsSource::default_profile().resolve_with(&env(vars)).unwrap();
        assert_eq!(c.access_key_id(), "AKDEV");
        assert_eq!(c.session_token().map(Secret::expose), Some("t2"));
        let c = CredentialsSource::Profile { name: Some("default".into()), file: Some(path.clone()) }
            .resolve_with(&env(&[]))
            .unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key().expose()), ("AKDEFAULT", SECRET));
        let home: &'static str = Box::leak(dir.path().to_string_lossy().into_owned().into_boxed_str());
        let vars: &'static [(&str, &str)] = Box::leak(Box::new([("HOME", home)]));
        assert!(matches!(
            CredentialsSource::default_profile().resolve_with(&env(vars)),
            Err(CredentialsError::Read { .. })
        ));
        assert!(matches!(
            CredentialsSource::default_profile().resolve_with(&env(&[])),
            Err(CredentialsError::NoHome)
        ));
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        assert!(matches!(
            parse_credentials_file("[default]\naws_access_key_id = A\n", "default"),
            Err(CredentialsError::MissingKey { key: "aws_secret_access_key", .. })
        ));
        assert!(matches!(
            parse_credentials_file("[other]\naws_access_key_id = A\n", "default"),
            Err(CredentialsError::ProfileNotFound { .. })
        ));
        let e = parse_credentials_file("[default]\nsecret-line-without-equals\n", "default").unwrap_err();
        assert!(matches!(e, CredentialsError::Malformed { line: 2 }));
        assert!(!e.to_string().contains("secret-line"));
        assert!(matches!(
            parse_credentials_file("[default\n", "default"),
            Err(CredentialsError::Malformed { line: 1 })
        ));
        assert!(matches!(
            parse_credentials_file(
                "[default]\naws_access_key_id = A B\naws_secret_access_key = s\n",
                "default"
            ),
            Err(CredentialsError::InvalidAccessKeyId { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret_or_token() {
        let c = AwsCredentials::new("AKID", SECRET).unwrap().with_session_token("session-tok");
        let shown = format!("{c:?} {:?}", CredentialsSource::Explicit(c.clone()));
        assert!(shown.contains("AKID"), "{shown}");
        assert!(!shown.contains("wJalr") && !shown.contains("session-tok"), "{shown}");
    }
}
