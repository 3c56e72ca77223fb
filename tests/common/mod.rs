//! Shared test setup: the real mock on an ephemeral loopback port, small MQTT helpers, and
//! the Debian packages some tests need (`install`).
#![allow(dead_code)]

pub mod install;

use std::sync::Arc;
use std::time::Duration;

use fleetstorm::device::{DeviceTls, Endpoint};
use fleetstorm::mock::{self, MockConfig, MockHandle, MockSettings};
use fleetstorm::pki::{KeyAlgorithm, Pki};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio_util::sync::CancellationToken;

pub struct TestMock {
    pub handle: MockHandle,
    pub tls: DeviceTls,
    pub endpoint: Endpoint,
    pub dir: tempfile::TempDir,
}

/// Start the mock in process on 127.0.0.1:0 with P-256 keys (fast) unless `tweak` says otherwise.
pub async fn start_mock(tweak: impl FnOnce(&mut MockSettings)) -> TestMock {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = Pki::init(&dir.path().join("pki"), &[], KeyAlgorithm::P256).unwrap();
    let mut settings = MockSettings {
        keys: KeyAlgorithm::P256,
        ..MockSettings::default()
    };
    tweak(&mut settings);
    let config = MockConfig::new(Arc::new(pki), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = mock::start(config, listener, CancellationToken::new())
        .await
        .unwrap();
    let tls = DeviceTls::new(
        &handle.pki.root_ca_pem,
        &handle.pki.claim_cert_pem,
        &handle.pki.claim_key_pem,
        false,
    )
    .unwrap();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: handle.addr.port(),
    };
    TestMock {
        handle,
        tls,
        endpoint,
        dir,
    }
}

/// A raw MQTT client on the claim identity (or any client config).
pub struct Client {
    pub client: AsyncClient,
    pub events: EventLoop,
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(m: &TestMock, client_id: &str, tls: Arc<rustls::ClientConfig>) -> Client {
        let mut c = Client::new(m, client_id, tls);
        match c.next().await {
            Ok(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    pub fn new(m: &TestMock, client_id: &str, tls: Arc<rustls::ClientConfig>) -> Client {
        let mut options = MqttOptions::new(client_id, m.endpoint.host.clone(), m.endpoint.port);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(300 * 1024, 300 * 1024);
        let (client, mut events) = AsyncClient::new(options, 16);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        Client { client, events }
    }

    /// The next incoming packet (outgoing events skipped), or the connection error.
    pub async fn next(&mut self) -> Result<Packet, rumqttc::ConnectionError> {
        loop {
            match tokio::time::timeout(WAIT, self.events.poll()).await {
                Err(_) => panic!("no event within {WAIT:?}"),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Event::Incoming(p))) => return Ok(p),
                Ok(Ok(Event::Outgoing(_))) => continue,
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client.try_subscribe(filter, QoS::AtLeastOnce).unwrap();
        loop {
            match self.next().await {
                Ok(Packet::SubAck(_)) => return,
                Ok(_) => continue,
                Err(e) => panic!("subscribe {filter}: {e}"),
            }
        }
    }

    pub fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.into())
            .unwrap();
    }

    /// The next PUBLISH received (topic, payload).
    pub async fn next_publish(&mut self) -> (String, Vec<u8>) {
        loop {
            match self.next().await {
                Ok(Packet::Publish(p)) => return (p.topic, p.payload.to_vec()),
                Ok(_) => continue,
                Err(e) => panic!("waiting for a publish: {e}"),
            }
        }
    }

    /// Run until the server closes the connection; returns the error seen.
    pub async fn closed(&mut self) -> rumqttc::ConnectionError {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }
}

/// A virtualenv `target/NAME` with `requirements` (a path under the crate) installed, created
/// when missing or when `python -c check` fails in it; returns its `bin` directory. Tests that
/// use it never skip: without Python or PyPI they fail and say why.
pub fn python_venv(name: &str, requirements: &str, check: &str) -> std::path::PathBuf {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join(name);
    let python = venv.join("bin").join("python");
    let requirements = root.join(requirements);
    // One creator at a time across test threads and test binaries (flock on a file beside it):
    // a half-built venv is never used, and two pips never install into the same one.
    let lock_path = root.join("target").join(format!("{name}.lock"));
    let _lock = std::fs::File::create(&lock_path)
        .and_then(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(f)
        })
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", check])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is required (python3 -m venv)");
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements)
            .status()
            .expect("pip");
        assert!(
            status.success(),
            "pip install -r {} failed",
            requirements.display()
        );
    }
    venv.join("bin")
}

/// A device of the seed's fleet: template parameters as the seed's Docker image sends them.
pub fn seed_device(name: &str, template: &str) -> fleetstorm::device::DeviceSpec {
    fleetstorm::device::DeviceSpec {
        client_id: format!("client-{name}"),
        template: template.into(),
        parameters: std::collections::BTreeMap::from([
            ("DeviceName".to_string(), name.to_string()),
            ("SerialNumber".to_string(), "123456".to_string()),
            ("DeviceLocation".to_string(), "Berlin".to_string()),
        ]),
        mode: fleetstorm::device::CertificateMode::Keys,
        csr_key: KeyAlgorithm::P256,
        protocol: fleetstorm::device::Protocol::Mqtt311,
        profile: std::sync::Arc::new(fleetstorm::device::Profile::generic()),
        after: Default::default(),
        classify: Default::default(),
    }
}

/// A command's stdout then stderr, as text (for messages and `contains` checks).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `fleetstorm mock` process (the standalone mock, as a user starts it), killed on drop
/// (SIGKILL: nothing is written at stop).
pub struct MockProcess {
    pub child: std::process::Child,
    /// Kept open so the mock's later stdout lines never meet a closed pipe.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Its first line: "fleetstorm mock listening on ADDR control http://ADDR (ca ..., claim ...)".
    pub ready: String,
    /// The MQTT listener's address.
    pub addr: std::net::SocketAddr,
}

impl MockProcess {
    /// Start `fleetstorm ARGS` (ARGS holds `mock` and its flags; give `--listen 127.0.0.1:0` for
    /// an ephemeral loopback port) and wait for its ready line; stderr goes to `stderr`.
    pub fn start<I, S>(args: I, stderr: std::process::Stdio) -> MockProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn fleetstorm mock");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        let addr = ready
            .strip_prefix("fleetstorm mock listening on ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no address in the mock's ready line {ready:?}");
        };
        MockProcess {
            child,
            _stdout: stdout,
            ready,
            addr,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET of `path` from `host` (HOST:PORT) with no signature, as `curl` sends
/// it: the whole response, status line first.
pub fn unsigned_get(host: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}
