//! [`Limits`]: what one client may cost. Two budgets per client, both GCRA token
//! buckets from `governor`: tile requests (every tile URL spends one) and renders
//! caused (spent only by a request that starts a render: hits, and misses that join a
//! render already under way, spend none). A node-wide ceiling on renders started per
//! second protects the database whoever asks. HTTP-free: the HTTP layer says who the
//! client is ([`ClientId`]) and turns a [`Refusal`] into 429 or 503.
//!
//! Memory stays bounded whatever the number of clients: [`Limits::housekeeping`] (run
//! every few seconds) drops the clients whose buckets are full again, which for a
//! one-request client is a fraction of a second, and past `max_clients` forgets every
//! client rather than grow.

use super::metrics::Metrics;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use prometheus::IntCounter;
use serde::Serialize;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients listed by renders caused in the admin `/status`.
pub const TOP_CLIENTS: usize = 20;

/// Who a budget belongs to: an address (after trusted proxies) or an API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    Ip(IpAddr),
    Key(Arc<str>),
}

impl ClientId {
    /// The budget holder of an address. An IPv6 client owns at least a /64 (SLAAC gives
    /// one to every home), so its budget is the /64's: a new address per request would
    /// otherwise be a new budget per request.
    pub fn ip(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => ClientId::Ip(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientId::Ip(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientId::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientId::Ip(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            ClientId::Ip(ip) => write!(f, "{ip}"),
            // A key is a secret: only its start is shown.
            ClientId::Key(k) => write!(f, "key {}…", k.chars().take(4).collect::<String>()),
        }
    }
}

/// Which budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The client's tile requests.
    Requests,
    /// The client's renders caused.
    Renders,
    /// The node's renders per second, all clients together.
    NodeRenders,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Requests => "requests",
            Budget::Renders => "renders",
            Budget::NodeRenders => "node_renders",
        }
    }
}

/// A budget said no: when to come back, and the policy that refused (for the
/// `RateLimit` / `RateLimit-Policy` headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub budget: Budget,
    /// Until one unit of the budget is back (at least a second: `Retry-After` counts
    /// whole seconds).
    pub retry_after: Duration,
    /// Units the bucket holds when full.
    pub quota: u32,
    /// Seconds an empty bucket takes to fill.
    pub window_secs: u64,
}

impl Refusal {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The budgets, as `[limits]` gives them.
#[derive(Debug, Clone)]
pub struct LimitOptions {
    pub requests_per_second: u32,
    pub request_burst: u32,
    pub renders_per_minute: u32,
    pub render_burst: u32,
    /// 0 = no node-wide ceiling.
    pub node_renders_per_second: u32,
    pub exempt: Vec<IpNet>,
    pub exempt_keys: Vec<String>,
    pub max_clients: usize,
}

type Map = DashMapStateStore<ClientId, foldhash::fast::RandomState>;

/// governor's DashMap store, shared with [`Limits`] so that it can be emptied (the
/// limiter owns its store and has no `clear`).
#[derive(Clone)]
struct SharedStore(Arc<Map>);

impl StateStore for SharedStore {
    type Key = ClientId;

