//! What `/proc` says about a process: CPU time, resident memory, threads, open descriptors; and the
//! children of a launcher with the role each runs (`argv[1]`: `composer`, `synthd`, `streamd`).

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
pub const CLOCK_TICKS: f64 = 100.0;

/// One look at a process.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProcSample {
    /// Process id.
    pub pid: u32,
    /// `utime + stime` in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// `Threads` of `/proc/<pid>/status`.
    pub threads: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
}

/// Reads the process now; `None` when it is gone (or a zombie).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat_fields(&stat)?.collect();
    // `fields[0]` is field 3 (state); utime and stime are fields 14 and 15.
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Some(ProcSample {
        pid,
        cpu_ticks: utime + stime,
        rss_kib: field("VmRSS:").unwrap_or(0),
        threads: field("Threads:").unwrap_or(0),
        fds,
    })
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (state) on. The command name (field 2) may
/// itself contain spaces and parentheses, so counting starts after the *last* `)`.
fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// The role a process was started in: `argv[1]` (the launcher runs `auralis <role>`), else the
/// program name.
pub fn role_of(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
    let argv0 = args.next()?;
    let role = args.next().unwrap_or(argv0);
    let role = String::from_utf8_lossy(role);
    Some(role.rsplit('/').next().unwrap_or(&role).to_owned())
}

/// Children of `parent` with the role of each.
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(mut fields) = stat_fields(&stat) else {
            continue;
        };
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent && state != "Z" {
            out.push((pid, role_of(pid).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// The pid running `role` under `launcher` now.
pub fn role_pid(launcher: u32, role: &str) -> Option<u32> {
    children_of(launcher)
        .into_iter()
        .find(|(_, r)| r == role)
        .map(|(pid, _)| pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.threads >= 1 && s.fds >= 3);
    }
}
