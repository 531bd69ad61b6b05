//! The health state and its monitor with a scripted probe, in paused time.

use super::*;
use std::collections::VecDeque;

const OPTIONS: HealthOptions = HealthOptions {
    suspect_after: Duration::from_millis(1000),
    probe_timeout: Duration::from_millis(1000),
    probe_max_interval: Duration::from_millis(1000),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Refused,
    Silent,
}

/// Answers probes from a script (then `then`), and notes when each one started.
struct ScriptedProbe {
    script: Mutex<VecDeque<Answer>>,
    then: Mutex<Answer>,
    started: Mutex<Vec<Instant>>,
}

impl ScriptedProbe {
    fn new(script: &[Answer], then: Answer) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.iter().copied().collect()),
            then: Mutex::new(then),
            started: Mutex::default(),
        })
    }

    fn answer_from_now_on(&self, answer: Answer) {
        self.script.lock().unwrap().clear();
        *self.then.lock().unwrap() = answer;
    }

    /// Start times of the probes, relative to `t0`, in milliseconds.
    fn started_ms(&self, t0: Instant) -> Vec<u64> {
        let started = self.started.lock().unwrap();
        started
            .iter()
            .map(|t| t.duration_since(t0).as_millis() as u64)
            .collect()
    }
}

impl Probe for ScriptedProbe {
    fn probe(&self) -> BoxFuture<'static, Result<(), ProbeError>> {
        self.started.lock().unwrap().push(Instant::now());
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(*self.then.lock().unwrap());
        Box::pin(async move {
            match answer {
                Answer::Ok => Ok(()),
                Answer::Refused => Err(ProbeError::Closed),
                Answer::Silent => std::future::pending().await,
            }
        })
    }
}

/// A health state and its monitor, already waiting (healthy) when this returns.
async fn start(probe: &Arc<ScriptedProbe>) -> (Arc<SourceHealth>, MonitorHandle) {
    let health = SourceHealth::new(OPTIONS);
    let monitor = MonitorHandle::start(health.clone(), probe.clone());
    tokio::time::sleep(Duration::from_millis(1)).await;
    (health, monitor)
}

#[tokio::test(start_paused = true)]
async fn a_failure_marks_the_source_down_until_a_probe_succeeds_probed_with_backoff() {
    let probe = ScriptedProbe::new(&[Answer::Refused; 6], Answer::Ok);
    let (health, _monitor) = start(&probe).await;
    assert!(health.check().is_ok());
    let t0 = Instant::now();
    health.record_failure(&ProbeError::Closed);
    let down = health.check().unwrap_err();
    assert!(down.cause.contains("closed"), "{down}");
    assert!(!health.snapshot().healthy);

    health.until_healthy().await;
    // At once, then 100, 200, 400, 800 ms apart, then every second (the maximum).
    assert_eq!(
        probe.started_ms(t0),
        vec![0, 100, 300, 700, 1500, 2500, 3500]
    );
    let snapshot = health.snapshot();
    assert!(snapshot.healthy && snapshot.cause.is_none());
    assert_eq!(snapshot.outages, 1);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_on_a_silent_database_gives_up_within_the_connect_timeout() {
    let probe = ScriptedProbe::new(&[], Answer::Silent);
    let (health, _monitor) = start(&probe).await;
    let t0 = Instant::now();
    let never = std::future::pending::<()>();
    let outcome = health.watch(t0 + Duration::from_secs(60), never).await;
    assert!(matches!(outcome, Err(Abort::Down(_))), "{outcome:?}");
    // Suspected after 1 s, the probe got no answer for 1 s more; down, the monitor
    // probes again at once.
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(probe.started_ms(t0), vec![1000, 2000]);

    // Known down: the next fetch fails without waiting.
    let t1 = Instant::now();
    let outcome = health.watch(t1 + Duration::from_secs(60), async {}).await;
    assert!(outcome.is_ok(), "the work that is ready wins");
    assert!(health.check().is_err());
    assert_eq!(t1.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_slow_query_on_a_live_database_is_waited_for_up_to_its_deadline() {
    let probe = ScriptedProbe::new(&[], Answer::Ok);
    let (health, _monitor) = start(&probe).await;
    let t0 = Instant::now();
    let slow = tokio::time::sleep(Duration::from_millis(3500));
    let outcome = health.watch(t0 + Duration::from_secs(60), slow).await;
    assert!(outcome.is_ok());
    assert!(health.is_healthy());
    // A probe each second it waited: each found the database answering.
    assert_eq!(probe.started_ms(t0), vec![1000, 2000, 3000]);

    let t1 = Instant::now();
    let never = std::future::pending::<()>();
    let outcome = health.watch(t1 + Duration::from_millis(2500), never).await;
    assert!(matches!(outcome, Err(Abort::NoAnswer(_))), "{outcome:?}");
    assert_eq!(t1.elapsed(), Duration::from_millis(2500));
    assert!(health.is_healthy(), "one stuck connection is not an outage");
}

#[tokio::test(start_paused = true)]
async fn recent_answers_spare_the_probe() {
    let probe = ScriptedProbe::new(&[], Answer::Ok);
    let (health, _monitor) = start(&probe).await;
    health.record_ok();
    health.suspect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(probe.started.lock().unwrap().is_empty());
    tokio::time::sleep(OPTIONS.suspect_after).await;
    health.suspect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(probe.started.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_probe_does_not_delay_the_one_that_finds_the_database_back() {
    let probe = ScriptedProbe::new(&[], Answer::Silent);
    let (health, _monitor) = start(&probe).await;
    health.record_failure(&ProbeError::Closed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The probe of t=100 ms hangs; the database comes back at 150 ms.
    probe.answer_from_now_on(Answer::Ok);
    let t0 = Instant::now();
    health.until_healthy().await;
    // Found by the next probe (t=300 ms), not after the silent one's timeout (1.1 s).
    assert_eq!(t0.elapsed(), Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn a_real_success_clears_the_outage_and_the_monitor_goes_quiet() {
    let probe = ScriptedProbe::new(&[], Answer::Refused);
    let (health, _monitor) = start(&probe).await;
    health.record_failure(&ProbeError::Closed);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let probes = probe.started.lock().unwrap().len();
    assert_eq!(probes, 3);
    health.record_ok();
    assert!(health.is_healthy());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(probe.started.lock().unwrap().len(), probes);
}
