//! The rustls crypto provider shared by devices and the mock.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};

/// aws-lc-rs with what AWS IoT Core negotiates and nothing heavier: X25519 / P-256 key exchange
/// (no post-quantum hybrid, whose ML-KEM work would double handshake CPU for nothing AWS IoT
/// offers) and AES-128-GCM-SHA256 first (SHA-384 runs without hardware help on many CPUs).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: vec![
                    cipher_suite::TLS13_AES_128_GCM_SHA256,
                    cipher_suite::TLS13_AES_256_GCM_SHA384,
                    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                ],
                kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
                ..aws_lc_rs::default_provider()
            })
        })
        .clone()
}

/// Chain validations already passed, keyed by a digest of the exact certificate bytes (and the
/// server name on the client side).
///
/// Thousands of virtual devices in one process present the same claim certificate to the mock and
/// see the same server chain from it; validating each distinct chain once (until its earliest
/// `notAfter`, and at most [`VERIFIED_TTL_S`]) saves three of the nine ECDSA verifications of a
/// CSR flow. Only the chain walk is cached: every handshake still checks the peer's
/// CertificateVerify signature, so a peer must hold the private key each time. Failures are never
/// cached. Entries seen only once (each device's own certificate) are evicted first.
#[derive(Debug, Default)]
struct VerifiedChains {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], Verified>>,
    /// Full chain validations run (cache misses that reached webpki).
    validations: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Verified {
    /// Unix seconds after which the chain is validated again.
    until: u64,
    hits: u64,
}

/// Longest time a validated chain is trusted without a new validation.
pub const VERIFIED_TTL_S: u64 = 300;
/// Most chains remembered; when full, chains that were never reused are dropped.
const VERIFIED_CAPACITY: usize = 1024;

impl VerifiedChains {
    fn key(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    /// Whether `key` was validated and is still within its time; a miss counts a validation.
    fn lookup(&self, key: &[u8; 32], now: rustls::pki_types::UnixTime) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = match entries.get_mut(key) {
            Some(v) if now.as_secs() < v.until => {
                v.hits += 1;
                true
            }
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        };
        if !hit {
            self.validations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        hit
    }

    fn remember(
        &self,
        key: [u8; 32],
        end_entity: &[u8],
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) {
        let mut until = now.as_secs().saturating_add(VERIFIED_TTL_S);
        for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            match x509_parser::parse_x509_certificate(der) {
                Ok((_, cert)) => {
                    let not_after = cert.validity().not_after.timestamp();
                    until = until.min(u64::try_from(not_after).unwrap_or(0));
                }
                // webpki accepted what x509-parser cannot read: do not cache it.
                Err(_) => return,
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_CAPACITY {
            let secs = now.as_secs();
            entries.retain(|_, v| v.hits > 0 && secs < v.until);
            if entries.len() >= VERIFIED_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, Verified { until, hits: 0 });
    }

    /// `Ok(cached)` if the chain named by `key_parts` is remembered, else the result of
    /// `validate`, remembering the chain when it passes.
    fn check<T>(
        &self,
        key_parts: &[&[u8]],
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
        cached: T,
        validate: impl FnOnce() -> Result<T, rustls::Error>,
    ) -> Result<T, rustls::Error> {
        let mut parts = key_parts.to_vec();
        parts.push(end_entity.as_ref());
        parts.extend(intermediates.iter().map(|c| c.as_ref()));
        let key = Self::key(&parts);
        if self.lookup(&key, now) {
            return Ok(cached);
        }
        let verified = validate()?;
        self.remember(key, end_entity, intermediates, now);
        Ok(verified)
    }

    fn validations(&self) -> u64 {
        self.validations.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The signature checks of a verifier, handed to its webpki `inner` unchanged: the cache covers
/// only the chain walk.
macro_rules! delegate_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The device side: webpki server verification with [`VerifiedChains`] in front of it.
#[derive(Debug)]
pub struct CachingServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    chains: VerifiedChains,
}

impl CachingServerVerifier {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> Result<Arc<Self>, rustls::Error> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(CachingServerVerifier {
            inner,
            chains: VerifiedChains::default(),
        }))
    }

    /// Full chain validations run so far (the rest were answered from the cache).
    pub fn validations(&self) -> u64 {
        self.chains.validations()
    }
}

impl rustls::client::danger::ServerCertVerifier for CachingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let name = server_name.to_str();
        self.chains.check(
            &[name.as_bytes(), ocsp_response],
            end_entity,
            intermediates,
            now,
            rustls::client::danger::ServerCertVerified::assertion(),
            || {
                self.inner.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )
            },
        )
    }

    delegate_signatures!();
}

