//! `silo exec` and `silo console`: LXD's exec and console websocket protocol, client side.
//!
//! The server answers with a websocket operation whose metadata holds one secret per stream;
//! each stream is its own websocket (`/1.0/operations/ID/websocket?secret=S`). Data travels
//! in binary messages, a zero-length text message ends a stream (the "barrier"), and the
//! `control` stream carries window sizes and signals as JSON text messages.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use nix::sys::termios;
use silo_api::{
    paths, InstanceConsoleMetadata, InstanceConsolePost, InstanceExecControl, InstanceExecMetadata,
    InstanceExecPost, StringMap,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, ClientError, WebSocket};
use crate::commands::CmdError;
use crate::util::fail;

/// How `silo exec` sets up the command's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Interactive when stdin and stdout are both terminals.
    Auto,
    /// With a pseudo-terminal.
    Interactive,
    /// With pipes for stdin, stdout and stderr.
    NonInteractive,
}

/// `silo exec`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Mode defaults to non-interactive, interactive mode is selected if both stdin AND stdout \
are terminals (stderr is ignored).

Examples:
  silo exec c1 -- ps aux
  silo exec c1 --env FOO=bar --cwd /tmp -- sh -c 'echo $FOO; pwd'
  silo exec -t c1 -- sh")]
pub struct ExecArgs {
    /// The instance.
    pub name: String,
    /// The command and its arguments (put them after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
    /// An environment variable to set, e.g. HOME=/home/foo (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Override the terminal mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: Mode,
    /// Force pseudo-terminal allocation.
    #[arg(short = 't', long)]
    pub force_interactive: bool,
    /// Disable pseudo-terminal allocation.
    #[arg(short = 'T', long)]
    pub force_noninteractive: bool,
    /// Disable stdin (reads from /dev/null).
    #[arg(short = 'n', long)]
    pub disable_stdin: bool,
    /// User ID to run the command as.
    #[arg(long, default_value_t = 0, value_name = "UID")]
    pub user: u32,
    /// Group ID to run the command as.
    #[arg(long, default_value_t = 0, value_name = "GID")]
    pub group: u32,
    /// Directory to run the command in (default /root).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
}

/// `silo console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// The instance.
    pub name: String,
    /// Print the console log instead of attaching.
    #[arg(long)]
    pub show_log: bool,
    /// The console type (console or vga).
    #[arg(
        short = 't',
        long = "type",
        default_value = "console",
        value_name = "TYPE"
    )]
    pub kind: String,
}

/// The local terminal in raw mode. Dropping it restores the saved settings, so every way
/// out of a command (errors included) hands the user their terminal back as it was.
struct RawTerminal {
    saved: termios::Termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal, CmdError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())
            .map_err(|e| CmdError::Fail(format!("reading the terminal's settings: {e}")))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw)
            .map_err(|e| CmdError::Fail(format!("setting the terminal to raw mode: {e}")))?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(
            std::io::stdin().as_fd(),
            termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The (width, height) of the terminal on `fd`, if it is one.
fn term_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes one `winsize` through the pointer, which points at a
    // local that outlives the call; `fd` is borrowed, so it stays open during the call.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }.ok()?;
    Some((ws.ws_col, ws.ws_row))
}

/// The size to report on SIGWINCH: stdout's terminal, else stdin's.
fn current_size() -> (u16, u16) {
    term_size(std::io::stdout().as_fd())
        .or_else(|| term_size(std::io::stdin().as_fd()))
        .unwrap_or((0, 0))
}

fn resize_message((w, h): (u16, u16)) -> InstanceExecControl {
    InstanceExecControl::resize(w, h)
}

/// Chunks of stdin; `None` marks its end.
type Input = mpsc::Receiver<Option<Vec<u8>>>;

/// Reads stdin on a thread of its own: a blocking read cannot be cancelled, and a plain
/// thread does not hold up the process's exit when the command ends first.
fn read_stdin(disabled: bool) -> Input {
    let (tx, rx) = mpsc::channel(4);
    if disabled {
        let _ = tx.try_send(None);
        return rx;
    }
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.blocking_send(None);
    });
    rx
}

type Sink = SplitSink<WebSocket, Message>;

/// Sends stdin as binary messages, then the barrier at its end.
async fn copy_in(mut tx: Sink, mut input: Input) -> Sink {
    while let Some(Some(chunk)) = input.recv().await {
        if tx.send(Message::Binary(chunk.into())).await.is_err() {
            return tx;
        }
    }
    let _ = tx.send(Message::Text(String::new().into())).await;
    tx
}

