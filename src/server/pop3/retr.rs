//! Sending a message (RETR, TOP): small ones read ahead together, large
//! ones streamed chunk by chunk from the storage pool, so memory does not
//! grow with message size.

use super::*;

/// Small messages are read ahead of the client's RETRs, several in one
/// trip to the storage thread pool, up to `read_ahead` octets in all;
/// a message larger than this fraction of it is streamed on its own.
const READ_AHEAD_MESSAGE_DIVISOR: usize = 4;

/// Bodies read ahead are dropped when the client sends nothing for this
/// long, so an idle connection holds no message data.
pub(super) const READ_AHEAD_KEEP: Duration = Duration::from_secs(1);

/// One chunk of a streamed message, back from the storage pool.
struct StreamedChunk {
    transfer: Transfer,
    /// The buffer handed over, with the chunk stuffed onto its end.
    out: Vec<u8>,
    /// The range to read next, if any.
    next: Option<(u64, usize)>,
    read: Result<(), StorageError>,
}

impl Connection {
    /// Small messages read ahead, holding message `number`'s whole body:
    /// what was read before, or read now together with the small messages
    /// after it in one trip to the storage pool. `None`: stream it from
    /// storage (a large message, or reading failed and the stream will say why).
    pub(super) async fn read_ahead(
        &mut self,
        session: &Session,
        number: MessageNumber,
        message_id: MessageId,
        layout: Layout,
    ) -> Option<Bodies> {
        let held = self.read_ahead.take();
        if held
            .as_ref()
            .is_some_and(|bodies| bodies.get(message_id).is_some())
        {
            return held;
        }
        drop(held);
        let budget = self.shared.config.read_ahead as u64;
        let small = |size: u64| size > 0 && size <= budget / READ_AHEAD_MESSAGE_DIVISOR as u64;
        if !small(layout.size) {
            return None;
        }
        let mut total = layout.size;
        let mut wanted = vec![(message_id, layout.size)];
        for (id, size) in session.messages_after(number) {
            if !small(size) || total + size > budget {
                break;
            }
            total += size;
            wanted.push((id, size));
        }
        let store = Arc::clone(&self.shared.store);
        match smol::unblock(move || store.read_bodies(&wanted)).await {
            Ok(bodies) => bodies.get(message_id).is_some().then_some(bodies),
            Err(error) => {
                log::debug!("session {}: reading ahead failed: {error}", self.id);
                None
            }
        }
    }

    /// Sends `+OK status`, the message (from `body` when it was read
    /// ahead, else streamed from storage), and the terminator.
    pub(super) async fn send_message(
        &mut self,
        status: String,
        message_id: MessageId,
        layout: Layout,
        extent: Extent,
        body: Option<&[u8]>,
    ) -> Result<(), End> {
        let start = self.out.len();
        Reply::ok(status).encode(&mut self.out);
        let mut transfer = Transfer::new(layout, extent, self.shared.config.transfer_chunk);
        let sent = if let Some(body) = body {
            while let Some((offset, len)) = transfer.next_read(&mut self.out) {
                // `read_bodies` checked the body is `layout.size` octets.
                transfer.push(&body[offset as usize..][..len], &mut self.out);
            }
            let octets = transfer.octets();
            transfer.finish(&mut self.out);
            Some(octets)
        } else {
            self.stream_message(transfer, message_id, start).await?
        };
        // A message that could not be read was answered -ERR: not sent.
        let Some(octets) = sent else {
            return Ok(());
        };
        let metrics = &self.shared.metrics;
        match extent {
            Extent::Whole => {
                self.tally.retrieved += 1;
                self.tally.retrieved_octets += layout.size;
                metrics.message_retrieved(octets);
            }
            Extent::Top(_) => metrics.partly_retrieved(octets),
        }
        Ok(())
    }

    /// Streams a message from storage after its status line. The storage
    /// pool reads and stuffs the next chunk straight into a second buffer
    /// while this task writes the previous one, so reading and sending
    /// overlap and each octet is copied once between SQLite and the socket.
    /// If nothing is sent when reading fails, the reply from `start` on
    /// becomes an -ERR (`None`); else the octets of the message sent.
    async fn stream_message(
        &mut self,
        mut transfer: Transfer,
        message_id: MessageId,
        start: usize,
    ) -> Result<Option<u64>, End> {
        let Some(first) = transfer.next_read(&mut self.out) else {
            let octets = transfer.octets();
            transfer.finish(&mut self.out);
            return Ok(Some(octets));
        };
        let mut spare = Vec::new();
        let out = std::mem::take(&mut self.out);
        let mut job = self.read_chunk(transfer, message_id, first, out);
        let mut flushed = false;
        loop {
            let chunk = job.await;
            self.out = chunk.out;
            let transfer = chunk.transfer;
            if let Err(error) = chunk.read {
                if flushed {
                    return Err(End::TransferFailed(error));
                }
                // Nothing of this reply is sent yet: answer -ERR instead.
                log::error!(
                    "session {}: cannot read message {message_id}: {error}",
                    self.id
                );
                self.out.truncate(start);
                Reply::err_code(
                    RespCode::sys(error.is_temporary()),
                    "message cannot be read",
                )
                .encode(&mut self.out);
                return Ok(None);
            }
            let Some(next) = chunk.next else {
                let octets = transfer.octets();
                transfer.finish(&mut self.out);
                return Ok(Some(octets));
            };
            // Below the threshold the next chunk goes onto the same buffer;
            // past it, into the spare one while this one is sent.
            let flush = self.out.len() >= FLUSH_THRESHOLD;
            let buffer = std::mem::take(if flush { &mut spare } else { &mut self.out });
            job = self.read_chunk(transfer, message_id, next, buffer);
            if flush {
                self.flush().await?;
                flushed = true;
                spare = std::mem::take(&mut self.out);
            }
        }
    }

    /// Starts reading `range` of a message on the storage pool, stuffing
    /// it onto the end of `out`.
    fn read_chunk(
        &self,
        mut transfer: Transfer,
        message_id: MessageId,
        (offset, len): (u64, usize),
        mut out: Vec<u8>,
    ) -> smol::Task<StreamedChunk> {
        let store = Arc::clone(&self.shared.store);
        smol::unblock(move || {
            let read = store.read_body_with(message_id, offset, len, |piece| {
                transfer.push(piece, &mut out)
            });
            let next = match read {
                Ok(()) => transfer.next_read(&mut out),
                Err(_) => None,
            };
            StreamedChunk {
                transfer,
                out,
                next,
                read,
            }
        })
    }
}
