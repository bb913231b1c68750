//! Validation of the `[azure]` and `[aws]` sections.

use std::path::PathBuf;
use std::time::Duration;

use super::ctx::{non_empty, required, Ctx};
use super::raw::{RawAws, RawAzure, RawCustomAuthorizer, RawFleet, RawSigV4};
use super::{
    AwsAuth, AwsCredentialsSetting, AwsSettings, AwsSigV4Settings, AzureAuth, AzureSettings, ConfigError,
    DpsAttestation, DpsSettings,
};

pub(super) fn azure(
    raw: RawAzure,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AzureSettings, ConfigError> {
    let websocket = match raw.transport.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("mqtt") => false,
        Some("websocket") | Some("wss") => true,
        Some(other) => {
            return Err(ctx.invalid("azure.transport", format!("`{other}`: expected `mqtt` or `websocket`")))
        }
    };
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("azure.ca_file", ca)?;
    }
    let cs = ctx.secret(
        "azure.connection_string_file",
        raw.connection_string_file.as_deref(),
        "azure.connection_string_env",
        raw.connection_string_env.as_deref(),
        env,
    )?;
    let x509 = match raw.x509 {
        Some(c) => {
            let cert = required(ctx, "azure.x509.cert_file", c.cert_file, "the device certificate (PEM)")?;
            let key = required(ctx, "azure.x509.key_file", c.key_file, "the device private key (PEM)")?;
            ctx.must_exist("azure.x509.cert_file", &cert)?;
            ctx.must_exist("azure.x509.key_file", &key)?;
            Some((cert, key))
        }
        None => None,
    };
    let auth = match (cs, raw.dps) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "azure.dps",
                "a connection string and [azure.dps] are both configured: choose one",
            ))
        }
        (Some(cs), None) => {
            if let Err(e) = cs.expose().parse::<connector_azure::ConnectionString>() {
                let key = if raw.connection_string_file.is_some() {
                    "azure.connection_string_file"
                } else {
                    "azure.connection_string_env"
                };
                // The text came from a secret: an "unknown key" may be a pasted key's base64
                // (`KEY==` followed by anything), so it is not shown.
                let reason = match e {
                    connector_azure::ConnectionStringError::UnknownKey(_) => {
                        "an unknown key (not shown: it may be part of a secret)".to_owned()
                    }
                    e => e.to_string(),
                };
                return Err(ctx.invalid(key, format!("not a device connection string: {reason}")));
            }
            AzureAuth::ConnectionString(cs)
        }
        (None, Some(dps)) => {
            let id_scope =
                required(ctx, "azure.dps.id_scope", non_empty(ctx, "azure.dps.id_scope", dps.id_scope)?, "the DPS ID scope")?;
            let registration_id = required(
                ctx,
                "azure.dps.registration_id",
                non_empty(ctx, "azure.dps.registration_id", dps.registration_id)?,
                "the registration id",
            )?;
            let sym = ctx.secret(
                "azure.dps.symmetric_key_file",
                dps.symmetric_key_file.as_deref(),
                "azure.dps.symmetric_key_env",
                dps.symmetric_key_env.as_deref(),
                env,
            )?;
            let group = ctx.secret(
                "azure.dps.group_key_file",
                dps.group_key_file.as_deref(),
                "azure.dps.group_key_env",
                dps.group_key_env.as_deref(),
                env,
            )?;
            let want_x509 = dps.x509.unwrap_or(false);
            let attestation = match (sym, group, want_x509) {
                (Some(k), None, false) => DpsAttestation::SymmetricKey(k),
                (None, Some(k), false) => DpsAttestation::GroupKey(k),
                (None, None, true) => {
                    let (cert_file, key_file) = x509.clone().ok_or_else(|| {
                        ctx.invalid("azure.x509", "missing: azure.dps.x509 = true needs [azure.x509] cert_file and key_file")
                    })?;
                    DpsAttestation::X509 { cert_file, key_file }
                }
                (None, None, false) => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "no attestation: set symmetric_key_file/_env, group_key_file/_env, or x509 = true",
                    ))
                }
                _ => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "more than one attestation: set only one of the symmetric key, the group key and x509",
                    ))
                }
            };
            for (key, secret) in [
                ("azure.dps.symmetric_key_file", matches!(&attestation, DpsAttestation::SymmetricKey(_))),
                ("azure.dps.group_key_file", matches!(&attestation, DpsAttestation::GroupKey(_))),
            ] {
                if !secret {
                    continue;
                }
                let (DpsAttestation::SymmetricKey(k) | DpsAttestation::GroupKey(k)) = &attestation else { continue };
                if connector_azure::SasKey::from_base64(k.expose()).is_err() {
                    return Err(ctx.invalid(key, "not a base64 symmetric key"));
                }
            }
            let dps_settings = DpsSettings {
                id_scope,
                registration_id,
                endpoint: dps.endpoint.unwrap_or_else(|| connector_azure::dps::GLOBAL_ENDPOINT.to_owned()),
                port: dps.port,
                attestation,
                timeout: dps.timeout.map_or(Duration::from_secs(60), |d| d.0),
            };
            // Reject what the DPS client would (bad scope or registration id) now.
            let probe_key = connector_azure::SasKey::from_base64("AAAAAAAAAAAAAAAAAAAAAA==")
                .map_err(|e| ctx.invalid("azure.dps", e.to_string()))?;
            if let Err(e) = connector_azure::dps::DpsRegistration::new(
                dps_settings.id_scope.clone(),
                dps_settings.registration_id.clone(),
                connector_azure::dps::DpsAuth::SymmetricKey(probe_key),
                connector_azure::dps::DpsOptions::default(),
            ) {
                return Err(ctx.invalid("azure.dps.registration_id", e.to_string()));
            }
            AzureAuth::Dps(dps_settings)
        }
        (None, None) => match x509 {
            Some((cert_file, key_file)) => AzureAuth::X509 {
                host_name: required(ctx, "azure.host_name", non_empty(ctx, "azure.host_name", raw.host_name)?, "the hub host name for X.509")?,
                device_id: required(ctx, "azure.device_id", non_empty(ctx, "azure.device_id", raw.device_id)?, "the device id for X.509")?,
                cert_file,
                key_file,
            },
            None => {
                return Err(ctx.invalid(
                    "azure",
                    "no credentials: set connection_string_file or connection_string_env, [azure.dps], or [azure.x509] with host_name and device_id",
                ))
            }
        },
    };
    let proxy = proxy(ctx, "azure.proxy", raw.proxy)?;
    Ok(AzureSettings { auth, port: raw.port, ca_file: raw.ca_file, model_id: raw.model_id, websocket, proxy })
}

