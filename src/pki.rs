//! The mock's public-key infrastructure: a root CA, the server identity, the claim identity, and
//! the issuing of device certificates. Everything lives as PEM files in one directory so that a
//! restarted mock (and any client) can reuse it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// File names inside a PKI directory: part of the public interface.
pub const ROOT_CA_PEM: &str = "root-ca.pem";
pub const ROOT_CA_KEY: &str = "root-ca.key";
pub const SERVER_PEM: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLAIM_PEM: &str = "claim.pem";
pub const CLAIM_KEY: &str = "claim.key";

/// The subject AWS is observed to give certificates it issues (UNCONFIRMED in docs, see
/// `spec/aws-fleet-provisioning.md` §1.2).
pub const DEVICE_CERT_SUBJECT: &str = "AWS IoT Certificate";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error(
        "{path}: incomplete PKI directory: {missing} is missing (delete the directory or restore the file)"
    )]
    Incomplete {
        path: PathBuf,
        missing: &'static str,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "{key} is not the private key of {cert} (KeyMismatch: the public keys differ); use the key the certificate was issued for"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "target.pki: {0}: no such directory (a relative path is resolved against the scenario file's directory); create it with `fleetstorm pki init {0}` or fix the path"
    )]
    NoDirectory(PathBuf),
}

/// Key algorithm for identities the PKI creates.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    #[default]
    P256,
    Rsa2048,
}

impl KeyAlgorithm {
    pub fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyAlgorithm::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::Rsa2048 => "rsa2048",
        }
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "ecdsa" | "ec" => Ok(KeyAlgorithm::P256),
            "rsa2048" | "rsa" => Ok(KeyAlgorithm::Rsa2048),
            other => Err(format!(
                "unknown key type {other:?} (expected p256 or rsa2048)"
            )),
        }
    }
}

