//! yamux for libp2p with larger data frames than libp2p-yamux sends.
//!
//! yamux splits every write into data frames of at most `split_send_size` bytes (16 KiB by
//! default), and the connection flushes each frame on its own: one Noise message, one task
//! wake-up and one syscall per 16 KiB of a bulk transfer. libp2p-yamux 0.48 keeps its
//! `yamux::Config` private and exposes only the stream limit, so the node brings this adapter.
//! It speaks `/yamux/1.0.0` with yamux's own wire format, so every libp2p peer (older dig-sidecar
//! nodes included) talks to it; only the size of the frames this side sends changes.

use std::{
    collections::VecDeque,
    convert::Infallible,
    io::{self, IoSlice, IoSliceMut},
    iter,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{AsyncRead, AsyncWrite, future, ready};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};

/// The largest yamux data frame a node sends (libp2p's yamux: 16 KiB). Any receiver accepts it:
/// a data frame never exceeds the credit the receiver granted, and rust-yamux reads bodies up to
/// 1 MiB (`MAX_FRAME_BODY_LEN`). Small messages are unaffected, the split only caps a frame.
/// Half of a stream's initial 256 KiB credit, because a receiver grants more credit once it has
/// read half its window: the sender fills the next frame while the receiver reads this one. With
/// 256 KiB frames (a whole window each) the two ends take turns. `bench-transport`, loopback,
/// 1 GiB, medians of 10 to 24 alternating runs, CPU-seconds of both ends / wall seconds:
/// 16 KiB 2.5 / 1.8, 64 KiB 1.9 / 1.3, 128 KiB 1.85 / 1.2, 256 KiB 1.9 / 1.7, 1 MiB 1.85 / 1.7.
pub const YAMUX_SPLIT_SEND_SIZE: usize = 128 * 1024;

/// Inbound streams kept while the connection's owner is not asking for them. yamux's sender
/// stops at 256 unacknowledged streams, so a rust-libp2p peer never fills this; beyond it a
/// stream is dropped (the peer sees it reset).
const MAX_BUFFERED_INBOUND_STREAMS: usize = 256;

const PROTOCOL_NAME: &str = "/yamux/1.0.0";

/// The multiplexer upgrade of the node's TCP connections: yamux with data frames of up to
/// [`YAMUX_SPLIT_SEND_SIZE`] and yamux's other defaults (512 streams, 1 GiB receive window per
/// connection).
#[derive(Debug, Clone)]
pub struct YamuxConfig(yamux::Config);

impl Default for YamuxConfig {
    fn default() -> Self {
        let mut config = yamux::Config::default();
        config.set_split_send_size(YAMUX_SPLIT_SEND_SIZE);
        Self(config)
    }
}

impl UpgradeInfo for YamuxConfig {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once(PROTOCOL_NAME)
    }
}

impl<C> InboundConnectionUpgrade<C> for YamuxConfig
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Muxer<C>;
    type Error = Infallible;
    type Future = future::Ready<Result<Muxer<C>, Infallible>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(socket, self.0, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for YamuxConfig
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Muxer<C>;
    type Error = Infallible;
    type Future = future::Ready<Result<Muxer<C>, Infallible>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(socket, self.0, yamux::Mode::Client)))
    }
}

