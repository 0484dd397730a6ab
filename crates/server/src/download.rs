//! Whole results as files: an export writer on a blocking thread, streamed to the client through
//! a bounded channel (a slow client slows the query, it does not fill memory).

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tverr_access::{ExportOptions, SendableRecordBatchStream};

/// Bytes handed to the response at a time.
const CHUNK: usize = 64 << 10;

/// Hands what the export writes to the response body in chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        // The writer runs inside `Handle::block_on`, where tokio's own blocking send refuses
        // to block; this waits on the channel without the runtime's help. Unconstrained: the
        // send must not count against the budget of the task around it, which never yields
        // while this waits (a spent budget makes every send "not ready" at once, for ever: a
        // busy loop that stopped downloads after a few MB).
        futures::executor::block_on(tokio::task::unconstrained(self.tx.send(Ok(chunk))))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A response that streams `stream` as a file named `name` in the chosen format. A failure after
/// the first byte ends the body early (the client sees a truncated transfer).
pub fn file_response(stream: SendableRecordBatchStream, options: ExportOptions, name: &str) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let handle = tokio::runtime::Handle::current();
    let content_type = options.format.content_type();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        match handle.block_on(tverr_access::write_export(stream, &options, &mut out)) {
            Ok(_) => {
                let _ = out.flush();
            }
            Err(e) => {
                tracing::warn!(error = %e, "export ended early");
                let _ = futures::executor::block_on(tokio::task::unconstrained(out.tx.send(Err(std::io::Error::other(e.to_string())))));
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_"));
    ([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], Body::from_stream(body))
        .into_response()
}