/// A loaded PKI directory.
pub struct Pki {
    pub dir: PathBuf,
    pub root_ca_pem: String,
    pub root_ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    pub server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    pub claim_cert_pem: String,
    pub claim_key_pem: String,
    pub claim_cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Create the PKI in `dir`, or load it unchanged when `dir` already holds one.
    /// Returns the PKI and whether it was newly created.
    pub fn init(
        dir: &Path,
        hostnames: &[String],
        alg: KeyAlgorithm,
    ) -> Result<(Pki, bool), PkiError> {
        if dir.join(ROOT_CA_PEM).exists() {
            return Ok((Pki::load(dir)?, false));
        }
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let now = OffsetDateTime::now_utc();

        let ca_key = alg.generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("fleetstorm mock root CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = now - Duration::days(1);
        ca_params.not_after = now + Duration::days(3650);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(hostnames.iter().cloned());
        let server_key = alg.generate()?;
        let mut server_params = CertificateParams::new(names)?;
        server_params.distinguished_name = dn("fleetstorm mock endpoint");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.not_before = now - Duration::days(1);
        server_params.not_after = now + Duration::days(3650);
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let claim_key = alg.generate()?;
        let claim_cert =
            device_params("fleetstorm claim certificate", now).signed_by(&claim_key, &issuer)?;

        write_file(&dir.join(ROOT_CA_PEM), ca_cert.pem().as_bytes(), false)?;
        write_file(
            &dir.join(ROOT_CA_KEY),
            issuer.key().serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join(SERVER_PEM), server_cert.pem().as_bytes(), false)?;
        write_file(
            &dir.join(SERVER_KEY),
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join(CLAIM_PEM), claim_cert.pem().as_bytes(), false)?;
        write_file(
            &dir.join(CLAIM_KEY),
            claim_key.serialize_pem().as_bytes(),
            true,
        )?;
        Ok((Pki::load(dir)?, true))
    }

    /// Load an existing PKI directory.
    pub fn load(dir: &Path) -> Result<Pki, PkiError> {
        let read = |name: &'static str| -> Result<String, PkiError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PkiError::Incomplete {
                    path: dir.to_path_buf(),
                    missing: name,
                }),
                Err(source) => Err(PkiError::Io { path, source }),
            }
        };
        let root_ca_pem = read(ROOT_CA_PEM)?;
        let ca_key_pem = read(ROOT_CA_KEY)?;
        let server_pem = read(SERVER_PEM)?;
        let server_key_pem = read(SERVER_KEY)?;
        let claim_cert_pem = read(CLAIM_PEM)?;
        let claim_key_pem = read(CLAIM_KEY)?;

        let root_ca_der = first_cert(&dir.join(ROOT_CA_PEM), &root_ca_pem)?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::BadFile {
            path: dir.join(ROOT_CA_KEY),
            message: format!("not a usable private key: {e}"),
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&root_ca_der, ca_key).map_err(|e| PkiError::BadFile {
                path: dir.join(ROOT_CA_PEM),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        let server_chain = certs(&dir.join(SERVER_PEM), &server_pem)?;
        let server_key = parse_key(&dir.join(SERVER_KEY), &server_key_pem)?;
        check_key_pair(
            &dir.join(SERVER_PEM),
            &server_chain[0],
            &dir.join(SERVER_KEY),
            &server_key,
        )?;
        let claim_cert_der = first_cert(&dir.join(CLAIM_PEM), &claim_cert_pem)?;
        let claim_key = parse_key(&dir.join(CLAIM_KEY), &claim_key_pem)?;
        // The mock never signs with the claim key, but every device does: refuse it here, not
        // at each device's handshake.
        check_key_pair(
            &dir.join(CLAIM_PEM),
            &claim_cert_der,
            &dir.join(CLAIM_KEY),
            &claim_key,
        )?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            root_ca_pem,
            root_ca_der,
            issuer,
            server_chain,
            server_key,
            claim_cert_pem,
            claim_key_pem,
            claim_cert_der,
        })
    }

    pub fn root_ca_path(&self) -> PathBuf {
        self.dir.join(ROOT_CA_PEM)
    }
    pub fn claim_cert_path(&self) -> PathBuf {
        self.dir.join(CLAIM_PEM)
    }
    pub fn claim_key_path(&self) -> PathBuf {
        self.dir.join(CLAIM_KEY)
    }

    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        self.server_key.clone_key()
    }

    /// Issue a device certificate for `public_key`, signed by the root CA.
    pub fn issue_device_certificate(
        &self,
        public_key: &impl PublicKeyData,
    ) -> Result<IssuedCertificate, rcgen::Error> {
        let cert = device_params(DEVICE_CERT_SUBJECT, OffsetDateTime::now_utc())
            .signed_by(public_key, &self.issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            certificate_id: certificate_id(&der),
            pem: cert.pem(),
            der,
        })
    }

    /// Parse and verify a PEM CSR, then issue a certificate for its public key.
    pub fn issue_from_csr(&self, csr_pem: &str) -> Result<IssuedCertificate, CsrError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CsrError)?;
        self.issue_device_certificate(&csr.public_key)
            .map_err(CsrError)
    }
}

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid certificate signing request: {0}")]
pub struct CsrError(rcgen::Error);

/// A certificate the mock issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// 64 hex characters: SHA-256 of the DER certificate, as AWS is observed to compute it.
    pub certificate_id: String,
    pub pem: String,
    pub der: Vec<u8>,
}

/// AWS certificate ID of a DER certificate: lowercase hex SHA-256.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM for an RSA key pair, as CreateKeysAndCertificate returns;
/// other keys are returned as PKCS#8.
pub fn private_key_pem_like_aws(key: &KeyPair) -> String {
    if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        let der = key.serialize_der();
        if let Ok(info) = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()) {
            let block = pem::Pem::new("RSA PRIVATE KEY", info.private_key.as_bytes().to_vec());
            return pem::encode_config(
                &block,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
        }
    }
    key.serialize_pem()
}

/// Generate a fresh key and a CSR for it (what a device does in `csr` mode).
pub fn generate_csr(
    alg: KeyAlgorithm,
    common_name: &str,
) -> Result<(KeyPair, String), rcgen::Error> {
    let key = alg.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.pem()?))
}

