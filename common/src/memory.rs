//! Process memory settings both binaries apply first thing in `main`.
//!
//! Transparent huge pages are turned off for the process unless the operator asked for them.
//! mimalloc (the allocator of both binaries) advises the kernel to back its arenas with 2 MiB huge
//! pages; the first touch of each such page then zeroes all 2 MiB inside a page fault, on whatever
//! thread allocated: a request, a configuration apply or a translation stalls for it. In a
//! profile of a whole run of 20 proxies sharing 2 cores (BENCHMARKS.md, "Twenty real proxies"),
//! huge-page zeroing was 28 % of all CPU samples, mostly while the proxies loaded 5,000 routes, and
//! the slowest configuration changes came right after. With `MIMALLOC_ALLOW_THP` set (mimalloc's
//! own option, read before `main`; this module looks for that exact name) the operator decides
//! and this module changes nothing.
//!
//! This module does not tune the allocator otherwise.

/// What [`apply_defaults`] did about transparent huge pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Turned off for this process (and the processes it starts).
    Disabled,
    /// Left as the operator set them through `MIMALLOC_ALLOW_THP`.
    OperatorChoice,
    /// Not turned off: not Linux, or the kernel refused (the error, for the log).
    Unchanged(String),
}

/// Applies the process memory defaults; call it before the runtime starts.
pub fn apply_defaults() -> HugePages {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return HugePages::OperatorChoice;
    }
    disable_huge_pages()
}

/// Logs what [`apply_defaults`] did, once logging is set up: a warning when huge pages could not
/// be turned off, else an info line.
pub fn log(outcome: &HugePages) {
    match outcome {
        HugePages::Disabled => tracing::info!("transparent huge pages off for this process"),
        HugePages::OperatorChoice => {
            tracing::info!("transparent huge pages left to MIMALLOC_ALLOW_THP")
        }
        HugePages::Unchanged(why) => {
            tracing::warn!(error = %why, "transparent huge pages could not be turned off")
        }
    }
}

#[cfg(target_os = "linux")]
fn disable_huge_pages() -> HugePages {
    match nix::sys::prctl::set_thp_disable(true) {
        Ok(()) => HugePages::Disabled,
        Err(errno) => HugePages::Unchanged(format!("prctl(PR_SET_THP_DISABLE): {errno}")),
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_huge_pages() -> HugePages {
    HugePages::Unchanged("transparent huge pages are a Linux setting".to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The kernel's own view of the process (`THP_enabled` in /proc/self/status) flips to 0.
    #[test]
    fn huge_pages_are_disabled_for_the_process() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            assert_eq!(apply_defaults(), HugePages::OperatorChoice);
            return;
        }
        assert_eq!(apply_defaults(), HugePages::Disabled);
        assert!(nix::sys::prctl::get_thp_disable().expect("PR_GET_THP_DISABLE"));
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .expect("THP_enabled in /proc/self/status (Linux 5.0 or later)");
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}