pub(super) fn aws(
    raw: RawAws,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsSettings, ConfigError> {
    let endpoint = required(
        ctx,
        "aws.endpoint",
        non_empty(ctx, "aws.endpoint", raw.endpoint)?,
        "the device data endpoint (xxxx-ats.iot.REGION.amazonaws.com)",
    )?;
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("aws.ca_file", ca)?;
    }
    let topic_aliases = match raw.topic_aliases {
        None => 0,
        Some(n) => u16::try_from(n).map_err(|_| {
            ctx.invalid("aws.topic_aliases", format!("`{n}`: expected an integer from 0 (off) to 65535"))
        })?,
    };
    let kind = raw.auth.as_deref().map(str::to_ascii_lowercase);
    let (alpn, certificate) = match kind.as_deref() {
        None | Some("certificate") => (false, true),
        Some("certificate-alpn") => (true, true),
        Some("sigv4") | Some("custom-authorizer") => (false, false),
        Some(other) => {
            return Err(ctx.invalid(
                "aws.auth",
                format!(
                    "`{other}`: expected `certificate`, `certificate-alpn`, `sigv4` or `custom-authorizer`"
                ),
            ))
        }
    };
    let kind_name = kind.as_deref().unwrap_or("certificate");
    let not_used = |key: &str| {
        ctx.invalid(key, format!("not used with aws.auth = \"{kind_name}\": remove it or change aws.auth"))
    };
    if !certificate {
        for (key, set) in [
            ("aws.cert_file", raw.cert_file.is_some()),
            ("aws.key_file", raw.key_file.is_some()),
            ("aws.fleet_provisioning", raw.fleet_provisioning.is_some()),
        ] {
            if set {
                return Err(not_used(key));
            }
        }
    }
    if kind_name != "sigv4" && raw.sigv4.is_some() {
        return Err(not_used("aws.sigv4"));
    }
    if kind_name != "custom-authorizer" && raw.custom_authorizer.is_some() {
        return Err(not_used("aws.custom_authorizer"));
    }
    let auth = match kind_name {
        "sigv4" => AwsAuth::SigV4(sigv4(raw.sigv4, &endpoint, ctx, env)?),
        "custom-authorizer" => AwsAuth::CustomAuthorizer(custom_authorizer(raw.custom_authorizer, ctx, env)?),
        _ => certificate_auth(raw.cert_file, raw.key_file, raw.fleet_provisioning, ctx)?,
    };
    if raw.thing_name.is_none()
        && raw.client_id.is_none()
        && !matches!(auth, AwsAuth::FleetProvisioning { .. })
    {
        return Err(ctx.invalid("aws.thing_name", "missing: the thing name (or aws.client_id)"));
    }
    Ok(AwsSettings {
        endpoint,
        port: raw.port,
        thing_name: non_empty(ctx, "aws.thing_name", raw.thing_name)?,
        client_id: non_empty(ctx, "aws.client_id", raw.client_id)?,
        ca_file: raw.ca_file,
        auth,
        alpn,
        topic_aliases,
        proxy: proxy(ctx, "aws.proxy", raw.proxy)?,
    })
}

