//! Long-running admin work (large expiries, seeds) as jobs with ids, progress and
//! cancellation, so no request ever holds a connection for minutes and an operator can
//! watch and stop what runs. At most [`MAX_RUNNING_JOBS`] run at once (the others wait
//! as `queued`), at most [`JobLimits::max_active`] may be queued or running, and
//! finished jobs are remembered up to a count and an age: the registry itself is
//! bounded. A job's work (and the input it holds) is dropped when it ends; what stays
//! is its report, whose error list and messages are capped too.

use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many error lines one job keeps (the count keeps going).
const MAX_KEPT_ERRORS: usize = 50;
/// Longest error line kept, in bytes (longer ones are cut).
const MAX_ERROR_BYTES: usize = 500;
/// Jobs running at the same time: expiry walks the disk and seeding fills the bulk
/// queue, so more would only compete for the same disk and render threads.
pub const MAX_RUNNING_JOBS: usize = 2;
/// Default of [`JobLimits::max_active`].
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 32;

/// How many jobs the registry holds (`[admin]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Jobs queued or running at the same time; beyond it a new job is refused (503).
    pub max_active: usize,
    /// Finished jobs remembered (the most recent).
    pub kept: usize,
    /// Finished jobs are forgotten this long after they ended.
    pub kept_for: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_active: DEFAULT_MAX_ACTIVE_JOBS,
            kept: 100,
            kept_for: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

/// Too many jobs are queued or running.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("{0} jobs are already queued or running")]
pub struct TooManyJobs(pub usize);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One job's live progress; shared between the worker and the API.
pub struct Job {
    pub id: u64,
    pub kind: String,
    pub description: String,
    state: Mutex<JobState>,
    done: AtomicU64,
    total: AtomicU64,
    error_count: AtomicU64,
    errors: Mutex<Vec<String>>,
    cancel: CancellationToken,
    /// Kind-specific counts while running, the final report once finished.
    result: Mutex<Option<Value>>,
    created: SystemTime,
    started: Mutex<Option<Instant>>,
    finished: Mutex<Option<Instant>>,
}

/// What `GET /jobs/{id}` returns.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub id: u64,
    pub kind: String,
    pub description: String,
    pub state: JobState,
    /// Metatiles handled so far, out of `total`.
    pub done: u64,
    pub total: u64,
    /// Metatiles per second since the job started.
    pub rate: f64,
    /// Seconds left at the current rate, when it can be told.
    pub eta_secs: Option<f64>,
    pub elapsed_secs: f64,
    pub created: String,
    pub errors: Vec<String>,
    pub error_count: u64,
    /// Counts so far (expire: the summary; seed: rendered, skipped, failed).
    pub result: Option<Value>,
}

impl Job {
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Records progress: `done` of `total` metatiles handled.
    pub fn set_progress(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Replaces the kind-specific counts (or the final report).
    pub fn set_result(&self, result: Value) {
        *lock(&self.result) = Some(result);
    }

    /// Records one error; the first [`MAX_KEPT_ERRORS`] messages are kept, each cut to
    /// [`MAX_ERROR_BYTES`].
    pub fn error(&self, message: impl Into<String>) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut errors = lock(&self.errors);
        if errors.len() < MAX_KEPT_ERRORS {
            let mut message = message.into();
            if message.len() > MAX_ERROR_BYTES {
                let mut cut = MAX_ERROR_BYTES;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push('…');
            }
            errors.push(message);
        }
    }

    /// Counts errors without a message (logged elsewhere).
    pub fn add_errors(&self, n: u64) {
        self.error_count.fetch_add(n, Ordering::Relaxed);
    }

    /// The token the worker watches; cancelled by [`Job::cancel`].
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Asks the job to stop: a queued job is cancelled at once, a running one when its
    /// worker next looks.
    pub fn cancel(&self) {
        self.cancel.cancel();
        let mut state = lock(&self.state);
        if *state == JobState::Queued {
            *state = JobState::Cancelled;
            *lock(&self.finished) = Some(Instant::now());
        }
    }

    pub fn state(&self) -> JobState {
        *lock(&self.state)
    }

    /// How long ago a finished job ended (`None` while it is active).
    fn ended_ago(&self) -> Option<Duration> {
        if self.state().is_active() {
            return None;
        }
        lock(&self.finished).map(|t| t.elapsed())
    }

    /// Moves a queued job to running; false when it was cancelled meanwhile.
    pub fn start(&self) -> bool {
        let mut state = lock(&self.state);
        if *state != JobState::Queued {
            return false;
        }
        *state = JobState::Running;
        *lock(&self.started) = Some(Instant::now());
        true
    }