/// A yamux connection as a libp2p [`StreamMuxer`].
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Streams that arrived while [`StreamMuxer::poll`] drove the connection: yamux yields new
    /// streams only from the same call that makes progress, which `poll` must make even when the
    /// owner is not accepting streams.
    inbound: VecDeque<Substream>,
    /// Who to wake when `poll` buffers a stream.
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(socket: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Self {
            connection: yamux::Connection::new(socket, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    /// Drives the connection until the peer opens a stream; the end of the connection is an
    /// error, since a muxer has nothing more to yield after it.
    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<Substream, MuxerError>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(Ok(stream)) => Poll::Ready(Ok(Substream(stream))),
            Some(Err(error)) => Poll::Ready(Err(error.into())),
            None => Poll::Ready(Err(yamux::ConnectionError::Closed.into())),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = Substream;
    type Error = MuxerError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Substream, MuxerError>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(result) = this.next_inbound(cx) {
            return Poll::Ready(result);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Substream, MuxerError>> {
        let stream = ready!(self.get_mut().connection.poll_new_outbound(cx))?;
        Poll::Ready(Ok(Substream(stream)))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), MuxerError>> {
        self.get_mut()
            .connection
            .poll_close(cx)
            .map_err(MuxerError::from)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, MuxerError>> {
        let this = self.get_mut();
        let stream = ready!(this.next_inbound(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND_STREAMS {
            tracing::warn!(
                stream = %stream.0,
                buffered = MAX_BUFFERED_INBOUND_STREAMS,
                "dropping an inbound yamux stream: too many wait to be accepted"
            );
        } else {
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        }
        // The connection may have more to do; ask to be polled again rather than loop here, so
        // other tasks get to run in between.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A stream of a [`Muxer`].
#[derive(Debug)]
pub struct Substream(yamux::Stream);

impl AsyncRead for Substream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read_vectored(cx, bufs)
    }
}

impl AsyncWrite for Substream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

/// A yamux connection failed (I/O, a malformed frame, the peer went away, a stream limit).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MuxerError(#[from] yamux::ConnectionError);

impl From<MuxerError> for io::Error {
    fn from(error: MuxerError) -> Self {
        match error.0 {
            yamux::ConnectionError::Io(error) => error,
            other => io::Error::other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::channel::{mpsc, oneshot};
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
    use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, TransportEvent};
    use libp2p::core::upgrade::Version;
    use libp2p::core::{Endpoint, Transport};
    use libp2p::{PeerId, identity::Keypair, noise, tcp};

    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Side {
        Ours,
        /// `libp2p::yamux::Config::default()`, what older nodes and other libp2p peers use.
        Stock,
    }

    /// Our upgrade, recording the largest data frame it sends.
    #[derive(Clone)]
    struct Measured {
        config: YamuxConfig,
        largest: Arc<AtomicUsize>,
    }

    impl UpgradeInfo for Measured {
        type Info = &'static str;
        type InfoIter = iter::Once<Self::Info>;

        fn protocol_info(&self) -> Self::InfoIter {
            self.config.protocol_info()
        }
    }

    impl<C: AsyncRead + AsyncWrite + Unpin> InboundConnectionUpgrade<C> for Measured {
        type Output = Muxer<FrameTap<C>>;
        type Error = Infallible;
        type Future = future::Ready<Result<Self::Output, Infallible>>;

        fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
            let socket = FrameTap::new(socket, self.largest);
            self.config.upgrade_inbound(socket, info)
        }
    }

    impl<C: AsyncRead + AsyncWrite + Unpin> OutboundConnectionUpgrade<C> for Measured {
        type Output = Muxer<FrameTap<C>>;
        type Error = Infallible;
        type Future = future::Ready<Result<Self::Output, Infallible>>;

        fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
            let socket = FrameTap::new(socket, self.largest);
            self.config.upgrade_outbound(socket, info)
        }
    }

    /// Passes bytes through and parses the yamux frames written, keeping the largest data body.
    struct FrameTap<C> {
        inner: C,
        largest: Arc<AtomicUsize>,
        header: Vec<u8>,
        body_left: usize,
    }

    impl<C> FrameTap<C> {
        const HEADER_LEN: usize = 12;
        const DATA_FRAME: u8 = 0;

        fn new(inner: C, largest: Arc<AtomicUsize>) -> Self {
            Self {
                inner,
                largest,
                header: Vec::with_capacity(Self::HEADER_LEN),
                body_left: 0,
            }
        }

        fn observe(&mut self, mut bytes: &[u8]) {
            while !bytes.is_empty() {
                if self.body_left > 0 {
                    let n = self.body_left.min(bytes.len());
                    self.body_left -= n;
                    bytes = &bytes[n..];
                    continue;
                }
                let n = (Self::HEADER_LEN - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() == Self::HEADER_LEN {
                    // Only data frames have a body; the others carry a value in the length field.
                    if self.header[1] == Self::DATA_FRAME {
                        let length = u32::from_be_bytes(self.header[8..12].try_into().unwrap());
                        self.body_left = length as usize;
                        self.largest.fetch_max(self.body_left, Ordering::Relaxed);
                    }
                    self.header.clear();
                }
            }
        }
    }

    impl<C: AsyncRead + Unpin> AsyncRead for FrameTap<C> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl<C: AsyncWrite + Unpin> AsyncWrite for FrameTap<C> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
            this.observe(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_close(cx)
        }
    }

    /// TCP + Noise + the given yamux, as the node builds it.
    fn transport(side: Side, largest: &Arc<AtomicUsize>) -> Boxed<(PeerId, StreamMuxerBox)> {
        let noise = noise::Config::new(&Keypair::generate_ed25519()).unwrap();
        let secured = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .upgrade(Version::V1Lazy)
            .authenticate(noise);
        match side {
            Side::Ours => secured
                .multiplex(Measured {
                    config: YamuxConfig::default(),
                    largest: largest.clone(),
                })
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed(),
            Side::Stock => secured
                .multiplex(libp2p::yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed(),
        }
    }

    /// One end of a connection, driven by its own task: outbound streams on request, inbound
    /// ones through a channel (no stream is dropped, unlike libp2p-stream's accept queue).
    struct End {
        open: mpsc::UnboundedSender<oneshot::Sender<SubstreamBox>>,
        inbound: mpsc::UnboundedReceiver<SubstreamBox>,
    }

    impl End {
        fn spawn(mut muxer: StreamMuxerBox) -> Self {
            let (open, mut requests) = mpsc::unbounded::<oneshot::Sender<SubstreamBox>>();
            let (accepted, inbound) = mpsc::unbounded();
            tokio::spawn(async move {
                let mut waiting = VecDeque::new();
                let closed = future::poll_fn(|cx| {
                    while let Poll::Ready(Some(reply)) = requests.poll_next_unpin(cx) {
                        waiting.push_back(reply);
                    }
                    while !waiting.is_empty() {
                        match muxer.poll_outbound_unpin(cx) {
                            Poll::Ready(Ok(stream)) => {
                                let _ = waiting.pop_front().unwrap().send(stream);
                            }
                            Poll::Ready(Err(error)) => return Poll::Ready(error),
                            Poll::Pending => break,
                        }
                    }
                    loop {
                        match muxer.poll_inbound_unpin(cx) {
                            Poll::Ready(Ok(stream)) => {
                                let _ = accepted.unbounded_send(stream);
                            }
                            Poll::Ready(Err(error)) => return Poll::Ready(error),
                            Poll::Pending => break,
                        }
                    }
                    match muxer.poll_unpin(cx) {
                        Poll::Ready(Err(error)) => Poll::Ready(error),
                        _ => Poll::Pending,
                    }
                })
                .await;
                tracing::debug!(%closed, "test connection ended");
            });
            Self { open, inbound }
        }

        async fn open(&self) -> SubstreamBox {
            let (reply, stream) = oneshot::channel();
            self.open.unbounded_send(reply).unwrap();
            stream.await.unwrap()
        }
    }

    /// A connection over loopback: (dialer's end, listener's end).
    async fn connect(dialer: Side, listener: Side, largest: &Arc<AtomicUsize>) -> (End, End) {
        let mut listening = transport(listener, largest);
        listening
            .listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let address = loop {
            if let TransportEvent::NewAddress { listen_addr, .. } =
                listening.select_next_some().await
            {
                break listen_addr;
            }
        };
        let accepting = tokio::spawn(async move {
            loop {
                if let TransportEvent::Incoming { upgrade, .. } = listening.select_next_some().await
                {
                    return upgrade.await.unwrap().1;
                }
            }
        });
        let options = DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::New,
        };
        let (_, dialed) = transport(dialer, largest)
            .dial(address, options)
            .unwrap()
            .await
            .unwrap();
        (End::spawn(dialed), End::spawn(accepting.await.unwrap()))
    }

    /// Echoes every inbound stream: reads it to the end, writes it back and closes.
    fn serve_echo(mut end: End) {
        tokio::spawn(async move {
            while let Some(mut stream) = end.inbound.next().await {
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    stream.read_to_end(&mut data).await.unwrap();
                    stream.write_all(&data).await.unwrap();
                    stream.close().await.unwrap();
                });
            }
        });
    }

    async fn echoed(end: &End, data: &[u8]) -> Vec<u8> {
        let mut stream = end.open().await;
        stream.write_all(data).await.unwrap();
        stream.close().await.unwrap();
        let mut back = Vec::with_capacity(data.len());
        stream.read_to_end(&mut back).await.unwrap();
        back
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 131 + seed) % 251) as u8).collect()
    }

    /// Moves `bulk` bytes on one stream and small messages on 16 parallel ones, both ways (echo),
    /// while the dialer also opens streams; every byte must come back in order.
    async fn exchange(dialer: Side, listener: Side, bulk: usize) -> usize {
        let largest = Arc::new(AtomicUsize::new(0));
        let (client, server) = connect(dialer, listener, &largest).await;
        serve_echo(server);
        let big = pattern(bulk, 7);
        let small: Vec<Vec<u8>> = (0..16).map(|i| pattern(1 + i * 97, i)).collect();
        let (big_back, small_back) = tokio::join!(
            echoed(&client, &big),
            futures::future::join_all(small.iter().map(|message| echoed(&client, message))),
        );
        assert!(
            big_back == big,
            "{dialer:?} -> {listener:?}: bulk echo differs"
        );
        for (sent, back) in small.iter().zip(&small_back) {
            assert_eq!(back, sent, "{dialer:?} -> {listener:?}");
        }
        largest.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn bulk_and_parallel_streams_between_our_muxers() {
        let largest = tokio::time::timeout(
            Duration::from_secs(120),
            exchange(Side::Ours, Side::Ours, 8 << 20),
        )
        .await
        .expect("8 MiB echo within 120 s");
        assert_eq!(largest, YAMUX_SPLIT_SEND_SIZE, "largest data frame sent");
    }

    #[tokio::test]
    async fn interoperates_with_libp2p_yamux() {
        for (dialer, listener) in [(Side::Ours, Side::Stock), (Side::Stock, Side::Ours)] {
            let largest = tokio::time::timeout(
                Duration::from_secs(120),
                exchange(dialer, listener, 2 << 20),
            )
            .await
            .expect("2 MiB echo within 120 s");
            // Our side sent full-size frames and the stock side took them.
            assert_eq!(largest, YAMUX_SPLIT_SEND_SIZE, "{dialer:?} -> {listener:?}");
        }
    }

    #[test]
    fn io_errors_come_out_unwrapped() {
        let error = MuxerError(yamux::ConnectionError::Io(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(io::Error::from(error).kind(), io::ErrorKind::BrokenPipe);
        let error = MuxerError(yamux::ConnectionError::Closed);
        assert_eq!(io::Error::from(error).kind(), io::ErrorKind::Other);
    }
}
