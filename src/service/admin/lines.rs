//! Streaming a text tile list (osm2pgsql's expire output) from a request body: the
//! body's chunks go through a small bounded channel to a blocking thread that parses
//! lines into an [`MetatileSet`] as they arrive. The body is never held whole; memory is
//! the channel (a few chunks) plus the set, which grows with the distinct metatiles
//! named, not with the lines.

use super::request::BadLines;
use crate::area::{MetatileSet, TileLines};
use bytes::Bytes;
use std::io::{self, BufRead, Read};
use tokio::sync::mpsc;

/// Chunks in flight between the request and the parser.
pub const CHANNEL_CHUNKS: usize = 8;

/// What an input came to before anything is touched.
#[derive(Debug, Clone)]
pub struct BuiltInput {
    pub set: MetatileSet,
    /// Tiles accepted (tile lists; 0 for areas).
    pub tiles: u64,
    /// Lines read (text lists only).
    pub lines: Option<u64>,
    pub bad: BadLines,
}

/// A [`BufRead`] over chunks received from a channel; ends when the sender is dropped.
/// Blocking: use it on a blocking thread.
pub struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    pos: usize,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            chunk: Bytes::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.chunk.len());
    }
}

/// Reads `z/x/y` lines into `set` (empty, built for the metatiles wanted). Stops at
/// the first tile that does not fit a set with a limit ([`MetatileSet::overflowed`]).
pub fn read_tile_text(reader: impl BufRead, mut set: MetatileSet) -> io::Result<BuiltInput> {
    let mut bad = BadLines::default();
    let mut tiles = 0u64;
    let mut lines = TileLines::new(reader);
    for item in lines.by_ref() {
        match item? {
            Ok(tile) => {
                tiles += 1;
                set.insert(tile);
                if set.overflowed() {
                    break;
                }
            }
            Err(line) => bad.record(line),
        }
    }
    Ok(BuiltInput {
        set,
        tiles,
        lines: Some(lines.lines_read()),
        bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_split_across_chunks_are_read_whole() {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let parser = tokio::task::spawn_blocking(move || {
            read_tile_text(ChunkReader::new(rx), MetatileSet::new(18))
        });
        for chunk in ["16/37304/1", "8968\n16/373", "05/18969\nbad\n", "", "3/1/1"] {
            tx.send(Ok(Bytes::from(chunk))).await.unwrap();
        }
        drop(tx);
        let built = parser.await.unwrap().unwrap();
        assert_eq!((built.tiles, built.lines), (3, Some(4)));
        assert_eq!(built.bad.count, 1);
        assert_eq!(built.bad.examples[0].line_no, 3);
        assert_eq!(built.bad.examples[0].text, "bad");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_body_ends_the_read_with_its_error() {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let parser = tokio::task::spawn_blocking(move || {
            read_tile_text(ChunkReader::new(rx), MetatileSet::new(18))
        });
        tx.send(Ok(Bytes::from("1/0/0\n"))).await.unwrap();
        tx.send(Err(io::Error::other("connection reset")))
            .await
            .unwrap();
        assert!(parser.await.unwrap().is_err());
    }
}