/// Where an output stream goes.
#[derive(Debug, Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
}

fn write_out(to: Out, b: &[u8]) -> std::io::Result<()> {
    match to {
        Out::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(b).and_then(|_| o.flush())
        }
        Out::Stderr => {
            let mut o = std::io::stderr().lock();
            o.write_all(b).and_then(|_| o.flush())
        }
    }
}

/// Exit status of a process killed by SIGPIPE, as shells report it.
const SIGPIPE_STATUS: i32 = 128 + 13;

/// Writes a stream's binary messages to stdout or stderr until its barrier, or until the
/// server closes it (which it also does when the command could not start: the operation
/// then says why).
async fn copy_out(
    mut rx: SplitStream<WebSocket>,
    to: Out,
    control: mpsc::UnboundedSender<InstanceExecControl>,
) -> Result<(), CmdError> {
    while let Some(m) = rx.next().await {
        match m {
            Ok(Message::Binary(b)) => {
                if let Err(e) = write_out(to, &b) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // Whoever read our output is gone: the command gets the SIGPIPE it
                        // would get locally, and silo leaves quietly as a killed writer would.
                        let _ = control.send(InstanceExecControl::signal(nix::libc::SIGPIPE));
                        return Err(CmdError::Exit(SIGPIPE_STATUS));
                    }
                    return Err(CmdError::Output(e.to_string()));
                }
            }
            Ok(Message::Text(t)) if t.is_empty() => break,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Signals `silo exec` passes on to the command.
const FORWARDED: &[i32] = &[
    nix::libc::SIGTERM,
    nix::libc::SIGHUP,
    nix::libc::SIGINT,
    nix::libc::SIGQUIT,
    nix::libc::SIGUSR1,
    nix::libc::SIGUSR2,
    nix::libc::SIGCONT,
];

/// Runs the control stream: window sizes on SIGWINCH (with a terminal), the caught
/// signals as `signal` messages, and whatever else arrives on `msgs`; sends a close when
/// `msgs` is closed.
async fn control_loop(
    ws: WebSocket,
    terminal: bool,
    forward: bool,
    interactive: bool,
    mut msgs: mpsc::UnboundedReceiver<InstanceExecControl>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut tx, mut rx) = ws.split();
    let mut kinds: Vec<i32> = Vec::new();
    if forward {
        kinds.extend_from_slice(FORWARDED);
    }
    if terminal {
        kinds.push(nix::libc::SIGWINCH);
    }
    let signals = kinds.into_iter().filter_map(|n| {
        let s = signal(SignalKind::from_raw(n)).ok()?;
        Some(futures::stream::unfold(s, move |mut s| async move {
            s.recv().await.map(|()| (n, s))
        }))
    });
    let mut signals = futures::stream::select_all(signals.map(StreamExt::boxed));
    loop {
        let msg = tokio::select! {
            m = msgs.recv() => match m {
                Some(v) => v,
                None => break,
            },
            Some(n) = signals.next() => {
                if n == nix::libc::SIGWINCH {
                    resize_message(current_size())
                } else if n == nix::libc::SIGINT && interactive {
                    // With a pty, ^C reaches the command as a byte; a SIGINT sent to silo
                    // itself is caught only so that the terminal is not left raw.
                    continue;
                } else {
                    InstanceExecControl::signal(n)
                }
            },
            // Reading lets the websocket answer the server's pings.
            m = rx.next() => match m {
                Some(Ok(_)) => continue,
                _ => break,
            },
        };
        if tx
            .send(Message::Text(
                serde_json::to_string(&msg).unwrap_or_default().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// The streams of a websocket operation, from the 202 answer that started it.
struct Operation {
    id: String,
    fds: StringMap,
}

impl Operation {
    fn from_answer(answer: &crate::client::Answer) -> Result<Operation, CmdError> {
        let bad = |e: String| CmdError::Client(ClientError::Protocol(e));
        let op: silo_api::Operation =
            silo_api::lenient::from_value(answer.metadata()?).map_err(|e| bad(e.to_string()))?;
        let id = answer
            .operation_id()
            .ok_or_else(|| bad("no background operation for the streams".into()))?;
        let md: InstanceConsoleMetadata = op.metadata_as().map_err(|e| bad(e.to_string()))?;
        Ok(Operation { id, fds: md.fds })
    }

    async fn connect(&self, client: &Client, fd: &str) -> Result<Option<WebSocket>, CmdError> {
        let Some(secret) = self.fds.get(fd) else {
            return Ok(None);
        };
        let path = paths::operation_websocket(&self.id, secret);
        Ok(Some(client.websocket(&path).await?))
    }

    async fn require(&self, client: &Client, fd: &str) -> Result<WebSocket, CmdError> {
        self.connect(client, fd).await?.ok_or_else(|| {
            CmdError::Client(ClientError::Protocol(format!(
                "the operation has no stream {fd:?}"
            )))
        })
    }
}

/// The exec request for `a`: the environment (TERM first), whether it is interactive (the
/// flags, else whether stdin and stdout are terminals) and the terminal's size. Also returns
/// whether stdin is a terminal.
fn exec_request(a: &ExecArgs) -> Result<(InstanceExecPost, bool), CmdError> {
    if a.force_interactive && a.force_noninteractive {
        return fail("You can't pass -t and -T at the same time");
    }
    if a.mode != Mode::Auto && (a.force_interactive || a.force_noninteractive) {
        return fail("You can't pass -t or -T at the same time as --mode");
    }
    let mut env = StringMap::new();
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "xterm".to_string());
    env.insert("TERM".into(), term);
    for e in &a.env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        env.insert(k.to_string(), v.to_string());
    }
    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let interactive = if a.disable_stdin {
        false
    } else if a.mode == Mode::Interactive || a.force_interactive {
        true
    } else if a.mode == Mode::NonInteractive || a.force_noninteractive {
        false
    } else {
        stdin_tty && stdout_tty
    };
    let (width, height) = if stdout_tty {
        term_size(std::io::stdout().as_fd()).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let req = InstanceExecPost {
        command: a.command.clone(),
        wait_for_websocket: true,
        interactive,
        environment: env,
        width: i64::from(width),
        height: i64::from(height),
        record_output: false,
        user: a.user,
        group: a.group,
        cwd: a.cwd.clone().unwrap_or_default(),
    };
    Ok((req, stdin_tty))
}

/// `silo exec NAME -- COMMAND...`.
pub async fn exec(client: &Client, a: ExecArgs) -> Result<(), CmdError> {
    let (req, stdin_tty) = exec_request(&a)?;
    let interactive = req.interactive;
    let _raw = if interactive && stdin_tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let body = serde_json::to_value(&req).map_err(|e| CmdError::Fail(e.to_string()))?;
    let answer = client
        .request("POST", &paths::instance_exec(&a.name), Some(&body), &[])
        .await?;
    let op = Operation::from_answer(&answer)?;

    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    // The control stream first: LXD starts the command once the data streams are up and
    // refuses a control stream that comes after the command ended. The data streams are then
    // dialled all at once, in whatever order they land.
    let control = op.connect(client, "control").await?;
    let wanted = |fd: &'static str| {
        let op = &op;
        async move {
            if interactive && fd != "0" {
                Ok(None)
            } else {
                op.require(client, fd).await.map(Some)
            }
        }
    };
    let (s0, s1, s2) = futures::try_join!(wanted("0"), wanted("1"), wanted("2"))?;
    if let Some(ws) = control {
        tokio::spawn(control_loop(ws, interactive, true, interactive, ctl_rx));
    }
    let input = read_stdin(a.disable_stdin);
    let missing = || {
        CmdError::Client(ClientError::Protocol(
            "the operation has no stream \"0\"".into(),
        ))
    };
    let (tx, rx) = s0.ok_or_else(missing)?.split();
    let stdin_task = tokio::spawn(copy_in(tx, input));
    let outputs = if interactive {
        vec![tokio::spawn(copy_out(rx, Out::Stdout, ctl_tx.clone()))]
    } else {
        [(s1, Out::Stdout), (s2, Out::Stderr)]
            .into_iter()
            .filter_map(|(ws, to)| ws.map(|ws| (ws, to)))
            .map(|(ws, to)| tokio::spawn(copy_out(ws.split().1, to, ctl_tx.clone())))
            .collect()
    };
    // Output ends when the command (and whatever inherited its streams) is done; stdin may
    // still be waiting for a line that will never matter.
    let mut result = Ok(());
    for o in futures::future::join_all(outputs).await {
        match o {
            Ok(Err(e)) if result.is_ok() => result = Err(e),
            Err(e) if result.is_ok() => result = Err(CmdError::Output(e.to_string())),
            _ => {}
        }
    }
    stdin_task.abort();
    if let Err(e) = result {
        // Give the SIGPIPE a moment to be sent before the connections drop.
        drop(ctl_tx);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        return Err(e);
    }
    let done = client.operation_wait(&op.id).await;
    drop(ctl_tx);
    let code = done?
        .metadata_as::<InstanceExecMetadata>()
        .ok()
        .and_then(|m| m.return_code)
        .unwrap_or(0);
    if code == 0 {
        Ok(())
    } else {
        Err(CmdError::Exit(i32::try_from(code).unwrap_or(1)))
    }
}

/// The console escape: ctrl+a then q detaches.
const ESCAPE: u8 = 0x01;

/// Sends stdin to the console until ctrl+a q (or stdin's end), then closes the stream.
async fn console_in(mut tx: Sink, mut input: Input) {
    let mut escaped = false;
    'read: while let Some(Some(chunk)) = input.recv().await {
        let mut send = Vec::with_capacity(chunk.len());
        let mut detach = false;
        for b in chunk {
            if escaped {
                escaped = false;
                if b == b'q' {
                    detach = true;
                    break;
                }
                // Not the detach sequence: the ctrl+a was meant for the instance.
                send.push(ESCAPE);
                send.push(b);
            } else if b == ESCAPE {
                escaped = true;
            } else {
                send.push(b);
            }
        }
        if !send.is_empty() && tx.send(Message::Binary(send.into())).await.is_err() {
            break 'read;
        }
        if detach {
            break;
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// Resolves on the first SIGTERM, SIGHUP or SIGINT (never, if they cannot be caught).
async fn leave_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut caught = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ] {
        if let Ok(s) = signal(kind) {
            caught.push(futures::stream::unfold(s, |mut s| async move {
                s.recv().await.map(|()| ((), s))
            }));
        }
    }
    let mut all = futures::stream::select_all(caught.into_iter().map(StreamExt::boxed));
    if all.next().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// `silo console NAME`.
pub async fn console(client: &Client, a: ConsoleArgs) -> Result<(), CmdError> {
    if a.kind != "console" && a.kind != "vga" {
        return fail(format!("Unknown output type {:?}", a.kind));
    }
    let path = paths::instance_console(&a.name);
    if a.show_log {
        if a.kind != "console" {
            return fail("The --show-log flag is only supported for by 'console' output type");
        }
        let log = client.get_raw(&path).await?;
        return crate::util::out(&format!(
            "\nConsole log:\n\n{}\n",
            String::from_utf8_lossy(&log)
        ));
    }
    let stdin_tty = std::io::stdin().is_terminal();
    let _raw = if stdin_tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let (width, height) = term_size(std::io::stdin().as_fd()).unwrap_or((0, 0));
    let req = InstanceConsolePost {
        width: i64::from(width),
        height: i64::from(height),
        kind: a.kind.clone(),
    };
    let body = serde_json::to_value(&req).map_err(|e| CmdError::Fail(e.to_string()))?;
    crate::util::out("To detach from the console, press: <ctrl>+a q\n\r")?;
    let answer = client.request("POST", &path, Some(&body), &[]).await?;
    let op = Operation::from_answer(&answer)?;
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    if let Some(ws) = op.connect(client, "control").await? {
        tokio::spawn(control_loop(ws, stdin_tty, false, true, ctl_rx));
    }
    let (tx, rx) = op.require(client, "0").await?.split();
    let mut input = tokio::spawn(console_in(tx, read_stdin(false)));
    let mut output = tokio::spawn(copy_out(rx, Out::Stdout, ctl_tx.clone()));
    let r = tokio::select! {
        _ = &mut input => {
            output.abort();
            Ok(())
        }
        r = &mut output => {
            input.abort();
            r.map_err(|e| CmdError::Output(e.to_string())).and_then(|r| r)
        }
        // Being told to go detaches too, and through the normal path, which gives the
        // terminal back.
        _ = leave_signal() => {
            input.abort();
            output.abort();
            Ok(())
        }
    };
    r?;
    let done = client.operation_wait(&op.id).await;
    drop(ctl_tx);
    done?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize() {
        assert_eq!(
            serde_json::to_value(resize_message((80, 24))).expect("json"),
            serde_json::json!({"command": "window-resize", "args": {"width": "80", "height": "24"}})
        );
        assert_eq!(
            serde_json::to_value(InstanceExecControl::signal(13)).expect("json"),
            serde_json::json!({"command": "signal", "signal": 13})
        );
    }
}