    /// Ends the job: failed (with a reason), cancelled if it was asked to stop before
    /// it got through its work, else done (a cancel that came after the last metatile
    /// changes nothing).
    pub fn finish(&self, result: Result<(), String>) {
        let finished_work = self.done.load(Ordering::Relaxed) >= self.total.load(Ordering::Relaxed);
        let end = match result {
            Err(e) => {
                self.error(e);
                JobState::Failed
            }
            Ok(()) if self.is_cancelled() && !finished_work => JobState::Cancelled,
            Ok(()) => JobState::Done,
        };
        *lock(&self.finished) = Some(Instant::now());
        *lock(&self.state) = end;
    }

    pub fn report(&self) -> JobReport {
        let started = *lock(&self.started);
        let finished = *lock(&self.finished);
        let elapsed = match (started, finished) {
            (Some(s), Some(f)) => f.saturating_duration_since(s).as_secs_f64(),
            (Some(s), None) => s.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let state = self.state();
        let eta_secs = (state == JobState::Running && rate > 0.0 && total >= done)
            .then(|| (total - done) as f64 / rate);
        JobReport {
            id: self.id,
            kind: self.kind.clone(),
            description: self.description.clone(),
            state,
            done,
            total,
            rate,
            eta_secs,
            elapsed_secs: elapsed,
            created: httpdate::fmt_http_date(self.created),
            errors: lock(&self.errors).clone(),
            error_count: self.error_count.load(Ordering::Relaxed),
            result: lock(&self.result).clone(),
        }
    }
}

/// The registry of recent jobs and the slots they run in.
pub struct Jobs {
    next_id: AtomicU64,
    recent: Mutex<VecDeque<Arc<Job>>>,
    slots: Arc<Semaphore>,
    limits: JobLimits,
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new(JobLimits::default())
    }
}

