//! A static HTTPS file server for image-server tests: serves a directory over TLS with a
//! test CA made by rcgen, answers `Range` requests, and injects faults (a connection cut
//! after N bytes of a file, N times; wrong bytes; the server going away for good).
//!
//! Its socket is bound inside a network namespace the test gives (a TestDaemon's), on that
//! namespace's loopback and nowhere else; the socket keeps its namespace, so it is served
//! from threads of the test process.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
#[derive(Debug)]
pub struct TestPki {
    /// The CA's certificate, PEM (what SSL_CERT_FILE points at).
    pub ca_pem: String,
    /// The server's certificate, PEM.
    pub server_pem: String,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A new CA and server certificate.
    pub fn new(ca_name: &str) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "silo test image server");
        let key = KeyPair::generate().expect("leaf key");
        let cert = leaf.signed_by(&key, &ca).expect("leaf cert");
        TestPki {
            ca_pem: ca.pem(),
            server_pem: cert.pem(),
            server_der: cert.der().clone(),
            server_key: key.serialize_der(),
        }
    }
}

/// A fixed answer: status line, headers and body.
type Answer = (&'static str, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Default)]
struct Faults {
    /// path → (cut after this many bytes of the answer, how many more times).
    cuts: HashMap<String, (u64, u32)>,
    /// Paths served with their bytes flipped.
    corrupt: Vec<String>,
    /// path → cut after this many bytes and then go away for good.
    vanish: HashMap<String, u64>,
    /// path → pause after each 64 KiB sent.
    slow: HashMap<String, Duration>,
    /// Fixed answers by request target (path and query, no leading '/'), before files:
    /// (headers, body), e.g. an LXD server's JSON.
    routes: HashMap<String, Answer>,
    /// Requests seen (path and Range header).
    log: Vec<(String, Option<String>)>,
}

/// The running server; stops (and frees its port) on drop.
#[derive(Debug)]
pub struct ImageServer {
    /// Its address, on the namespace's loopback.
    pub addr: SocketAddr,
    root: PathBuf,
    faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImageServer {
    /// Serves `root` over TLS with `pki`'s server certificate on 127.0.0.1 inside `netns`.
    pub fn start(netns: &std::os::fd::OwnedFd, root: &Path, pki: &TestPki) -> ImageServer {
        let listener: TcpListener =
            crate::in_netns(netns, || TcpListener::bind("127.0.0.1:0").expect("bind"));
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        // The workspace's rustls uses ring.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.server_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
            )
            .expect("server config");
        let config = Arc::new(config);
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, r) = (faults.clone(), stop.clone(), root.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (config, f, r, s) = (config.clone(), f.clone(), r.clone(), s.clone());
                        std::thread::spawn(move || {
                            let _ = serve_one(sock, config, &r, &f, &s);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener closes here: later connections are refused.
        });
        ImageServer {
            addr,
            root: root.to_path_buf(),
            faults,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cuts the connection after `bytes` bytes of `path`'s body, `times` times.
    pub fn cut(&self, path: &str, bytes: u64, times: u32) {
        self.faults
            .lock()
            .expect("faults")
            .cuts
            .insert(path.trim_start_matches('/').to_string(), (bytes, times));
    }

    /// Serves `path` with wrong bytes.
    pub fn corrupt(&self, path: &str) {
        self.faults
            .lock()
            .expect("faults")
            .corrupt
            .push(path.trim_start_matches('/').to_string());
    }

    /// Cuts `path` after `bytes` bytes and then stops serving for good.
    pub fn vanish_during(&self, path: &str, bytes: u64) {
        self.faults
            .lock()
            .expect("faults")
            .vanish
            .insert(path.trim_start_matches('/').to_string(), bytes);
    }

    /// Sends `path` slowly: a pause after each 64 KiB.
    pub fn slow(&self, path: &str, pause: Duration) {
        self.faults
            .lock()
            .expect("faults")
            .slow
            .insert(path.trim_start_matches('/').to_string(), pause);
    }

    /// Answers `target` (path and query) with `headers` and `body` (status 200), as an LXD
    /// server's endpoints would.
    pub fn route(&self, target: &str, headers: &[(&str, &str)], body: Vec<u8>) {
        self.answer(target, "200 OK", headers, body);
    }

    /// Answers `target` with a redirect to `location`.
    pub fn redirect(&self, target: &str, location: &str) {
        self.answer(target, "302 Found", &[("Location", location)], Vec::new());
    }

    fn answer(&self, target: &str, status: &'static str, headers: &[(&str, &str)], body: Vec<u8>) {
        self.faults.lock().expect("faults").routes.insert(
            target.trim_start_matches('/').to_string(),
            (
                status,
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body,
            ),
        );
    }

    /// Removes every armed fault.
    pub fn clear_faults(&self) {
        let mut f = self.faults.lock().expect("faults");
        f.cuts.clear();
        f.corrupt.clear();
        f.vanish.clear();
        f.slow.clear();
    }

    /// Requests seen so far: (path, Range header).
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.faults.lock().expect("faults").log.clone()
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    sock: TcpStream,
    config: Arc<rustls::ServerConfig>,
    root: &Path,
    faults: &Mutex<Faults>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // The request head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte)? == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    let rel = target
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let (cut, corrupt, vanish, slow) = {
        let mut f = faults.lock().expect("faults");
        f.log.push((rel.clone(), range.clone()));
        let cut = match f.cuts.get_mut(&rel) {
            Some((n, times)) if *times > 0 => {
                *times -= 1;
                Some(*n)
            }
            _ => None,
        };
        (
            cut,
            f.corrupt.contains(&rel),
            f.vanish.get(&rel).copied(),
            f.slow.get(&rel).copied(),
        )
    };
    let routed = faults
        .lock()
        .expect("faults")
        .routes
        .get(target.trim_start_matches('/'))
        .cloned();
    if let Some((status, headers, body)) = routed {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes())?;
        tls.write_all(&body)?;
        tls.conn.send_close_notify();
        return tls.flush();
    }
    let path = root.join(&rel);
    let ok_path = method == "GET" && !rel.split('/').any(|s| s == "..") && path.is_file();
    if !ok_path {
        let body = b"not found";
        write!(
            tls,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        tls.write_all(body)?;
        tls.conn.send_close_notify();
        return tls.flush();
    }
    let mut file = std::fs::File::open(&path)?;
    let len = file.metadata()?.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|s| *s < len);
    match start {
        Some(s) => write!(
            tls,
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            len - s,
            len - 1
        )?,
        None => write!(
            tls,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
        )?,
    }
    let offset = start.unwrap_or(0);
    file.seek(std::io::SeekFrom::Start(offset))?;
    let limit = match (cut, vanish) {
        (Some(c), _) | (None, Some(c)) => Some(c),
        _ => None,
    };
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(l) = limit {
            // The cut is at byte `l` of the file, whatever range was asked for.
            let pos = offset + sent;
            if pos + n as u64 > l {
                let keep = usize::try_from(l.saturating_sub(pos)).unwrap_or(0);
                if keep > 0 {
                    tls.write_all(&buf[..keep])?;
                    tls.flush()?;
                }
                if vanish.is_some() {
                    stop.store(true, Ordering::SeqCst);
                }
                // Drop the TCP connection without a TLS close: a cut, not an end.
                let _ = tls.sock.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
        if corrupt {
            for b in &mut buf[..n] {
                *b ^= 0x5a;
            }
        }
        tls.write_all(&buf[..n])?;
        sent += n as u64;
        if let Some(p) = slow {
            tls.flush()?;
            std::thread::sleep(p);
        }
    }
    tls.conn.send_close_notify();
    tls.flush()
}

/// Writes `pem` to a world-readable file in a fresh directory silod (uid silo) can reach:
/// what SSL_CERT_FILE names. Answers the directory (removed on drop) and the file.
pub fn ca_bundle(pem: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("silo-test-ca-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, pem).expect("write ca");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    (dir, file)
}
