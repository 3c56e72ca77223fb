//! Where a run's devices connect: the embedded mock it starts, or an external endpoint.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{RunError, RunOptions};
use crate::device::{CertificateMode, DeviceTls, Endpoint};
use crate::mock::{self, MockConfig};
use crate::mock_settings::MockSettings;
use crate::pki::{self, KeyAlgorithm, Pki};
use crate::scenario::{Plan, Target};

/// The endpoint, the claim TLS, the embedded mock (if any) and what to keep alive for the run.
pub(super) struct Prepared {
    pub endpoint: Endpoint,
    pub tls: DeviceTls,
    pub mock: Option<mock::MockHandle>,
    /// How the results name the endpoint.
    pub label: String,
    /// A temporary PKI, removed when the run ends.
    _pki_dir: Option<tempfile::TempDir>,
}

pub(super) async fn prepare(
    scenario: &Plan,
    options: &RunOptions,
    shutdown: &CancellationToken,
) -> Result<Prepared, RunError> {
    match &scenario.target {
        Target::Mock {
            mock: settings,
            pki: pki_dir,
            ..
        } if options.endpoint.is_none() => {
            embedded_mock(scenario, settings, pki_dir.as_ref(), shutdown).await
        }
        Target::Mock { pki: pki_dir, .. } => {
            // --endpoint with a mock target: a separately started `fleetstorm mock` with this PKI.
            let dir = pki_dir.clone().unwrap_or_else(|| PathBuf::from("pki"));
            let pki = Pki::load(&dir)?;
            let (host, port) = options.endpoint.clone().unwrap_or_default();
            let tls = DeviceTls::new(
                &pki.root_ca_pem,
                &pki.claim_cert_pem,
                &pki.claim_key_pem,
                false,
            )?;
            Ok(external(host, port.unwrap_or(8883), tls))
        }
        Target::Endpoint {
            host,
            port,
            alpn,
            ca,
            claim_cert,
            claim_key,
            ..
        } => {
            let (host, port) = match &options.endpoint {
                Some((h, p)) => (h.clone(), p.unwrap_or(*port)),
                None => (host.clone(), *port),
            };
            let ca_pem = pki::read_pem_file(ca)?;
            let cert_pem = pki::read_pem_file(claim_cert)?;
            let key_pem = pki::read_pem_file(claim_key)?;
            pki::certs(ca, &ca_pem)?;
            let claim = pki::certs(claim_cert, &cert_pem)?;
            let key = pki::parse_key(claim_key, &key_pem)?;
            pki::check_key_pair(claim_cert, &claim[0], claim_key, &key)?;
            let alpn = alpn.unwrap_or(port == 443);
            let tls = DeviceTls::new(&ca_pem, &cert_pem, &key_pem, alpn)?;
            Ok(external(host, port, tls))
        }
    }
}

pub(super) fn external(host: String, port: u16, tls: DeviceTls) -> Prepared {
    Prepared {
        label: format!("{host}:{port}"),
        endpoint: Endpoint { host, port },
        tls,
        mock: None,
        _pki_dir: None,
    }
}

/// Start the mock in this process on an ephemeral loopback port.
async fn embedded_mock(
    scenario: &Plan,
    settings: &MockSettings,
    pki_dir: Option<&PathBuf>,
    shutdown: &CancellationToken,
) -> Result<Prepared, RunError> {
    // Without a configured directory: a fresh PKI per run, removed when the run ends.
    let (dir, temp) = match pki_dir {
        // A configured directory that is not there is a wrong path far more often than a wish
        // for a new PKI: a new one would hold none of the certificates the user meant to use.
        Some(d) if !d.is_dir() => return Err(pki::PkiError::NoDirectory(d.clone()).into()),
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("fleetstorm-pki-")
                .tempdir()
                .map_err(|e| {
                    RunError::Other(format!("cannot create a temporary PKI directory: {e}"))
                })?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let (pki, _) = Pki::init(&dir, &[], KeyAlgorithm::P256)?;
    let mut mock_settings = settings.clone();
    if scenario.devices.certificate == CertificateMode::Csr {
        // No device of this run calls CreateKeysAndCertificate: a pool's RSA generators
        // would only burn the idle CPU (cached keys are still loaded and written back).
        mock_settings.key_pool_size = 0;
    }
    let mut config = MockConfig::new(Arc::new(pki), mock_settings)?;
    // A throw-away PKI has no later run to remember the registry for.
    config.persist_registry = temp.is_none();
    let listener = mock::listen((std::net::Ipv4Addr::LOCALHOST, 0).into())
        .map_err(|e| RunError::Other(format!("cannot bind the embedded mock: {e}")))?;
    let handle = mock::start(config, listener, shutdown.clone()).await?;
    let tls = DeviceTls::new(
        &handle.pki.root_ca_pem,
        &handle.pki.claim_cert_pem,
        &handle.pki.claim_key_pem,
        false,
    )?;
    Ok(Prepared {
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: handle.addr.port(),
        },
        tls,
        label: format!(
            "embedded mock {} (keys {})",
            handle.addr,
            settings.keys.as_str()
        ),
        mock: Some(handle),
        _pki_dir: temp,
    })
}
