//! Implementation of the pool described in the module docs of [`crate::queue`].

use crate::tile::{MetatileCoord, StyleName};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Why a render is wanted; lower value = served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// A client is waiting for a tile that is not in the cache.
    Interactive = 0,
    /// A stale tile was served; refresh it.
    Stale = 1,
    /// Seeding and admin re-renders.
    Bulk = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Interactive, Priority::Stale, Priority::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Stale => "stale",
            Priority::Bulk => "bulk",
        }
    }
}

/// One metatile of one style: the unit of rendering and of coalescing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub style: StyleName,
    pub meta: MetatileCoord,
}

/// A failed render, shared by every waiter of the job. It keeps its cause (a database
/// error, a full disk); the backend logged it once where it happened, so waiters pass
/// it on without logging it again.
#[derive(Debug, Clone)]
pub struct RenderFailure {
    message: Arc<str>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The data could not be fetched (the database): a fault outside the server that
    /// a retry may not meet.
    unavailable: bool,
}

impl std::fmt::Display for RenderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RenderFailure {
    /// The cause itself (not the `Arc` around it), so it can be told apart by type.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl RenderFailure {
    /// A failure with no underlying error (the pool stopped, the renderer panicked).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: Arc::from(message.into()),
            cause: None,
            unavailable: false,
        }
    }

    /// A failure caused by `cause`, described by `message`.
    pub fn caused_by(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: Arc::from(message.into()),
            cause: Some(Arc::new(cause)),
            unavailable: false,
        }
    }

    /// The data of the job could not be fetched (`cause`): the database is down, slow
    /// or refusing.
    pub fn data_unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            unavailable: true,
            ..Self::caused_by("the metatile's data could not be fetched", cause)
        }
    }

    /// Whether the data could not be fetched (see [`RenderFailure::data_unavailable`]).
    pub fn is_data_unavailable(&self) -> bool {
        self.unavailable
    }

    /// The underlying error, to be told apart by type (e.g. a database fault).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

/// Nice value of the render threads. Renders are throughput work and take every core
/// they get; hits are latency work on the HTTP workers. At nice 10 a render thread
/// yields the CPU to a worker that wakes up with a request (CFS weighs nice 10 about a
/// tenth of nice 0), so a burst of renders does not show in the latency of hits. A
/// worker that is runnable but was not just woken is only let back at the render
/// thread's next tick; render code yields every quarter millisecond for it
/// (`render::give_way`).
const RENDER_THREAD_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`RENDER_THREAD_NICE`] (Linux:
/// per thread). Not being allowed to is no failure: renders just compete as equals.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), RENDER_THREAD_NICE)
    {
        tracing::debug!(error = %e, "cannot lower the render thread's priority");
    }
}

/// What the pool drives: the async fetch and the CPU-bound paint-and-store of one job.
/// The backend logs a failure once, where it happens.
pub trait RenderBackend: Send + Sync + 'static {
    /// Whatever the fetch stage hands to the paint stage (rows, timings).
    type Fetched: Send + 'static;
    /// Database work, I/O only; runs as a task on the tokio runtime.
    fn fetch(
        self: Arc<Self>,
        key: JobKey,
        priority: Priority,
    ) -> BoxFuture<'static, Result<Self::Fetched, RenderFailure>>;
    /// Decode, paint, encode and store the metatile; runs on a render thread.
    fn paint_and_store(
        &self,
        key: &JobKey,
        priority: Priority,
        fetched: Self::Fetched,
    ) -> Result<(), RenderFailure>;
    /// `Some` while jobs cannot succeed (the database is down): stale and bulk jobs
    /// then wait in their queues until the future resolves, instead of failing one by
    /// one. Interactive jobs still run, and fail fast: a client is waiting for an answer.
    fn paused(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// Why a job was not accepted.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the {} render queue is full", .0.as_str())]
    QueueFull(Priority),
    #[error("the render pool is shutting down")]
    ShuttingDown,
    /// Only from [`RenderPool::submit_when_room`]: the caller's token was cancelled.
    #[error("cancelled while waiting for room in the queue")]
    Cancelled,
}

/// How a submission was taken.
pub enum Submit {
    /// A new job was queued.
    Queued(Waiter),
    /// The metatile was already queued or rendering; this waits for that job.
    Joined(Waiter),
}

impl Submit {
    pub fn into_waiter(self) -> Waiter {
        match self {
            Submit::Queued(w) | Submit::Joined(w) => w,
        }
    }
}