/// `http://[user:pw@]host:port` or `socks5://[user:pw@]host:port` (`socks5h` too). Errors
/// show the URL with its credentials redacted.
fn proxy(
    ctx: &Ctx,
    key: &'static str,
    raw: Option<String>,
) -> Result<Option<connector_core::Secret>, ConfigError> {
    let Some(url) = raw else { return Ok(None) };
    let url = connector_core::Secret::new(url);
    let shown = connector_core::provider::redact_userinfo(url.expose());
    let expected =
        "expected http://[user:password@]host:port (CONNECT) or socks5://[user:password@]host:port";
    let Some((scheme, rest)) = url.expose().split_once("://") else {
        return Err(ctx.invalid(key, format!("`{shown}`: {expected}")));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "socks5" | "socks5h") {
        return Err(ctx.invalid(key, format!("`{shown}`: scheme `{scheme}`: {expected}")));
    }
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h).trim_end_matches('/');
    let port_ok = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(ctx.invalid(key, format!("`{shown}`: no host:port; {expected}")));
    }
    Ok(Some(url))
}

fn certificate_auth(
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    fleet: Option<RawFleet>,
    ctx: &Ctx,
) -> Result<AwsAuth, ConfigError> {
    Ok(match (cert_file, key_file, fleet) {
        (Some(_), Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "aws.fleet_provisioning",
                "a device certificate and fleet provisioning are both configured: choose one",
            ))
        }
        (Some(cert_file), Some(key_file), None) => {
            ctx.must_exist("aws.cert_file", &cert_file)?;
            ctx.must_exist("aws.key_file", &key_file)?;
            AwsAuth::Certificate { cert_file, key_file }
        }
        (Some(_), None, _) => {
            return Err(ctx.invalid("aws.key_file", "missing: aws.cert_file needs its private key"))
        }
        (None, Some(_), _) => {
            return Err(ctx.invalid("aws.cert_file", "missing: aws.key_file needs its certificate"))
        }
        (None, None, Some(f)) => {
            let template_name = required(
                ctx,
                "aws.fleet_provisioning.template_name",
                non_empty(ctx, "aws.fleet_provisioning.template_name", f.template_name)?,
                "the provisioning template",
            )?;
            let claim_cert_file = required(
                ctx,
                "aws.fleet_provisioning.claim_cert_file",
                f.claim_cert_file,
                "the claim certificate",
            )?;
            let claim_key_file = required(
                ctx,
                "aws.fleet_provisioning.claim_key_file",
                f.claim_key_file,
                "the claim private key",
            )?;
            ctx.must_exist("aws.fleet_provisioning.claim_cert_file", &claim_cert_file)?;
            ctx.must_exist("aws.fleet_provisioning.claim_key_file", &claim_key_file)?;
            AwsAuth::FleetProvisioning {
                template_name,
                claim_cert_file,
                claim_key_file,
                parameters: f.parameters,
                timeout: f.timeout.map_or(Duration::from_secs(60), |d| d.0),
            }
        }
        (None, None, None) => {
            return Err(ctx.invalid(
                "aws",
                "no credentials: set cert_file and key_file, or [aws.fleet_provisioning] (or choose another aws.auth)",
            ))
        }
    })
}

