//! The bounded render pool: strict priorities, one render per metatile however many
//! requests wait for it, and backpressure instead of unbounded queues.
//!
//! A job is a `(style, metatile)` pair. It passes two stages:
//! 1. **fetch** (async, on the tokio runtime): the database queries, I/O only. At most
//!    `fetch_slots` jobs are between "fetch started" and "painted", which bounds the
//!    memory held by fetched rows and the database connections in use.
//! 2. **paint** (the render threads, one rayon pool): decode, rasterize, encode, write
//!    the metatile. Never on the async runtime or actix's workers; a render's own
//!    parallel work stays on these threads, so their number bounds rendering's CPU. At
//!    most one render per thread paints at once, so their number also bounds the
//!    canvases in memory.
//!
//! Queued jobs wait in three bounded FIFO queues, `interactive` > `stale` > `bulk`;
//! the fetch stage always takes the highest non-empty one. A job already queued or
//! running is joined, not duplicated ([`Submit::Joined`]); a waiting interactive request
//! promotes a queued stale or bulk job of the same metatile (renderd never does). A
//! full queue refuses new work at once ([`SubmitError::QueueFull`]) so callers can
//! answer 503 instead of piling up; bulk producers wait for room instead
//! ([`RenderPool::submit_when_room`]), woken when a job leaves the queue. Waiters that
//! give up (timeouts, disconnected clients) never cancel a job: it finishes and lands
//! in the cache for the next one. Shutdown closes the pool and waits for the running
//! jobs, up to a deadline.

mod pool;

pub(crate) use pool::{
    JobKey, PoolConfig, Priority, RenderBackend, RenderFailure, RenderPool, Submit, SubmitError,
    Waiter,
};
