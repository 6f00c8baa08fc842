//! Huge pages for the buffer pool of the Linux drivers (`NetmapBuilder::huge_pages`), as
//! DPDK and xsk-rs offer them: a pool of a few MiB on 2 MiB pages takes a handful of TLB
//! entries instead of thousands of 4 KiB ones. When the system has none to give, the port
//! opens on ordinary pages and says so once per open (INFO), with the fix.

use std::sync::Arc;

use crate::error::Error;
use crate::region::Region;

/// The default huge page size (`Hugepagesize:` in `/proc/meminfo`); 2 MiB if unreadable.
pub(crate) fn huge_page_size() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Hugepagesize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kb| kb * 1024)
        .filter(|b| b.is_power_of_two())
        .unwrap_or(2 << 20)
}

/// A zeroed region of `len` bytes for the port `name`: on huge pages when `huge` asks for
/// them and the system has enough free, else on ordinary pages (with a log line saying why
/// and how to get them).
pub(crate) fn region(name: &str, len: usize, huge: bool) -> Result<Arc<Region>, Error> {
    if huge {
        let page = huge_page_size();
        match Region::anonymous_huge(len, page) {
            Ok(r) => {
                tracing::info!(
                    port = name,
                    bytes = r.len(),
                    huge_page = page,
                    "buffer pool on huge pages"
                );
                return Ok(Arc::new(r));
            }
            Err(e) => {
                let pages = len.div_ceil(page);
                tracing::info!(
                    port = name,
                    error = %e,
                    "huge pages asked for but not available: the buffer pool uses ordinary \
                     pages. It needs {pages} free huge page(s) of {} KiB; reserve them with \
                     `echo {pages} > /proc/sys/vm/nr_hugepages` (root) or `vm.nr_hugepages` \
                     in sysctl.conf",
                    page / 1024
                );
            }
        }
    }
    Ok(Arc::new(Region::anonymous(len)?))
}
