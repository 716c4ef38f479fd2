//! What both benchmarks report with: integer formatting, rates and the machine's load; and
//! the copy of a rules directory each runs on.

use std::time::Instant;

/// `num / den` with `places` decimals, rounded half up; `-` when `den` is 0.
pub fn fixed(num: u128, den: u128, places: u32) -> String {
    if den == 0 {
        return "-".to_string();
    }
    let scale = 10u128.pow(places);
    let q = (num * scale + den / 2) / den;
    if places == 0 {
        return q.to_string();
    }
    format!(
        "{}.{:0width$}",
        q / scale,
        q % scale,
        width = places as usize
    )
}

/// Per second.
pub fn per_second(events: u64, nanos: u64) -> u64 {
    if nanos == 0 {
        return 0;
    }
    (u128::from(events) * 1_000_000_000 / u128::from(nanos)) as u64
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn nanos_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The 1-minute load average (Linux), as text.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".to_string())
}

/// Copies a directory tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
