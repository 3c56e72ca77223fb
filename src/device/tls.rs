//! The devices' rustls client configurations: the shared claim identity, built once, and each
//! device's own identity.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::protocol::ALPN_MQTT_CA;
use crate::tls::CachingServerVerifier;

/// TLS state built once and shared by every device.
#[derive(Clone)]
pub struct DeviceTls {
    verifier: Arc<CachingServerVerifier>,
    claim: Arc<rustls::ClientConfig>,
    alpn: bool,
}

impl DeviceTls {
    /// `ca_pem`: the endpoint's trust anchor; the claim identity as PEM; `alpn`: offer
    /// `x-amzn-mqtt-ca` (AWS port 443).
    pub fn new(
        ca_pem: &str,
        claim_cert_pem: &str,
        claim_key_pem: &str,
        alpn: bool,
    ) -> Result<DeviceTls, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| rustls::Error::General(format!("CA file: {e}")))?;
            roots.add(cert)?;
        }
        let verifier = CachingServerVerifier::new(Arc::new(roots))?;
        let claim = Arc::new(client_config(
            &verifier,
            claim_cert_pem,
            claim_key_pem,
            alpn,
        )?);
        Ok(DeviceTls {
            verifier,
            claim,
            alpn,
        })
    }

    /// A client configuration for a device's own identity. It holds no session cache: a device
    /// connects once with it, and the default cache preallocates room for 256 servers.
    pub fn for_identity(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut config = client_config(&self.verifier, cert_pem, key_pem, self.alpn)?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    pub fn claim(&self) -> Arc<rustls::ClientConfig> {
        self.claim.clone()
    }
}

fn client_config(
    verifier: &Arc<CachingServerVerifier>,
    cert_pem: &str,
    key_pem: &str,
    alpn: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rustls::Error::General(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| rustls::Error::General(format!("private key: {e}")))?;
    let provider = crate::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(chain, key)?;
    if alpn {
        config.alpn_protocols = vec![ALPN_MQTT_CA.to_vec()];
    }
    Ok(config)
}
