//! Why a TLS connect was refused.
//!
//! The Paho C library reports any TCP or TLS failure as "TCP/TLS connect failure". When a
//! connect over `mqtts` fails that way, the transport repeats the TLS handshake itself, with
//! OpenSSL, to the same host and port and with the same settings (trust store, client
//! certificate and key, cipher list, ALPN, TLS 1.2 or later, chain and host-name
//! verification on), and names the reason: the server certificate's verification error or
//! the alert the server sent ([`TlsRefusal`]). With TLS 1.3 the server judges the client's
//! certificate only after the client's handshake is done, so after a handshake that
//! succeeds the diagnosis sends `close_notify` and reads the server's answer: an alert
//! (`certificate required`, `bad certificate`, …) or its close.
//!
//! The diagnosis runs on the async runtime without blocking it (the OpenSSL context, which
//! reads the PEM files, is built on the blocking pool) and is bounded by the connect
//! timeout. It is skipped for WebSocket (`wss`) and proxied connections: the failure stays
//! [`ConnectFailure::Transport`]. When it finds nothing to name (the server cannot be
//! reached, or the handshake succeeds now), the failure stays as paho reported it.

use std::pin::Pin;

use connector_core::{ConnectFailure, ConnectParams, PemSource, Scheme, TlsOptions, TlsRefusal};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslMethod, SslMode, SslVerifyMode, SslVersion};
use openssl::x509::{X509VerifyResult, X509};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tracing::debug;

/// `failure` as paho reported it for `params`, or the TLS refusal behind it when a
/// diagnostic handshake can name one (see the module docs).
pub(super) async fn explain(params: &ConnectParams, failure: ConnectFailure) -> ConnectFailure {
    let Some(tls) = &params.tls else { return failure };
    let plain_tls = params.uri.scheme() == Scheme::Mqtts && params.http_proxy.is_none();
    if !plain_tls || !matches!(failure, ConnectFailure::Transport { .. }) {
        return failure;
    }
    let (host, port) = (params.uri.host(), params.uri.port());
    match tokio::time::timeout(params.connect_timeout, diagnose(host, port, tls.clone())).await {
        Ok(Some((reason, detail))) => {
            debug!(host, port, reason = reason.label(), detail = %detail, "TLS refusal diagnosed");
            ConnectFailure::Tls { reason, detail }
        }
        Ok(None) => failure,
        Err(_) => {
            debug!(host, port, "TLS diagnosis timed out");
            failure
        }
    }
}

/// The diagnostic handshake: `None` when there is no TLS refusal to name.
async fn diagnose(host: &str, port: u16, tls: TlsOptions) -> Option<(TlsRefusal, String)> {
    let sent_cert = tls.client_cert.is_some();
    let connector = match tokio::task::spawn_blocking(move || connector(&tls)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            debug!(error = %e, "TLS diagnosis: cannot set up OpenSSL with the connection's settings");
            return None;
        }
        Err(_) => return None,
    };
    let ssl = connector.configure().and_then(|c| c.into_ssl(host)).ok()?;
    let tcp = TcpStream::connect((host, port)).await.ok()?;
    let mut stream = SslStream::new(ssl, tcp).ok()?;
    match Pin::new(&mut stream).connect().await {
        Err(e) => classify(stream.ssl().verify_result(), e.ssl_error(), sent_cert),
        Ok(()) => {
            // The server's verdict on our certificate (TLS 1.3), or its close.
            let _ = stream.shutdown().await;
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(_) => continue,
                    Err(e) => {
                        let stack = e
                            .get_ref()
                            .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
                            .and_then(|s| s.ssl_error());
                        return classify(X509VerifyResult::OK, stack, sent_cert);
                    }
                }
            }
        }
    }
}

/// The OpenSSL client context for `tls`, as paho configures its own.
pub(super) fn connector(tls: &TlsOptions) -> Result<SslConnector, ErrorStack> {
    Ok(connector_builder(tls)?.build())
}

/// The builder of [`connector`]'s context, every fixed setting applied (for a hook to
/// adjust before it is built).
pub(super) fn connector_builder(tls: &TlsOptions) -> Result<SslConnectorBuilder, ErrorStack> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    // An idle connection (most of a fleet's, most of the time) gives its 2 × 17 KiB record
    // buffers back; they are taken again for the next record.
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_verify(SslVerifyMode::PEER);
    match &tls.ca {
        Some(PemSource::File(p)) => b.set_ca_file(p)?,
        Some(PemSource::Pem(pem)) => {
            for cert in X509::stack_from_pem(pem.expose().as_bytes())? {
                b.cert_store_mut().add_cert(cert)?;
            }
        }
        None => {}
    }
    match &tls.client_cert {
        Some(PemSource::File(p)) => b.set_certificate_chain_file(p)?,
        Some(PemSource::Pem(pem)) => {
            let mut certs = X509::stack_from_pem(pem.expose().as_bytes())?.into_iter();
            if let Some(leaf) = certs.next() {
                b.set_certificate(&leaf)?;
            }
            for extra in certs {
                b.add_extra_chain_cert(extra)?;
            }
        }
        None => {}
    }
    let key = match &tls.client_key {
        Some(PemSource::File(p)) => std::fs::read(p).ok(),
        Some(PemSource::Pem(pem)) => Some(pem.expose().as_bytes().to_vec()),
        None => None,
    };
    if let Some(key) = key {
        let key = match &tls.key_password {
            Some(pw) => PKey::private_key_from_pem_passphrase(&key, pw.expose().as_bytes())?,
            None => PKey::private_key_from_pem(&key)?,
        };
        b.set_private_key(&key)?;
    }
    if let Some(c) = &tls.ciphers {
        b.set_cipher_list(c)?;
    }
    if !tls.alpn.is_empty() {
        let mut wire = Vec::new();
        for p in tls.alpn.iter().filter(|p| !p.is_empty() && p.len() < 256) {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire)?;
    }
    Ok(b)
}