type Outcome = Option<Result<(), RenderFailure>>;

/// Resolves when the job is done; dropping it does not cancel the job.
pub struct Waiter {
    rx: watch::Receiver<Outcome>,
}

impl Waiter {
    /// Waits for the job's outcome.
    pub async fn wait(mut self) -> Result<(), RenderFailure> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome
                .clone()
                .unwrap_or_else(|| Err(RenderFailure::new("the job ended without an outcome"))),
            Err(_) => Err(RenderFailure::new(
                "the render pool stopped before the job ended",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
}

struct Job {
    priority: Priority,
    phase: Phase,
    done: watch::Sender<Outcome>,
}

struct State {
    queues: [VecDeque<JobKey>; 3],
    jobs: HashMap<JobKey, Job>,
    closed: bool,
}

/// A snapshot of the pool for `/status` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    /// Queued (not yet started) jobs per priority: interactive, stale, bulk.
    pub queued: [usize; 3],
    /// Jobs between the start of their fetch and the end of their paint.
    pub running: usize,
    /// Render threads painting right now.
    pub painting: usize,
    pub threads: usize,
    /// Jobs that may be fetched or fetched-and-waiting at once.
    pub fetch_slots: usize,
    /// Requests that joined a job instead of starting one.
    pub coalesced: u64,
    /// Jobs moved to a higher priority because someone waited for them.
    pub promoted: u64,
}

/// How big the pool is.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Render threads: they paint and encode, and bound the CPU renders use and the
    /// renders painting at once (each holds a canvas).
    pub threads: usize,
    /// Jobs between "fetch started" and "painted": bounds fetched data in memory and
    /// database connections in use. Keep it at most the database pool size.
    pub fetch_slots: usize,
    /// Queue sizes for interactive, stale, bulk.
    pub capacity: [usize; 3],
}

/// Why the pool could not start.
#[derive(Debug, Error)]
#[error("cannot start the render threads")]
pub struct StartError(#[source] rayon::ThreadPoolBuildError);

/// What [`RenderPool::shutdown`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Queued jobs dropped (their waiters got an error).
    pub dropped: usize,
    /// Jobs still fetching or painting when the deadline passed.
    pub unfinished: usize,
}

struct Shared {
    state: Mutex<State>,
    capacity: [usize; 3],
    /// A job was queued, a fetch slot was freed, or the pool closed: the dispatcher
    /// looks again.
    work_ready: Notify,
    /// A job left the queue of that priority: producers waiting for room look again.
    room: [Notify; 3],
    /// The last job finished: shutdown looks again.
    idle: Notify,
    coalesced: AtomicU64,
    promoted: AtomicU64,
    painting: AtomicUsize,
    threads: usize,
    fetch_slots: usize,
    /// One permit per fetch slot. Taken by the dispatcher under the state lock, so a
    /// submit that holds the lock sees exactly how many queued jobs start at once.
    slots: Arc<Semaphore>,
    /// One permit per render thread, taken before a fetched job is handed to them. A
    /// render thread waiting for its render's parallel slices steals whatever job the
    /// rayon pool holds, a whole other render included: without this bound a thread
    /// could hold several canvases on its stack.
    paints: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queues half-updated in a way
        // that matters more than stopping service, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a fetch slot back and tells the dispatcher, which may have queued work.
    fn free_slot(&self, slot: OwnedSemaphorePermit) {
        drop(slot);
        self.work_ready.notify_one();
    }

    fn finish(&self, key: &JobKey, result: Result<(), RenderFailure>) {
        let mut state = self.lock();
        if let Some(job) = state.jobs.remove(key) {
            job.done.send_replace(Some(result));
        }
        if state.jobs.is_empty() {
            self.idle.notify_waiters();
        }
    }
}

