//! Readings of the server and of this process from /proc, and the
//! statistics the reports use.

use super::*;

/// CPU time (user + system) of a process, in milliseconds.
pub(crate) fn cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
    Some((utime + stime) * 10.0)
}

/// `VmRSS` and `VmHWM` of a process, KiB.
pub(crate) fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub(crate) struct CpuMark {
    pub(crate) server: Option<f64>,
    pub(crate) own: Option<f64>,
    pub(crate) at: Instant,
}

impl CpuMark {
    pub(crate) fn now(server_pid: Option<u32>) -> Self {
        Self {
            server: server_pid.and_then(|p| cpu_ms(&p.to_string())),
            own: cpu_ms("self"),
            at: Instant::now(),
        }
    }

    /// `(server ms, loadgen ms, wall s)` since `self`.
    pub(crate) fn since(&self, server_pid: Option<u32>) -> (Option<f64>, Option<f64>, f64) {
        let later = Self::now(server_pid);
        (
            later.server.zip(self.server).map(|(b, a)| b - a),
            later.own.zip(self.own).map(|(b, a)| b - a),
            later.at.duration_since(self.at).as_secs_f64(),
        )
    }
}
