//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, …), read from `/proc/self` at each
//! scrape: a few small files, no cost between scrapes. On systems
//! without `/proc` (anything but Linux) they are simply absent, as are
//! any whose file cannot be read.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process metrics at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// Seconds since the epoch when the process started: fixed, so read once.
    start_time: Option<f64>,
}

impl ProcessCollector {
    /// A collector for this process.
    pub(super) fn new() -> ProcessCollector {
        ProcessCollector {
            start_time: linux::start_time(),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = linux::read();
        if let Some(cpu) = now.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                now.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                now.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                now.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                now.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                self.start_time,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// One reading of the process's use of the system; `None` where unknown.
#[derive(Debug, Default)]
struct Reading {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

#[cfg(target_os = "linux")]
mod linux {
    use super::Reading;

    /// The fields of `/proc/self/stat` after the command name (which may
    /// hold spaces and parentheses, so the split is at the last `)`),
    /// numbered from 3 as proc(5) numbers them: `fields[0]` is field 3.
    fn stat_fields(stat: &str) -> Option<Vec<&str>> {
        let (_, rest) = stat.rsplit_once(')')?;
        Some(rest.split_whitespace().collect())
    }

    /// proc(5) field `n` (1-based) of `/proc/self/stat`, as a number.
    fn field(fields: &[&str], n: usize) -> Option<f64> {
        fields.get(n.checked_sub(3)?)?.parse().ok()
    }

    fn ticks() -> f64 {
        rustix::param::clock_ticks_per_second() as f64
    }

    pub(super) fn read() -> Reading {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields).unwrap_or_default();
        let cpu_ticks = field(&fields, 14).zip(field(&fields, 15));
        Reading {
            cpu_seconds: cpu_ticks.map(|(user, system)| (user + system) / ticks()),
            resident_bytes: resident_bytes(),
            virtual_bytes: field(&fields, 23),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            max_fds: max_fds(),
        }
    }

    /// `VmRSS` of `/proc/self/status`: in kB, so no page size is needed.
    fn resident_bytes() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    fn max_fds() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let soft = line.trim_start_matches("Max open files").split_whitespace();
        soft.into_iter().next()?.parse().ok()
    }

    /// The boot time (`btime` of `/proc/stat`) plus the process's start
    /// in ticks after boot (field 22 of `/proc/self/stat`).
    pub(super) fn start_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let started = field(&stat_fields(&stat)?, 22)? / ticks();
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        let boot: f64 = system
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(boot + started)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
            let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50";
            let fields = stat_fields(stat).unwrap();
            assert_eq!(field(&fields, 3), None); // "S" is not a number
            assert_eq!(field(&fields, 4), Some(1.0));
            assert_eq!(field(&fields, 14), Some(250.0));
            assert_eq!(field(&fields, 15), Some(50.0));
        }

        #[test]
        fn this_process_reads_sanely() {
            let now = read();
            assert!(now.resident_bytes.unwrap() > 1e6);
            assert!(now.virtual_bytes.unwrap() >= now.resident_bytes.unwrap());
            assert!(now.open_fds.unwrap() >= 3.0);
            assert!(now.max_fds.unwrap() >= now.open_fds.unwrap());
            assert!(now.cpu_seconds.unwrap() >= 0.0);
            let started = start_time().unwrap();
            let epoch = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
            assert!(started <= epoch + 1.0 && started > epoch - 24.0 * 3600.0);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod linux {
    use super::Reading;

    pub(super) fn read() -> Reading {
        Reading::default()
    }

    pub(super) fn start_time() -> Option<f64> {
        None
    }
}