/// The pool. Share it behind an `Arc`; [`RenderPool::shutdown`] stops it.
pub struct RenderPool<B: RenderBackend> {
    shared: Arc<Shared>,
    /// Kept for tests, which look into their backend.
    #[cfg(test)]
    backend: Arc<B>,
    _backend: std::marker::PhantomData<fn() -> B>,
    /// The render threads; dropped at shutdown, after the last job or the deadline.
    painters: Mutex<Option<Arc<rayon::ThreadPool>>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl<B: RenderBackend> RenderPool<B> {
    /// Starts the render threads and the fetch dispatcher on the current tokio runtime.
    ///
    /// The render threads are one rayon pool: a render's own parallel work (encoding
    /// its 64 tiles) runs on the same threads, so `threads` bounds the CPU that
    /// rendering takes, however many renders run.
    pub fn start(backend: B, config: PoolConfig) -> Result<Self, StartError> {
        let threads = config.threads.max(1);
        let fetch_slots = config.fetch_slots.max(1);
        let painters = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("render-{i}"))
            .start_handler(|_| lower_this_threads_priority())
            .build()
            .map_err(StartError)?;
        let painters = Arc::new(painters);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queues: Default::default(),
                jobs: HashMap::new(),
                closed: false,
            }),
            capacity: config.capacity,
            work_ready: Notify::new(),
            room: Default::default(),
            idle: Notify::new(),
            coalesced: AtomicU64::new(0),
            promoted: AtomicU64::new(0),
            painting: AtomicUsize::new(0),
            threads,
            fetch_slots,
            slots: Arc::new(Semaphore::new(fetch_slots)),
            paints: Arc::new(Semaphore::new(threads)),
        });
        let backend = Arc::new(backend);
        let dispatcher = tokio::spawn(dispatch_loop(
            shared.clone(),
            Arc::clone(&backend),
            painters.clone(),
        ));
        Ok(Self {
            shared,
            #[cfg(test)]
            backend,
            _backend: std::marker::PhantomData,
            painters: Mutex::new(Some(painters)),
            dispatcher,
        })
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Queues a render of `key` at `priority`, or joins the job already there (promoting
    /// it when `priority` is higher). Never blocks.
    pub fn submit(&self, key: JobKey, priority: Priority) -> Result<Submit, SubmitError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(SubmitError::ShuttingDown);
        }
        if let Some(job) = state.jobs.get_mut(&key) {
            let rx = job.done.subscribe();
            let (phase, old) = (job.phase, job.priority);
            if phase == Phase::Queued && priority < old {
                job.priority = priority;
                let queues = &mut state.queues;
                queues[old as usize].retain(|k| k != &key);
                queues[priority as usize].push_back(key);
                self.shared.promoted.fetch_add(1, Ordering::Relaxed);
                self.shared.room[old as usize].notify_waiters();
            }
            self.shared.coalesced.fetch_add(1, Ordering::Relaxed);
            return Ok(Submit::Joined(Waiter { rx }));
        }
        let queue = priority as usize;
        if waiting_for_a_slot(&state, &self.shared, priority) >= self.shared.capacity[queue] {
            return Err(SubmitError::QueueFull(priority));
        }
        let (done, rx) = watch::channel(None);
        state.jobs.insert(
            key.clone(),
            Job {
                priority,
                phase: Phase::Queued,
                done,
            },
        );
        state.queues[queue].push_back(key);
        drop(state);
        self.shared.work_ready.notify_one();
        Ok(Submit::Queued(Waiter { rx }))
    }

    /// Like [`RenderPool::submit`], but a full queue is waited out (woken when a job
    /// leaves it) instead of refused: for bulk producers (seeding, expiry re-renders),
    /// which must not crowd out interactive misses but should not give up either.
    pub async fn submit_when_room(
        &self,
        key: JobKey,
        priority: Priority,
        cancel: &CancellationToken,
    ) -> Result<Submit, SubmitError> {
        loop {
            // Registered before looking, so a job leaving between the look and the
            // wait is not missed.
            let room = self.shared.room[priority as usize].notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.submit(key.clone(), priority) {
                Err(SubmitError::QueueFull(_)) => {}
                other => return other,
            }
            tokio::select! {
                _ = room => {}
                _ = cancel.cancelled() => return Err(SubmitError::Cancelled),
            }
        }
    }

    /// Like [`RenderPool::submit_when_room`], for a render that must read the data as
    /// it is now (an expiry's re-render after the rows or the file changed): a job of
    /// `key` that has started may have read them before the change, so it is waited out
    /// and a new one queued. A queued job has read nothing yet and is joined.
    pub async fn submit_after_change(
        &self,
        key: JobKey,
        priority: Priority,
        cancel: &CancellationToken,
    ) -> Result<Submit, SubmitError> {
        loop {
            let started = {
                let state = self.shared.lock();
                state
                    .jobs
                    .get(&key)
                    .filter(|job| job.phase == Phase::Running)
                    .map(|job| job.done.subscribe())
            };
            // A job that starts after this look fetches after the change: joining it
            // is right.
            let Some(mut done) = started else {
                return self.submit_when_room(key, priority, cancel).await;
            };
            tokio::select! {
                _ = done.wait_for(Option::is_some) => {}
                _ = cancel.cancelled() => return Err(SubmitError::Cancelled),
            }
        }
    }

    /// Whether a job of `key` is queued or running.
    pub fn is_active(&self, key: &JobKey) -> bool {
        self.shared.lock().jobs.contains_key(key)
    }

    /// The priority of a queued or running job, if there is one (whether a submit would
    /// join rather than start a render).
    pub(crate) fn job_priority(&self, key: &JobKey) -> Option<Priority> {
        self.shared.lock().jobs.get(key).map(|j| j.priority)
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        let queued = [
            state.queues[0].len(),
            state.queues[1].len(),
            state.queues[2].len(),
        ];
        let running = state.jobs.len() - queued.iter().sum::<usize>();
        PoolStats {
            queued,
            running,
            painting: self.shared.painting.load(Ordering::Relaxed),
            threads: self.shared.threads,
            fetch_slots: self.shared.fetch_slots,
            coalesced: self.shared.coalesced.load(Ordering::Relaxed),
            promoted: self.shared.promoted.load(Ordering::Relaxed),
        }
    }

    /// Closes the pool: new submissions are refused, queued jobs are dropped (their
    /// waiters get an error), and the jobs already fetching or painting finish and are
    /// stored, for at most `timeout`. Then the render threads are let go.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        let dropped: Vec<Job> = {
            let mut state = self.shared.lock();
            state.closed = true;
            let queued: Vec<JobKey> = state.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
            queued.iter().filter_map(|k| state.jobs.remove(k)).collect()
        };
        for job in &dropped {
            job.done
                .send_replace(Some(Err(RenderFailure::new("server shutting down"))));
        }
        // The dispatcher sees `closed` and ends; waiting producers see it on their next
        // look.
        self.shared.work_ready.notify_waiters();
        for room in &self.shared.room {
            room.notify_waiters();
        }
        let unfinished = loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let running = self.shared.lock().jobs.len();
            if running == 0 {
                break 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break self.shared.lock().jobs.len();
            }
        };
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                timeout.secs = timeout.as_secs(),
                "shutdown deadline passed with renders still running; they are abandoned (no half-written metatile is ever visible)"
            );
        }
        self.painters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        ShutdownReport {
            dropped: dropped.len(),
            unfinished,
        }
    }
}

