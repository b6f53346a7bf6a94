//! Where logins' SRP arithmetic runs: on threads of its own, at a lower
//! scheduling priority than the threads that relay chat.
//!
//! A login costs the server most of a millisecond of 2048-bit
//! exponentiation. A flood of logins (a meeting starting, or someone
//! hammering the port) must slow down logins, not the members already
//! talking. On tokio's blocking pool the exponentiations competed with the
//! reactor threads as equals: on two cores, logins at full rate raised the
//! chat p99 of a room from 2.3 ms to 422 ms (2026-11-22; BENCHMARKS.md,
//! "Logins beside a chat", has that and the later figures). Here they queue
//! for [`LOGIN_THREADS`] threads that run, on Linux, at nice [`LOGIN_NICE`]:
//! a relay thread that wakes up takes the core from them, and they keep a
//! small but certain share of a saturated machine (unlike `SCHED_IDLE`, under
//! which a login thread preempted while holding a lock the relay needs, the
//! allocator's say, could hold it up for long), so logins slow down under
//! load but do not stop. Work for a login that has meanwhile been abandoned
//! (deadline, dropped connection) is skipped. Elsewhere the threads run at
//! normal priority, still off the reactor.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Threads computing logins: at most one per core, at most 4.
pub const LOGIN_THREADS: usize = 4;
/// Nice value of the login threads: the lowest, about 1.5% of a core each
/// when the relay wants it all, every idle cycle otherwise.
pub const LOGIN_NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// A queue of login computations and the threads that run them. The threads
/// end when the pool is dropped.
pub struct LoginPool {
    /// Where logins' computations queue for the threads; dropping it ends them.
    jobs: mpsc::Sender<Job>,
}

impl LoginPool {
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        for i in 0..cores.min(LOGIN_THREADS) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("cmd-chat-login-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            // A panic fails that one login, not the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                            }
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a login thread and waits for it without blocking the
    /// reactor. `None` if the pool is gone (the server is shutting down) or
    /// `work` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // Nobody waits any more: the login was abandoned in the queue.
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// Lowers the calling thread's priority to nice [`LOGIN_NICE`].
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority has no memory-safety preconditions. On Linux the
    // nice value is per thread, and `who = 0` names the calling thread only
    // (setpriority(2), NOTES). A failure leaves normal priority: harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, LOGIN_NICE);
    }
}

/// Elsewhere the call would change the whole process: keep normal priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_off_the_reactor_at_lower_priority() {
        let pool = LoginPool::start().unwrap();
        let (name, nice) = pool
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                #[cfg(target_os = "linux")]
                // SAFETY: getpriority only reads the calling thread's nice value.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                #[cfg(not(target_os = "linux"))]
                let nice = LOGIN_NICE;
                (name, nice)
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("cmd-chat-login-"));
        assert_eq!(nice, LOGIN_NICE);
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
    }

    #[tokio::test]
    async fn a_panic_fails_one_login_and_abandoned_work_is_skipped() {
        let pool = LoginPool::start().unwrap();
        for _ in 0..=LOGIN_THREADS {
            assert_eq!(pool.run(|| -> u8 { panic!("bad input") }).await, None);
        }
        assert_eq!(pool.run(|| 1).await, Some(1), "the threads live on");
        // A login abandoned while queued: its work never runs. Hold every
        // thread, queue the login, give up on it, then let the threads go.
        let pool = Arc::new(pool);
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let blockers: Vec<_> = (0..threads.min(LOGIN_THREADS))
            .map(|_| {
                let (pool, wait) = (Arc::clone(&pool), Arc::clone(&wait));
                tokio::spawn(async move { pool.run(move || wait.lock().unwrap().recv()).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let abandoned = pool.run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), abandoned).await;
        assert!(gave_up.is_err(), "the threads were all busy");
        drop(release);
        for blocker in blockers {
            blocker.await.unwrap();
        }
        for _ in 0..LOGIN_THREADS {
            pool.run(|| ()).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
