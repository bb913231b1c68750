//! Deadlines that cannot overflow (shared by the Publisher and the request correlators).

use std::time::{Duration, Instant};

/// The instant `after` from now, saturating: a timeout of `Duration::MAX` (no limit) is
/// about a century, not an overflow panic.
pub(crate) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