impl<B: RenderBackend> Drop for RenderPool<B> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.dispatcher.abort();
    }
}

/// Takes the highest-priority queued job whenever a fetch slot is free; ends when the
/// pool is closed.
async fn dispatch_loop<B: RenderBackend>(
    shared: Arc<Shared>,
    backend: Arc<B>,
    painters: Arc<rayon::ThreadPool>,
) {
    while let Some((key, priority, slot)) = next_job(&shared, &*backend).await {
        // Started here, in dispatch (priority) order; fetches may finish in any order.
        let fetch = backend.clone().fetch(key.clone(), priority);
        tokio::spawn(run_job(
            shared.clone(),
            backend.clone(),
            painters.clone(),
            (key, priority),
            fetch,
            slot,
        ));
    }
}

/// The next job to fetch with the fetch slot it runs in, or `None` once the pool is
/// closed. The slot is taken and the job leaves its queue under one lock, so a submit
/// never sees a free slot and a queued job that are about to meet. While the backend is
/// paused only interactive jobs are taken; the others wait for it to resume.
async fn next_job<B: RenderBackend>(
    shared: &Shared,
    backend: &B,
) -> Option<(JobKey, Priority, OwnedSemaphorePermit)> {
    loop {
        // Registered before looking, so a submit or a freed slot between the look and
        // the wait is not missed.
        let notified = shared.work_ready.notified();
        let resumed = backend.paused();
        {
            let mut state = shared.lock();
            if state.closed {
                return None;
            }
            let paused = resumed.is_some();
            let takeable = Priority::ALL.iter().any(|&p| {
                (!paused || p == Priority::Interactive) && !state.queues[p as usize].is_empty()
            });
            if takeable {
                if let Ok(slot) = shared.slots.clone().try_acquire_owned() {
                    if let Some((key, priority)) = take_next(&mut state, shared, paused) {
                        return Some((key, priority, slot));
                    }
                }
            }
        }
        match resumed {
            Some(resumed) => {
                tokio::select! {
                    () = notified => {}
                    () = resumed => {}
                }
            }
            None => notified.await,
        }
    }
}

