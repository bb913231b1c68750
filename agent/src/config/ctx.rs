//! Validation context: where each key came from, and reading the files keys name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use connector_core::Secret;

use super::{ConfigError, ConfigWarning, Origin};

pub(crate) struct Ctx {
    pub(super) origins: HashMap<String, Origin>,
    pub(super) default_origin: Origin,
    /// Warnings found so far (logging may not exist yet: they are emitted later).
    pub(super) warnings: RefCell<Vec<ConfigWarning>>,
}

impl Ctx {
    pub(super) fn warn(&self, w: ConfigWarning) {
        self.warnings.borrow_mut().push(w);
    }
    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or_else(|| self.default_origin.clone())
    }
    pub(super) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { origin: self.origin(key), key: key.to_owned(), reason: reason.into() }
    }
    pub(super) fn read_file(&self, key: &str, path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            origin: self.origin(key),
            key: key.to_owned(),
            path: path.to_owned(),
            error,
        })
    }
    pub(super) fn must_exist(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        std::fs::metadata(path).map(|_| ()).map_err(|error| ConfigError::File {
            origin: self.origin(key),
            key: key.to_owned(),
            path: path.to_owned(),
            error,
        })
    }
    /// A secret from a file (trimmed) or a named environment variable.
    pub(super) fn secret(
        &self,
        file_key: &str,
        file: Option<&Path>,
        env_key: &str,
        env: Option<&str>,
        env_lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (file, env) {
            (Some(_), Some(_)) => {
                Err(self.invalid(env_key, format!("set either `{file_key}` or `{env_key}`, not both")))
            }
            (Some(path), None) => {
                let text = self.read_file(file_key, path)?;
                self.warn_if_readable_by_others(file_key, path);
                let s = text.trim();
                if s.is_empty() {
                    return Err(self.invalid(file_key, format!("{} is empty", path.display())));
                }
                Ok(Some(Secret::new(s)))
            }
            (None, Some(var)) => match env_lookup(var) {
                Some(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                _ => Err(self.invalid(env_key, format!("environment variable {var} is not set or empty"))),
            },
            (None, None) => Ok(None),
        }
    }

    fn warn_if_readable_by_others(&self, key: &str, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                self.warn(ConfigWarning::ReadableSecret { key: key.to_owned(), path: path.to_owned(), mode });
            }
        }
    }
}

pub(super) fn non_empty(ctx: &Ctx, key: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ctx.invalid(key, "must not be empty")),
        other => Ok(other),
    }
}

pub(super) fn required<T>(ctx: &Ctx, key: &str, v: Option<T>, why: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ctx.invalid(key, format!("missing: {why}")))
}
