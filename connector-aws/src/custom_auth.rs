//! Custom authorizers (`aws-iot-core.md` §4): credentials in the MQTT CONNECT user name
//! (port 443, ALPN `mqtt`) or in the WebSocket upgrade's headers (`wss://{host}/mqtt`).
//!
//! User name: `{user}?x-amz-customauthorizer-name={name}&x-amz-customauthorizer-signature={sig}&{tokenKeyName}={token}`,
//! each value percent-encoded, each part only when set. The signature of a signed token is
//! `base64(RSA-SHA256(privateKey, token))` ([`sign_token`]).
//!
//! ```
//! use connector_aws::custom_auth::CustomAuth;
//! let auth = CustomAuth::new(Some("my-auth")).token("token", "abc").username("device");
//! assert_eq!(auth.mqtt_username().expose(), "device?x-amz-customauthorizer-name=my-auth&token=abc");
//! assert!(!format!("{auth:?}").contains("abc"));
//! ```

use connector_core::Secret;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use crate::error::{AwsError, CertificateError};
use crate::sigv4::uri_encode;

/// The authorizer-name parameter or header.
pub const NAME_PARAM: &str = "x-amz-customauthorizer-name";
/// The token-signature parameter or header.
pub const SIGNATURE_PARAM: &str = "x-amz-customauthorizer-signature";

/// How the custom-authorizer credentials travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CustomAuthTransport {
    /// MQTT over TLS on 443 with ALPN `mqtt`; credentials in the CONNECT user name and
    /// password.
    #[default]
    Mqtt,
    /// MQTT over WebSocket (`wss://{host}/mqtt`); credentials in the upgrade's headers.
    WebSocket,
}

/// Custom-authorizer credentials. `Debug` never shows the token, signature or password.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomAuth {
    /// The authorizer; `None` uses the domain's default authorizer.
    pub authorizer: Option<String>,
    /// The user part of the CONNECT user name (before `?`).
    pub username: Option<String>,
    /// The token's key name and the token (`{tokenKeyName}={token}`).
    pub token: Option<(String, Secret)>,
    /// The token signature (base64), for authorizers with token signing.
    pub signature: Option<Secret>,
    /// The CONNECT password (delivered to the authorizer base64-encoded).
    pub password: Option<Secret>,
    /// CONNECT fields or WebSocket headers.
    pub transport: CustomAuthTransport,
}

impl CustomAuth {
    /// Credentials for `authorizer` (`None`: the default authorizer).
    pub fn new(authorizer: Option<&str>) -> Self {
        Self { authorizer: authorizer.map(str::to_owned), ..Self::default() }
    }
    /// Sets the token and its key name.
    pub fn token(mut self, key_name: impl Into<String>, token: impl Into<Secret>) -> Self {
        self.token = Some((key_name.into(), token.into()));
        self
    }
    /// Sets a precomputed token signature (base64).
    pub fn signature(mut self, signature: impl Into<Secret>) -> Self {
        self.signature = Some(signature.into());
        self
    }
    /// Signs the token with an RSA private key (PEM) and sets the signature.
    pub fn sign_with(mut self, private_key_pem: &[u8]) -> Result<Self, AwsError> {
        let (_, token) =
            self.token.as_ref().ok_or_else(|| AwsError::config("custom_auth.token", "nothing to sign"))?;
        self.signature = Some(sign_token(private_key_pem, token)?);
        Ok(self)
    }
    /// Sets the user part of the user name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }
    /// Sets the password.
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }
    /// Sends the credentials as WebSocket headers.
    pub fn over_websocket(mut self) -> Self {
        self.transport = CustomAuthTransport::WebSocket;
        self
    }

    /// Checks names: the authorizer `[\w=,@-]{1,128}`, the token key name non-empty
    /// printable ASCII without `&`, `=`, `?`.
    pub fn validate(&self) -> Result<(), AwsError> {
        if let Some(a) = &self.authorizer {
            let ok = !a.is_empty()
                && a.len() <= 128
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"_=,@-".contains(&b));
            if !ok {
                return Err(AwsError::config("custom_auth.authorizer", "[a-zA-Z0-9_=,@-], 1–128 characters"));
            }
        }
        if let Some((k, _)) = &self.token {
            let ok = !k.is_empty()
                && k.len() <= 128
                && k.bytes().all(|b| b.is_ascii_graphic() && !b"&=?:".contains(&b));
            if !ok {
                return Err(AwsError::config(
                    "custom_auth.token_key_name",
                    "printable ASCII without `&`, `=`, `?`, `:`, 1–128 characters",
                ));
            }
        }
        if let Some(u) = &self.username {
            if u.contains('?') || u.chars().any(char::is_control) {
                return Err(AwsError::config("custom_auth.username", "no `?` or control characters"));
            }
        }
        if self.signature.is_some() && self.token.is_none() {
            return Err(AwsError::config("custom_auth.signature", "a signature needs the token it signs"));
        }
        Ok(())
    }

    /// The CONNECT user name (a secret: it carries the token and signature).
    pub fn mqtt_username(&self) -> Secret {
        let mut u = self.username.clone().unwrap_or_default();
        let mut params = Vec::new();
        if let Some(a) = &self.authorizer {
            params.push(format!("{NAME_PARAM}={}", uri_encode(a)));
        }
        if let Some(s) = &self.signature {
            params.push(format!("{SIGNATURE_PARAM}={}", uri_encode(s.expose())));
        }
        if let Some((k, t)) = &self.token {
            params.push(format!("{k}={}", uri_encode(t.expose())));
        }
        if !params.is_empty() {
            u.push('?');
            u.push_str(&params.join("&"));
        }
        Secret::new(u)
    }

    /// The WebSocket upgrade headers (values are secrets).
    pub fn websocket_headers(&self) -> Vec<(String, Secret)> {
        let mut h = Vec::new();
        if let Some(a) = &self.authorizer {
            h.push((NAME_PARAM.to_owned(), Secret::new(a.clone())));
        }
        if let Some(s) = &self.signature {
            h.push((SIGNATURE_PARAM.to_owned(), s.clone()));
        }
        if let Some((k, t)) = &self.token {
            h.push((k.clone(), t.clone()));
        }
        h
    }
}

