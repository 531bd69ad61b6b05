//! The bounded render pool: strict priorities, one render per metatile however many
//! requests wait for it, and backpressure instead of unbounded queues.
//!
//! A job is a `(style, metatile)` pair. It passes two stages:
//! 1. **fetch** (async, on the tokio runtime): the database queries. At most
//!    `fetch_slots` jobs are between "fetch started" and "painted", which bounds the
//!    memory held by fetched features.
//! 2. **paint** (dedicated OS threads): rasterize, encode, write the metatile. Never on
//!    the async runtime or actix's workers.
//!
//! Queued jobs wait in three bounded FIFO queues, `interactive` > `stale` > `bulk`;
//! the fetch stage always takes the highest non-empty one. A job already queued or
//! running is joined, not duplicated ([`Submit::Joined`]); a waiting interactive request
//! promotes a queued stale or bulk job of the same metatile (renderd never does). A
//! full queue refuses new work at once ([`SubmitError::QueueFull`]) so callers can
//! answer 503 instead of piling up. Waiters that give up (timeouts, disconnected
//! clients) never cancel a job: it finishes and lands in the cache for the next one.

mod pool;

pub use pool::{
    JobKey, PoolStats, Priority, RenderBackend, RenderFailure, RenderPool, Submit, SubmitError,
    Waiter,
};
