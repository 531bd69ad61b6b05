//! Yield points in render work, so that renders leave the CPU to hits within a fraction
//! of a millisecond.
//!
//! Render threads run at a lower priority than the HTTP workers, but the kernel only
//! takes a core back from a running thread at its tick (4 ms at `HZ=250`) unless a task
//! that wakes up can preempt it at once. A task that was itself just preempted (a
//! worker that woke a second worker, a client process on the same machine) is not such
//! a task: it waits for the render thread's next tick. Render code calls [`give_way`]
//! between units of work (a decoded row, a path, a drawing step, a label, a grid
//! feature, an encoded or blended tile); after [`EVERY`] of work the thread yields its core once, and the kernel runs
//! whatever has been waiting. With nothing else runnable, a yield returns at once.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long render work may run between two yields.
const EVERY: Duration = Duration::from_micros(250);

thread_local! {
    static TURN: Cell<Turn> = const { Cell::new(Turn { started: None }) };
}

/// When this thread's current stretch of work started.
#[derive(Debug, Clone, Copy)]
struct Turn {
    started: Option<Instant>,
}

impl Turn {
    /// Whether the stretch that `now` ends has lasted [`EVERY`]; if so a new one starts.
    fn is_over(&mut self, now: Instant) -> bool {
        match self.started {
            Some(at) if now.saturating_duration_since(at) < EVERY => false,
            Some(_) => {
                self.started = None;
                true
            }
            None => {
                self.started = Some(now);
                false
            }
        }
    }
}

/// Yields the core if this thread has worked for [`EVERY`] since it last did. Reads
/// the clock (tens of nanoseconds), so it is called per unit of work that takes
/// microseconds, not per pixel.
pub fn give_way() {
    let over = TURN.with(|turn| {
        let mut t = turn.get();
        let over = t.is_over(Instant::now());
        turn.set(t);
        over
    });
    if over {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_ends_once_it_has_lasted_long_enough_and_the_next_starts_afresh() {
        let start = Instant::now();
        let mut turn = Turn { started: None };
        assert!(!turn.is_over(start), "the first unit of work starts a turn");
        assert!(!turn.is_over(start + EVERY / 2));
        assert!(!turn.is_over(start + EVERY - Duration::from_nanos(1)));
        assert!(turn.is_over(start + EVERY), "a turn of EVERY ends");
        // After a yield, the next unit of work starts the next turn.
        let later = start + EVERY * 3;
        assert!(!turn.is_over(later));
        assert!(!turn.is_over(later + EVERY / 2));
        assert!(turn.is_over(later + EVERY * 2));
    }
}