/// How many jobs of `priority` would still wait if the free fetch slots took the
/// queued jobs now: higher priorities take them first. The queue's capacity bounds
/// this number, not jobs that a free slot is about to start.
fn waiting_for_a_slot(state: &State, shared: &Shared, priority: Priority) -> usize {
    let free = shared.slots.available_permits();
    let ahead: usize = state.queues[..priority as usize]
        .iter()
        .map(|q| q.len())
        .sum();
    state.queues[priority as usize]
        .len()
        .saturating_sub(free.saturating_sub(ahead))
}

/// Fetches on the runtime, then waits for a render thread's turn and paints on it; the
/// slot is held until the paint is done. The paint is handed to the render threads from a blocking task that
/// only waits for it: the async side learns the outcome without polling, and a test in
/// paused time does not jump its clock while a render is running.
async fn run_job<B: RenderBackend>(
    shared: Arc<Shared>,
    backend: Arc<B>,
    painters: Arc<rayon::ThreadPool>,
    (key, priority): (JobKey, Priority),
    fetch: impl Future<Output = Result<B::Fetched, RenderFailure>>,
    slot: OwnedSemaphorePermit,
) {
    // The slot is given back before the waiters hear the outcome: whoever they answer
    // finds the pool's room as it is once this job is done.
    let fetched = match fetch.await {
        Ok(fetched) => fetched,
        Err(e) => {
            shared.free_slot(slot);
            return shared.finish(&key, Err(e));
        }
    };
    // Never closed, so the wait ends once a render thread is free.
    let Ok(paint_turn) = shared.paints.clone().acquire_owned().await else {
        shared.free_slot(slot);
        return shared.finish(&key, Err(RenderFailure::new("the render pool stopped")));
    };
    let painting = shared.clone();
    let painted_key = key.clone();
    let paint = tokio::task::spawn_blocking(move || {
        let _paint_turn = paint_turn;
        painters.install(|| {
            painting.painting.fetch_add(1, Ordering::Relaxed);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                backend.paint_and_store(&painted_key, priority, fetched)
            }));
            painting.painting.fetch_sub(1, Ordering::Relaxed);
            result
        })
    });
    let result = match paint.await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => {
            tracing::error!(style = %key.style, meta = %key.meta, "the renderer panicked");
            Err(RenderFailure::new("the renderer panicked"))
        }
    };
    shared.free_slot(slot);
    shared.finish(&key, result);
}

