//! Connections that a `Drop` fault can cut without sending an answer: hyper gets an I/O error
//! when it tries to write the response, and closes the socket.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections wrapped in [`SimIo`].
pub(super) struct SimListener(pub(super) TcpListener);

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimIo, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = SimIo {
                        inner: stream,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, addr);
                }
                // Out of file descriptors and similar: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails every read and write once killed, so hyper drops the connection
/// instead of writing the answer.
pub(super) struct SimIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl SimIo {
    fn check(&self) -> std::io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(std::io::ErrorKind::ConnectionAborted.into())
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Given to each handler (as connect info) so it can cut its own connection.
#[derive(Clone)]
pub(super) struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    pub(super) fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        ConnHandle(stream.io().killed.clone())
    }
}