fn device_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.not_before = now - Duration::days(1);
    // AWS-issued device certificates are valid until the end of 2049.
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    params.use_authority_key_identifier_extension = true;
    params
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// All certificates in a PEM text.
pub fn certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadFile {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadFile {
            path: path.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn first_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    Ok(certs(path, pem)?.swap_remove(0))
}

/// The first private key in a PEM text (PKCS#1, PKCS#8 or SEC1).
pub fn parse_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::BadFile {
        path: path.to_path_buf(),
        message: format!("no usable private key found: {e}"),
    })
}

/// Check that `key` (read from `key_path`) is the private key of `cert` (from `cert_path`): the
/// check rustls makes when the identity is first used, here with both files named. A key type
/// rustls cannot load is reported as such; a key whose public half rustls cannot tell passes.
pub fn check_key_pair(
    cert_path: &Path,
    cert: &CertificateDer<'static>,
    key_path: &Path,
    key: &PrivateKeyDer<'static>,
) -> Result<(), PkiError> {
    match rustls::sign::CertifiedKey::from_der(
        vec![cert.clone()],
        key.clone_key(),
        &crate::tls::provider(),
    ) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PkiError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        Err(e) => Err(PkiError::BadFile {
            path: key_path.to_path_buf(),
            message: format!("not usable with {}: {e}", cert_path.display()),
        }),
    }
}

/// Read a PEM file from disk, naming the file in errors.
pub fn read_pem_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Write a file; secrets get mode 0600 from creation on.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_files_with_private_keys_0600_and_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let (pki, created) =
            Pki::init(&pki_dir, &["iot.example.test".into()], KeyAlgorithm::P256).unwrap();
        assert!(created);
        for name in [
            ROOT_CA_PEM,
            ROOT_CA_KEY,
            SERVER_PEM,
            SERVER_KEY,
            CLAIM_PEM,
            CLAIM_KEY,
        ] {
            assert!(pki_dir.join(name).exists(), "{name} missing");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in [ROOT_CA_KEY, SERVER_KEY, CLAIM_KEY] {
                let mode = fs::metadata(pki_dir.join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
        let (again, created) = Pki::init(&pki_dir, &[], KeyAlgorithm::P256).unwrap();
        assert!(!created);
        assert_eq!(again.claim_cert_pem, pki.claim_cert_pem);

        let (_, server) =
            x509_parser::parse_x509_certificate(pki.server_chain[0].as_ref()).unwrap();
        let san = server.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert!(
            names.iter().any(|n| n.contains("iot.example.test")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
    }

    #[test]
    fn issued_certificate_id_is_sha256_of_der_and_key_is_pkcs1() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        let key = KeyAlgorithm::Rsa2048.generate().unwrap();
        let issued = pki.issue_device_certificate(&key).unwrap();
        assert_eq!(issued.certificate_id.len(), 64);
        assert_eq!(issued.certificate_id, certificate_id(&issued.der));
        let pem = private_key_pem_like_aws(&key);
        assert!(
            pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{pem}"
        );
        // The PKCS#1 key must be loadable by rustls-based clients.
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
            PrivateKeyDer::Pkcs1(_)
        ));
    }

    #[test]
    fn csr_is_verified_before_issuing() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        let (_, csr) = generate_csr(KeyAlgorithm::P256, "device-1").unwrap();
        assert_eq!(pki.issue_from_csr(&csr).unwrap().certificate_id.len(), 64);
        assert!(pki.issue_from_csr("not a csr").is_err());
        // Flip one byte inside the base64 body: parse or signature check must fail.
        let mut tampered = csr.into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert!(
            pki.issue_from_csr(&String::from_utf8(tampered).unwrap())
                .is_err()
        );
    }

    #[test]
    fn a_claim_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        let other = KeyAlgorithm::P256.generate().unwrap();
        fs::write(dir.path().join(CLAIM_KEY), other.serialize_pem()).unwrap();
        let err = Pki::load(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");
        let text = err.to_string();
        for name in [CLAIM_PEM, CLAIM_KEY] {
            let path = dir.path().join(name).display().to_string();
            assert!(text.contains(&path), "{text}");
        }
    }

    #[test]
    fn load_reports_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        fs::remove_file(dir.path().join(CLAIM_KEY)).unwrap();
        let err = Pki::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("claim.key"), "{err}");
    }
}