fn sigv4(
    raw: Option<RawSigV4>,
    endpoint: &str,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsSigV4Settings, ConfigError> {
    let Some(raw) = raw else {
        return Err(ctx.invalid(
            "aws.sigv4",
            "missing: aws.auth = \"sigv4\" needs [aws.sigv4] with source = \"environment\", \"profile\" or \"files\"",
        ));
    };
    let region = match non_empty(ctx, "aws.sigv4.region", raw.region)? {
        Some(r) => r,
        None => connector_aws::endpoint::region_of(endpoint).map(str::to_owned).ok_or_else(|| {
            ctx.invalid(
                "aws.sigv4.region",
                "missing: the endpoint names no region (*.iot.REGION.amazonaws.com)",
            )
        })?,
    };
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ctx.invalid("aws.sigv4.region", format!("`{region}`: expected a region like eu-west-1")));
    }
    let source = raw.source.as_deref().map(str::to_ascii_lowercase);
    let source = required(
        ctx,
        "aws.sigv4.source",
        source,
        "where the credentials come from: \"environment\", \"profile\" or \"files\"",
    )?;
    let only_for = |key: &str, wanted: &str| {
        ctx.invalid(key, format!("only used with aws.sigv4.source = \"{wanted}\" (it is \"{source}\")"))
    };
    let profile_keys = [
        ("aws.sigv4.profile", raw.profile.is_some()),
        ("aws.sigv4.credentials_file", raw.credentials_file.is_some()),
    ];
    let file_keys = [
        ("aws.sigv4.access_key_id", raw.access_key_id.is_some()),
        ("aws.sigv4.secret_access_key_file", raw.secret_access_key_file.is_some()),
        ("aws.sigv4.session_token_file", raw.session_token_file.is_some()),
    ];
    let check_unused = |keys: &[(&str, bool)], wanted: &str| -> Result<(), ConfigError> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(only_for(key, wanted)),
            None => Ok(()),
        }
    };
    let resolve_error =
        |key: &str, e: connector_aws::error::CredentialsError| ctx.invalid(key, e.to_string());
    let credentials = match source.as_str() {
        "environment" => {
            check_unused(&profile_keys, "profile")?;
            check_unused(&file_keys, "files")?;
            connector_aws::CredentialsSource::Environment
                .resolve_with(env)
                .map_err(|e| resolve_error("aws.sigv4.source", e))?;
            AwsCredentialsSetting::Environment
        }
        "profile" => {
            check_unused(&file_keys, "files")?;
            let name = non_empty(ctx, "aws.sigv4.profile", raw.profile)?;
            let file = raw.credentials_file;
            let key = if file.is_some() { "aws.sigv4.credentials_file" } else { "aws.sigv4.profile" };
            connector_aws::CredentialsSource::Profile { name: name.clone(), file: file.clone() }
                .resolve_with(env)
                .map_err(|e| resolve_error(key, e))?;
            AwsCredentialsSetting::Profile { name, file }
        }
        "files" => {
            check_unused(&profile_keys, "profile")?;
            let id = required(
                ctx,
                "aws.sigv4.access_key_id",
                non_empty(ctx, "aws.sigv4.access_key_id", raw.access_key_id)?,
                "the access key id (with secret_access_key_file)",
            )?;
            let secret = ctx
                .secret(
                    "aws.sigv4.secret_access_key_file",
                    raw.secret_access_key_file.as_deref(),
                    "aws.sigv4.secret_access_key_file",
                    None,
                    env,
                )?
                .ok_or_else(|| {
                    ctx.invalid(
                        "aws.sigv4.secret_access_key_file",
                        "missing: the file holding the secret access key",
                    )
                })?;
            let token = ctx.secret(
                "aws.sigv4.session_token_file",
                raw.session_token_file.as_deref(),
                "aws.sigv4.session_token_file",
                None,
                env,
            )?;
            let creds = connector_aws::AwsCredentials::new(id, secret)
                .map_err(|e| resolve_error("aws.sigv4.access_key_id", e))?;
            AwsCredentialsSetting::Files(match token {
                Some(t) => creds.with_session_token(t),
                None => creds,
            })
        }
        other => {
            return Err(ctx.invalid(
                "aws.sigv4.source",
                format!("`{other}`: expected `environment`, `profile` or `files`"),
            ))
        }
    };
    Ok(AwsSigV4Settings { region, credentials })
}

