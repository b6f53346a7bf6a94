//! Where logins' SRP arithmetic runs: on threads of its own, at a lower
//! scheduling priority than the threads that relay chat.
//!
//! A login costs the server most of a millisecond of 2048-bit
//! exponentiation. A flood of logins (a meeting starting, or someone
//! hammering the port) must slow down logins, not the members already
//! talking. On tokio's blocking pool the exponentiations competed with the
//! reactor threads as equals: on two cores, logins at full rate raised the
//! chat p99 of a room from 2 ms to 420 ms (BENCHMARKS.md). Here they queue
//! for [`LOGIN_THREADS`] threads that run, on Linux, under the `SCHED_IDLE`
//! policy: a relay thread that wakes up takes the core from them at once,
//! and they still get a small share of a saturated machine, so logins slow
//! down under load but do not stop. Elsewhere they run at normal priority,
//! still off the reactor.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Threads computing logins: at most one per core, at most 4.
pub const LOGIN_THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// A queue of login computations and the threads that run them. The threads
/// end when the pool is dropped.
pub struct LoginPool {
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
                            Ok(job) => job(),
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
            let _ = done.send(work());
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// Puts the calling thread under the `SCHED_IDLE` policy.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration. On
    // Linux the policy is per thread and pid 0 names the calling thread only
    // (sched_setscheduler(2)). A failure leaves normal priority: harmless.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
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
        let (name, policy) = pool
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                #[cfg(target_os = "linux")]
                // SAFETY: reads the calling thread's scheduling policy.
                let policy = unsafe { libc::sched_getscheduler(0) };
                #[cfg(not(target_os = "linux"))]
                let policy = 0;
                (name, policy)
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("cmd-chat-login-"));
        #[cfg(target_os = "linux")]
        assert_eq!(policy, libc::SCHED_IDLE);
        let _ = policy;
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
    }
}
