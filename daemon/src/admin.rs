//! silod's commands besides serving: `silod shutdown` (what systemd runs when the host goes
//! down) and the man page. They talk to a running silod over its unix socket only.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::service::runtime::ShutdownReport;

/// What `silod shutdown` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket exists but the request failed on the way.
    #[error("talking to silod on {path}: {source}")]
    Io {
        /// The API socket.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// silod answered with an error.
    #[error("silod refused: {0}")]
    Refused(String),
    /// silod did not finish in time.
    #[error("silod is still running after {0}s")]
    Timeout(u64),
}

/// `silod shutdown`: asks the silod serving `state_dir` to stop every instance and exit, and
/// waits for it to be gone. A silod that is not running has nothing to stop.
pub fn shutdown(state_dir: &Path, timeout: u64) -> Result<String, AdminError> {
    let path = state_dir.join("unix.socket");
    let shown = path.display().to_string();
    let io = |source| AdminError::Io {
        path: shown.clone(),
        source,
    };
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(format!(
                "silod is not running ({shown}: {e}); nothing to stop"
            ));
        }
        Err(e) => return Err(io(e)),
    };
    let t0 = Instant::now();
    let limit = (timeout > 0).then(|| Duration::from_secs(timeout));
    s.set_read_timeout(limit).map_err(io)?;
    s.write_all(
        b"PUT /internal/shutdown HTTP/1.1\r\nHost: silod\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    if let Err(e) = s.read_to_end(&mut answer) {
        return Err(match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                AdminError::Timeout(timeout)
            }
            _ => io(e),
        });
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or("");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if !status.contains(" 200 ") {
        return Err(AdminError::Refused(format!("{status}: {body}")));
    }
    // The answer leaves before silod exits: wait until nothing listens any more.
    while UnixStream::connect(&path).is_ok() {
        if limit.is_some_and(|l| t0.elapsed() >= l) {
            return Err(AdminError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report: ShutdownReport = serde_json::from_str::<silo_api::Response>(body)
        .ok()
        .and_then(|r| serde_json::from_value(r.metadata).ok())
        .unwrap_or_default();
    Ok(format!(
        "silod stopped; instances shut down cleanly: {}; killed after their timeout: {}",
        list(&report.stopped),
        list(&report.killed)
    ))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// silod's man page, section 8, from its command line.
pub fn manpage(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).section("8").render(out)
}