fn custom_authorizer(
    raw: Option<RawCustomAuthorizer>,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<connector_aws::CustomAuth, ConfigError> {
    let Some(raw) = raw else {
        return Err(ctx.invalid(
            "aws.custom_authorizer",
            "missing: aws.auth = \"custom-authorizer\" needs [aws.custom_authorizer]",
        ));
    };
    let name = non_empty(ctx, "aws.custom_authorizer.authorizer_name", raw.authorizer_name)?;
    let mut auth = connector_aws::CustomAuth::new(name.as_deref());
    let token = ctx.secret(
        "aws.custom_authorizer.token_file",
        raw.token_file.as_deref(),
        "aws.custom_authorizer.token_env",
        raw.token_env.as_deref(),
        env,
    )?;
    let key_name = non_empty(ctx, "aws.custom_authorizer.token_key_name", raw.token_key_name)?;
    match (token, key_name) {
        (Some(token), Some(key_name)) => auth = auth.token(key_name, token),
        (Some(_), None) => {
            return Err(ctx.invalid(
                "aws.custom_authorizer.token_key_name",
                "missing: the token's key name (the authorizer's tokenKeyName)",
            ))
        }
        (None, Some(_)) => {
            return Err(ctx.invalid(
                "aws.custom_authorizer.token_file",
                "missing: token_key_name is set but no token_file or token_env",
            ))
        }
        (None, None) => {}
    }
    let signature = ctx.secret(
        "aws.custom_authorizer.signature_file",
        raw.signature_file.as_deref(),
        "aws.custom_authorizer.signing_key_file",
        None,
        env,
    )?;
    match (signature, raw.signing_key_file) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "aws.custom_authorizer.signing_key_file",
                "set either `aws.custom_authorizer.signature_file` or `aws.custom_authorizer.signing_key_file`, not both",
            ))
        }
        (Some(sig), None) => auth = auth.signature(sig),
        (None, Some(key_file)) => {
            const KEY: &str = "aws.custom_authorizer.signing_key_file";
            if auth.token.is_none() {
                return Err(ctx.invalid(KEY, "there is no token to sign: set token_file or token_env"));
            }
            let pem = connector_core::Secret::new(ctx.read_file(KEY, &key_file)?);
            auth = auth
                .sign_with(pem.expose().as_bytes())
                .map_err(|_| ctx.invalid(KEY, format!("{}: not an RSA private key (PEM)", key_file.display())))?;
        }
        (None, None) => {}
    }
    if let Some(user) = non_empty(ctx, "aws.custom_authorizer.username", raw.username)? {
        auth = auth.username(user);
    }
    if let Some(password) = ctx.secret(
        "aws.custom_authorizer.password_file",
        raw.password_file.as_deref(),
        "aws.custom_authorizer.password_env",
        raw.password_env.as_deref(),
        env,
    )? {
        auth = auth.password(password);
    }
    match raw.transport.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("mqtt") => {}
        Some("websocket") | Some("wss") => auth = auth.over_websocket(),
        Some(other) => {
            return Err(ctx.invalid(
                "aws.custom_authorizer.transport",
                format!("`{other}`: expected `mqtt` or `websocket`"),
            ))
        }
    }
    if auth.token.is_none() && auth.username.is_none() && auth.password.is_none() {
        return Err(ctx.invalid(
            "aws.custom_authorizer",
            "no credentials: set token_file/token_env (with token_key_name), username or password_file/password_env",
        ));
    }
    if let Err(e) = auth.validate() {
        // The library names its own fields (`custom_auth.token_key_name`): name ours.
        return Err(match e {
            connector_aws::AwsError::Config { field, reason } => {
                let key = match field {
                    "custom_auth.authorizer" => "aws.custom_authorizer.authorizer_name",
                    "custom_auth.token_key_name" => "aws.custom_authorizer.token_key_name",
                    "custom_auth.username" => "aws.custom_authorizer.username",
                    "custom_auth.signature" => "aws.custom_authorizer.signature_file",
                    _ => "aws.custom_authorizer",
                };
                ctx.invalid(key, reason)
            }
            e => ctx.invalid("aws.custom_authorizer", e.to_string()),
        });
    }
    Ok(auth)
}