impl Jobs {
    pub fn new(limits: JobLimits) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(MAX_RUNNING_JOBS)),
            limits,
        }
    }

    /// Forgets finished jobs beyond the count and the age kept; active ones stay.
    fn prune(&self, recent: &mut VecDeque<Arc<Job>>) {
        let kept_for = self.limits.kept_for;
        recent.retain(|j| j.ended_ago().map_or(true, |ago| ago <= kept_for));
        let mut finished = recent.iter().filter(|j| !j.state().is_active()).count();
        while finished > self.limits.kept {
            match recent.iter().position(|j| !j.state().is_active()) {
                Some(i) => {
                    recent.remove(i);
                    finished -= 1;
                }
                None => break,
            }
        }
    }

    /// Registers a queued job; [`Jobs::spawn`] runs it.
    pub fn create(&self, kind: &str, description: String) -> Result<Arc<Job>, TooManyJobs> {
        let mut recent = lock(&self.recent);
        self.prune(&mut recent);
        if recent.iter().filter(|j| j.state().is_active()).count() >= self.limits.max_active {
            return Err(TooManyJobs(self.limits.max_active));
        }
        let job = Arc::new(Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind: kind.to_string(),
            description,
            state: Mutex::new(JobState::Queued),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            error_count: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            result: Mutex::new(None),
            created: SystemTime::now(),
            started: Mutex::new(None),
            finished: Mutex::new(None),
        });
        recent.push_back(job.clone());
        Ok(job)
    }

    /// Runs `work` for `job` on the tokio runtime once a slot is free: marks it
    /// running, then done, failed or cancelled by what `work` returns. A job cancelled
    /// while queued never runs.
    pub fn spawn<F, Fut>(&self, job: Arc<Job>, work: F)
    where
        F: FnOnce(Arc<Job>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let slots = self.slots.clone();
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                job.finish(Err("the job registry was closed".into()));
                return;
            };
            if !job.start() {
                return;
            }
            let result = work(job.clone()).await;
            job.finish(result);
        });
    }

    /// Asks every queued or running job to stop (at shutdown).
    pub fn cancel_all(&self) {
        for job in lock(&self.recent).iter() {
            if job.state().is_active() {
                job.cancel();
            }
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        lock(&self.recent).iter().find(|j| j.id == id).cloned()
    }

    /// Newest first.
    pub fn list(&self) -> Vec<JobReport> {
        let mut recent = lock(&self.recent);
        self.prune(&mut recent);
        recent.iter().rev().map(|j| j.report()).collect()
    }

    /// (queued, running) jobs.
    pub fn active(&self) -> (usize, usize) {
        let recent = lock(&self.recent);
        let count = |s: JobState| recent.iter().filter(|j| j.state() == s).count();
        (count(JobState::Queued), count(JobState::Running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reports_progress_and_ends_in_the_state_it_reached() {
        let jobs = Jobs::default();
        let job = jobs.create("expire", "bbox z0-20".into()).unwrap();
        assert_eq!(job.state(), JobState::Queued);
        assert!(job.start());
        job.set_progress(2, 4);
        job.set_result(serde_json::json!({"changed": 1}));
        let r = job.report();
        assert_eq!((r.state, r.done, r.total), (JobState::Running, 2, 4));
        assert_eq!(r.result.unwrap()["changed"], 1);
        job.finish(Ok(()));
        assert_eq!(jobs.get(job.id).unwrap().state(), JobState::Done);

        let cancelled = jobs.create("seed", String::new()).unwrap();
        assert!(cancelled.start());
        cancelled.set_progress(3, 8);
        cancelled.cancel();
        assert!(cancelled.is_cancelled());
        assert!(cancelled.cancel_token().is_cancelled());
        cancelled.finish(Ok(()));
        assert_eq!(cancelled.state(), JobState::Cancelled);
        assert_eq!(jobs.list()[0].id, cancelled.id);

        let late = jobs.create("seed", String::new()).unwrap();
        assert!(late.start());
        late.set_progress(8, 8);
        late.cancel();
        late.finish(Ok(()));
        assert_eq!(
            late.state(),
            JobState::Done,
            "cancelled after its last metatile"
        );

        let queued = jobs.create("seed", String::new()).unwrap();
        jobs.cancel_all();
        assert_eq!(queued.state(), JobState::Cancelled);

        let failed = jobs.create("seed", String::new()).unwrap();
        failed.start();
        failed.finish(Err("render pool stopped".into()));
        let r = failed.report();
        assert_eq!((r.state, r.error_count), (JobState::Failed, 1));
        assert_eq!(r.errors, vec!["render pool stopped".to_string()]);
    }

    #[test]
    fn a_job_cancelled_while_queued_never_starts() {
        let jobs = Jobs::default();
        let job = jobs.create("expire", String::new()).unwrap();
        job.cancel();
        assert_eq!(job.state(), JobState::Cancelled);
        assert!(!job.start());
    }

    #[test]
    fn only_recent_finished_jobs_are_kept_and_active_ones_are_bounded() {
        let limits = JobLimits::default();
        let jobs = Jobs::default();
        let first = jobs.create("expire", String::new()).unwrap();
        for _ in 0..limits.kept + 10 {
            jobs.create("expire", String::new()).unwrap().finish(Ok(()));
        }
        // The first job never finished, so it is still there.
        assert!(jobs.get(first.id).is_some());
        assert_eq!(jobs.list().len(), limits.kept + 1);
        for _ in 1..limits.max_active {
            jobs.create("expire", String::new()).unwrap();
        }
        assert_eq!(jobs.active(), (limits.max_active, 0));
        assert_eq!(
            jobs.create("expire", String::new()).err(),
            Some(TooManyJobs(limits.max_active))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finished_jobs_are_forgotten_after_their_age_and_long_errors_are_cut() {
        let jobs = Jobs::new(JobLimits {
            max_active: 4,
            kept: 10,
            kept_for: Duration::from_millis(30),
        });
        let old = jobs.create("seed", String::new()).unwrap();
        old.error("x".repeat(100_000));
        old.finish(Ok(()));
        let running = jobs.create("seed", String::new()).unwrap();
        assert!(running.start());
        let errors = old.report().errors;
        assert!(
            errors[0].len() <= MAX_ERROR_BYTES + '…'.len_utf8(),
            "{}",
            errors[0].len()
        );
        assert_eq!(jobs.list().len(), 2);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let ids: Vec<u64> = jobs.list().iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            vec![running.id],
            "the old finished one is gone, the running one stays"
        );
    }

    /// Lets the spawned job tasks run until `done` holds (single-threaded runtime:
    /// they make progress whenever this task yields).
    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn at_most_two_jobs_run_at_once_and_the_rest_wait_queued() {
        let jobs = Jobs::default();
        let (open, gate) = tokio::sync::watch::channel(false);
        let mut all = Vec::new();
        for _ in 0..MAX_RUNNING_JOBS + 1 {
            let job = jobs.create("seed", String::new()).unwrap();
            let mut gate = gate.clone();
            jobs.spawn(job.clone(), move |_| async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok(())
            });
            all.push(job);
        }
        until(|| jobs.active().1 == MAX_RUNNING_JOBS).await;
        // Everything that can start has started; the last one still waits its turn.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(jobs.active(), (1, MAX_RUNNING_JOBS));
        open.send_replace(true);
        until(|| all.iter().all(|j| j.state() == JobState::Done)).await;
    }
}