/// `base64(RSA-SHA256(private_key, token))`: the signature of a token for an authorizer
/// with token signing.
pub fn sign_token(private_key_pem: &[u8], token: &Secret) -> Result<Secret, AwsError> {
    let bad = |e: openssl::error::ErrorStack| CertificateError::InvalidKey { reason: e.to_string() };
    let key = PKey::private_key_from_pem(private_key_pem).map_err(bad)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(bad)?;
    signer.update(token.expose().as_bytes()).map_err(bad)?;
    let sig = signer.sign_to_vec().map_err(bad)?;
    Ok(Secret::new(openssl::base64::encode_block(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    #[test]
    fn user_names_carry_each_part_when_set() {
        assert_eq!(CustomAuth::new(None).mqtt_username().expose(), "");
        assert_eq!(CustomAuth::new(None).username("u").mqtt_username().expose(), "u");
        let a = CustomAuth::new(Some("auth")).token("tok", "a&b=c").signature("ab+/cd==").username("dev");
        assert_eq!(
            a.mqtt_username().expose(),
            "dev?x-amz-customauthorizer-name=auth&x-amz-customauthorizer-signature=ab%2B%2Fcd%3D%3D&tok=a%26b%3Dc"
        );
        let h = a.websocket_headers();
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [NAME_PARAM, SIGNATURE_PARAM, "tok"]);
        assert_eq!(h[2].1.expose(), "a&b=c");
        let shown = format!("{a:?} {h:?}");
        assert!(!shown.contains("a&b") && !shown.contains("ab+/cd"), "{shown}");
    }

    #[test]
    fn validation_and_signing() {
        assert!(CustomAuth::new(Some("bad name")).validate().is_err());
        assert!(CustomAuth::new(Some("ok")).token("a=b", "t").validate().is_err());
        assert!(CustomAuth::new(Some("ok")).username("x?y").validate().is_err());
        assert!(CustomAuth::new(Some("ok")).signature("s").validate().is_err());
        assert!(CustomAuth::new(Some("ok")).token("k", "t").password("p").validate().is_ok());
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let pem = rsa.private_key_to_pem_pkcs8().unwrap();
        let a = CustomAuth::new(Some("a")).token("k", "the-token").sign_with(&pem).unwrap();
        let sig = openssl::base64::decode_block(a.signature.as_ref().unwrap().expose()).unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &rsa).unwrap();
        v.update(b"the-token").unwrap();
        assert!(v.verify(&sig).unwrap());
        assert!(CustomAuth::new(Some("a")).sign_with(&pem).is_err(), "no token");
        assert!(CustomAuth::new(Some("a")).token("k", "t").sign_with(b"junk").is_err());
    }
}
