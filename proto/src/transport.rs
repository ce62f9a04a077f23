//! tarpc over a Unix socketpair with length-delimited bincode frames.
//!
//! The codec lives behind these two functions so it can be swapped (bincode 1.x is
//! finished upstream) without touching any service.

use std::os::fd::OwnedFd;

use tarpc::serde_transport::Transport;
use tokio::net::UnixStream;
use tokio_serde::formats::Bincode;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest frame either side accepts; bigger payloads (image streams) go over fds.
pub const MAX_FRAME: usize = 16 << 20;

/// A framed bincode transport for the given message types.
pub type SiloTransport<In, Out> = Transport<UnixStream, In, Out, Bincode<In, Out>>;

/// Wraps a connected stream socket in the silo framing.
pub fn transport<In, Out>(stream: UnixStream) -> SiloTransport<In, Out>
where
    In: for<'de> serde::Deserialize<'de>,
    Out: serde::Serialize,
{
    let framed = Framed::new(
        stream,
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME)
            .new_codec(),
    );
    tarpc::serde_transport::new(framed, Bincode::default())
}

/// Turns an owned socket fd (inherited or from a socketpair) into a tokio stream.
/// Must be called inside a tokio runtime.
pub fn stream_from_fd(fd: OwnedFd) -> std::io::Result<UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}