    fn measure_and_replace<T, F, E>(&self, key: &ClientId, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<ClientId> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

type Keyed<C> = RateLimiter<ClientId, SharedStore, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One budget kind: the limiter and how it is described.
struct Bucket<L> {
    limiter: L,
    /// The keyed limiter's store (none for the node's).
    store: Option<SharedStore>,
    budget: Budget,
    quota: u32,
    window_secs: u64,
}

/// Per-client budgets and the node's render ceiling. Share it behind an `Arc`.
pub struct Limits<C: Clock = DefaultClock> {
    clock: C,
    requests: Bucket<Keyed<C>>,
    renders: Bucket<Keyed<C>>,
    node: Option<Bucket<Direct<C>>>,
    exempt: Vec<IpNet>,
    exempt_keys: HashSet<String>,
    max_clients: usize,
    top: Mutex<TopClients>,
    refused: [IntCounter; 3],
    forgotten: IntCounter,
}

/// A budget of `burst` units refilled in `window` (`burst` per `window`, steadily).
fn quota(burst: u32, per_unit: Duration) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per_unit.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Limits<DefaultClock> {
    pub fn new(options: &LimitOptions, metrics: &Metrics) -> Self {
        Self::with_clock(options, metrics, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// With a clock of the caller's (tests advance a fake one).
    pub fn with_clock(options: &LimitOptions, metrics: &Metrics, clock: C) -> Self {
        let keyed = |burst: u32, per_unit: Duration, budget: Budget| {
            let q = quota(burst, per_unit);
            let store = SharedStore(Arc::new(Map::with_hasher(
                foldhash::fast::RandomState::default(),
            )));
            Bucket {
                limiter: RateLimiter::new(q, store.clone(), clock.clone()),
                store: Some(store),
                budget,
                quota: burst,
                window_secs: (per_unit * burst).as_secs().max(1),
            }
        };
        let rps = options.requests_per_second.max(1);
        let rpm = options.renders_per_minute.max(1);
        let requests = keyed(
            options.request_burst,
            Duration::from_secs(1) / rps,
            Budget::Requests,
        );
        let renders = keyed(
            options.render_burst,
            Duration::from_secs(60) / rpm,
            Budget::Renders,
        );
        let node = (options.node_renders_per_second > 0).then(|| {
            let n = options.node_renders_per_second;
            Bucket {
                limiter: RateLimiter::direct_with_clock(
                    quota(n, Duration::from_secs(1) / n),
                    clock.clone(),
                ),
                store: None,
                budget: Budget::NodeRenders,
                quota: n,
                window_secs: 1,
            }
        });
        let refused = [Budget::Requests, Budget::Renders, Budget::NodeRenders]
            .map(|b| metrics.throttled.with_label_values(&[b.as_str()]));
        Self {
            clock,
            requests,
            renders,
            node,
            exempt: options.exempt.clone(),
            exempt_keys: options.exempt_keys.iter().cloned().collect(),
            max_clients: options.max_clients.max(1),
            top: Mutex::new(TopClients::new(TOP_CLIENTS)),
            refused,
            forgotten: metrics.limit_clients_forgotten.clone(),
        }
    }

    fn is_exempt(&self, client: &ClientId) -> bool {
        match client {
            ClientId::Ip(ip) => self.exempt.iter().any(|net| net.contains(ip)),
            ClientId::Key(k) => self.exempt_keys.contains(&**k),
        }
    }

    fn refusal(&self, budget: Budget, quota: u32, window_secs: u64, wait: Duration) -> Refusal {
        self.refused[budget as usize].inc();
        Refusal {
            budget,
            retry_after: wait,
            quota,
            window_secs,
        }
    }

    fn spend(&self, bucket: &Bucket<Keyed<C>>, client: &ClientId) -> Result<(), Refusal> {
        bucket.limiter.check_key(client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            self.refusal(bucket.budget, bucket.quota, bucket.window_secs, wait)
        })
    }

    /// Spends one tile request of `client`'s budget.
    pub fn check_request(&self, client: &ClientId) -> Result<(), Refusal> {
        if self.exempt.is_empty() && self.exempt_keys.is_empty() {
            return self.spend(&self.requests, client);
        }
        if self.is_exempt(client) {
            return Ok(());
        }
        self.spend(&self.requests, client)
    }

    /// Spends one render of `client`'s budget (an exempt client spends none), then one
    /// of the node's. Called only when a request is about to start a render.
    pub fn check_render(&self, client: Option<&ClientId>) -> Result<(), Refusal> {
        if let Some(client) = client.filter(|c| !self.is_exempt(c)) {
            self.spend(&self.renders, client)?;
            self.top
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .count(client);
        }
        if let Some(node) = &self.node {
            node.limiter.check().map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                self.refusal(node.budget, node.quota, node.window_secs, wait)
            })?;
        }
        Ok(())
    }

    /// Clients with the most renders caused (approximate counts, see [`TopClients`]).
    pub fn top_clients(&self) -> Vec<TopClient> {
        self.top
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ranked()
    }

    /// Clients with a budget being tracked (request and render buckets).
    pub fn tracked_clients(&self) -> usize {
        self.requests.limiter.len() + self.renders.limiter.len()
    }

    /// Forgets clients whose buckets are full again (they would start afresh anyway);
    /// past `max_clients`, forgets every client (counted): memory stays bounded even
    /// when millions of addresses each send a request. Run every few seconds.
    pub fn housekeeping(&self) {
        for bucket in [&self.requests, &self.renders] {
            bucket.limiter.retain_recent();
            if bucket.limiter.len() > self.max_clients {
                let n = bucket.limiter.len();
                tracing::warn!(
                    clients = n,
                    max_clients = self.max_clients,
                    budget = bucket.budget.as_str(),
                    "too many clients with a budget in use; forgetting them all"
                );
                self.forgotten.inc_by(n as u64);
                if let Some(store) = &bucket.store {
                    store.0.clear();
                }
            }
            bucket.limiter.shrink_to_fit();
        }
    }
}

/// One line of the top clients.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopClient {
    pub client: String,
    /// Renders caused (may overcount by up to `error`).
    pub renders: u64,
    pub error: u64,
}

/// The heaviest hitters by renders caused in bounded memory: the Space-Saving
/// algorithm (Metwally et al.), `k` counters; a newcomer takes over the smallest
/// counter and inherits its count as its possible error. Updated only when a render is
/// caused, so the lock is taken a few hundred times a second at most.
struct TopClients {
    k: usize,
    counters: Vec<(ClientId, u64, u64)>,
}

impl TopClients {
    fn new(k: usize) -> Self {
        Self {
            k,
            counters: Vec::with_capacity(k),
        }
    }

    fn count(&mut self, client: &ClientId) {
        if let Some(c) = self.counters.iter_mut().find(|c| &c.0 == client) {
            c.1 += 1;
            return;
        }
        if self.counters.len() < self.k {
            self.counters.push((client.clone(), 1, 0));
            return;
        }
        if let Some(min) = self.counters.iter_mut().min_by_key(|c| c.1) {
            let floor = min.1;
            *min = (client.clone(), floor + 1, floor);
        }
    }