/// The mock side: webpki client verification with [`VerifiedChains`] in front of it.
#[derive(Debug)]
pub struct CachingClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    chains: VerifiedChains,
}

impl CachingClientVerifier {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> Result<Arc<Self>, rustls::Error> {
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(CachingClientVerifier {
            inner,
            chains: VerifiedChains::default(),
        }))
    }

    /// Full chain validations run so far (the rest were answered from the cache).
    pub fn validations(&self) -> u64 {
        self.chains.validations()
    }
}

impl rustls::server::danger::ClientCertVerifier for CachingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.chains.check(
            &[],
            end_entity,
            intermediates,
            now,
            rustls::server::danger::ClientCertVerified::assertion(),
            || {
                self.inner
                    .verify_client_cert(end_entity, intermediates, now)
            },
        )
    }

    delegate_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, Pki};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::danger::ClientCertVerifier;
    use std::time::Duration;

    fn pki() -> (tempfile::TempDir, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        (dir, pki)
    }

    fn roots(pki: &Pki) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.root_ca_der.clone()).unwrap();
        Arc::new(roots)
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn a_client_chain_is_validated_once_then_again_after_its_time() {
        let (_d, pki) = pki();
        let v = CachingClientVerifier::new(roots(&pki)).unwrap();
        let now = UnixTime::now().as_secs();
        for _ in 0..5 {
            v.verify_client_cert(&pki.claim_cert_der, &[], at(now))
                .unwrap();
        }
        assert_eq!(v.validations(), 1);
        v.verify_client_cert(&pki.claim_cert_der, &[], at(now + VERIFIED_TTL_S))
            .unwrap();
        assert_eq!(v.validations(), 2, "the entry expires after the TTL");
    }

    #[test]
    fn an_expired_certificate_fails_even_when_it_was_cached() {
        let (_d, pki) = pki();
        let v = CachingClientVerifier::new(roots(&pki)).unwrap();
        let now = UnixTime::now().as_secs();
        v.verify_client_cert(&pki.claim_cert_der, &[], at(now))
            .unwrap();
        // The claim certificate's notAfter is 2049-12-31.
        let after_expiry = at(2_524_608_000 + 86_400);
        assert!(
            v.verify_client_cert(&pki.claim_cert_der, &[], after_expiry)
                .is_err()
        );
    }

    #[test]
    fn an_untrusted_chain_fails_every_time() {
        let (_d, pki) = pki();
        let (_d2, other) = self::pki();
        let v = CachingClientVerifier::new(roots(&pki)).unwrap();
        let now = UnixTime::now();
        for _ in 0..3 {
            assert!(
                v.verify_client_cert(&other.claim_cert_der, &[], now)
                    .is_err()
            );
        }
        assert_eq!(v.validations(), 3, "failures are not cached");
    }

    #[test]
    fn the_server_chain_is_cached_per_name() {
        let (_d, pki) = pki();
        let v = CachingServerVerifier::new(roots(&pki)).unwrap();
        let (end, rest) = pki.server_chain.split_first().unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        for _ in 0..3 {
            v.verify_server_cert(end, rest, &name, &[], now).unwrap();
        }
        assert_eq!(v.validations(), 1);
        let wrong = ServerName::try_from("example.invalid").unwrap();
        assert!(v.verify_server_cert(end, rest, &wrong, &[], now).is_err());
        assert!(v.verify_server_cert(end, rest, &wrong, &[], now).is_err());
        assert_eq!(v.validations(), 3, "another name is another chain");
    }

    #[test]
    fn one_shot_chains_are_evicted_before_reused_ones() {
        let chains = VerifiedChains::default();
        let (_d, pki) = pki();
        let now = UnixTime::now();
        let reused = VerifiedChains::key(&[b"reused"]);
        chains.remember(reused, &pki.claim_cert_der, &[], now);
        assert!(chains.lookup(&reused, now));
        for i in 0..VERIFIED_CAPACITY as u32 + 10 {
            let key = VerifiedChains::key(&[&i.to_be_bytes()]);
            chains.remember(key, &pki.claim_cert_der, &[], now);
        }
        assert!(chains.entries.lock().unwrap().len() <= VERIFIED_CAPACITY);
        assert!(
            chains.lookup(&reused, now),
            "the reused chain survives eviction"
        );
    }
}
