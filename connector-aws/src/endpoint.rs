//! The device data endpoint (`aws-iot-core.md` §1): host name checks, the region taken
//! from `{prefix}-ats.iot.{region}.amazonaws.com[.cn]`, ports and ALPN protocols.
//!
//! ```
//! use connector_aws::endpoint::region_of;
//! assert_eq!(region_of("a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"), Some("eu-west-1"));
//! assert_eq!(region_of("localhost"), None);
//! ```

/// MQTT over TLS with a client certificate.
pub const MQTT_TLS_PORT: u16 = 8883;
/// ALPN, WebSocket and custom-authorizer port.
pub const HTTPS_PORT: u16 = 443;
/// ALPN for certificate MQTT on 443.
pub const ALPN_MQTT_CA: &str = "x-amzn-mqtt-ca";
/// ALPN for custom-authorizer MQTT on 443.
pub const ALPN_MQTT: &str = "mqtt";
/// The WebSocket path.
pub const WS_PATH: &str = "/mqtt";

/// The region of an AWS IoT data endpoint (`*.iot.{region}.amazonaws.com[.cn]`), if the
/// host is one.
pub fn region_of(host: &str) -> Option<&str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (before, region) = rest.rsplit_once('.')?;
    if !before.ends_with(".iot") && before != "iot" {
        return None;
    }
    let ok = !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(region)
}

/// Checks an endpoint host: a DNS name or an IP address, no scheme, port or path.
pub fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty");
    }
    if host.contains("://") {
        return Err("a host name, not a URL (no scheme)");
    }
    if host.contains(['/', '?', '#', '@']) {
        return Err("a host name only (no path, query or credentials)");
    }
    if host.len() > 253 {
        return Err("longer than 253 characters");
    }
    let v6 = host.contains(':');
    let ok = if v6 {
        host.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if ok {
        Ok(())
    } else {
        Err("not a DNS name or an IP address (give the port separately)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_hosts() {
        assert_eq!(region_of("x-ats.iot.us-east-1.amazonaws.com"), Some("us-east-1"));
        assert_eq!(region_of("x.iot.cn-north-1.amazonaws.com.cn"), Some("cn-north-1"));
        assert_eq!(region_of("x-ats.iot.us-east-1.amazonaws.com."), Some("us-east-1"));
        assert_eq!(region_of("x.s3.us-east-1.amazonaws.com"), None);
        assert_eq!(region_of("iot.example.com"), None);
        assert!(validate_host("x-ats.iot.us-east-1.amazonaws.com").is_ok());
        assert!(validate_host("127.0.0.1").is_ok());
        assert!(validate_host("::1").is_ok());
        for bad in ["", "mqtts://h", "h/mqtt", "h:8883", "u@h", "a b"] {
            assert!(validate_host(bad).is_err(), "{bad}");
        }
    }
}
