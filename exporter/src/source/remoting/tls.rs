//! TLS to name servers and brokers.
//!
//! RocketMQ's remoting server (Netty) takes TLS on the same port as plain TCP: `tls.server.mode`
//! `permissive` (the 5.x default) accepts both, telling them apart by the first byte, and
//! `enforcing` closes a connection whose first bytes are not a TLS handshake. So the client
//! either speaks TLS from its first byte or not at all; there is nothing to negotiate.
//!
//! rustls through tokio-rustls (already in the tree for the HTTP server), not OpenSSL: a static
//! binary with no system library. The certificate files are read again on every new connection,
//! so a rotated client certificate or CA is used from the next reconnect without a restart; they
//! are also read once when the config is built, so a wrong path fails at startup or reload.
//!
//! Verification choices, per cluster: the CA (`tls_ca_file`, else the Mozilla roots are not
//! bundled: a CA file is required unless verification is off), the name checked
//! (`tls_server_name`, else the host of the address the name server gave, usually an IP),
//! `tls_verify_hostname = false` (chain checked, name not: for brokers registered by IP with a
//! certificate that names only DNS names) and `tls_insecure_skip_verify` (nothing checked, like
//! RocketMQ's own clients with `tls.client.authServer=false`).

use std::path::PathBuf;
use std::sync::Arc;

use rmq_web::pem;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// One cluster's TLS settings (file keys `tls_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub verify_hostname: bool,
    pub insecure_skip_verify: bool,
}

impl TlsSettings {
    /// The rustls client config from the files as they are now. Errors name the setting and file.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(NoVerify(provider.clone()))
        } else {
            let ca = self.ca_file.as_ref().ok_or_else(|| {
                "tls_ca_file is required to verify the server (or set tls_insecure_skip_verify = true)"
                    .to_string()
            })?;
            let roots = pem::roots("tls_ca_file", ca)?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("tls_ca_file {}: {e}", ca.display()))?;
            if self.verify_hostname {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    pem::certs("tls_cert_file", cert)?,
                    pem::key("tls_key_file", key)?,
                )
                .map_err(|e| format!("tls_cert_file/tls_key_file: {e}"))?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("tls_cert_file is set without tls_key_file".into()),
            (None, Some(_)) => return Err("tls_key_file is set without tls_cert_file".into()),
        };
        Ok(Arc::new(config))
    }

    /// The name to verify and send as SNI for a connection to `addr` (`host:port`).
    pub fn server_name(&self, addr: &str) -> Result<ServerName<'static>, String> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => addr.rsplit_once(':').map_or(addr, |(h, _)| h),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| format!("server name {host:?}: {e}"))
    }
}

/// The CA-checked verifier with the name check left out.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the chain passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// No certificate check; the handshake signatures are still verified.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_override_or_the_address_host() {
        let s = TlsSettings::default();
        assert_eq!(
            format!("{:?}", s.server_name("127.0.0.1:10911").unwrap()),
            format!("{:?}", ServerName::try_from("127.0.0.1").unwrap())
        );
        assert_eq!(
            format!("{:?}", s.server_name("broker-0.rmq:10911").unwrap()),
            format!("{:?}", ServerName::try_from("broker-0.rmq").unwrap())
        );
        let s = TlsSettings {
            server_name: Some("rocketmq.internal".into()),
            ..Default::default()
        };
        assert_eq!(
            format!("{:?}", s.server_name("10.0.0.1:9876").unwrap()),
            format!("{:?}", ServerName::try_from("rocketmq.internal").unwrap())
        );
    }

    #[test]
    fn missing_files_and_half_pairs_are_named() {
        let s = TlsSettings {
            verify_hostname: true,
            ..Default::default()
        };
        assert!(s
            .client_config()
            .unwrap_err()
            .contains("tls_ca_file is required"));
        let s = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            verify_hostname: true,
            ..Default::default()
        };
        assert!(s
            .client_config()
            .unwrap_err()
            .starts_with("tls_ca_file /nonexistent/ca.pem"));
        let s = TlsSettings {
            insecure_skip_verify: true,
            cert_file: Some("/x.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            s.client_config().unwrap_err(),
            "tls_cert_file is set without tls_key_file"
        );
        let s = TlsSettings {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(s.client_config().is_ok());
    }
}
