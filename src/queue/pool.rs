//! Implementation of the pool described in the module docs of [`crate::queue`].

use crate::tile::{MetatileCoord, StyleName};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{watch, Notify, Semaphore};

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

/// A failed render, shared by every waiter of the job.
#[derive(Debug, Error, Clone)]
#[error("{0}")]
pub struct RenderFailure(pub Arc<str>);

impl RenderFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self(Arc::from(message.into()))
    }
}

/// What the pool drives: the async fetch and the CPU-bound paint-and-store of one job.
pub trait RenderBackend: Send + Sync + 'static {
    /// Whatever the fetch stage hands to the paint stage (features, timings).
    type Fetched: Send + 'static;
    /// Database work; runs as a task on the tokio runtime.
    fn fetch(
        self: Arc<Self>,
        key: JobKey,
        priority: Priority,
    ) -> BoxFuture<'static, Result<Self::Fetched, RenderFailure>>;
    /// Paint, encode and store the metatile; runs on a render thread.
    fn paint_and_store(
        &self,
        key: &JobKey,
        priority: Priority,
        fetched: Self::Fetched,
    ) -> Result<(), RenderFailure>;
}

/// Why a job was not accepted.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the {} render queue is full", .0.as_str())]
    QueueFull(Priority),
    #[error("the render pool is shutting down")]
    ShuttingDown,
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
        loop {
            if let Some(result) = self.rx.borrow_and_update().clone() {
                return result;
            }
            if self.rx.changed().await.is_err() {
                return Err(RenderFailure::new(
                    "the render pool stopped before the job ended",
                ));
            }
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
    shutting_down: bool,
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
    /// Requests that joined a job instead of starting one.
    pub coalesced: u64,
    /// Jobs moved to a higher priority because someone waited for them.
    pub promoted: u64,
}

struct Shared {
    state: Mutex<State>,
    capacity: [usize; 3],
    work_ready: Notify,
    coalesced: AtomicU64,
    promoted: AtomicU64,
    painting: AtomicUsize,
    threads: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queues half-updated in a way
        // that matters more than stopping service, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, key: &JobKey, result: Result<(), RenderFailure>) {
        if let Some(job) = self.lock().jobs.remove(key) {
            job.done.send_replace(Some(result));
        }
    }
}

/// A message from the fetch stage to the paint threads.
struct PaintJob<F> {
    key: JobKey,
    priority: Priority,
    fetched: F,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// The pool. Cheap to share behind an `Arc`; dropping the last handle stops the threads
/// after the jobs already fetched are painted.
pub struct RenderPool<B: RenderBackend> {
    shared: Arc<Shared>,
    backend: Arc<B>,
    paint_tx: Mutex<Option<crossbeam_channel::Sender<PaintJob<B::Fetched>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl<B: RenderBackend> RenderPool<B> {
    /// Starts `threads` paint threads and the fetch dispatcher on the current tokio
    /// runtime. `capacity` = queue sizes for interactive, stale, bulk.
    pub fn start(backend: B, threads: usize, capacity: [usize; 3]) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queues: Default::default(),
                jobs: HashMap::new(),
                shutting_down: false,
            }),
            capacity,
            work_ready: Notify::new(),
            coalesced: AtomicU64::new(0),
            promoted: AtomicU64::new(0),
            painting: AtomicUsize::new(0),
            threads,
        });
        let backend = Arc::new(backend);
        let (paint_tx, paint_rx) = crossbeam_channel::unbounded::<PaintJob<B::Fetched>>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = paint_rx.clone();
            let shared = shared.clone();
            let backend = backend.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("render-{i}"))
                    .spawn(move || paint_loop(&shared, &*backend, &rx))?,
            );
        }
        // One fetch ahead per thread keeps the painters busy while queries run.
        let slots = Arc::new(Semaphore::new(threads * 2));
        let dispatcher = tokio::spawn(dispatch_loop(
            shared.clone(),
            backend.clone(),
            slots,
            paint_tx.clone(),
        ));
        Ok(Self {
            shared,
            backend,
            paint_tx: Mutex::new(Some(paint_tx)),
            threads: Mutex::new(handles),
            dispatcher,
        })
    }

    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Queues a render of `key` at `priority`, or joins the job already there (promoting
    /// it when `priority` is higher). Never blocks.
    pub fn submit(&self, key: JobKey, priority: Priority) -> Result<Submit, SubmitError> {
        let mut state = self.shared.lock();
        if state.shutting_down {
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
            }
            self.shared.coalesced.fetch_add(1, Ordering::Relaxed);
            return Ok(Submit::Joined(Waiter { rx }));
        }
        let queue = priority as usize;
        if state.queues[queue].len() >= self.shared.capacity[queue] {
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

    /// The priority of a queued or running job, if there is one.
    pub fn job_priority(&self, key: &JobKey) -> Option<Priority> {
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
            coalesced: self.shared.coalesced.load(Ordering::Relaxed),
            promoted: self.shared.promoted.load(Ordering::Relaxed),
        }
    }

    /// Stops taking jobs, drops the queued ones (their waiters get an error), lets the
    /// running ones finish and joins the render threads, waiting at most `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        let dropped: Vec<Job> = {
            let mut state = self.shared.lock();
            state.shutting_down = true;
            let queued: Vec<JobKey> = state.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
            queued.iter().filter_map(|k| state.jobs.remove(k)).collect()
        };
        for job in dropped {
            job.done
                .send_replace(Some(Err(RenderFailure::new("server shutting down"))));
        }
        self.shared.work_ready.notify_waiters();
        let deadline = Instant::now() + timeout;
        while !self.shared.lock().jobs.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.dispatcher.abort();
        self.paint_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await;
    }
}

