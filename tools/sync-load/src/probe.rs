//! What the process measures of itself: CPU time per thread group, memory, open files, and
//! latency percentiles.

/// CPU seconds (user + system) used so far, by thread-name prefix: `server` and `pg-store`
/// (the server's runtime, its blocking pool and the PostgreSQL store's runtime), `client` (the load generator), and everything in total.
pub(crate) fn cpu_seconds() -> (f64, f64, f64) {
    let ticks = 100.0; // USER_HZ
    let parse = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let t = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((name, t / ticks))
    };
    let total = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse(&s))
        .map_or(0.0, |(_, t)| t);
    let (mut server, mut client) = (0.0, 0.0);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Some((name, secs)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| parse(&s))
            {
                if name.starts_with("server") || name.starts_with("pg-store") {
                    server += secs;
                } else if name.starts_with("client") {
                    client += secs;
                }
            }
        }
    }
    (server, client, total)
}

/// Peak resident memory of this process (server and load generator), in MiB, and the number
/// of open file descriptors.
pub(crate) fn memory_and_files() -> (f64, usize) {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    (hwm / 1024.0, fds)
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// CPU seconds (user + system) used so far by process `root` and its children (PostgreSQL's
/// postmaster and its backends), read from `/proc`; 0 when none can be read.
pub(crate) fn process_tree_cpu(root: u32) -> f64 {
    let ticks = 100.0; // USER_HZ
    let mut total = 0.0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ppid = fields.get(1).and_then(|f| f.parse::<u32>().ok());
        if pid != root && ppid != Some(root) {
            continue;
        }
        let t = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        total += (t(11) + t(12)) / ticks;
    }
    total
}
