//! A controller: a keyed work queue drained by workers that call one level-triggered,
//! idempotent reconcile function per key, plus the context every controller is built from.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;
use crate::runtime::api::ApiRef;
use crate::runtime::events::Recorder;
use crate::runtime::informer::{Informers, Object, ObjectKey};
use crate::runtime::queue::WorkQueue;

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until something changes.
    Done,
    /// Look again after this long (time-based logic: deadlines, back-off, grace periods).
    RequeueAfter(Duration),
}

/// One controller's logic.
///
/// # Correctness
/// `reconcile` is level-triggered: it reads the current state from the caches and moves the
/// cluster one step towards the desired state, never relying on which event woke it. It is
/// idempotent: running it twice in a row with no change in between writes nothing the second
/// time. The runtime never runs it for one key twice at once.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action>;

    /// This server just became the leader (before any key of the new term is reconciled).
    /// Controllers with grace periods that count from the start of leadership override it.
    fn leadership_started(&self) {}
}

/// The time source of time-based logic (injectable in tests).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// FOR TESTS ONLY: a clock that starts at the current time and runs `rate` times faster than
/// real time, so schedules and windows of minutes pass in seconds. Controllers given it should
/// also get [`Controller::with_time_scale`] so their requeue delays shrink alike.
pub fn fast_clock(rate: f64) -> Clock {
    let origin = jiff::Timestamp::now();
    let start = std::time::Instant::now();
    Arc::new(move || {
        let elapsed = start.elapsed().mul_f64(rate);
        let elapsed = jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX);
        origin
            .saturating_add(elapsed)
            .unwrap_or(jiff::Timestamp::MAX)
    })
}

/// What every controller is built from.
#[derive(Clone)]
pub struct Context {
    pub informers: Informers,
    pub api: ApiRef,
    pub recorder: Recorder,
    pub clock: Clock,
}

impl Context {
    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }
}

type Resync = Box<dyn Fn() -> Vec<ObjectKey> + Send + Sync>;

/// A named reconcile loop.
pub struct Controller {
    pub name: &'static str,
    pub queue: WorkQueue<ObjectKey>,
    reconciler: Arc<dyn Reconciler>,
    workers: usize,
    resync: Resync,
    /// How many times faster than real time the reconciler's clock runs.
    time_scale: f64,
}

impl Controller {
    /// A controller whose keys are the objects of `K` (every cached `K` is reconciled when
    /// leadership starts); handlers that enqueue keys are the caller's.
    pub fn new<K: Object>(
        name: &'static str,
        ctx: &Context,
        reconciler: impl Reconciler,
        workers: usize,
    ) -> Controller {
        let informer = ctx.informers.get::<K>();
        Controller {
            name,
            queue: WorkQueue::new(),
            reconciler: Arc::new(reconciler),
            workers: workers.max(1),
            resync: Box::new(move || informer.keys()),
            time_scale: 1.0,
        }
    }

    /// A controller whose keys are not one kind's objects: `resync` lists the keys to reconcile
    /// when a leadership term starts.
    pub fn with_resync(
        name: &'static str,
        reconciler: impl Reconciler,
        workers: usize,
        resync: impl Fn() -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Controller {
        Controller {
            name,
            queue: WorkQueue::new(),
            reconciler: Arc::new(reconciler),
            workers: workers.max(1),
            resync: Box::new(resync),
            time_scale: 1.0,
        }
    }

    /// The reconciler's clock runs `rate` times faster than real time (a test clock from
    /// [`fast_clock`]): its `RequeueAfter` delays, in the clock's time, are waited for `rate`
    /// times shorter.
    pub fn with_time_scale(mut self, rate: f64) -> Controller {
        if rate.is_finite() && rate > 0.0 {
            self.time_scale = rate;
        }
        self
    }

    /// Start of a leadership term: tell the reconciler, then queue every key of the controller.
    pub fn resync(&self) {
        self.reconciler.leadership_started();
        for k in (self.resync)() {
            self.queue.add(k);
        }
    }

    /// Reconcile one key and dispose of it in the queue. Returns false when the key failed
    /// because this server lost leadership.
    pub async fn process(&self, key: ObjectKey) -> bool {
        let outcome = self.reconciler.reconcile(&key).await;
        self.queue.done(&key);
        match outcome {
            Ok(Action::Done) => {
                self.queue.forget(&key);
                true
            }
            Ok(Action::RequeueAfter(d)) => {
                self.queue.forget(&key);
                self.queue.add_after(key, d.div_f64(self.time_scale));
                true
            }
            Err(e) if e.is_fenced() => {
                // Keep the key for the next leader term.
                self.queue.add(key);
                false
            }
            Err(e) => {
                let delay = self.queue.add_rate_limited(key.clone());
                tracing::debug!(controller = self.name, %key, error = %e, ?delay, "reconcile failed; retrying");
                true
            }
        }
    }

    /// Reconcile every queued key, including keys queued meanwhile, until the queue is empty
    /// (delayed re-queues are not waited for). For unit tests.
    pub async fn run_until_idle(&self) {
        while let Some(key) = self.queue.try_get() {
            self.process(key).await;
        }
    }

    /// Run the workers until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut workers = Vec::new();
        for _ in 0..self.workers {
            let me = self.clone();
            let mut stop = stop.clone();
            workers.push(tokio::spawn(async move {
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    let key = tokio::select! {
                        k = me.queue.get() => k,
                        _ = stop.changed() => return,
                    };
                    let Some(key) = key else { return };
                    me.process(key).await;
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    }
}