impl<B: RenderBackend> Drop for RenderPool<B> {
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.shared.lock().shutting_down = true;
    }
}

/// Takes the highest-priority queued job whenever a fetch slot is free.
async fn dispatch_loop<B: RenderBackend>(
    shared: Arc<Shared>,
    backend: Arc<B>,
    slots: Arc<Semaphore>,
    paint_tx: crossbeam_channel::Sender<PaintJob<B::Fetched>>,
) {
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let next = loop {
            // Register interest before looking, so a submit between the look and the
            // wait is not missed.
            let notified = shared.work_ready.notified();
            {
                let mut state = shared.lock();
                if state.shutting_down {
                    return;
                }
                if let Some(next) = take_next(&mut state) {
                    break next;
                }
            }
            notified.await;
        };
        let (key, priority) = next;
        let shared = shared.clone();
        // Started here, in dispatch (priority) order; fetches may finish in any order.
        let fetch = backend.clone().fetch(key.clone(), priority);
        let paint_tx = paint_tx.clone();
        tokio::spawn(async move {
            match fetch.await {
                Ok(fetched) => {
                    let job = PaintJob {
                        key,
                        priority,
                        fetched,
                        _slot: slot,
                    };
                    if let Err(e) = paint_tx.send(job) {
                        shared.finish(
                            &e.0.key,
                            Err(RenderFailure::new("the render threads have stopped")),
                        );
                    }
                }
                Err(e) => shared.finish(&key, Err(e)),
            }
        });
    }
}

fn take_next(state: &mut State) -> Option<(JobKey, Priority)> {
    for p in Priority::ALL {
        if let Some(key) = state.queues[p as usize].pop_front() {
            if let Some(job) = state.jobs.get_mut(&key) {
                job.phase = Phase::Running;
                return Some((key, job.priority));
            }
        }
    }
    None
}

