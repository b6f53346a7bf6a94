//! Where logins' SRP arithmetic runs: on threads of its own, at a lower
//! scheduling priority than the threads that relay chat.
//!
//! A login costs the server most of a millisecond of 2048-bit
//! exponentiation. A flood of logins (a meeting starting, or someone
//! hammering the port) must slow down logins, not the members already
//! talking. On tokio's blocking pool the exponentiations competed with the
//! reactor threads as equals: on two cores, logins at full rate raised the
//! chat p99 of a room from 2 ms to 420 ms (BENCHMARKS.md). Here they queue
//! for [`LOGIN_THREADS`] threads that run at nice [`LOGIN_NICE`] on Linux, so
//! the scheduler gives the relay the CPU first; elsewhere they run at normal
//! priority, still off the reactor.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Threads computing logins: at most one per core, at most 4.
pub const LOGIN_THREADS: usize = 4;
/// Nice value of the login threads: about a tenth of a core's time each when
/// the relay wants it all, every idle cycle otherwise.
pub const LOGIN_NICE: i32 = 10;

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

/// Lowers the calling thread's scheduling priority to [`LOGIN_NICE`].
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority has no memory-safety preconditions. On Linux the
    // nice value is per thread, and `who = 0` names the calling thread only
    // (setpriority(2), NOTES). A failure leaves normal priority: harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, LOGIN_NICE);
    }
}

/// Elsewhere `setpriority` would renice the whole process: keep normal priority.
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
        assert!(nice >= LOGIN_NICE, "nice {nice}");
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
    }
}
