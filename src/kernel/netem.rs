//! The netem qdisc's TCA_OPTIONS payload, which rtnetlink does not model: a fixed
//! `struct tc_netem_qopt` followed by netlink attributes (linux/pkt_sched.h).

use crate::topology::Impairment;

const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
const TCA_NETEM_RATE64: u16 = 14;
/// Packets netem may queue (tc's default).
const DEFAULT_LIMIT: u32 = 1000;

/// Whether this kernel has the netem qdisc: built in or loaded (its code is in
/// /proc/kallsyms), or a module it can load (listed in /lib/modules/<release>/modules.dep).
pub fn available() -> bool {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    if kallsyms.lines().any(|l| l.ends_with(" netem_enqueue")) {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dep = format!("/lib/modules/{}/modules.dep", release.trim());
    std::fs::read_to_string(dep)
        .map(|d| d.lines().any(|l| l.contains("/sch_netem.ko")))
        .unwrap_or(false)
}

/// Encodes the options of `tc qdisc add … netem delay D J loss L rate R`.
pub fn encode_options(imp: &Impairment) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let loss = (imp.loss_percent / 100.0 * u32::MAX as f64).round() as u32;
    // tc_netem_qopt: latency, limit, loss, gap, duplicate, jitter. Latency and jitter go in
    // the 64-bit attributes below (nanoseconds), so no tick conversion is needed here.
    for field in [0, DEFAULT_LIMIT, loss, 0, 0, 0] {
        out.extend_from_slice(&field.to_ne_bytes());
    }
    if imp.delay_us > 0 {
        attr(
            &mut out,
            TCA_NETEM_LATENCY64,
            &((imp.delay_us * 1000) as i64).to_ne_bytes(),
        );
    }
    if imp.jitter_us > 0 {
        attr(
            &mut out,
            TCA_NETEM_JITTER64,
            &((imp.jitter_us * 1000) as i64).to_ne_bytes(),
        );
    }
    if imp.rate_bps > 0 {
        let bytes_per_sec = imp.rate_bps / 8;
        // tc_netem_rate: rate (bytes/s, u32), packet_overhead, cell_size, cell_overhead.
        let mut rate = Vec::with_capacity(16);
        rate.extend_from_slice(&(bytes_per_sec.min(u32::MAX as u64) as u32).to_ne_bytes());
        rate.extend_from_slice(&[0; 12]);
        attr(&mut out, TCA_NETEM_RATE, &rate);
        if bytes_per_sec > u32::MAX as u64 {
            attr(&mut out, TCA_NETEM_RATE64, &bytes_per_sec.to_ne_bytes());
        }
    }
    out
}

pub(super) fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_delay_loss_and_rate() {
        let imp = Impairment {
            delay_us: 20_000,
            jitter_us: 0,
            loss_percent: 50.0,
            rate_bps: 8_000_000,
        };
        let bytes = encode_options(&imp);
        assert_eq!(bytes.len(), 24 + 12 + 20);
        assert_eq!(u32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 1000);
        assert_eq!(
            u32::from_ne_bytes(bytes[8..12].try_into().unwrap()),
            u32::MAX / 2 + 1
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[26..28].try_into().unwrap()),
            TCA_NETEM_LATENCY64
        );
        assert_eq!(
            i64::from_ne_bytes(bytes[28..36].try_into().unwrap()),
            20_000_000
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[38..40].try_into().unwrap()),
            TCA_NETEM_RATE
        );
        assert_eq!(
            u32::from_ne_bytes(bytes[40..44].try_into().unwrap()),
            1_000_000
        );
    }

    #[test]
    fn no_impairment_is_just_the_fixed_struct() {
        assert_eq!(encode_options(&Impairment::default()).len(), 24);
    }
}