fn take_next(state: &mut State, shared: &Shared, paused: bool) -> Option<(JobKey, Priority)> {
    for p in Priority::ALL {
        if paused && p != Priority::Interactive {
            break;
        }
        if let Some(key) = state.queues[p as usize].pop_front() {
            shared.room[p as usize].notify_waiters();
            if let Some(job) = state.jobs.get_mut(&key) {
                job.phase = Phase::Running;
                return Some((key, job.priority));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;
    use std::time::Instant;

    /// A door the render threads wait at until a test opens it.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gate {
        fn close(&self) {
            *self.open.lock().unwrap() = false;
        }
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
        fn pass(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
    }

    /// Counts renders per key; paints wait at `gate` (open unless a test closes it).
    struct CountingBackend {
        renders: Mutex<Vec<(JobKey, Priority)>>,
        gate: Gate,
        /// Jobs in the order their fetch started (the order priorities decide).
        started: Mutex<Vec<(JobKey, Priority)>>,
        /// True: the backend says it is paused.
        paused: watch::Sender<bool>,
    }

    impl Default for CountingBackend {
        fn default() -> Self {
            let backend = Self {
                renders: Mutex::default(),
                gate: Gate::default(),
                started: Mutex::default(),
                paused: watch::Sender::new(false),
            };
            backend.gate.open();
            backend
        }
    }

    impl RenderBackend for CountingBackend {
        type Fetched = ();
        fn fetch(
            self: Arc<Self>,
            key: JobKey,
            p: Priority,
        ) -> BoxFuture<'static, Result<(), RenderFailure>> {
            self.started.lock().unwrap().push((key, p));
            Box::pin(async move { Ok(()) })
        }
        fn paint_and_store(&self, key: &JobKey, p: Priority, _: ()) -> Result<(), RenderFailure> {
            self.gate.pass();
            self.renders.lock().unwrap().push((key.clone(), p));
            Ok(())
        }
        fn paused(&self) -> Option<BoxFuture<'static, ()>> {
            if !*self.paused.borrow() {
                return None;
            }
            let mut rx = self.paused.subscribe();
            Some(Box::pin(async move {
                let _ = rx.wait_for(|paused| !*paused).await;
            }))
        }
    }

    fn key(x: u32) -> JobKey {
        JobKey {
            style: StyleName::parse("osm").unwrap(),
            meta: MetatileCoord::try_new(10, u64::from(x) * 8, 0).unwrap(),
        }
    }

    fn pool(threads: usize, capacity: usize) -> RenderPool<CountingBackend> {
        RenderPool::start(
            CountingBackend::default(),
            PoolConfig {
                threads,
                fetch_slots: threads * 2,
                capacity: [capacity; 3],
            },
        )
        .unwrap()
    }

    /// Waits until `running` jobs have left the queues (fetched, waiting to paint).
    async fn until_running(pool: &RenderPool<CountingBackend>, running: usize) {
        while pool.stats().running < running {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_render_after_a_change_never_joins_a_job_that_already_started() {
        let pool = Arc::new(pool(1, 8));
        pool.backend().gate.close();
        let first = pool.submit(key(1), Priority::Bulk).unwrap().into_waiter();
        until_running(&pool, 1).await;
        // The running job read the data before the change: a re-render waits for it and
        // renders again.
        let never = CancellationToken::new();
        let after_change = {
            let (pool, never) = (pool.clone(), never.clone());
            tokio::spawn(async move {
                pool.submit_after_change(key(1), Priority::Bulk, &never)
                    .await
                    .map(Submit::into_waiter)
            })
        };
        pool.backend().gate.open();
        first.wait().await.unwrap();
        after_change.await.unwrap().unwrap().wait().await.unwrap();
        let renders = pool.backend().renders.lock().unwrap().len();
        assert_eq!(renders, 2, "the re-render joined the job that had started");
        // A queued job has read nothing yet: joined. (Both fetch slots are taken, so
        // key 3 stays queued.)
        pool.backend().gate.close();
        let running: Vec<Waiter> = [2, 4]
            .map(|x| pool.submit(key(x), Priority::Bulk).unwrap().into_waiter())
            .into();
        until_running(&pool, 2).await;
        let queued = pool.submit(key(3), Priority::Bulk).unwrap().into_waiter();
        let joined = pool
            .submit_after_change(key(3), Priority::Bulk, &never)
            .await
            .unwrap();
        assert!(matches!(joined, Submit::Joined(_)));
        pool.backend().gate.open();
        for w in running.into_iter().chain([queued, joined.into_waiter()]) {
            w.wait().await.unwrap();
        }
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_of_one_metatile_render_it_once() {
        let pool = pool(2, 64);
        pool.backend().gate.close();
        let waiters: Vec<Waiter> = (0..64)
            .map(|_| {
                pool.submit(key(1), Priority::Interactive)
                    .unwrap()
                    .into_waiter()
            })
            .collect();
        pool.backend().gate.open();
        for w in waiters {
            w.wait().await.unwrap();
        }
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 1);
        assert_eq!(pool.stats().coalesced, 63);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let pool = pool(1, 2);
        pool.backend().gate.close();
        // Two fetch slots: jobs 0 and 1 leave the queue, 2 and 3 fill it.
        let mut waiters = Vec::new();
        for x in 0..2 {
            waiters.push(
                pool.submit(key(x), Priority::Interactive)
                    .unwrap()
                    .into_waiter(),
            );
        }
        until_running(&pool, 2).await;
        for x in 2..4 {
            waiters.push(
                pool.submit(key(x), Priority::Interactive)
                    .unwrap()
                    .into_waiter(),
            );
        }
        let start = Instant::now();
        let refused = pool.submit(key(9), Priority::Interactive).err();
        assert_eq!(refused, Some(SubmitError::QueueFull(Priority::Interactive)));
        // Refusing takes a lock and a length check: microseconds, never a wait.
        assert!(start.elapsed() < Duration::from_millis(10));
        // Other priorities have their own room.
        assert!(pool.submit(key(10), Priority::Bulk).is_ok());
        pool.backend().gate.open();
        for w in waiters {
            w.wait().await.unwrap();
        }
    }

    /// A burst counts free fetch slots as room even before the dispatcher has run: the
    /// queue bounds the jobs that wait for a slot, not the jobs about to get one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_fills_the_free_slots_and_the_queue_before_refusing() {
        let pool = pool(1, 2);
        pool.backend().gate.close();
        // No await between the submits: the dispatcher cannot take a job meanwhile.
        let accepted: Vec<_> = (0..4)
            .map(|x| {
                pool.submit(key(x), Priority::Interactive)
                    .map(|s| s.into_waiter())
            })
            .collect();
        assert!(accepted.iter().all(Result::is_ok));
        let refused = pool.submit(key(9), Priority::Interactive).err();
        assert_eq!(refused, Some(SubmitError::QueueFull(Priority::Interactive)));
        // Bulk work counts the interactive jobs ahead of it for the free slots.
        let bulk: Vec<_> = (10..12)
            .map(|x| pool.submit(key(x), Priority::Bulk).is_ok())
            .collect();
        assert_eq!(bulk, [true, true]);
        assert!(pool.submit(key(12), Priority::Bulk).is_err());
        pool.backend().gate.open();
        for waiter in accepted.into_iter().flatten() {
            waiter.wait().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_producer_waits_for_room_and_is_woken_when_a_job_leaves() {
        let pool = Arc::new(pool(1, 1));
        pool.backend().gate.close();
        // Two in the fetch slots, one in the bulk queue: full.
        for x in 0..3 {
            pool.submit(key(x), Priority::Bulk).unwrap();
            until_running(&pool, (x as usize + 1).min(2)).await;
        }
        assert!(matches!(
            pool.submit(key(7), Priority::Bulk),
            Err(SubmitError::QueueFull(Priority::Bulk))
        ));
        let cancel = CancellationToken::new();
        let producer = {
            let (pool, cancel) = (pool.clone(), cancel.clone());
            tokio::spawn(async move {
                pool.submit_when_room(key(7), Priority::Bulk, &cancel)
                    .await
                    .map(Submit::into_waiter)
            })
        };
        let waiting = pool.clone();
        let cancelled = tokio::spawn(async move {
            let never = CancellationToken::new();
            never.cancel();
            waiting
                .submit_when_room(key(8), Priority::Bulk, &never)
                .await
        });
        assert!(matches!(
            cancelled.await.unwrap(),
            Err(SubmitError::Cancelled)
        ));
        pool.backend().gate.open();
        producer.await.unwrap().unwrap().wait().await.unwrap();
        let renders = pool.backend().renders.lock().unwrap().len();
        assert!(renders >= 3, "{renders} renders");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn higher_priorities_run_first_and_waiting_clients_promote_jobs() {
        let pool = pool(1, 8);
        pool.backend().gate.close();
        let blockers: Vec<Waiter> = (100..102)
            .map(|x| pool.submit(key(x), Priority::Bulk).unwrap().into_waiter())
            .collect();
        until_running(&pool, 2).await;
        let bulk = pool.submit(key(1), Priority::Bulk).unwrap().into_waiter();
        let stale = pool.submit(key(2), Priority::Stale).unwrap().into_waiter();
        let promoted = pool.submit(key(3), Priority::Stale).unwrap().into_waiter();
        let joined = pool.submit(key(3), Priority::Interactive).unwrap();
        assert!(matches!(joined, Submit::Joined(_)));
        assert_eq!(pool.job_priority(&key(3)), Some(Priority::Interactive));
        pool.backend().gate.open();
        for w in [bulk, stale, promoted, joined.into_waiter()]
            .into_iter()
            .chain(blockers)
        {
            w.wait().await.unwrap();
        }
        let order: Vec<(u32, Priority)> = pool
            .backend()
            .started
            .lock()
            .unwrap()
            .iter()
            .map(|(k, p)| (k.meta.x / 8, *p))
            .filter(|(x, _)| *x < 100)
            .collect();
        assert_eq!(
            order,
            vec![
                (3, Priority::Interactive),
                (2, Priority::Stale),
                (1, Priority::Bulk)
            ]
        );
        assert_eq!(pool.stats().promoted, 1);
        // The stale-then-interactive metatile was rendered once, at interactive priority.
        let renders_of_3: Vec<Priority> = pool
            .backend()
            .renders
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.meta.x / 8 == 3)
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(renders_of_3, vec![Priority::Interactive]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_paused_only_interactive_jobs_run_and_the_others_wait_their_turn() {
        let pool = pool(1, 8);
        pool.backend().paused.send_replace(true);
        let held: Vec<Waiter> = [(1, Priority::Bulk), (2, Priority::Stale)]
            .into_iter()
            .map(|(x, p)| pool.submit(key(x), p).unwrap().into_waiter())
            .collect();
        pool.submit(key(3), Priority::Interactive)
            .unwrap()
            .into_waiter()
            .wait()
            .await
            .unwrap();
        assert_eq!(pool.stats().queued, [0, 1, 1], "stale and bulk held");
        pool.backend().paused.send_replace(false);
        for w in held {
            w.wait().await.unwrap();
        }
        let order: Vec<u32> = pool
            .backend()
            .started
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.meta.x / 8)
            .collect();
        assert_eq!(order, vec![3, 2, 1], "then in priority order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_waiter_does_not_cancel_the_render() {
        let pool = pool(1, 8);
        let joined_later = {
            let first = pool.submit(key(5), Priority::Interactive).unwrap();
            let second = pool.submit(key(5), Priority::Interactive).unwrap();
            drop(first);
            second.into_waiter()
        };
        joined_later.wait().await.unwrap();
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_drops_the_queue_finishes_running_jobs_and_refuses_new_ones() {
        let pool = pool(1, 8);
        pool.backend().gate.close();
        let running: Vec<Waiter> = (0..2)
            .map(|x| pool.submit(key(x), Priority::Bulk).unwrap().into_waiter())
            .collect();
        until_running(&pool, 2).await;
        let queued = pool.submit(key(3), Priority::Bulk).unwrap().into_waiter();
        let (report, ()) = tokio::join!(pool.shutdown(Duration::from_secs(60)), async {
            // Dropped at once; the running ones go on once the gate opens.
            assert!(queued.wait().await.is_err());
            pool.backend().gate.open();
        });
        assert_eq!(
            report,
            ShutdownReport {
                dropped: 1,
                unfinished: 0
            }
        );
        for w in running {
            w.wait().await.unwrap();
        }
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 2);
        assert_eq!(
            pool.submit(key(4), Priority::Interactive).err(),
            Some(SubmitError::ShuttingDown)
        );
    }

    /// Paints like the real renderer: its own parallel work (64 slices) runs on the
    /// render threads, and it counts the paints in progress at once.
    #[derive(Default)]
    struct NestingBackend {
        painting: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    impl RenderBackend for NestingBackend {
        type Fetched = ();
        fn fetch(
            self: Arc<Self>,
            _: JobKey,
            _: Priority,
        ) -> BoxFuture<'static, Result<(), RenderFailure>> {
            Box::pin(async move { Ok(()) })
        }
        fn paint_and_store(&self, _: &JobKey, _: Priority, _: ()) -> Result<(), RenderFailure> {
            use rayon::prelude::*;
            let now = self.painting.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            (0..64)
                .into_par_iter()
                .for_each(|_| std::thread::sleep(Duration::from_millis(1)));
            self.painting.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
        fn paused(&self) -> Option<BoxFuture<'static, ()>> {
            None
        }
    }

    // A render thread that waits for its render's slices would otherwise take up a
    // whole other render (rayon steals any job while it waits), and each paint holds a
    // canvas of up to 81 MiB: the working set would grow past `threads` canvases.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_renders_paint_at_once_than_there_are_render_threads() {
        let pool = RenderPool::start(
            NestingBackend::default(),
            PoolConfig {
                threads: 2,
                fetch_slots: 8,
                capacity: [16; 3],
            },
        )
        .unwrap();
        let waiters: Vec<Waiter> = (0..16)
            .map(|x| pool.submit(key(x), Priority::Bulk).unwrap().into_waiter())
            .collect();
        for w in waiters {
            w.wait().await.unwrap();
        }
        assert_eq!(pool.backend().most_at_once.load(Ordering::SeqCst), 2);
    }

    // Real time: a running render holds the clock of a paused test still.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_gives_up_on_a_stuck_render_at_its_deadline() {
        let pool = pool(1, 8);
        pool.backend().gate.close();
        let _stuck = pool.submit(key(1), Priority::Interactive).unwrap();
        while pool.stats().painting < 1 {
            tokio::task::yield_now().await;
        }
        let deadline = Duration::from_millis(200);
        let started = Instant::now();
        let report = pool.shutdown(deadline).await;
        assert_eq!(
            report,
            ShutdownReport {
                dropped: 0,
                unfinished: 1
            }
        );
        assert!(started.elapsed() >= deadline);
        pool.backend().gate.open();
    }
}