    fn ranked(&self) -> Vec<TopClient> {
        let mut out: Vec<TopClient> = self
            .counters
            .iter()
            .map(|(client, renders, error)| TopClient {
                client: client.to_string(),
                renders: *renders,
                error: *error,
            })
            .collect();
        out.sort_by(|a, b| b.renders.cmp(&a.renders).then(a.client.cmp(&b.client)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn options() -> LimitOptions {
        LimitOptions {
            requests_per_second: 10,
            request_burst: 20,
            renders_per_minute: 60,
            render_burst: 5,
            node_renders_per_second: 0,
            exempt: vec!["10.0.0.0/8".parse().unwrap()],
            exempt_keys: vec!["partner".into()],
            max_clients: 1000,
        }
    }

    fn limits(o: &LimitOptions) -> (Limits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let metrics = Metrics::new().unwrap();
        (Limits::with_clock(o, &metrics, clock.clone()), clock)
    }

    fn ip(s: &str) -> ClientId {
        ClientId::ip(s.parse().unwrap())
    }

    #[test]
    fn a_burst_of_requests_then_the_rate() {
        let (l, clock) = limits(&options());
        let c = ip("192.0.2.1");
        for _ in 0..20 {
            l.check_request(&c).unwrap();
        }
        let refused = l.check_request(&c).unwrap_err();
        assert_eq!(refused.budget, Budget::Requests);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!((refused.quota, refused.window_secs), (20, 2));
        // Another client has its own budget.
        l.check_request(&ip("192.0.2.2")).unwrap();
        clock.advance(Duration::from_millis(100));
        l.check_request(&c).unwrap();
        assert!(l.check_request(&c).is_err());
    }

    #[test]
    fn renders_have_their_own_smaller_budget() {
        let (l, clock) = limits(&options());
        let c = ip("192.0.2.1");
        for _ in 0..5 {
            l.check_render(Some(&c)).unwrap();
        }
        let refused = l.check_render(Some(&c)).unwrap_err();
        assert_eq!(refused.budget, Budget::Renders);
        assert_eq!(refused.retry_after_secs(), 1);
        // Requests are untouched by renders.
        l.check_request(&c).unwrap();
        clock.advance(Duration::from_secs(1));
        l.check_render(Some(&c)).unwrap();
    }

    #[test]
    fn exempt_clients_and_keys_spend_nothing() {
        let (l, _) = limits(&options());
        for _ in 0..100 {
            l.check_request(&ip("10.1.2.3")).unwrap();
            l.check_render(Some(&ip("10.1.2.3"))).unwrap();
            l.check_render(Some(&ClientId::Key("partner".into())))
                .unwrap();
        }
        assert!(l.top_clients().is_empty());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn the_node_ceiling_counts_every_client() {
        let (l, clock) = limits(&LimitOptions {
            node_renders_per_second: 3,
            ..options()
        });
        for i in 0..3 {
            l.check_render(Some(&ip(&format!("192.0.2.{i}")))).unwrap();
        }
        let refused = l.check_render(Some(&ip("192.0.2.9"))).unwrap_err();
        assert_eq!(refused.budget, Budget::NodeRenders);
        // Exempt clients are under the ceiling too: it protects the database.
        assert!(l.check_render(Some(&ip("10.0.0.1"))).is_err());
        clock.advance(Duration::from_secs(1));
        l.check_render(None).unwrap();
    }

    #[test]
    fn idle_clients_are_forgotten_and_memory_is_capped() {
        let (l, clock) = limits(&LimitOptions {
            max_clients: 100,
            ..options()
        });
        for i in 0..50u32 {
            l.check_request(&ClientId::ip(IpAddr::from(i.to_be_bytes())))
                .unwrap();
        }
        assert_eq!(l.tracked_clients(), 50);
        clock.advance(Duration::from_secs(1));
        l.housekeeping();
        assert_eq!(l.tracked_clients(), 0, "full buckets are forgotten");
        // 500 clients all still spending: over the cap, every one is forgotten.
        for i in 0..500u32 {
            let c = ClientId::ip(IpAddr::from(i.to_be_bytes()));
            for _ in 0..20 {
                l.check_request(&c).unwrap();
            }
        }
        l.housekeeping();
        assert_eq!(l.tracked_clients(), 0);
    }

    #[test]
    fn the_top_clients_are_the_heaviest_renderers() {
        let (l, _) = limits(&LimitOptions {
            render_burst: 1000,
            ..options()
        });
        for i in 0..100u32 {
            let c = ClientId::ip(IpAddr::from((i | 0xC000_0000).to_be_bytes()));
            l.check_render(Some(&c)).unwrap();
        }
        let heavy = ip("203.0.113.7");
        for _ in 0..50 {
            l.check_render(Some(&heavy)).unwrap();
        }
        let top = l.top_clients();
        assert!(top.len() <= TOP_CLIENTS);
        assert_eq!(top[0].client, "203.0.113.7");
        assert!(top[0].renders >= 50 && top[0].renders - top[0].error <= 50);
    }
}
