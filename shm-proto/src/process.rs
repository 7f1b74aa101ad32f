//! Process identity: pid plus start time (from `/proc/<pid>/stat`), so a reused pid is never
//! mistaken for the process that registered. Also the two clocks the protocol stamps with.

/// A process, identified by pid *and* start time: pids are reused, the pair is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// Process id (0 = nobody).
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        let start_time = read_stat(pid).map(|s| s.start_time).unwrap_or(0);
        Self { pid, start_time }
    }

    /// The process running as `pid` now, if any.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = read_stat(pid)?;
        (!stat.gone()).then_some(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs. A zombie (killed, not yet reaped by its parent)
    /// counts as dead: it will never touch shared memory again.
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        match read_stat(self.pid) {
            Some(stat) => !stat.gone() && stat.start_time == self.start_time,
            None => false,
        }
    }
}

/// Whether any live process has `pid` (used where the start time is not known yet).
pub(crate) fn pid_running(pid: u32) -> bool {
    pid != 0 && read_stat(pid).is_some_and(|s| !s.gone())
}

/// The two fields of `/proc/<pid>/stat` we need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: R, S, D, Z, X...
    pub(crate) state: char,
    /// Field 22.
    pub(crate) start_time: u64,
}

impl Stat {
    fn gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// CLOCK_MONOTONIC in nanoseconds: system-wide, so comparable between processes (heartbeats).
pub fn monotonic_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (chunk publish times shown to users).
pub fn realtime_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_REALTIME)
}

fn clock_ns(id: nix::time::ClockId) -> u64 {
    // Both clocks always exist on Linux; 0 is an obviously-wrong fallback rather than a panic.
    nix::time::clock_gettime(id)
        .map(|t| (t.tv_sec() as u64) * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens_and_spaces() {
        let line =
            "1234 (we) ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn current_process_is_alive() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        assert!(
            !ProcessId {
                pid: 0,
                start_time: 0
            }
            .is_alive()
        );
    }

    #[test]
    fn monotonic_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
        assert!(realtime_ns() > 1_600_000_000_000_000_000);
    }
}
