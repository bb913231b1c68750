//! CONNECT user name and client id parsing for IoT Hub and DPS.
//!
//! IoT Hub: client id `{device}` or `{device}/{module}`, user name
//! `{host}/{device}[/{module}]/?{query}` with `api-version` in the query.
//! DPS: client id `{registrationId}`, user name
//! `{idScope}/registrations/{registrationId}/api-version=…[&ClientVersion=…]` (no `?`).

use crate::azure::Identity;
use crate::util::pct_decode;

/// What a CONNECT user name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectTarget {
    /// An IoT Hub device or module connection.
    Hub(HubUser),
    /// A DPS registration connection.
    Dps(DpsUser),
}

/// A parsed IoT Hub user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubUser {
    pub host: String,
    pub identity: Identity,
    pub api_version: String,
    pub model_id: Option<String>,
}

/// A parsed DPS user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DpsUser {
    pub id_scope: String,
    pub registration_id: String,
    pub api_version: String,
}

/// Why a user name or client id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("user name is missing")]
    NoUserName,
    #[error("user name is not in a known format")]
    BadUserName,
    #[error("api-version is missing from the user name")]
    NoApiVersion,
    #[error("identity is not valid")]
    BadIdentity,
    #[error("client id does not match the user name")]
    ClientIdMismatch,
}

/// Device/module id rule: 1–128 chars of ASCII alphanumerics and `- . % _ * ? ! ( ) , : = @ $ '`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.%_*?!(),:=@$'".contains(&b))
}

/// DPS registration id: lower-case alphanumerics, `-`, `.`, `_`, `:`; at most 128 chars.
pub(crate) fn valid_registration_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._:".contains(&b))
}

/// Parses user name and client id of a CONNECT.
pub(crate) fn parse(client_id: &str, username: Option<&str>) -> Result<ConnectTarget, ConnectError> {
    let username = username.ok_or(ConnectError::NoUserName)?;
    if let Some((path, query)) = username.split_once("/?") {
        parse_hub(client_id, path, query).map(ConnectTarget::Hub)
    } else {
        parse_dps(client_id, username).map(ConnectTarget::Dps)
    }
}

fn parse_hub(client_id: &str, path: &str, query: &str) -> Result<HubUser, ConnectError> {
    let parts: Vec<&str> = path.split('/').collect();
    let identity = match parts.as_slice() {
        [host, device] if !host.is_empty() => Identity::device(*device),
        [host, device, module] if !host.is_empty() => Identity::module(*device, *module),
        _ => return Err(ConnectError::BadUserName),
    };
    if !valid_id(&identity.device_id) || identity.module_id.as_deref().is_some_and(|m| !valid_id(m)) {
        return Err(ConnectError::BadIdentity);
    }
    if client_id != identity.to_string() {
        return Err(ConnectError::ClientIdMismatch);
    }
    let mut api_version = None;
    let mut model_id = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "api-version" => api_version = pct_decode(v).filter(|v| !v.is_empty()),
            "model-id" => model_id = pct_decode(v).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    Ok(HubUser {
        host: parts[0].to_string(),
        identity,
        api_version: api_version.ok_or(ConnectError::NoApiVersion)?,
        model_id,
    })
}

fn parse_dps(client_id: &str, username: &str) -> Result<DpsUser, ConnectError> {
    let mut it = username.splitn(4, '/');
    let (Some(scope), Some("registrations"), Some(reg), Some(rest)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(ConnectError::BadUserName);
    };
    if scope.is_empty() || !valid_registration_id(reg) {
        return Err(ConnectError::BadUserName);
    }
    let mut api_version = None;
    for pair in rest.split('&') {
        if let Some(v) = pair.strip_prefix("api-version=") {
            api_version = Some(v.to_string()).filter(|v| !v.is_empty());
        }
    }
    if !rest.starts_with("api-version=") {
        return Err(ConnectError::NoApiVersion);
    }
    if client_id != reg {
        return Err(ConnectError::ClientIdMismatch);
    }
    Ok(DpsUser {
        id_scope: scope.to_string(),
        registration_id: reg.to_string(),
        api_version: api_version.ok_or(ConnectError::NoApiVersion)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_device_and_module_user_names() {
        let t =
            parse("device-01", Some("myhub.azure-devices.net/device-01/?api-version=2021-04-12")).unwrap();
        let ConnectTarget::Hub(u) = t else { panic!() };
        assert_eq!(u.identity, Identity::device("device-01"));
        assert_eq!(u.api_version, "2021-04-12");
        let t = parse(
            "device-01/module-a",
            Some("h/device-01/module-a/?api-version=2020-09-30&DeviceClientType=azsdk-c%2F1.5.0&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"),
        )
        .unwrap();
        let ConnectTarget::Hub(u) = t else { panic!() };
        assert_eq!(u.identity, Identity::module("device-01", "module-a"));
        assert_eq!(u.model_id.as_deref(), Some("dtmi:com:example:Thermostat;1"));
    }

    #[test]
    fn hub_refusals() {
        assert_eq!(parse("d", None), Err(ConnectError::NoUserName));
        assert_eq!(parse("d", Some("h/d/?DeviceClientType=x")), Err(ConnectError::NoApiVersion));
        assert_eq!(parse("d", Some("h/d/?api-version=")), Err(ConnectError::NoApiVersion));
        assert_eq!(parse("e", Some("h/d/?api-version=1")), Err(ConnectError::ClientIdMismatch));
        assert_eq!(parse("d/m", Some("h/d/?api-version=1")), Err(ConnectError::ClientIdMismatch));
        assert_eq!(parse("d", Some("/d/?api-version=1")), Err(ConnectError::BadUserName));
        assert_eq!(parse("d", Some("h/a/b/c/?api-version=1")), Err(ConnectError::BadUserName));
        assert_eq!(parse("d#", Some("h/d#/?api-version=1")), Err(ConnectError::BadIdentity));
        assert_eq!(parse("d", Some("h/d/api-version=1")), Err(ConnectError::BadUserName));
    }

    #[test]
    fn dps_user_names() {
        let t =
            parse("device-01", Some("0ne00000A0A/registrations/device-01/api-version=2019-03-31")).unwrap();
        assert_eq!(
            t,
            ConnectTarget::Dps(DpsUser {
                id_scope: "0ne00000A0A".into(),
                registration_id: "device-01".into(),
                api_version: "2019-03-31".into()
            })
        );
        assert!(parse(
            "device-01",
            Some("0ne00000A0A/registrations/device-01/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0")
        )
        .is_ok());
        assert_eq!(
            parse("other", Some("s/registrations/device-01/api-version=2019-03-31")),
            Err(ConnectError::ClientIdMismatch)
        );
        assert_eq!(
            parse("device-01", Some("s/registrations/device-01/x=1")),
            Err(ConnectError::NoApiVersion)
        );
        assert_eq!(parse("Dev", Some("s/registrations/Dev/api-version=1")), Err(ConnectError::BadUserName));
    }
}