fn paint_loop<B: RenderBackend>(
    shared: &Shared,
    backend: &B,
    rx: &crossbeam_channel::Receiver<PaintJob<B::Fetched>>,
) {
    while let Ok(job) = rx.recv() {
        shared.painting.fetch_add(1, Ordering::Relaxed);
        let key = job.key;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            backend.paint_and_store(&key, job.priority, job.fetched)
        }))
        .unwrap_or_else(|_| Err(RenderFailure::new("the renderer panicked")));
        shared.painting.fetch_sub(1, Ordering::Relaxed);
        shared.finish(&key, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Counts renders per key; paints block while `hold` is set.
    #[derive(Default)]
    struct CountingBackend {
        renders: Mutex<Vec<(JobKey, Priority)>>,
        hold: AtomicBool,
        /// Jobs in the order their fetch started (the order priorities decide).
        started: Mutex<Vec<(JobKey, Priority)>>,
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
            while self.hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.renders.lock().unwrap().push((key.clone(), p));
            Ok(())
        }
    }

    fn key(x: u32) -> JobKey {
        JobKey {
            style: StyleName::parse("osm").unwrap(),
            meta: MetatileCoord::try_new(10, u64::from(x) * 8, 0).unwrap(),
        }
    }

    async fn settle(pool: &RenderPool<CountingBackend>) {
        // Generous: the machine may be busy with other tests' renders.
        for _ in 0..3000 {
            if pool.stats().running == 0 && pool.stats().queued == [0, 0, 0] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("pool did not settle: {:?}", pool.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_of_one_metatile_render_it_once() {
        let pool = RenderPool::start(CountingBackend::default(), 2, [64, 64, 64]).unwrap();
        pool.backend().hold.store(true, Ordering::SeqCst);
        let waiters: Vec<Waiter> = (0..64)
            .map(|_| {
                pool.submit(key(1), Priority::Interactive)
                    .unwrap()
                    .into_waiter()
            })
            .collect();
        pool.backend().hold.store(false, Ordering::SeqCst);
        for w in waiters {
            w.wait().await.unwrap();
        }
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 1);
        assert_eq!(pool.stats().coalesced, 63);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let pool = RenderPool::start(CountingBackend::default(), 1, [2, 2, 2]).unwrap();
        pool.backend().hold.store(true, Ordering::SeqCst);
        // Two fetch slots per thread: jobs 0 and 1 leave the queue, 2 and 3 fill it.
        let mut waiters = Vec::new();
        for x in 0..2 {
            waiters.push(
                pool.submit(key(x), Priority::Interactive)
                    .unwrap()
                    .into_waiter(),
            );
        }
        while pool.stats().running < 2 {
            tokio::task::yield_now().await;
        }
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
        assert!(start.elapsed() < Duration::from_millis(100));
        // Other priorities have their own room.
        assert!(pool.submit(key(10), Priority::Bulk).is_ok());
        pool.backend().hold.store(false, Ordering::SeqCst);
        for w in waiters {
            w.wait().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn higher_priorities_run_first_and_waiting_clients_promote_jobs() {
        let pool = RenderPool::start(CountingBackend::default(), 1, [8, 8, 8]).unwrap();
        pool.backend().hold.store(true, Ordering::SeqCst);
        let blockers: Vec<Waiter> = (100..102)
            .map(|x| pool.submit(key(x), Priority::Bulk).unwrap().into_waiter())
            .collect();
        while pool.stats().running < 2 {
            tokio::task::yield_now().await;
        }
        let bulk = pool.submit(key(1), Priority::Bulk).unwrap().into_waiter();
        let stale = pool.submit(key(2), Priority::Stale).unwrap().into_waiter();
        let promoted = pool.submit(key(3), Priority::Stale).unwrap().into_waiter();
        let joined = pool.submit(key(3), Priority::Interactive).unwrap();
        assert!(matches!(joined, Submit::Joined(_)));
        assert_eq!(pool.job_priority(&key(3)), Some(Priority::Interactive));
        pool.backend().hold.store(false, Ordering::SeqCst);
        for w in [bulk, stale, promoted, joined.into_waiter()]
            .into_iter()
            .chain(blockers)
        {
            w.wait().await.unwrap();
        }
        settle(&pool).await;
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
    async fn a_dropped_waiter_does_not_cancel_the_render() {
        let pool = RenderPool::start(CountingBackend::default(), 1, [8, 8, 8]).unwrap();
        drop(pool.submit(key(5), Priority::Interactive).unwrap());
        settle(&pool).await;
        assert_eq!(pool.backend().renders.lock().unwrap().len(), 1);
    }
}