// X509_V_ERR_* codes of the server certificate's verification.
const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
const CERT_NOT_YET_VALID: i32 = 9;
const CERT_HAS_EXPIRED: i32 = 10;
const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
const HOSTNAME_MISMATCH: i32 = 62;
const IP_ADDRESS_MISMATCH: i32 = 64;

/// OpenSSL's `ERR_LIB_SSL`, and the offset of its reason codes for alerts received.
const LIB_SSL: i32 = 20;
const ALERT_REASON_OFFSET: i32 = 1000;

/// Names the refusal from the verification result and the error stack of a failed
/// handshake (or read). `sent_cert`: whether a client certificate was configured.
pub(super) fn classify(
    verify: X509VerifyResult,
    stack: Option<&ErrorStack>,
    sent_cert: bool,
) -> Option<(TlsRefusal, String)> {
    if verify != X509VerifyResult::OK {
        let reason = match verify.as_raw() {
            UNABLE_TO_GET_ISSUER_CERT
            | DEPTH_ZERO_SELF_SIGNED_CERT
            | SELF_SIGNED_CERT_IN_CHAIN
            | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | UNABLE_TO_VERIFY_LEAF_SIGNATURE => TlsRefusal::UnknownCa,
            CERT_NOT_YET_VALID => TlsRefusal::CertificateNotYetValid,
            CERT_HAS_EXPIRED => TlsRefusal::CertificateExpired,
            HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => TlsRefusal::HostnameMismatch,
            _ => TlsRefusal::BadServerCertificate,
        };
        return Some((reason, format!("certificate verify failed: {}", verify.error_string())));
    }
    let stack = stack?;
    for e in stack.errors() {
        if e.library_code() != LIB_SSL {
            continue;
        }
        let text = e.reason().unwrap_or("unknown reason").to_owned();
        let code = e.reason_code();
        if (ALERT_REASON_OFFSET..ALERT_REASON_OFFSET + 256).contains(&code) {
            return Some((alert(code - ALERT_REASON_OFFSET, sent_cert), text));
        }
        let lower = text.to_ascii_lowercase();
        if ["wrong version number", "unsupported protocol", "no protocols available"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Some((TlsRefusal::ProtocolVersion, text));
        }
        if lower.contains("certificate verify failed") {
            return Some((TlsRefusal::BadServerCertificate, text));
        }
    }
    None
}

/// The refusal an alert from the server (RFC 8446 §6) stands for.
fn alert(description: i32, sent_cert: bool) -> TlsRefusal {
    const HANDSHAKE_FAILURE: i32 = 40;
    const CERTIFICATE_ALERTS: std::ops::RangeInclusive<i32> = 42..=46; // bad … unknown
    const UNKNOWN_CA: i32 = 48;
    const ACCESS_DENIED: i32 = 49;
    const PROTOCOL_VERSION: i32 = 70;
    const CERTIFICATE_REQUIRED: i32 = 116;
    match description {
        CERTIFICATE_REQUIRED => TlsRefusal::ClientCertificateRequired,
        PROTOCOL_VERSION => TlsRefusal::ProtocolVersion,
        d if sent_cert && (CERTIFICATE_ALERTS.contains(&d) || d == UNKNOWN_CA || d == ACCESS_DENIED) => {
            TlsRefusal::ClientCertificateRejected
        }
        // Also what a TLS 1.2 server answers a missing client certificate with, but just
        // as well no cipher in common: not named more precisely.
        HANDSHAKE_FAILURE => TlsRefusal::HandshakeFailure,
        _ => TlsRefusal::HandshakeFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_name_the_refusal() {
        assert_eq!(alert(116, false), TlsRefusal::ClientCertificateRequired);
        assert_eq!(alert(40, false), TlsRefusal::HandshakeFailure);
        assert_eq!(alert(40, true), TlsRefusal::HandshakeFailure);
        assert_eq!(alert(42, true), TlsRefusal::ClientCertificateRejected);
        assert_eq!(alert(48, true), TlsRefusal::ClientCertificateRejected);
        assert_eq!(alert(48, false), TlsRefusal::HandshakeFailure);
        assert_eq!(alert(70, false), TlsRefusal::ProtocolVersion);
        assert_eq!(alert(80, true), TlsRefusal::HandshakeFailure);
    }
}
